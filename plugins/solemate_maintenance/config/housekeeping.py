"""The `airflow_housekeeping` section: Airflow's own metadata database and task logs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from solemate_maintenance.config.base import _Strict

# The tables `airflow db clean` knows (Airflow 3.x; `airflow db clean --help`). A table Airflow adds
# later is cleaned with the default retention once listed here.
CLEANABLE_TABLES = ("_xcom_archive", "asset_event", "callback", "celery_taskmeta", "celery_tasksetmeta",
                    "connection_test_request", "dag", "dag_run", "dag_version", "deadline", "import_error", "job",
                    "log", "partitioned_asset_key_log", "revoked_token", "task_instance", "task_instance_history",
                    "task_reschedule", "task_state_store", "trigger", "xcom")


class AirflowHousekeeping(_Strict):
    # false: a dry run only; the report shows what would be deleted. true: `airflow db clean` deletes it
    # and the task logs past their retention are removed.
    clean: bool = False
    # Rows older than this many days (before the run's date) are cleaned; per table where it differs.
    default_retention_days: int = Field(default=90, ge=7, le=3650)
    retention_days: dict[str, int] = Field(default_factory=lambda: {"xcom": 30, "job": 30, "log": 180})
    # What happens to the deleted rows: "export" them as CSV to the reports bucket and drop Airflow's
    # archive tables; "keep" the archive tables (Airflow's default); "drop" them at once (--skip-archive).
    archive: Literal["export", "keep", "drop"] = "export"
    # The connection holding the metadata database's SQLAlchemy URL (extra `sql_alchemy_conn`, or the
    # connection's URI): Airflow 3 does not let a task reach the metadata database through its own settings.
    metadata_conn_id: str = Field(default="airflow_metadata_db", min_length=1)
    # Task log files (under [logging] base_log_folder) older than this are removed.
    task_log_retention_days: int = Field(default=30, ge=1, le=3650)
    batch_size: int = Field(default=10_000, ge=100, le=1_000_000)

    @field_validator("retention_days")
    @classmethod
    def _known_tables(cls, value: dict[str, int]) -> dict[str, int]:
        for table, days in value.items():
            if table not in CLEANABLE_TABLES:
                raise ValueError(f"{table!r} is not a table `airflow db clean` cleans; one of "
                                 f"{', '.join(CLEANABLE_TABLES)}")
            if not isinstance(days, int) or isinstance(days, bool) or not 7 <= days <= 3650:
                raise ValueError(f"{table}: retention must be a whole number of days from 7 to 3650 (younger rows "
                                 f"may belong to runs still going), not {days!r}")
        return value

    def retention_of(self, table: str) -> int:
        return self.retention_days.get(table, self.default_retention_days)
