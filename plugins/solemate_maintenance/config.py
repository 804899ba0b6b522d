"""The platform configuration: a typed schema and its loader.

The DAG files load the config at parse time so that a broken file becomes one clear import error
in the Airflow UI (file, key path, reason), instead of a task failing at 2 a.m. Nothing is coerced:
`yes` is not a number, `.nan` is not a threshold, a key written twice is an error, not "last wins".
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

CONFIG_ENV_VAR = "MAINTENANCE_CONFIG"
# A platform description is a few kilobytes; anything near this is a mistake (and would stall the
# DAG processor past its import timeout before any error could be shown).
MAX_CONFIG_BYTES = 1024 * 1024
MAX_NESTING = 20
# Values after expanding YAML aliases: a 300-byte "alias bomb" can otherwise expand to millions.
MAX_VALUES = 100_000
MAX_ERRORS_SHOWN = 5
MAX_MESSAGE_CHARS = 2000
# The repository (or the image's /opt/airflow): include/ with the config, SQL and templates sits under it.
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = REPO_ROOT / "include" / "config" / "platform.yaml"

Percent = Annotated[float, Field(ge=0, le=100)]
PositiveSeconds = Annotated[int, Field(gt=0, le=86_400)]
Minutes = Annotated[int, Field(gt=0, le=60 * 24 * 31)]
SeverityName = Literal["P1", "P2", "P3", "P4"]


class ConfigError(Exception):
    """The platform config cannot be used. The message names the file, the key path and the reason."""


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise: a misspelt threshold must not silently fall back
    # to its default. Strict types: YAML's `yes` must not become 1 minute, "5" must not become 5, and a
    # NaN threshold (which no value ever crosses) is refused.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


@cache
def known_regions() -> frozenset[str]:
    # botocore ships the endpoint data; read the file directly: building a botocore session costs
    # ~0.3 s of CPU, paid by the DAG processor on every parse of every DAG file.
    import importlib.util

    spec = importlib.util.find_spec("botocore")
    data_dir = Path(spec.origin).parent / "data" if spec and spec.origin else None
    for name in ("endpoints.json", "endpoints.json.gz"):
        if data_dir and (data_dir / name).exists():
            raw = (data_dir / name).read_bytes()
            if name.endswith(".gz"):
                import gzip

                raw = gzip.decompress(raw)
            partitions = json.loads(raw)["partitions"]
            return frozenset(region for partition in partitions for region in partition["regions"])
    return frozenset()  # no endpoint data: do not block the config on it


class Regions(_Strict):
    primary: str
    dr: str

    @field_validator("primary", "dr")
    @classmethod
    def _known(cls, value: str) -> str:
        known = known_regions()
        if known and value not in known:
            raise ValueError(f"unknown AWS region {value!r}")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> Regions:
        if self.primary == self.dr:
            raise ValueError("the DR region must differ from the primary region")
        return self


class Upper(_Strict):
    """A metric that is bad when high: warning at or above `warning`, failure at or above `critical`."""

    warning: float
    critical: float

    @model_validator(mode="after")
    def _ordered(self) -> Upper:
        if self.warning > self.critical:
            raise ValueError(f"warning ({self.warning}) must not exceed critical ({self.critical})")
        return self


class UpperPercent(Upper):
    warning: Percent
    critical: Percent


class Lower(_Strict):
    """A metric that is bad when low: warning at or below `warning`, failure at or below `critical`."""

    warning: float
    critical: float

    @model_validator(mode="after")
    def _ordered(self) -> Lower:
        if self.warning < self.critical:
            raise ValueError(f"warning ({self.warning}) must not be below critical ({self.critical})")
        return self


class LowerPercent(Lower):
    warning: Percent
    critical: Percent


class EcsService(_Strict):
    name: str
    min_tasks: int = Field(ge=0)
    max_tasks: int = Field(ge=1)

    @model_validator(mode="after")
    def _range(self) -> EcsService:
        if self.min_tasks > self.max_tasks:
            raise ValueError("min_tasks must not exceed max_tasks")
        return self


class EcsResources(_Strict):
    cluster: str
    services: list[EcsService] = Field(min_length=1)

    @field_validator("services")
    @classmethod
    def _unique_names(cls, value: list[EcsService]) -> list[EcsService]:
        names = [service.name for service in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"service names must be unique; listed more than once: {', '.join(duplicates)}")
        return value


class AlbResources(_Strict):
    name: str
    health_endpoint: AnyHttpUrl


class RdsResources(_Strict):
    instance_id: str
    # Read-only SQL connection used for the SELECT 1 round trip (and later the restore validation).
    db_conn_id: str = "platform_db"


class ElastiCacheResources(_Strict):
    cluster_id: str


class LogResources(_Strict):
    application_log_group: str


class Resources(_Strict):
    ecs: EcsResources
    alb: AlbResources
    rds: RdsResources
    elasticache: ElastiCacheResources
    logs: LogResources
    business_metrics_namespace: str = "SoleMate/Business"


class Kpis(_Strict):
    response_time_p95_ms: float = Field(gt=0)
    response_time_p99_ms: float = Field(gt=0)
    error_rate_percent: Percent
    availability_percent: Percent


class MetricWindowConfig(_Strict):
    lookback_minutes: Minutes = 60
    period_seconds: PositiveSeconds = 300


class ApplicationCheck(MetricWindowConfig):
    timeout_seconds: float = Field(default=10, gt=0, le=120)
    latency_ms: Upper = Upper(warning=1000, critical=5000)


class EcsCheck(MetricWindowConfig):
    cpu_percent: UpperPercent = UpperPercent(warning=70, critical=80)
    memory_percent: UpperPercent = UpperPercent(warning=70, critical=80)
    # Pending tasks that linger past one health window are a capacity problem, not a deploy blip.
    pending_tasks_warning: int = Field(default=1, ge=1)
    deployment_failure_lookback_hours: int = Field(default=24, gt=0, le=24 * 14)


class RdsCheck(MetricWindowConfig):
    cpu_percent: UpperPercent = UpperPercent(warning=70, critical=80)
    connections: Upper = Upper(warning=400, critical=500)
    read_latency_ms: Upper = Upper(warning=20, critical=50)
    write_latency_ms: Upper = Upper(warning=20, critical=50)
    free_storage_gb: Lower = Lower(warning=20, critical=10)
    query_latency_ms: Upper = Upper(warning=200, critical=1000)


class ElastiCacheCheck(MetricWindowConfig):
    cpu_percent: UpperPercent = UpperPercent(warning=70, critical=80)
    memory_percent: UpperPercent = UpperPercent(warning=70, critical=80)
    hit_ratio_percent: LowerPercent = LowerPercent(warning=80, critical=50)
    evictions: Upper = Upper(warning=1, critical=1000)


class BusinessCheck(MetricWindowConfig):
    payment_success_rate_percent: LowerPercent = LowerPercent(warning=98, critical=95)
    # Drop of orders per minute against the same hour one week earlier.
    orders_drop_percent: UpperPercent = UpperPercent(warning=30, critical=60)
    cart_abandonment_percent: UpperPercent = UpperPercent(warning=75, critical=90)


class KpiCheck(MetricWindowConfig):
    lookback_minutes: Minutes = 24 * 60
    # Above this error rate the platform is partially degraded (P2), per the severity model.
    error_rate_critical_percent: Percent = 5


class OpenIngressAllowance(_Strict):
    """World-open ingress that is intended (the public load balancer's 80/443)."""

    security_group: str  # group id or group name
    ports: list[Annotated[int, Field(ge=0, le=65535)]] = Field(min_length=1)


class SecurityCheck(_Strict):
    # Logs Insights over the application log group, for the day ending at the run's logical date.
    lookback_minutes: Minutes = 24 * 60
    # The application's JSON log fields, and the event types that count.
    event_field: str = Field(default="event_type", pattern=r"^[A-Za-z_][\w.]*$")
    ip_field: str = Field(default="client_ip", pattern=r"^[A-Za-z_][\w.]*$")
    user_field: str = Field(default="user_id", pattern=r"^[A-Za-z_][\w.]*$")
    failed_login_events: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]+$")]] = ["AUTH_FAILED"]
    rate_limit_events: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]+$")]] = ["RATE_LIMITED"]
    # Brute force: failed logins from one IP. Credential stuffing: distinct users failing from one IP.
    failed_logins_per_ip: Upper = Upper(warning=20, critical=100)
    failed_logins_per_user: Upper = Upper(warning=10, critical=50)
    users_per_ip: Upper = Upper(warning=10, critical=50)
    rate_limit_violations_per_ip: Upper = Upper(warning=100, critical=1000)
    top_offenders: int = Field(default=5, ge=1, le=50)
    # Logs Insights returns at most 10,000 rows per query.
    max_rows: int = Field(default=10_000, ge=1, le=10_000)
    query_timeout_seconds: int = Field(default=300, gt=0, le=3600)
    poll_seconds: float = Field(default=2, gt=0, le=60)
    open_ingress_allowed: list[OpenIngressAllowance] = []


class Prices(_Strict):
    """List prices (USD, us-east-1) for the unused-resource estimates. Estimates, not a bill."""

    ebs_gb_month: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: {
        "gp2": 0.10, "gp3": 0.08, "io1": 0.125, "io2": 0.125, "st1": 0.045, "sc1": 0.015, "standard": 0.05})
    ebs_snapshot_gb_month: float = Field(default=0.05, ge=0)
    rds_snapshot_gb_month: float = Field(default=0.095, ge=0)
    elastic_ip_month: float = Field(default=3.65, ge=0)
    load_balancer_month: float = Field(default=16.43, ge=0)
    log_storage_gb_month: float = Field(default=0.03, ge=0)


class UnusedResourcesCheck(_Strict):
    snapshot_max_age_days: int = Field(default=30, gt=0, le=3650)
    stopped_instance_days: int = Field(default=7, gt=0, le=3650)
    idle_load_balancer_days: int = Field(default=7, gt=0, le=14)
    silent_log_group_days: int = Field(default=14, gt=0, le=63)
    prices: Prices = Prices()


class DatabaseMaintenanceCheck(_Strict):
    """The weekly database review (read-only, through the ``platform_db`` connection)."""

    top_statements: int = Field(default=10, ge=1, le=100)
    # A statement whose mean execution time is this slow is a finding (ms).
    slow_statement_mean_ms: float = Field(default=500, gt=0)
    # Unused indexes smaller than this are noise; above it they cost writes and storage.
    unused_index_min_mb: float = Field(default=1, ge=0)
    # Usage statistics restart after a reset, a crash or a failover: call an index unused only after this long.
    unused_index_min_stats_days: int = Field(default=30, ge=0)
    # Dead tuples / (live + dead), for tables with at least min_dead_tuples dead rows.
    dead_tuple_percent: UpperPercent = UpperPercent(warning=10, critical=20)
    min_dead_tuples: int = Field(default=1000, ge=0)
    # Transaction-ID age of the oldest database (wraparound stops writes at ~2.1 billion).
    xid_age: Upper = Upper(warning=500_000_000, critical=1_000_000_000)
    long_transaction_minutes: Upper = Upper(warning=5, critical=60)
    # Connections in use against max_connections, and the guide's ceiling per service.
    connections_percent: UpperPercent = UpperPercent(warning=80, critical=95)
    max_connections_per_service: int = Field(default=100, gt=0)


class TlsEndpoint(_Strict):
    host: str = Field(pattern=r"^[A-Za-z0-9.-]+$")
    port: int = Field(default=443, ge=1, le=65535)
    # The name the certificate must match (default: host); e.g. the public name when probing an address.
    server_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.*-]+$")
    # A CA bundle (PEM file) to trust instead of the system's, for a private CA.
    ca_bundle: str | None = None


class CertificateCheck(_Strict):
    """The guide's SSL renewal check: ACM certificates and what the public endpoints really serve."""

    # Days left at or below which a certificate is a finding: 30 days P2, 7 days P1.
    days_left: Lower = Lower(warning=30, critical=7)
    endpoints: list[TlsEndpoint] = []
    timeout_seconds: float = Field(default=10, gt=0, le=120)


class VulnerabilityCheck(_Strict):
    """ECR image scan findings for the images the ECS services run."""

    # How many CVE ids a finding names (the report has the full count).
    cves_shown: int = Field(default=10, ge=1, le=100)
    # A scan older than this no longer vouches for the image (basic scanning runs on push only).
    max_scan_age_days: int = Field(default=30, gt=0)


class CapacityCheck(_Strict):
    """Trends over the last weeks and the days until each metric crosses its limit."""

    lookback_days: int = Field(default=28, ge=7, le=455)
    # Days until a limit is crossed: under 30 P3, under 7 P2.
    days_to_limit: Lower = Lower(warning=30, critical=7)
    # The limits (the daily checks' critical thresholds where one exists).
    ecs_cpu_percent: Percent = 80
    ecs_memory_percent: Percent = 80
    rds_cpu_percent: Percent = 80
    rds_connections: float = Field(default=500, gt=0)
    rds_free_storage_gb: float = Field(default=10, ge=0)
    redis_memory_percent: Percent = 80
    # The fit needs this many days with data; fewer is "not enough history", not a guess.
    min_days: int = Field(default=7, ge=3)


class Checks(_Strict):
    application: ApplicationCheck = ApplicationCheck()
    ecs: EcsCheck = EcsCheck()
    rds: RdsCheck = RdsCheck()
    elasticache: ElastiCacheCheck = ElastiCacheCheck()
    business: BusinessCheck = BusinessCheck()
    kpis: KpiCheck = KpiCheck()
    security: SecurityCheck = SecurityCheck()
    unused_resources: UnusedResourcesCheck = UnusedResourcesCheck()
    database: DatabaseMaintenanceCheck = DatabaseMaintenanceCheck()
    certificates: CertificateCheck = CertificateCheck()
    vulnerabilities: VulnerabilityCheck = VulnerabilityCheck()
    capacity: CapacityCheck = CapacityCheck()


class SeverityPolicy(_Strict):
    description: str
    color: str = Field(pattern=r"^#[0-9a-fA-F]{6}$")


# The operations guide's severity model. A config overrides only what differs, e.g.
# `severities: {P1: {color: "#ff0000"}}`.
DEFAULT_SEVERITIES: dict[str, dict[str, str]] = {
    "P1": {"description": "Critical: application unavailable, payment failures, database outage", "color": "#d00000"},
    "P2": {"description": "High: utilization > 80 %, error rate > 5 %, partial degradation", "color": "#ff8c00"},
    "P3": {"description": "Medium: performance degradation, capacity warnings", "color": "#f2c744"},
    "P4": {"description": "Low: housekeeping, informational", "color": "#439fe0"},
}


class Alerts(_Strict):
    slack_conn_id: str = "slack_alerts"
    # P1 goes here when the connection exists, else to slack_conn_id.
    slack_critical_conn_id: str = "slack_critical"
    slack_timeout_seconds: int = Field(default=10, gt=0, le=60)
    sns_topic_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+$")
    # The run digest also goes to these addresses through the SMTP connection, when any are listed.
    digest_email: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = []
    smtp_conn_id: str = "smtp_default"
    # Paging (SNS) is for runs that check the present: a run whose logical date is older than this
    # (a backfill, a re-run of a past day) reports and posts to Slack but does not page.
    page_max_age_hours: float = Field(default=6, gt=0, le=24 * 7)
    # Upper bound on the time one task spends delivering alerts (each Slack message times out after
    # slack_timeout_seconds; a stalled channel must not multiply the run's time).
    delivery_budget_seconds: int = Field(default=60, gt=0, le=600)
    severities: dict[SeverityName, SeverityPolicy] = Field(
        default_factory=lambda: {k: SeverityPolicy(**v) for k, v in DEFAULT_SEVERITIES.items()})

    @field_validator("severities", mode="before")
    @classmethod
    def _merge_defaults(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        merged: dict[Any, Any] = {level: dict(policy) for level, policy in DEFAULT_SEVERITIES.items()}
        for level, policy in value.items():
            if level in merged and isinstance(policy, dict):
                merged[level].update(policy)
            else:
                merged[level] = policy  # unknown level or wrong type: let validation name it
        return merged


def _s3_bucket_name(value: str) -> str:
    """The naming rules S3 enforces beyond the character set (the pattern checks length and characters)."""
    if ".." in value or ".-" in value or "-." in value:
        raise ValueError(f"S3 bucket names cannot contain '..', '.-' or '-.' ({value!r})")
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", value):
        raise ValueError(f"S3 bucket names cannot look like an IP address ({value!r})")
    if value.startswith(("xn--", "sthree-")) or value.endswith(("-s3alias", "--ol-s3", "--x-s3")):
        raise ValueError(f"S3 reserves this bucket-name prefix or suffix ({value!r})")
    return value


BucketName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"), AfterValidator(_s3_bucket_name)]


class Reports(_Strict):
    bucket: BucketName
    prefix: str = "reports"
    # A run's report compares with the previous logical date's; when that run is still going (a
    # concurrent backfill), the report waits for it this long, then says the comparison was impossible.
    previous_report_wait_minutes: int = Field(default=60, ge=0, le=24 * 60)


_AWS_CRON = re.compile(r"^cron\((\S+ ){5}\S+\)$")


class BackupRule(_Strict):
    """One rule of the database's AWS Backup plan, as the operations guide promises it."""

    name: str = Field(min_length=1, max_length=50)
    # AWS Backup's schedule expression, compared as written: cron(minutes hours day month weekday year).
    schedule: str
    delete_after_days: int = Field(gt=0, le=36_500)
    copy_to_dr: bool = True
    # A backup starts within the rule's start window and takes a while: a recovery point is expected
    # this long after each scheduled time.
    completion_hours: float = Field(default=3, gt=0, le=48)

    @field_validator("schedule")
    @classmethod
    def _aws_cron(cls, value: str) -> str:
        if not _AWS_CRON.match(value):
            raise ValueError("must be an AWS cron expression with six fields, e.g. 'cron(0 2 * * ? *)'")
        minutes, _, day_of_month, _, day_of_week, _ = value[len("cron("):-1].split()
        if (day_of_month == "?") == (day_of_week == "?"):
            raise ValueError(f"{value!r}: AWS needs '?' in exactly one of day-of-month and day-of-week, "
                             "e.g. 'cron(0 2 * * ? *)' or 'cron(0 3 ? * SUN *)'")
        if not re.fullmatch(r"[0-9]{1,2}", minutes):
            raise ValueError(f"{value!r}: AWS Backup runs a rule at most once an hour, so the minutes field must "
                             "be one number")
        from solemate_maintenance.backup_schedule import previous_fire

        try:
            previous_fire(value, datetime(2026, 1, 1, tzinfo=UTC))
        except ValueError as exc:
            raise ValueError(f"cannot read schedule {value!r}: {exc}") from None
        return value


DEFAULT_BACKUP_RULES = [
    BackupRule(name="daily", schedule="cron(0 2 * * ? *)", delete_after_days=30),
    BackupRule(name="weekly", schedule="cron(0 3 ? * SUN *)", delete_after_days=90),
    BackupRule(name="monthly", schedule="cron(0 4 1 * ? *)", delete_after_days=365),
]


class Backups(_Strict):
    """The backup policy of the operations guide; weekly_backup_verification checks reality against it."""

    snapshot_max_age_hours: int = Field(default=26, gt=0, le=24 * 35)
    # RDS automated backups: kept at least this many days (point-in-time restore reaches this far back).
    rds_retention_days: int = Field(default=7, ge=1, le=35)
    database_rto_minutes: Minutes = 15
    database_rpo_minutes: Minutes = 5
    backup_plan: str = "solemate-production-db"
    backup_vault: str = "solemate-production"
    dr_backup_vault: str = "solemate-dr"
    rules: list[BackupRule] = Field(default_factory=lambda: list(DEFAULT_BACKUP_RULES), min_length=1)
    # Failed, expired or aborted jobs are looked for this far back from the run's logical date.
    job_lookback_hours: int = Field(default=24 * 7, gt=0, le=24 * 35)
    # Copies in the DR region (snapshot copies, replicated backups or recovery points in the DR vault).
    dr_copy_max_age_hours: int = Field(default=50, gt=0, le=24 * 35)

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, value: list[BackupRule]) -> list[BackupRule]:
        names = [rule.name for rule in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; listed more than once: {', '.join(duplicates)}")
        return value


_DB_IDENTIFIER = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$"


class RestoreTest(_Strict):
    """The weekly restore test: a real restore into a throw-away instance, validated with SQL."""

    enabled: bool = True
    # point_in_time: restore to the run's logical date (or the latest restorable time before it);
    # latest_snapshot: restore the newest automated snapshot taken before the logical date.
    method: Literal["point_in_time", "latest_snapshot"] = "point_in_time"
    instance_class: str = Field(default="db.t3.medium", pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")
    # The restored instance's identifier starts with this; teardown and the janitor refuse anything else.
    instance_prefix: str = Field(default="restore-test", pattern=_DB_IDENTIFIER)
    db_subnet_group: str | None = None
    vpc_security_group_ids: list[Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")]] = []
    # Connection with the user and password for the validation queries; host and port come from the
    # restored instance.
    conn_id: str = "restore_test_db"
    # Waiting for the restored instance (from the restore request) and for its deletion.
    restore_timeout_minutes: float = Field(default=90, gt=0, le=24 * 60)
    delete_timeout_minutes: float = Field(default=30, gt=0, le=24 * 60)
    poll_seconds: int = Field(default=30, ge=1, le=600)
    # Written on the instance as its expiry; the janitor deletes test instances left past it.
    expiry_hours: float = Field(default=6, gt=0, le=24 * 7)
    # Validation: tables that must exist, row-count floors, and the largest drop against the previous test.
    required_tables: list[str] = Field(default_factory=lambda: ["users", "products", "orders", "order_items",
                                                                "payments"], min_length=1)
    min_rows: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: {
        "users": 1, "products": 1, "orders": 1, "payments": 1})
    max_row_drop_percent: Percent = 20
    validation_sql_dir: str = "include/sql/restore_validation"

    @model_validator(mode="after")
    def _floors_are_required(self) -> RestoreTest:
        if "--" in self.instance_prefix:
            raise ValueError("instance_prefix: RDS identifiers cannot contain '--'")
        unknown = sorted(set(self.min_rows) - set(self.required_tables))
        if unknown:
            raise ValueError(f"min_rows names tables not in required_tables: {', '.join(unknown)}")
        return self


DR_COMPONENTS = ("database", "application", "static_assets", "complete_system")
# The operations guide's disaster-recovery table; a config overrides only what differs.
DEFAULT_DR_TARGETS: dict[str, dict[str, Any]] = {
    "database": {"rto_minutes": 15, "rpo_minutes": 5, "recovery_method": "point-in-time recovery"},
    "application": {"rto_minutes": 10, "rpo_minutes": 60, "recovery_method": "ECS service redeployment"},
    "static_assets": {"rto_minutes": 5, "rpo_minutes": 24 * 60, "recovery_method": "S3 cross-region replication"},
    "complete_system": {"rto_minutes": 30, "rpo_minutes": 60, "recovery_method": "cross-region failover"},
}
DrComponentName = Literal["database", "application", "static_assets", "complete_system"]


class DrTarget(_Strict):
    rto_minutes: Minutes
    rpo_minutes: Minutes
    recovery_method: str = Field(min_length=1)


class AssetReplication(_Strict):
    """A bucket of static assets and its replica in the DR region (S3 cross-region replication)."""

    source_bucket: BucketName
    replica_bucket: BucketName

    @model_validator(mode="after")
    def _two_buckets(self) -> AssetReplication:
        if self.source_bucket == self.replica_bucket:
            raise ValueError(f"source_bucket and replica_bucket are both {self.source_bucket!r}: a bucket "
                             "cannot be its own DR replica")
        return self


class DrDrill(_Strict):
    """The drill's throw-away resources in the DR region: a restored database and one application task."""

    # Restored copies are named <prefix>-<date>-<digest>; teardown and the janitor touch nothing else.
    instance_prefix: str = Field(default="dr-drill", pattern=_DB_IDENTIFIER)
    instance_class: str = Field(default="db.t3.medium", pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")
    db_subnet_group: str | None = None
    vpc_security_group_ids: list[Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")]] = []
    # The DR cluster's network for the test task (Fargate needs one in AWS).
    task_subnets: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = []
    task_security_groups: list[Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")]] = []
    restore_timeout_minutes: float = Field(default=60, gt=0, le=24 * 60)
    task_timeout_minutes: float = Field(default=15, gt=0, le=24 * 60)
    delete_timeout_minutes: float = Field(default=30, gt=0, le=24 * 60)
    poll_seconds: int = Field(default=30, ge=1, le=600)
    expiry_hours: float = Field(default=6, gt=0, le=24 * 7)
    # The newest objects of each asset bucket compared with the replica.
    replication_sample: int = Field(default=50, ge=1, le=1000)


class DisasterRecovery(_Strict):
    """The guide's DR model: per-component targets, what the DR region holds, and the failover gate."""

    targets: dict[DrComponentName, DrTarget] = Field(
        default_factory=lambda: {k: DrTarget(**v) for k, v in DEFAULT_DR_TARGETS.items()})
    # Real failover changes production; it stays off unless the config and the run both ask for it.
    allow_failover: bool = False
    # The DR region's ECS cluster (the production services' names are reused there).
    cluster: str = "production-cluster-dr"
    # ECR repository name of the application image, the same in both regions.
    ecr_repository: str = "solemate/backend"
    asset_buckets: list[AssetReplication] = []
    # Route 53: the public record with PRIMARY/SECONDARY failover entries (names end with a dot, as
    # Route 53 writes them), and the DR region's load balancer (its DNS name and zone are read from AWS).
    hosted_zone: str = Field(default="solemate.example.", pattern=r"^([a-z0-9-]+\.)+$")
    record_name: str = Field(default="www.solemate.example.", pattern=r"^([a-z0-9*-]+\.)+$")
    dr_load_balancer: str = "production-alb-dr"
    # What the failover's validation asks once DNS points at the DR region (required to allow failover).
    dr_health_endpoint: AnyHttpUrl | None = None
    # The DR-only infrastructure, created by dr_failover and validated by dr_drill.
    cloudformation_template: str = "include/cloudformation/dr-stack.yaml"
    stack_name: str = "solemate-dr"
    # The database dr_failover restores in the DR region (kept: it becomes production).
    failover_instance_id: str = Field(default="production-postgres-dr", pattern=_DB_IDENTIFIER)
    failover_instance_class: str = Field(default="db.r6g.large", pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")
    # Where the restored database lives: the DR VPC's private subnets, reachable by the DR services.
    failover_db_subnet_group: str | None = None
    failover_security_group_ids: list[Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")]] = []
    failover_timeout_minutes: float = Field(default=60, gt=0, le=24 * 60)
    drill: DrDrill = DrDrill()

    @model_validator(mode="after")
    def _failover_can_be_validated(self) -> DisasterRecovery:
        if self.allow_failover and self.dr_health_endpoint is None:
            raise ValueError("allow_failover needs dr_health_endpoint: without it the failover could not check "
                             "that the DR region serves users before calling itself complete")
        if self.record_name != self.hosted_zone and not self.record_name.endswith("." + self.hosted_zone):
            raise ValueError(f"record_name {self.record_name!r} is not in hosted_zone {self.hosted_zone!r} "
                             "(it must be the zone's name or end with '.' + the zone's name)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _single_pair_replaced(cls, value: Any) -> Any:
        if isinstance(value, dict) and {"rto_minutes", "rpo_minutes"} & value.keys():
            raise ValueError("rto_minutes/rpo_minutes were replaced by the guide's per-component table: "
                             "targets.<database|application|static_assets|complete_system>.rto_minutes/rpo_minutes")
        return value

    @field_validator("targets", mode="before")
    @classmethod
    def _merge_targets(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        merged: dict[Any, Any] = {name: dict(target) for name, target in DEFAULT_DR_TARGETS.items()}
        for name, target in value.items():
            if name in merged and isinstance(target, dict):
                merged[name].update(target)
            else:
                merged[name] = target  # unknown component or wrong type: let validation name it
        return merged


# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
StorageClass = Literal["STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"]


# The order S3 lifecycle transitions may take (an object only moves down it; from ONEZONE_IA only to
# GLACIER or DEEP_ARCHIVE).
_WATERFALL = ("STANDARD_IA", "INTELLIGENT_TIERING", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")


class LogTransition(_Strict):
    after_days: int = Field(gt=0, le=36_500)
    storage_class: StorageClass

    @model_validator(mode="after")
    def _s3_minimum(self) -> LogTransition:
        if self.storage_class in ("STANDARD_IA", "ONEZONE_IA") and self.after_days < 30:
            raise ValueError(f"S3 moves objects to {self.storage_class} no sooner than 30 days after creation, "
                             f"not {self.after_days}")
        return self


class LogArchive(_Strict):
    """Where a log class is kept after CloudWatch: an S3 bucket (and prefix) with its lifecycle."""

    bucket: BucketName
    prefix: str = ""
    transitions: list[LogTransition] = []
    expire_after_days: int = Field(gt=0, le=36_500)

    @model_validator(mode="after")
    def _ordered(self) -> LogArchive:
        days = [t.after_days for t in self.transitions]
        if days != sorted(set(days)):
            raise ValueError(f"transitions must be in increasing after_days order, got {days}")
        for before, after in zip(self.transitions, self.transitions[1:], strict=False):
            if _WATERFALL.index(after.storage_class) <= _WATERFALL.index(before.storage_class) or \
                    (before.storage_class, after.storage_class) == ("ONEZONE_IA", "GLACIER_IR"):
                raise ValueError(f"S3 cannot move objects from {before.storage_class} to {after.storage_class} "
                                 f"(transitions go down {' > '.join(_WATERFALL)})")
            if before.storage_class in ("STANDARD_IA", "ONEZONE_IA") and after.after_days - before.after_days < 30:
                raise ValueError(f"S3 keeps objects in {before.storage_class} at least 30 days before moving them "
                                 f"on: {after.storage_class} after {after.after_days} days is too soon after "
                                 f"{before.after_days}")
        if days and days[-1] >= self.expire_after_days:
            raise ValueError(f"expire_after_days ({self.expire_after_days}) must come after the last transition "
                             f"({days[-1]})")
        return self


class LogClass(_Strict):
    """A class of logs: the log groups it covers (shell-style patterns), their retention, their archive."""

    log_groups: list[str] = Field(min_length=1)
    cloudwatch_days: int
    archive: LogArchive | None = None

    @field_validator("cloudwatch_days")
    @classmethod
    def _allowed_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs accepts only {', '.join(map(str, LOG_RETENTION_DAYS))} days, "
                             f"not {value}")
        return value


class FirehoseStream(_Strict):
    name: str
    region: str | None = None


def _prefixes_overlap(first: str, second: str) -> bool:
    """Two S3 prefixes that some key could share (a lifecycle rule on one reaches the other's objects)."""
    return first.startswith(second) or second.startswith(first)


class LogLifecycle(_Strict):
    """The operations guide's log retention, per class. The daily run checks it; it changes AWS only
    when `enforce` is true, and shortens a longer retention only when `allow_shortening` is too."""

    enforce: bool = False
    allow_shortening: bool = False
    classes: dict[str, LogClass] = Field(default_factory=lambda: {
        "application": LogClass(log_groups=["/ecs/*/application"], cloudwatch_days=30, archive=LogArchive(
            bucket="solemate-logs-application", transitions=[
                LogTransition(after_days=30, storage_class="STANDARD_IA"),
                LogTransition(after_days=120, storage_class="GLACIER")], expire_after_days=485)),
        "access": LogClass(log_groups=["/alb/*"], cloudwatch_days=7, archive=LogArchive(
            bucket="solemate-logs-access", expire_after_days=30)),
        "security": LogClass(log_groups=["/security/*"], cloudwatch_days=90, archive=LogArchive(
            bucket="solemate-logs-security", expire_after_days=730)),
    })
    # Log groups that belong to no class on purpose (AWS services' own groups, for example).
    ignore_log_groups: list[str] = []
    firehose_streams: list[FirehoseStream] = []

    @model_validator(mode="after")
    def _one_class_per_place(self) -> LogLifecycle:
        archived = [(name, c.archive) for name, c in self.classes.items() if c.archive]
        for i, (name, archive) in enumerate(archived):
            for other, other_archive in archived[i + 1:]:
                if archive.bucket == other_archive.bucket and _prefixes_overlap(archive.prefix, other_archive.prefix):
                    raise ValueError(f"classes {name!r} and {other!r} archive to the same place (bucket "
                                     f"{archive.bucket!r}, prefixes {archive.prefix!r} and {other_archive.prefix!r}): "
                                     "each class's lifecycle would apply to the other's logs")
        owner: dict[str, str] = {}
        for name, log_class in self.classes.items():
            for pattern in log_class.log_groups:
                if pattern in owner and owner[pattern] != name:
                    raise ValueError(f"log group pattern {pattern!r} is in classes {owner[pattern]!r} and {name!r}: "
                                     "its retention would be ambiguous")
                owner[pattern] = name
        return self


class ConfigBackup(_Strict):
    # Secrets and parameters whose metadata is backed up (name prefixes; empty: all of them).
    secret_name_prefixes: list[Annotated[str, Field(pattern=r"^[a-zA-Z0-9 :_@/+=.-]+$")]] = Field(
        default=[], max_length=10)  # ListSecrets takes at most 10 filter values
    ssm_path_prefixes: list[str] = []
    prefix: str = "config-backups"
    # A secret with rotation on whose next rotation is this far past is overdue.
    rotation_grace_hours: int = Field(default=24, ge=0, le=24 * 30)


class MaintenanceStatus(_Strict):
    namespace: str = "SoleMate/Maintenance"
    dashboard_name: str = Field(default="SoleMate-Maintenance", pattern=r"^[A-Za-z0-9_-]{1,255}$")
    # The dead-man's switch: the heartbeat alarm fires after this long without a successful daily run.
    heartbeat_max_gap_hours: int = Field(default=26, ge=2, le=72)


class Cost(_Strict):
    """The monthly cost review (Cost Explorer; every request is billed, so answers are cached)."""

    # 0: no budget. Over budget P3; a forecast above forecast_warning_percent of it P3.
    monthly_budget_usd: float = Field(default=0, ge=0)
    forecast_warning_percent: Percent = 90
    # A service whose month grew by at least both of these is a cost spike (P3).
    spike_percent: float = Field(default=30, gt=0)
    spike_min_usd: float = Field(default=100, ge=0)
    biggest_movers: int = Field(default=5, ge=1, le=50)
    # Cost anomalies (Cost Anomaly Detection) with at least this total impact are findings (P3).
    anomaly_min_impact_usd: float = Field(default=50, ge=0)
    # Where answers are cached (under reports.prefix). A month's figures settle a few days after it
    # ends; until then a cached answer is reused for this long, after which it is asked again.
    cache_prefix: str = Field(default="cost-explorer-cache", pattern=r"^[A-Za-z0-9._/-]+$")
    settle_days: int = Field(default=3, ge=0, le=31)
    unsettled_cache_hours: int = Field(default=24, ge=0, le=24 * 31)


class RightSizing(_Strict):
    """When a month of ECS/RDS use says "too big" or "too small" (hints, P4)."""

    underused_average_percent: Percent = 20
    underused_peak_percent: Percent = 40
    saturated_peak_percent: Percent = 80


class MonthlySummary(_Strict):
    """The stakeholder summary of the month, by e-mail (through alerts.smtp_conn_id)."""

    recipients: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = []
    title: str = "SoleMate platform: monthly operations summary"


class PlatformConfig(_Strict):
    environment: str = Field(pattern=r"^[a-z][a-z0-9-]{1,30}$")
    regions: Regions
    resources: Resources
    kpis: Kpis
    alerts: Alerts
    reports: Reports
    checks: Checks = Checks()
    backups: Backups = Backups()
    restore_test: RestoreTest = RestoreTest()
    disaster_recovery: DisasterRecovery = DisasterRecovery()
    log_lifecycle: LogLifecycle = LogLifecycle()
    config_backup: ConfigBackup = ConfigBackup()
    maintenance_status: MaintenanceStatus = MaintenanceStatus()
    cost: Cost = Cost()
    right_sizing: RightSizing = RightSizing()
    monthly_summary: MonthlySummary = MonthlySummary()

    @model_validator(mode="after")
    def _cross_field(self) -> PlatformConfig:
        """Mistakes only the whole file shows; each message starts with the key to change."""
        production = self.resources.rds.instance_id
        recovery = self.disaster_recovery
        # RDS identifiers are case-insensitive (AWS stores them lower-case).
        prefixes = {"restore_test.instance_prefix": self.restore_test.instance_prefix,
                    "disaster_recovery.drill.instance_prefix": recovery.drill.instance_prefix}
        # The restore test's and the drill's teardown and janitor delete instances named <prefix>-...:
        # a prefix that covers a database that must live is one tag away from deleting it.
        keep = {"resources.rds.instance_id": production,
                "disaster_recovery.failover_instance_id": recovery.failover_instance_id}
        for key, prefix in prefixes.items():
            for kept_key, kept in keep.items():
                if kept.lower() == prefix.lower() or kept.lower().startswith(prefix.lower() + "-"):
                    raise ValueError(f"{key}: {prefix!r} would name {kept!r} ({kept_key}) a throw-away copy; "
                                     "choose a prefix no kept database starts with")
        (first_key, first), (second_key, second) = prefixes.items()
        if first == second or first.startswith(second + "-") or second.startswith(first + "-"):
            raise ValueError(f"{second_key}: {second!r} overlaps {first_key} {first!r}: the restore test and the "
                             "drill would each clean up the other's copies")
        # The report store writes <prefix>/<dag>/... (slashes around the prefix stripped).
        reports_prefix = self.reports.prefix.strip("/")
        reports_keys = reports_prefix + "/" if reports_prefix else ""
        for name, log_class in self.log_lifecycle.classes.items():
            archive = log_class.archive
            if archive and archive.bucket == self.reports.bucket and _prefixes_overlap(archive.prefix.lstrip("/"),
                                                                                       reports_keys):
                raise ValueError(f"log_lifecycle.classes.{name}.archive: bucket {archive.bucket!r} prefix "
                                 f"{archive.prefix!r} covers the reports (reports.prefix {self.reports.prefix!r}): its "
                                 f"expiry after {archive.expire_after_days} days would delete them")
        return self

    def drill_restore_settings(self) -> RestoreTest:
        """The restore test's settings for the DR drill's copy: same validation, the drill's name and network."""
        drill = self.disaster_recovery.drill
        return self.restore_test.model_copy(update={
            "method": "point_in_time", "instance_class": drill.instance_class, "instance_prefix": drill.instance_prefix,
            "db_subnet_group": drill.db_subnet_group, "vpc_security_group_ids": list(drill.vpc_security_group_ids),
            "restore_timeout_minutes": drill.restore_timeout_minutes,
            "delete_timeout_minutes": drill.delete_timeout_minutes, "poll_seconds": drill.poll_seconds,
            "expiry_hours": drill.expiry_hours})


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def _shown(key: Any) -> str:
    """A key as text; invisible or look-alike characters escaped so that two keys never print alike."""
    text = str(key)
    if all(ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Zs") or ch == " " for ch in text) \
            and text.isascii():
        return text
    return ascii(text)


def _key_path(location: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in location:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + _shown(part))
    return "".join(parts) or "(top level)"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(error: ValidationError) -> str:
    reasons = []
    items = error.errors(include_url=False)
    for item in items[:MAX_ERRORS_SHOWN]:
        loc = tuple(item["loc"])
        reason = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            reason = "unknown key (misspelt?)"
        elif item["type"] == "missing":
            reason = "required key is missing"
        elif (
            "input" in item
            and not isinstance(item["input"], dict | list)
            and _short(item["input"]) not in reason
        ):
            reason = f"{reason} (got {_short(item['input'])})"
        named = re.match(r"^([A-Za-z_][\w.\[\]-]*): ", reason) if not loc else None
        if named:  # a cross-field rule of the whole file: its message starts with the key to change
            loc, reason = (named.group(1),), reason[named.end():]
        reasons.append(f"{_key_path(loc)}: {reason}")
    if len(items) > MAX_ERRORS_SHOWN:
        reasons.append(f"… and {len(items) - MAX_ERRORS_SHOWN} more errors")
    return "; ".join(reasons)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and names the key path of any value it cannot build."""

    values = 0
    building: set[int]


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, path: tuple = ()) -> dict:
    # Keys written in this mapping must be unique; keys brought in by a `<<:` merge may be overridden.
    explicit = {id(key_node) for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge"}
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    seen: set[Any] = set()
    for key_node, value_node in node.value:
        key = _construct(loader, key_node, path)
        if isinstance(key, list | dict):
            raise _YamlProblem(path, "a key must be a plain value", key_node)
        if id(key_node) in explicit:
            if key in seen:
                raise _YamlProblem((*path, key), f"duplicate key (also at line {_first_line(node, key, loader)}); "
                                   "remove one: YAML would silently keep the last", key_node)
            seen.add(key)
        result[key] = _construct(loader, value_node, (*path, key))
    return result


def _first_line(node: yaml.MappingNode, key: Any, loader: _StrictLoader) -> int:
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and loader.construct_object(key_node) == key:
            return key_node.start_mark.line + 1
    return 0


def _construct(loader: _StrictLoader, node: yaml.Node, path: tuple) -> Any:
    loader.values += 1
    if loader.values > MAX_VALUES:
        raise _YamlProblem(path, f"more than {MAX_VALUES:,} values (aliases expanding without end?)", node)
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        if node.tag not in ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
            # !!set, !!omap, !!pairs or a custom tag would silently turn into a plain mapping or list.
            raise _YamlProblem(path, f"unsupported tag {node.tag.replace('tag:yaml.org,2002:', '!!')}", node)
        if id(node) in loader.building:
            raise _YamlProblem(path, "recursive alias: a value that contains itself", node)
        loader.building.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return _construct_mapping(loader, node, path)
            return [_construct(loader, item, (*path, index)) for index, item in enumerate(node.value)]
        finally:
            loader.building.discard(id(node))
    try:
        return loader.construct_object(node, deep=True)
    except Exception as exc:  # any tag's constructor: "!!bool maybe", "!!int ''", a 5000-digit number
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "digits" in reason:
            reason = "number too large"
        elif not isinstance(exc, ValueError | OverflowError | yaml.YAMLError):
            reason = f"{node.tag.rsplit(':', 1)[-1]} value {node.value!r} is not valid"
        raise _YamlProblem(path, f"cannot read value: {reason}", node) from None


class _YamlProblem(Exception):
    def __init__(self, path: tuple, reason: str, node: yaml.Node) -> None:
        super().__init__(reason)
        self.path, self.reason, self.node = path, reason, node


def _max_nesting(text: str) -> tuple[int, int]:
    """Deepest nesting of collections and the line it reaches; the token scan does not recurse."""
    depth = deepest = line = 0
    openers = (yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken, yaml.BlockMappingStartToken,
               yaml.BlockSequenceStartToken)
    closers = (yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken, yaml.BlockEndToken)
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, openers):
            depth += 1
            if depth > deepest:
                deepest, line = depth, token.start_mark.line + 1
                if deepest > MAX_NESTING:
                    break
        elif isinstance(token, closers):
            depth -= 1
    return deepest, line


def _load_yaml(text: str, source: str) -> Any:
    try:
        depth, line = _max_nesting(text)
        if depth > MAX_NESTING:
            raise ConfigError(f"{source}: (YAML structure) line {line}: nested more than {MAX_NESTING} levels deep")
        loader = _StrictLoader(text)
        loader.building = set()
        try:
            node = loader.get_single_node()
            return None if node is None else _construct(loader, node, ())
        finally:
            loader.dispose()
    except _YamlProblem as problem:
        mark = problem.node.start_mark
        raise ConfigError(f"{source}: {_key_path(problem.path)}: {problem.reason} "
                          f"(line {mark.line + 1}, column {mark.column + 1})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: (YAML syntax) {where}{problem}") from None


def _one_line(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"


def parse_config(text: str, source: str) -> PlatformConfig:
    """Validate config text. Raises ConfigError with `source: key.path: reason` on one line."""
    try:
        raw = _load_yaml(text, source)
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: (top level): expected a mapping of keys, got {type(raw).__name__}")
        try:
            return PlatformConfig.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{source}: {_describe(exc)}") from None
    except ConfigError as exc:
        raise ConfigError(_one_line(str(exc))) from None


def load_config(path: Path | str | None = None) -> PlatformConfig:
    """Read and validate the platform config (MAINTENANCE_CONFIG, else the shipped file)."""
    resolved = Path(path) if path else config_path()
    return _load_cached(resolved.resolve(), *_stamp(resolved))


def _stamp(path: Path) -> tuple[float, int]:
    try:
        stat = path.stat()
    except OSError:
        return -1.0, -1
    return stat.st_mtime, stat.st_size


@cache
def _load_cached(path: Path, _mtime_key: float, size: int) -> PlatformConfig:
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: (file) is {size:,} bytes; a platform config is at most "
                          f"{MAX_CONFIG_BYTES:,} bytes (wrong file?)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: (file) cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{path}: (file encoding) line {line}, column {column}: byte 0x{data[exc.start]:02x} "
                          "is not UTF-8; save the file as UTF-8") from None
    return parse_config(text, str(path))
