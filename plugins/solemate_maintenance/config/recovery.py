"""Backups, the restore test and disaster recovery: the guide's backup policy, the restore test's
settings, and the DR table, drill and failover gate."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    field_validator,
    model_validator,
)

from solemate_maintenance.config.base import _DB_IDENTIFIER, BucketName, Minutes, Percent, _Strict

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
