"""What every maintenance DAG shares: default_args and the end-of-run wiring."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from solemate_maintenance import iam
from solemate_maintenance.config import PlatformConfig
from solemate_maintenance.notifiers.failure import failure_notifier


def maintenance_defaults(config: PlatformConfig, dag_id: str, *,
                         execution_timeout: timedelta = timedelta(minutes=20)) -> dict[str, Any]:
    """default_args: retries with backoff for transient AWS errors, a timeout, final-failure alerts,
    and, for a DAG that changes AWS, the queue of the workers that carry its IAM policies."""
    defaults: dict[str, Any] = {
        "owner": "platform-ops",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
        "execution_timeout": execution_timeout,
        "aws_conn_id": "aws_default",
        "region_name": config.regions.primary,
        "on_failure_callback": failure_notifier(config),
    }
    if config.workers.mutating_queue and iam.changes_aws(dag_id, config):
        defaults["queue"] = config.workers.mutating_queue
    return defaults


def maintenance_status(config: PlatformConfig, *, report_task_id: str | None = "report", **kwargs: Any) -> Any:
    """The task every scheduled DAG ends with: its status and heartbeat in CloudWatch, its dashboard
    row and its dead-man's alarm (at the DAG's own cadence). ``report_task_id=None`` for a DAG
    without a report (the watches): then the heartbeat needs every upstream task to succeed."""
    from solemate_maintenance.operators.monitoring.cloudwatch_status import MaintenanceStatusOperator

    return MaintenanceStatusOperator(task_id="maintenance_status", report_task_id=report_task_id,
                                     environment=config.environment, status=config.maintenance_status,
                                     alerts=config.alerts, bucket=config.reports.bucket,
                                     reports_prefix=config.reports.prefix, **kwargs)
