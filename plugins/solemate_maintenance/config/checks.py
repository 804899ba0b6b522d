"""The `checks` section: per check its metric window and its `{warning, critical}` thresholds."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    Field,
)

from solemate_maintenance.config.base import (
    Lower,
    LowerPercent,
    Minutes,
    Percent,
    PositiveSeconds,
    Upper,
    UpperPercent,
    _Strict,
)


class MetricWindowConfig(_Strict):
    # The daily checks judge the whole day that ends at the run's logical date, every period on its own
    # (the 15-minute watch judges the present).
    lookback_minutes: Minutes = 24 * 60
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
    # FreeableMemory (MiB), the watch's default too (watch.performance.freeable_memory_mb).
    freeable_memory_mb: Lower = Lower(warning=1024, critical=256)
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
    # The 5xx rate of each period_seconds sub-window: an hour at 20 % is not "1.7 % for the day". The
    # guide's P2 "error rate > 5 %"; at critical the application is effectively unavailable (P1).
    peak_error_rate_percent: UpperPercent = UpperPercent(warning=5, critical=50)


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
