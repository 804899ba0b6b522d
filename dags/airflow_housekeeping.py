"""## Airflow housekeeping

Every Sunday at 05:00 UTC, Airflow's own upkeep, the way its documentation recommends; a dry run
unless `airflow_housekeeping.clean` is true (the report shows what would go either way):

* `metadata_cleanup`: `airflow db clean` per table at its retention (`default_retention_days`,
  `retention_days`), counted before and after. Deleted rows are exported as CSV next to the report and
  Airflow's archive tables dropped (`archive: export`), kept (`keep`), or never made (`drop`). The
  database is reached through the `airflow_metadata_db` connection (`metadata_conn_id`): Airflow 3
  keeps tasks away from it otherwise.
* `task_logs`: task log files older than `task_log_retention_days` under `[logging] base_log_folder`.
* `report` / `run_verdict` / `maintenance_status`: as in `daily_maintenance`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from solemate_maintenance.config import load_config
from solemate_maintenance.dag_defaults import maintenance_defaults, maintenance_status
from solemate_maintenance.incidents import incident_key
from solemate_maintenance.operators.housekeeping.airflow_db import MetadataCleanupOperator, TaskLogRetentionOperator
from solemate_maintenance.operators.report import PublishReportOperator, RunVerdictOperator
from solemate_maintenance.schedules import scheduled_dags

config = load_config()
DAG_ID = "airflow_housekeeping"
settings = config.airflow_housekeeping
reporting = {"bucket": config.reports.bucket, "prefix": config.reports.prefix,
             "environment": config.environment, "alerts": config.alerts,
             "incident_key": incident_key(config)}


@dag(
    dag_id=DAG_ID,
    description="Weekly airflow db clean per table and task log retention (a dry run unless configured)",
    schedule=scheduled_dags(config)[DAG_ID].timetable(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["maintenance", "weekly", "airflow", config.environment],
    doc_md=__doc__,
    default_args=maintenance_defaults(config, DAG_ID),
)
def airflow_housekeeping():
    checks_done = [
        MetadataCleanupOperator(task_id="metadata_cleanup", settings=settings, bucket=config.reports.bucket,
                                reports_prefix=config.reports.prefix),
        TaskLogRetentionOperator(task_id="task_logs", settings=settings),
    ]
    report = PublishReportOperator(task_id="report",
                                   previous_report_wait_minutes=config.reports.previous_report_wait_minutes,
                                   **reporting)
    checks_done >> report
    [*checks_done, report] >> RunVerdictOperator(task_id="run_verdict", report_task_id="report", **reporting)
    report >> maintenance_status(config)


dag = airflow_housekeeping()

if __name__ == "__main__":
    dag.test()
