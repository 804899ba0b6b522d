"""The database's backup history in moto: RDS automated snapshots, DR copies, AWS Backup.

Written straight into the moto backends (like the metrics): a year of scheduled backups over HTTP
would take minutes. Everything follows the configured policy unless a problem says otherwise.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID
from moto.rds.models import DBSnapshot

from sandbox import moto_backup, moto_rds
from solemate_maintenance.backup_schedule import previous_fire
from solemate_maintenance.config import PlatformConfig

BACKUP_PROBLEMS = {
    "backup_job_failed": "the latest daily AWS Backup job FAILED, so the daily rule has no fresh recovery point (P2)",
    "stale_snapshots": "RDS automated snapshots stopped 3 days ago (P2)",
    "plan_drift": "the plan's daily rule keeps 7 days instead of 30 and its weekly rule has no DR copy (P3)",
    "no_dr_copies": "nothing reaches the DR region: copy jobs fail, no snapshot copies (P2)",
}
RESTORE_PROBLEMS = {
    "corrupt_backup": "restores of the database come back with orphaned rows and lost payments (P2)",
    "restore_refused": "the next restore request fails with InsufficientDBInstanceCapacity (P2)",
    "restore_never_available": "a restored instance stays 'creating' forever (P2, timeout)",
}
# How long after its scheduled time a backup completes in the sandbox.
BACKUP_TAKES = timedelta(minutes=20)


class BackupHistory:
    def __init__(self, config: PlatformConfig) -> None:
        self.config = config
        self.primary, self.dr = config.regions.primary, config.regions.dr
        self.instance_id = config.resources.rds.instance_id

    def rds(self, region: str) -> Any:
        return get_backend("rds")[DEFAULT_ACCOUNT_ID][region]

    def backup(self, region: str) -> Any:
        return moto_backup.backend(DEFAULT_ACCOUNT_ID, region)

    @property
    def db_arn(self) -> str:
        return f"arn:aws:rds:{self.primary}:{DEFAULT_ACCOUNT_ID}:db:{self.instance_id}"

    def vault_arn(self, region: str, vault: str) -> str:
        return f"arn:aws:backup:{region}:{DEFAULT_ACCOUNT_ID}:backup-vault:{vault}"

    def write(self, anchor: datetime, problems: frozenset[str]) -> None:
        """Replace the backup history with the one ending at `anchor` (the latest seeded day)."""
        self._rds_snapshots(anchor, problems)
        self._aws_backup(anchor, problems)

    # -- RDS ------------------------------------------------------------------------------------------
    def _rds_snapshots(self, anchor: datetime, problems: frozenset[str]) -> None:
        primary, dr = self.rds(self.primary), self.rds(self.dr)
        database = primary.databases[self.instance_id]
        for backend in (primary, dr):
            for snapshot_id in [s for s, snap in backend.database_snapshots.items()
                                if snap.db_instance_identifier == self.instance_id]:
                backend.database_snapshots.pop(snapshot_id)
        last = anchor - timedelta(days=3) if "stale_snapshots" in problems else anchor
        for day in range(self.config.backups.rds_retention_days):
            taken = previous_fire("cron(0 5 * * ? *)", last) - timedelta(days=day)  # RDS backup window 05:00
            snapshot_id = f"rds:{self.instance_id}-{taken:%Y-%m-%d-%H-%M}"
            snapshot = DBSnapshot(primary, database, snapshot_id, snapshot_type="automated")
            snapshot.created = snapshot.original_snapshot_create_time = taken
            primary.database_snapshots[snapshot_id] = snapshot
            if "no_dr_copies" not in problems:
                copy_id = f"{self.instance_id}-dr-{taken:%Y-%m-%d-%H-%M}"
                copy = DBSnapshot(dr, database, copy_id, snapshot_type="manual")
                copy.created = copy.original_snapshot_create_time = taken + timedelta(hours=1)
                dr.database_snapshots[copy_id] = copy

    # -- AWS Backup -------------------------------------------------------------------------------------
    def _aws_backup(self, anchor: datetime, problems: frozenset[str]) -> None:
        policy = self.config.backups
        primary, dr = self.backup(self.primary), self.backup(self.dr)
        for backend in (primary, dr):
            backend.plans.clear()
            backend.vaults.clear()
            if hasattr(backend, "_sandbox_state"):
                del backend._sandbox_state
        primary.create_backup_vault(policy.backup_vault, None, None, None)
        dr.create_backup_vault(policy.dr_backup_vault, None, None, None)
        dr_vault = self.vault_arn(self.dr, policy.dr_backup_vault)
        rules = []
        for rule in policy.rules:
            keep = 7 if rule.name == "daily" and "plan_drift" in problems else rule.delete_after_days
            entry: dict[str, Any] = {"RuleName": rule.name, "TargetBackupVaultName": policy.backup_vault,
                                     "ScheduleExpression": rule.schedule, "Lifecycle": {"DeleteAfterDays": keep}}
            if rule.copy_to_dr and not (rule.name == "weekly" and "plan_drift" in problems):
                entry["CopyActions"] = [{"DestinationBackupVaultArn": dr_vault,
                                         "Lifecycle": {"DeleteAfterDays": rule.delete_after_days}}]
            rules.append(entry)
        plan = primary.create_backup_plan({"BackupPlanName": policy.backup_plan, "Rules": rules}, None, None)
        moto_backup.seed_selection(primary, plan.backup_plan_id, "production-database", [self.db_arn])
        source_vault = self.vault_arn(self.primary, policy.backup_vault)
        for rule, entry in zip(policy.rules, rules, strict=True):
            # "The latest daily job failed": every daily job since the one the check expects done by the
            # anchor (its completion_hours allowance), so the newest recovery point is stale at any hour
            # of the day. Only the job before it, at 02:00 with a 05:00 run, left the next one in time.
            due = previous_fire(rule.schedule, anchor - timedelta(hours=rule.completion_hours))
            for fired in self._fires(rule.schedule, anchor, rule.delete_after_days):
                created = fired + BACKUP_TAKES
                failed = "backup_job_failed" in problems and rule.name == "daily" and fired >= due
                moto_backup.seed_backup_job(primary, policy.backup_vault, self.db_arn, fired,
                                            "FAILED" if failed else "COMPLETED", plan_id=plan.backup_plan_id,
                                            rule_id=entry["RuleId"],
                                            message="Insufficient privileges to perform the backup" if failed else "")
                if failed or created > anchor:
                    continue
                moto_backup.seed_recovery_point(primary, policy.backup_vault, self.db_arn, created,
                                                plan_id=plan.backup_plan_id, rule_id=entry["RuleId"],
                                                delete_after_days=entry["Lifecycle"]["DeleteAfterDays"])
                if "CopyActions" in entry and anchor - created < timedelta(days=35):
                    copy_failed = "no_dr_copies" in problems
                    moto_backup.seed_copy_job(primary, source_vault, dr_vault, self.db_arn, created,
                                              "FAILED" if copy_failed else "COMPLETED",
                                              message="Access denied to the destination vault's key" if copy_failed
                                              else "")
                    if not copy_failed:
                        moto_backup.seed_recovery_point(dr, policy.dr_backup_vault, self.db_arn,
                                                        created + timedelta(minutes=30), source_arn=source_vault,
                                                        delete_after_days=rule.delete_after_days)

    @staticmethod
    def _fires(schedule: str, anchor: datetime, keep_days: int) -> list[datetime]:
        """Every scheduled time of a rule within its retention, newest first (at most a year)."""
        fires: list[datetime] = []
        moment = anchor
        oldest = anchor - timedelta(days=min(keep_days, 366))
        while True:
            moment = previous_fire(schedule, moment - timedelta(seconds=1))
            if moment < oldest:
                return fires
            fires.append(moment)


def apply_restore_problems(config: PlatformConfig, problems: frozenset[str]) -> None:
    """How the next restores behave: live state, like the ECS task counts."""
    behaviour = moto_rds.BEHAVIOUR
    behaviour.corrupt_sources = set()
    if "corrupt_backup" in problems:
        primary = get_backend("rds")[DEFAULT_ACCOUNT_ID][config.regions.primary]
        behaviour.corrupt_sources = {config.resources.rds.instance_id, *primary.database_snapshots}
    behaviour.refuse_next_restore = "InsufficientDBInstanceCapacity" if "restore_refused" in problems else None
    behaviour.never_available = "restore_never_available" in problems


def backdate_instance(config: PlatformConfig, days: int = 60) -> None:
    """A production database has existed for a while: its restore window reaches back its retention."""
    backend = get_backend("rds")[DEFAULT_ACCOUNT_ID][config.regions.primary]
    instance = backend.databases[config.resources.rds.instance_id]
    instance.created = instance.instance_create_time = datetime.now(UTC) - timedelta(days=days)
