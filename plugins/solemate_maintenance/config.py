"""The platform configuration: a typed schema and its loader.

The DAG files load the config at parse time so that a broken file becomes one clear import error
in the Airflow UI (file, key path, reason), instead of a task failing at 2 a.m.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

CONFIG_ENV_VAR = "MAINTENANCE_CONFIG"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "include" / "config" / "platform.yaml"

Percent = Annotated[float, Field(ge=0, le=100)]
PositiveSeconds = Annotated[int, Field(gt=0, le=86_400)]
Minutes = Annotated[int, Field(gt=0, le=60 * 24 * 31)]
SeverityName = Literal["P1", "P2", "P3", "P4"]


class ConfigError(Exception):
    """The platform config cannot be used. The message names the file, the key path and the reason."""


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise: a misspelt threshold must not silently fall back
    # to its default.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_regions() -> frozenset[str]:
    # botocore ships the endpoint data; reading it needs no network.
    import botocore.session

    session = botocore.session.get_session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(regions)


class Regions(_Strict):
    primary: str
    dr: str

    @field_validator("primary", "dr")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in _known_regions():
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


class Checks(_Strict):
    application: ApplicationCheck = ApplicationCheck()
    ecs: EcsCheck = EcsCheck()
    rds: RdsCheck = RdsCheck()
    elasticache: ElastiCacheCheck = ElastiCacheCheck()
    business: BusinessCheck = BusinessCheck()
    kpis: KpiCheck = KpiCheck()


class SeverityPolicy(_Strict):
    description: str
    color: str = Field(pattern=r"^#[0-9a-fA-F]{6}$")


class Alerts(_Strict):
    slack_conn_id: str = "slack_alerts"
    # P1 goes here when the connection exists, else to slack_conn_id.
    slack_critical_conn_id: str = "slack_critical"
    slack_timeout_seconds: int = Field(default=10, gt=0, le=60)
    sns_topic_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+$")
    # The run digest also goes to these addresses through the SMTP connection, when any are listed.
    digest_email: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = []
    smtp_conn_id: str = "smtp_default"
    severities: dict[SeverityName, SeverityPolicy]

    @field_validator("severities")
    @classmethod
    def _all_levels(cls, value: dict[str, SeverityPolicy]) -> dict[str, SeverityPolicy]:
        missing = {"P1", "P2", "P3", "P4"} - value.keys()
        if missing:
            raise ValueError(f"missing severity levels: {', '.join(sorted(missing))}")
        return value


class Reports(_Strict):
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = "reports"


# Sections the weekly, monthly and DR DAGs read. They are part of the schema now so that those DAGs
# slot in without reshaping the file.
class Backups(_Strict):
    snapshot_max_age_hours: int = Field(default=26, gt=0, le=24 * 35)
    backup_vault: str | None = None


class RestoreTest(_Strict):
    enabled: bool = True
    instance_class: str = "db.t3.medium"
    max_duration_minutes: Minutes = 120
    validation_sql_dir: str = "include/sql/restore_validation"


class DisasterRecovery(_Strict):
    rto_minutes: Minutes = 60
    rpo_minutes: Minutes = 15
    # Real failover changes production; it stays off unless the config and the run both ask for it.
    allow_failover: bool = False


class LogRetention(_Strict):
    application_days: int = Field(default=30, gt=0, le=3653)
    archive_bucket: str | None = None


class Cost(_Strict):
    monthly_budget_usd: float = Field(default=0, ge=0)
    forecast_warning_percent: Percent = 90


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
    log_retention: LogRetention = LogRetention()
    cost: Cost = Cost()


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def _key_path(location: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in location:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "(top level)"


def _describe(error: ValidationError) -> str:
    reasons = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        reason = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            reason = "unknown key (misspelt?)"
        elif item["type"] == "missing":
            reason = "required key is missing"
        elif (
            "input" in item
            and not isinstance(item["input"], dict | list)
            and repr(item["input"]) not in reason
        ):
            reason = f"{reason} (got {item['input']!r})"
        reasons.append(f"{_key_path(loc)}: {reason}")
    return "; ".join(reasons)


def parse_config(text: str, source: str) -> PlatformConfig:
    """Validate config text. Raises ConfigError with `source: key.path: reason` on one line."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: (YAML syntax) {where}{problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping of keys, got {type(raw).__name__}")
    try:
        return PlatformConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def load_config(path: Path | str | None = None) -> PlatformConfig:
    """Read and validate the platform config (MAINTENANCE_CONFIG, else the shipped file)."""
    resolved = Path(path) if path else config_path()
    return _load_cached(resolved.resolve(), _mtime(resolved))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


@cache
def _load_cached(path: Path, _mtime_key: float) -> PlatformConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: (file) cannot be read: {exc.strerror or exc}") from None
    return parse_config(text, str(path))
