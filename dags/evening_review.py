"""## Evening review

The guide's 6 PM checklist as one message, at `reviews.evening` in `reviews.timezone` (Monday to
Friday by default). It re-runs no check; it reads what the DAGs found.

* **Today's incidents** (the incident record) and how long each lasted.
* **Today's KPIs** as the latest daily run measured them.
* **Maintenance automation**: every scheduled DAG that was due today (up to `reviews.run_grace_minutes`
  ago): did it run, did it pass. A DAG that did not run is a P3 finding of this review.
* **Monitoring health**: the monitoring checks' findings of the latest daily run.
* **Friday**: also the week's performance (each KPI over the week's daily runs), the pending security
  updates with their deadlines, and what changed since last Friday.
* Delivery and storage as the morning review's (one Slack message, one e-mail, once per date).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from solemate_maintenance.config import load_config
from solemate_maintenance.dag_defaults import maintenance_defaults, maintenance_status
from solemate_maintenance.operators.reviews.day import DayReviewOperator
from solemate_maintenance.schedules import scheduled_dags

config = load_config()
DAG_ID = "evening_review"


@dag(
    dag_id=DAG_ID,
    description="The 6 PM checklist: the day's incidents and KPIs, the automation's results, monitoring health",
    schedule=scheduled_dags(config)[DAG_ID].timetable(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["maintenance", "review", "daily", config.environment],
    doc_md=__doc__,
    default_args=maintenance_defaults(config, DAG_ID),
)
def evening_review():
    DayReviewOperator(task_id="review", review="evening", config=config) >> maintenance_status(
        config, report_task_id=None)


dag = evening_review()

if __name__ == "__main__":
    dag.test()
