"""RDS health: instance status, CloudWatch metrics and a real SQL round trip."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from solemate_maintenance.config import RdsCheck
from solemate_maintenance.findings import Finding, Severity, Status, threshold_finding
from solemate_maintenance.metric_queries import MetricQuery
from solemate_maintenance.operators.base import MaintenanceCheckOperator
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.series import series_finding
from solemate_maintenance.window import TimeWindow

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.rds import RdsHook

GIB = 1024**3
MIB = 1024**2

# metric id -> (CloudWatch name, reducer, scale to the unit, unit, thresholds attribute, check name)
_RDS_METRICS = {
    "cpu": ("CPUUtilization", "max", 1, "%", "cpu_percent", "rds.cpu_utilization"),
    "connections": ("DatabaseConnections", "max", 1, "connections", "connections", "rds.connections"),
    "read_latency": ("ReadLatency", "max", 1000, "ms", "read_latency_ms", "rds.read_latency"),
    "write_latency": ("WriteLatency", "max", 1000, "ms", "write_latency_ms", "rds.write_latency"),
    "free_storage": ("FreeStorageSpace", "min", 1 / GIB, "GiB", "free_storage_gb", "rds.free_storage"),
    # Low freeable memory means swapping: the database slows down before anything else shows it.
    "freeable_memory": ("FreeableMemory", "min", 1 / MIB, "MiB", "freeable_memory_mb", "rds.freeable_memory"),
}


class RdsHealthOperator(MaintenanceCheckOperator):
    """Check the primary PostgreSQL instance.

    An instance that is missing or not ``available`` is P1 (database outage), as is a failed
    ``SELECT 1`` through ``db_conn_id``. Metric thresholds: warning P3, critical P2.

    :param db_instance_identifier: RDS instance id.
    :param db_conn_id: read-only Postgres connection for the round trip; skipped when not defined.
    :param thresholds: the `checks.rds` section of the platform config.
    """

    template_fields = (*MaintenanceCheckOperator.template_fields, "db_instance_identifier", "db_conn_id")

    def __init__(self, *, db_instance_identifier: str, db_conn_id: str | None = "platform_db",
                 thresholds: RdsCheck | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.db_instance_identifier = db_instance_identifier
        self.db_conn_id = db_conn_id
        self.thresholds = thresholds or RdsCheck()

    @cached_property
    def hook(self) -> RdsHook:
        from airflow.providers.amazon.aws.hooks.rds import RdsHook

        return RdsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        resource = self.db_instance_identifier
        client = self.hook.conn
        try:
            instance = client.describe_db_instances(DBInstanceIdentifier=resource)["DBInstances"][0]
        except client.exceptions.DBInstanceNotFoundFault:
            yield Finding(check="rds.status", resource=resource, status=Status.CRITICAL, severity=Severity.P1,
                          summary="DB instance not found")
            return
        state = instance["DBInstanceStatus"]
        details = {"engine": f"{instance.get('Engine')} {instance.get('EngineVersion', '')}".strip(),
                   "instance_class": instance.get("DBInstanceClass"), "multi_az": instance.get("MultiAZ")}
        if state == "available":
            yield Finding(check="rds.status", resource=resource, status=Status.OK, summary="available",
                          details=details)
        else:
            yield Finding(check="rds.status", resource=resource, status=Status.CRITICAL, severity=Severity.P1,
                          summary=f"instance is {state!r}, not available", details={**details, "status": state})

        window = TimeWindow.ending_at_run(context, self.thresholds.lookback_minutes)
        queries = [
            MetricQuery(id=key, namespace="AWS/RDS", metric=name, stat="Average",
                        period=self.thresholds.period_seconds, dimensions={"DBInstanceIdentifier": resource})
            for key, (name, *_rest) in _RDS_METRICS.items()
        ]
        points = self.metrics_hook.get_metric_points(queries, window)
        period = timedelta(seconds=self.thresholds.period_seconds)
        for key, (name, reducer, scale, unit, attribute, check) in _RDS_METRICS.items():
            # Every datapoint of the window judged: three hours at 95 % is not "the day's average".
            yield series_finding(
                check=check, resource=resource, label=f"{'peak' if reducer == 'max' else 'lowest'} {name}",
                metric=attribute, points=[(t, v * scale) for t, v in points.get(key, [])], unit=unit,
                threshold=getattr(self.thresholds, attribute), period=period,
                warning_severity=Severity.P3, critical_severity=Severity.P2,
            )
        yield from self._round_trip(resource)

    def _round_trip(self, resource: str) -> Iterable[Finding]:
        if not self.db_conn_id:
            return
        try:
            BaseHook.get_connection(self.db_conn_id)
        except AirflowNotFoundException:
            self.log.info("Connection %r is not defined: SQL round trip skipped", self.db_conn_id)
            yield Finding(check="rds.query", resource=resource, status=Status.SKIPPED,
                          summary=f"SQL round trip skipped: connection {self.db_conn_id!r} is not defined",
                          details={"conn_id": self.db_conn_id, "reason": "connection not defined"})
            return
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        from solemate_maintenance.notifiers.delivery import register_connection_secrets

        register_connection_secrets(self.db_conn_id)

        started = time.perf_counter()
        try:
            value = PostgresHook(postgres_conn_id=self.db_conn_id).get_first("SELECT 1")
        except Exception as exc:  # any driver error means the application cannot query either
            yield Finding(check="rds.query", resource=resource, status=Status.CRITICAL, severity=Severity.P1,
                          summary=f"SELECT 1 failed ({type(exc).__name__})",
                          details={"error": trim(scrub(str(exc)), 300), "conn_id": self.db_conn_id})
            return
        latency_ms = (time.perf_counter() - started) * 1000
        if not value or value[0] != 1:
            yield Finding(check="rds.query", resource=resource, status=Status.CRITICAL, severity=Severity.P1,
                          summary=f"SELECT 1 returned {value!r}")
            return
        yield threshold_finding(
            check="rds.query", resource=resource, label="SELECT 1 round trip", metric="query_latency_ms",
            value=latency_ms, unit="ms", threshold=self.thresholds.query_latency_ms,
            warning_severity=Severity.P3, critical_severity=Severity.P2,
        )
