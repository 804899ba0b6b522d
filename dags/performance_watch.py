"""## Performance watch

The operations guide's automated performance analysis, every 15 minutes: ALB 5xx (ELB and target
separately), P95/P99 and healthy targets; ECS running vs desired tasks, CPU and memory; RDS CPU,
connections, FreeableMemory and latency; Redis CPU, memory and evictions; payment success rate, and
orders per minute against the same window a week earlier.

* Each run judges the time since the previous successful watch, every 5-minute datapoint on its own
  (after a scheduler outage up to `watch.performance.max_window_minutes`; the result says what it
  covered).
* **Incidents, not runs**: a problem at `watch.open_severity` or worse opens an incident once (one
  Slack message naming when it started), stays quiet while it lasts (a reminder at most every
  `watch.reminder_hours`) and sends one "resolved after 47 min". The record is one object in the
  reports bucket, written conditionally: retries, cleared runs and other workers never send twice.
* SMS only for the guide's emergencies (`alerts.sms_checks`); e-mail for `alerts.email_severities`.
* The task fails only when it cannot measure (the next watch then covers the gap). Backfills and
  past dates are skipped: the watch is about now; daily_maintenance covers past days.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag

from solemate_maintenance.config import load_config
from solemate_maintenance.dag_defaults import maintenance_defaults, maintenance_status
from solemate_maintenance.operators.watch.performance import PerformanceWatchOperator
from solemate_maintenance.schedules import scheduled_dags

config = load_config()
DAG_ID = "performance_watch"
watch = config.watch.performance

defaults = maintenance_defaults(config, DAG_ID, execution_timeout=timedelta(minutes=5))
# Retries land inside the interval (the next watch would cover the window anyway).
defaults.update(retry_delay=timedelta(seconds=30), retry_exponential_backoff=False)


@dag(
    dag_id=DAG_ID,
    description="The 15-minute performance analysis: incidents opened once, reminded rarely, resolved once",
    schedule=scheduled_dags(config)[DAG_ID].timetable(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=watch.interval_minutes),
    tags=["maintenance", "watch", config.environment],
    doc_md=__doc__,
    default_args=defaults,
)
def performance_watch():
    watching = PerformanceWatchOperator(
        task_id="watch",
        config=config,
        interval_minutes=watch.interval_minutes,
        max_window_minutes=watch.max_window_minutes,
    )

    watching >> maintenance_status(config, report_task_id=None)

dag = performance_watch()

if __name__ == "__main__":
    dag.test()
