"""The platform description: regions, resources, KPIs, alerts, reports and the monthly settings, and
`PlatformConfig`, the whole file with the rules only the whole file shows."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AnyHttpUrl,
    Field,
    field_validator,
    model_validator,
)

from solemate_maintenance.config.base import BucketName, Percent, SeverityName, _Strict, known_regions
from solemate_maintenance.config.checks import Checks
from solemate_maintenance.config.housekeeping import AirflowHousekeeping
from solemate_maintenance.config.logs import ConfigBackup, LogLifecycle, ReportsLifecycle, _prefixes_overlap
from solemate_maintenance.config.monitoring import Monitoring
from solemate_maintenance.config.recovery import Backups, DisasterRecovery, RestoreTest
from solemate_maintenance.config.reviews import Reviews
from solemate_maintenance.config.watch import Watch


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




class SeverityPolicy(_Strict):
    description: str
    color: str = Field(pattern=r"^#[0-9a-fA-F]{6}$")
    # The guide's response time: every alert says "respond by 03:17 UTC (15 min)". For P1 it is also
    # when an unacknowledged incident escalates to the next on-call contact.
    response_minutes: int = Field(default=60, gt=0, le=7 * 24 * 60)


# The operations guide's severity model. A config overrides only what differs, e.g.
# `severities: {P1: {color: "#ff0000"}}`.
DEFAULT_SEVERITIES: dict[str, dict[str, Any]] = {
    "P1": {"description": "Critical: application unavailable, payment failures, database outage", "color": "#d00000",
           "response_minutes": 15},
    "P2": {"description": "High: utilization > 80 %, error rate > 5 %, partial degradation", "color": "#ff8c00",
           "response_minutes": 60},
    "P3": {"description": "Medium: performance degradation, capacity warnings", "color": "#f2c744",
           "response_minutes": 240},
    "P4": {"description": "Low: housekeeping, informational", "color": "#439fe0", "response_minutes": 1440},
}

SLACK_MENTION = r"^(<@[UW][A-Z0-9]{2,20}>|<!subteam\^S[A-Z0-9]{2,20}>|[UW][A-Z0-9]{2,20}|S[A-Z0-9]{2,20})$"


class Contact(_Strict):
    """One on-call role: who it is and how to reach them. Every field is optional, but a contact
    must be reachable one way at least."""

    name: str = Field(min_length=1, max_length=80)
    # A Slack user id (U…/W…) or user-group id (S…): the alert mentions it, which notifies them.
    slack: str | None = Field(default=None, pattern=SLACK_MENTION)
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    # An SNS topic with their phone (SMS) subscription: escalation pages go here.
    sns_topic_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+$")

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        if not (self.slack or self.email or self.sns_topic_arn):
            raise ValueError(f"contact {self.name!r} has no slack, email or sns_topic_arn: nobody could be reached")
        return self

    @property
    def mention(self) -> str:
        """How Slack should name them: a mention when there is a Slack id, else the name."""
        if not self.slack:
            return self.name
        if self.slack.startswith("<"):
            return self.slack
        return f"<!subteam^{self.slack}>" if self.slack.startswith("S") else f"<@{self.slack}>"


class OnCall(_Strict):
    """The guide's escalation chain: primary, then secondary, then the escalation contact. An
    unacknowledged P1 moves one step along it per response time (severities.P1.response_minutes)."""

    primary: Contact | None = None
    secondary: Contact | None = None
    escalation: Contact | None = None

    @model_validator(mode="after")
    def _primary_first(self) -> OnCall:
        if (self.secondary or self.escalation) and self.primary is None:
            raise ValueError("a secondary or escalation contact needs a primary first (alerts name the primary; "
                             "escalation goes on from there)")
        return self

    def chain(self) -> list[tuple[str, Contact]]:
        return [(role, contact) for role in ("primary", "secondary", "escalation")
                if (contact := getattr(self, role)) is not None]


class PagerDuty(_Strict):
    """PagerDuty through the official provider (Events API v2). The connection's password is the
    integration (routing) key. Incidents of these severities trigger, acknowledge and resolve there
    with one dedup key each, so PagerDuty's own escalation policies apply."""

    conn_id: str = Field(default="pagerduty_events_default", min_length=1)
    severities: list[SeverityName] = ["P1", "P2"]


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
    # SMS (sns_topic_arn) is for the guide's emergencies only: a P1 of one of these checks (a name, or
    # a prefix ending in "."). Other P1s (a certificate 7 days from expiry, a drill finding) go to the
    # critical Slack channel and e-mail.
    sms_checks: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.]*$")]] = Field(default_factory=lambda: [
        "application.endpoint", "application.alb_targets", "kpi.error_rate", "business.payment_success_rate",
        "rds.status", "rds.query", "security.s3_public", "security.root"])
    # Alerts of these severities also go by e-mail to digest_email (beside the daily summary).
    email_severities: list[SeverityName] = ["P1"]
    on_call: OnCall = Field(default_factory=OnCall)
    # Off unless configured.
    pagerduty: PagerDuty | None = None
    # The Airflow web address people open from an alert (the acknowledge link goes to its dashboard,
    # <airflow_url>/solemate/incidents/<id>). Unset: alerts carry no acknowledge link.
    airflow_url: AnyHttpUrl | None = None
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

    def acknowledge_url(self, incident_id: str) -> str | None:
        from urllib.parse import quote

        if self.airflow_url is None:
            return None
        return f"{str(self.airflow_url).rstrip('/')}/solemate/incidents/{quote(incident_id, safe='')}"

    def pages_by_sms(self, check: str) -> bool:
        """Whether a P1 of `check` is an emergency that warrants an SMS."""
        return any(check == name or (name.endswith(".") and check.startswith(name)) or
                   check.startswith(name + ".") for name in self.sms_checks)




class Reports(_Strict):
    bucket: BucketName
    prefix: str = "reports"
    # A run's report compares with the previous logical date's; when that run is still going (a
    # concurrent backfill), the report waits for it this long, then says the comparison was impossible.
    previous_report_wait_minutes: int = Field(default=60, ge=0, le=24 * 60)
    # Standard, Standard-IA, Glacier per prefix; checked daily (reports_lifecycle), applied when enforcing.
    lifecycle: ReportsLifecycle = ReportsLifecycle()




class MaintenanceStatus(_Strict):
    namespace: str = "SoleMate/Maintenance"
    dashboard_name: str = Field(default="SoleMate-Maintenance", pattern=r"^[A-Za-z0-9_-]{1,255}$")
    # The dead-man's switch: the heartbeat alarm fires after this long without a successful daily run.
    heartbeat_max_gap_hours: int = Field(default=26, ge=2, le=72)
    # Every other scheduled DAG's alarm fires after its own schedule's longest interval plus this
    # grace (at most one more interval: a 15-minute watch is missed after 30 minutes).
    heartbeat_grace_minutes: int = Field(default=120, ge=5, le=24 * 60)


class Workers(_Strict):
    """Where the tasks run. The DAGs that change AWS (the policies beyond read-only in
    include/iam/attachments.json) go to ``mutating_queue``, a Celery queue whose workers alone carry
    those policies; the read-only DAGs stay on Airflow's default queue. Unset: every DAG on the default
    queue (LocalExecutor, or one worker role with every policy). A queue no worker consumes leaves the
    tasks queued: start `airflow celery worker --queues <mutating_queue>` before setting it."""

    mutating_queue: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,100}$")


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
    workers: Workers = Workers()
    watch: Watch = Watch()
    cost: Cost = Cost()
    right_sizing: RightSizing = RightSizing()
    monthly_summary: MonthlySummary = MonthlySummary()
    monitoring: Monitoring = Monitoring()
    reviews: Reviews = Reviews()
    airflow_housekeeping: AirflowHousekeeping = AirflowHousekeeping()

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
        # Each prefix of the reports bucket has a lifecycle rule of its own (reports_lifecycle): two kinds of
        # object under one prefix would get one kind's expiry.
        from solemate_maintenance.schedules import scheduled_dags

        taken = {**{dag_id: "a DAG's reports" for dag_id in [*scheduled_dags(self), "dr_failover"]},
                 self.watch.state_prefix: "watch.state_prefix (the incident record)",
                 "airflow-archive": "Airflow's exported metadata"}
        for key, prefix in (("config_backup.prefix", self.config_backup.prefix), ("cost.cache_prefix",
                                                                                   self.cost.cache_prefix)):
            top = prefix.strip("/").split("/", 1)[0]
            if top in taken:
                raise ValueError(f"{key}: {prefix!r} is where {taken[top]} live(s) in the reports bucket; their "
                                 "lifecycles would mix: choose another prefix")
        if self.config_backup.prefix.strip("/").split("/", 1)[0] == self.cost.cache_prefix.strip("/").split("/", 1)[0]:
            raise ValueError(f"cost.cache_prefix: {self.cost.cache_prefix!r} shares its first part with "
                             f"config_backup.prefix {self.config_backup.prefix!r}; their lifecycles would mix")
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
