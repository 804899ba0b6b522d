"""## Database watch

The operations guide's hourly database optimisation recommendations, read-only through the
`platform_db` connection (a read-only session with a statement timeout):

* statements whose mean time grew most since the previous hour (`pg_stat_statements` deltas; the
  counters are kept in the incident record), each with what to try;
* connections per service (`application_name`) against the guide's 100 per service;
* long transactions (`checks.database.long_transaction_minutes`);
* sessions waiting on a lock, and the session blocking them.

Problems are incidents, as in performance_watch: announced once, reminded rarely, resolved once.
Without pg_stat_statements the rest still runs and the result says how to enable it. Backfills and
past dates are skipped: the database's live state cannot be read for the past.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag

from solemate_maintenance.config import load_config
from solemate_maintenance.dag_defaults import maintenance_defaults, maintenance_status
from solemate_maintenance.operators.watch.database import DatabaseWatchOperator
from solemate_maintenance.schedules import scheduled_dags

config = load_config()
DAG_ID = "database_watch"

defaults = maintenance_defaults(config, DAG_ID, execution_timeout=timedelta(minutes=5))
defaults.update(retry_delay=timedelta(seconds=60), retry_exponential_backoff=False)


@dag(
    dag_id=DAG_ID,
    description="The hourly database analysis: statement regressions, connections, long transactions, lock waits",
    schedule=scheduled_dags(config)[DAG_ID].timetable(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    tags=["maintenance", "watch", config.environment],
    doc_md=__doc__,
    default_args=defaults,
)
def database_watch():
    watching = DatabaseWatchOperator(
        task_id="watch",
        config=config,
        interval_minutes=60,
        max_window_minutes=config.watch.performance.max_window_minutes,
    )

    watching >> maintenance_status(config, report_task_id=None)

dag = database_watch()

if __name__ == "__main__":
    dag.test()
