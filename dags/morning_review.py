"""## Morning review

The guide's 9 AM checklist as one message, at `reviews.morning` in `reviews.timezone` (Monday to
Friday by default: `reviews.days`). It re-runs no check; it reads what the DAGs found.

* **Incidents** since the evening review (the incident record): severity, how long, acknowledged by whom.
* **Alarms that fired** in the same window (CloudWatch alarm history) and their state now.
* **Backups**: the AWS Backup jobs of the night (failed ones first, with AWS's reason) and the latest
  restore test (weekly_backup_verification's report).
* **System health**, **KPIs against the 7 days before** and **Security** from the daily run's reports.
* **Monday**: the window reaches back to Friday's evening review: the weekend's incidents and alarms.
* Every line links to the report it came from; a source that cannot be read is named at the end and
  the rest is still sent. One Slack message (`alerts.slack_conn_id`) and one e-mail (`reviews.email`,
  else `alerts.digest_email`) per date; a re-run sends again only when the review changed. Stored as
  `review.json` / `review.md` under the date in the reports bucket. A backfill stores, never sends.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from solemate_maintenance.config import load_config
from solemate_maintenance.dag_defaults import maintenance_defaults, maintenance_status
from solemate_maintenance.operators.reviews.day import DayReviewOperator
from solemate_maintenance.schedules import scheduled_dags

config = load_config()
DAG_ID = "morning_review"


@dag(
    dag_id=DAG_ID,
    description="The 9 AM checklist: overnight incidents and alarms, backups, health, KPI trend, security",
    schedule=scheduled_dags(config)[DAG_ID].timetable(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["maintenance", "review", "daily", config.environment],
    doc_md=__doc__,
    default_args=maintenance_defaults(config, DAG_ID),
)
def morning_review():
    DayReviewOperator(task_id="review", review="morning", config=config) >> maintenance_status(
        config, report_task_id=None)


dag = morning_review()

if __name__ == "__main__":
    dag.test()
