"""Log retention per class (CloudWatch days, S3 archive and lifecycle) and the configuration backup."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from solemate_maintenance.config.base import BucketName, _Strict

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
        check_transitions(self.transitions, self.expire_after_days)
        return self


def check_transitions(transitions: list[LogTransition], expire_after_days: int | None) -> None:
    """The rules S3 itself enforces on a lifecycle rule's transitions and expiry."""
    days = [t.after_days for t in transitions]
    if days != sorted(set(days)):
        raise ValueError(f"transitions must be in increasing after_days order, got {days}")
    for before, after in zip(transitions, transitions[1:], strict=False):
        if _WATERFALL.index(after.storage_class) <= _WATERFALL.index(before.storage_class) or \
                (before.storage_class, after.storage_class) == ("ONEZONE_IA", "GLACIER_IR"):
            raise ValueError(f"S3 cannot move objects from {before.storage_class} to {after.storage_class} "
                             f"(transitions go down {' > '.join(_WATERFALL)})")
        if before.storage_class in ("STANDARD_IA", "ONEZONE_IA") and after.after_days - before.after_days < 30:
            raise ValueError(f"S3 keeps objects in {before.storage_class} at least 30 days before moving them "
                             f"on: {after.storage_class} after {after.after_days} days is too soon after "
                             f"{before.after_days}")
    if days and expire_after_days is not None and days[-1] >= expire_after_days:
        raise ValueError(f"expire_after_days ({expire_after_days}) must come after the last transition "
                         f"({days[-1]})")


class ArchiveClass(_Strict):
    """What the project writes under one prefix of the reports bucket: its lifecycle there."""

    transitions: list[LogTransition] = []
    expire_after_days: int | None = Field(default=None, gt=0, le=36_500)
    # In a versioned bucket, an overwritten object's old versions; None: kept as long as the bucket keeps them.
    noncurrent_expire_after_days: int | None = Field(default=None, gt=0, le=36_500)

    @model_validator(mode="after")
    def _ordered(self) -> ArchiveClass:
        check_transitions(self.transitions, self.expire_after_days)
        return self


# The guide's pattern for what is read less as it ages: Standard, Standard-IA after 30 days, Glacier after 90.
_GUIDE_TRANSITIONS = [LogTransition(after_days=30, storage_class="STANDARD_IA"),
                      LogTransition(after_days=90, storage_class="GLACIER")]


class ReportsLifecycle(_Strict):
    """The reports bucket's lifecycle, one class per kind of object the project writes there."""

    # false: the daily run only reports the differences (and the changes it would make).
    enforce: bool = False
    # Every DAG's reports, reviews and charts (<reports.prefix>/<dag_id>/): one rule per DAG.
    reports: ArchiveClass = ArchiveClass(transitions=_GUIDE_TRANSITIONS)
    # The daily configuration backups (<reports.prefix>/<config_backup.prefix>/).
    config_backups: ArchiveClass = ArchiveClass(transitions=_GUIDE_TRANSITIONS, expire_after_days=400)
    # Cost Explorer's answers (<reports.prefix>/<cost.cache_prefix>/): read again only when a month is
    # re-reviewed. Never Glacier (a cache it cannot read sends the review back to Cost Explorer, which
    # forgets months after 13) and never expired by default, for the same reason.
    cost_cache: ArchiveClass = ArchiveClass(transitions=[LogTransition(after_days=30, storage_class="STANDARD_IA")])
    # Airflow's metadata rows airflow_housekeeping deleted, as CSV (<reports.prefix>/airflow-archive/): kept a
    # year; they may hold run configurations, so not forever.
    airflow_archive: ArchiveClass = ArchiveClass(transitions=_GUIDE_TRANSITIONS, expire_after_days=365)
    # The incident record: rewritten by every watch, so it never ages; its old versions (in a versioned
    # bucket, ~100 a day) do.
    incidents: ArchiveClass = ArchiveClass(noncurrent_expire_after_days=7)


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
    # Under reports.prefix; never empty: its lifecycle (expiry) would then cover every report.
    prefix: str = Field(default="config-backups", pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
    # A secret with rotation on whose next rotation is this far past is overdue.
    rotation_grace_hours: int = Field(default=24, ge=0, le=24 * 30)
