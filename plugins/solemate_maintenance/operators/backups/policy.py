"""Backups checked against the operations guide's policy: RDS automated backups and AWS Backup.

Every age is measured at the run's logical date, so a backfill checks its own week: a snapshot taken
after that date does not count for it. Plan and retention settings are live state (AWS keeps no
history of them); the report says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from airflow.sdk.timezone import utcnow

from solemate_maintenance import restore
from solemate_maintenance.backup_schedule import previous_fire
from solemate_maintenance.config import Backups
from solemate_maintenance.findings import Finding, Measurement, Severity, Status
from solemate_maintenance.operators.base import MaintenanceCheckOperator
from solemate_maintenance.run_facts import format_instant as _stamp
from solemate_maintenance.window import TimeWindow

FAILED_JOB_STATES = ("FAILED", "EXPIRED", "ABORTED")


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


class _BackupCheck(MaintenanceCheckOperator):
    template_fields = (*MaintenanceCheckOperator.template_fields, "db_instance_identifier")

    def __init__(self, *, db_instance_identifier: str, policy: Backups, dr_region: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.db_instance_identifier = db_instance_identifier
        self.policy = policy
        self.dr_region = dr_region

    @property
    def lookback_minutes(self) -> int | None:
        return self.policy.job_lookback_hours * 60

    @cached_property
    def rds(self) -> Any:
        from airflow.providers.amazon.aws.hooks.rds import RdsHook

        return RdsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).conn

    def _instance(self) -> dict[str, Any] | None:
        try:
            return self.rds.describe_db_instances(DBInstanceIdentifier=self.db_instance_identifier)["DBInstances"][0]
        except self.rds.exceptions.DBInstanceNotFoundFault:
            return None


class RdsBackupOperator(_BackupCheck):
    """RDS automated backups of the production database, judged against the backup policy.

    Automated backups on and kept ``rds_retention_days``, storage encrypted, the newest automated
    snapshot at most ``snapshot_max_age_hours`` old at the logical date, the point-in-time restore lag
    within the database RPO, and a recent copy in the DR region (an RDS snapshot copy, a replicated
    automated backup, or an AWS Backup recovery point in the DR vault).
    """

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        db = self.db_instance_identifier
        checked = TimeWindow.ending_at_run(context, self.lookback_minutes).end
        instance = self._instance()
        if instance is None:
            yield Finding(check="backup.rds.instance", resource=db, status=Status.CRITICAL, severity=Severity.P2,
                          summary="DB instance not found: its backups cannot be checked")
            return
        retention = int(instance.get("BackupRetentionPeriod") or 0)
        wanted = self.policy.rds_retention_days
        if retention == 0:
            yield Finding(check="backup.rds.automated_backups", resource=db, status=Status.CRITICAL,
                          severity=Severity.P2, summary="automated backups are OFF (retention 0 days): "
                          "no point-in-time restore is possible", details={"expected": f">= {wanted} days",
                                                                           "actual": "0 days"})
        elif retention < wanted:
            yield Finding(check="backup.rds.automated_backups", resource=db, status=Status.WARNING,
                          severity=Severity.P3, summary=f"retention {retention} days, policy {wanted} days",
                          details={"expected": f">= {wanted} days", "actual": f"{retention} days"})
        else:
            yield Finding(check="backup.rds.automated_backups", resource=db, status=Status.OK,
                          summary=f"automated backups on, kept {retention} days (policy {wanted})")
        if instance.get("StorageEncrypted"):
            yield Finding(check="backup.rds.encryption", resource=db, status=Status.OK,
                          summary="storage (and so its backups) encrypted")
        else:
            yield Finding(check="backup.rds.encryption", resource=db, status=Status.CRITICAL, severity=Severity.P2,
                          summary="storage is NOT encrypted, so neither are its snapshots",
                          details={"expected": "StorageEncrypted: true", "actual": "false"})
        yield from self._pitr_lag(db, instance, checked)
        yield from self._latest_snapshot(db, checked, retention)
        yield from self._dr_copies(db, instance, checked)

    def _pitr_lag(self, db: str, instance: dict[str, Any], checked: datetime) -> Iterable[Finding]:
        latest = instance.get("LatestRestorableTime")
        rpo = self.policy.database_rpo_minutes
        if latest is None:
            yield Finding(check="backup.rds.pitr_lag", resource=db, status=Status.CRITICAL, severity=Severity.P2,
                          summary="no LatestRestorableTime: point-in-time restore is not possible")
            return
        lag_minutes = max(0.0, (checked - _utc(latest)).total_seconds() / 60)
        metrics = {"pitr_lag_minutes": Measurement(value=round(lag_minutes, 2), unit="min", critical=rpo,
                                                   bad_when="above")}
        details = {"latest_restorable_time": _stamp(_utc(latest)), "checked_at": _stamp(checked)}
        if lag_minutes > rpo:
            yield Finding(check="backup.rds.pitr_lag", resource=db, status=Status.CRITICAL, severity=Severity.P2,
                          summary=f"point-in-time restore lags {lag_minutes:.1f} min behind the checked time, "
                                  f"RPO is {rpo} min", details=details, metrics=metrics)
        elif _utc(latest) > checked + timedelta(minutes=rpo):
            # A past date: LatestRestorableTime describes now, so this says nothing about that day's lag;
            # whether the date is still restorable is the window's start (the restore test asks the same).
            window = restore.restore_window(self.rds, db)
            if window is None:
                # AWS reports a restorable time but lists no window: its two answers disagree.
                yield Finding(check="backup.rds.pitr_lag", resource=db, status=Status.WARNING, severity=Severity.P3,
                              summary=f"cannot tell whether {_stamp(checked)} is restorable: the instance reports "
                                      f"LatestRestorableTime {_stamp(_utc(latest))} but no automated-backup restore "
                                      "window is listed (check RDS > Automated backups for the instance)",
                              details=details)
                return
            earliest = _utc(window["EarliestTime"])
            if checked < earliest:
                yield Finding(check="backup.rds.pitr_lag", resource=db, status=Status.SKIPPED,
                              summary=f"cannot be judged for {_stamp(checked)}: it is before the restore window "
                                      f"(earliest {_stamp(earliest)}), so a restore to it is impossible and its lag "
                                      "is no longer recorded by AWS",
                              details={**details, "earliest_restorable_time": _stamp(earliest)})
                return
            yield Finding(check="backup.rds.pitr_lag", resource=db, status=Status.OK,
                          summary=f"the checked time is restorable (window {_stamp(earliest)} to "
                                  f"{_stamp(_utc(latest))}; the lag on the checked day itself is not recorded by "
                                  "AWS)", details={**details, "earliest_restorable_time": _stamp(earliest)},
                          metrics=metrics)
        else:
            yield Finding(check="backup.rds.pitr_lag", resource=db, status=Status.OK,
                          summary=f"restorable to within {lag_minutes:.1f} min of the checked time (RPO {rpo} min)",
                          details=details, metrics=metrics)

    def _latest_snapshot(self, db: str, checked: datetime, retention_days: int) -> Iterable[Finding]:
        paginator = self.rds.get_paginator("describe_db_snapshots")
        taken = [_utc(s["SnapshotCreateTime"]) for page in paginator.paginate(
            DBInstanceIdentifier=db, SnapshotType="automated") for s in page["DBSnapshots"]
            if s.get("SnapshotCreateTime") and s.get("Status") == "available"]
        before = [t for t in taken if t <= checked]
        limit = self.policy.snapshot_max_age_hours
        judged_from = checked - timedelta(hours=limit)
        fresh_enough = bool(before) and max(before) >= judged_from
        if not fresh_enough and taken and min(taken) > judged_from \
                and judged_from < utcnow() - timedelta(days=retention_days):
            # A backfill of a day older than the retention: AWS has deleted the snapshots that would
            # show whether that day had a fresh one. Absence of evidence is not a missing backup.
            yield Finding(check="backup.rds.latest_snapshot", resource=db, status=Status.SKIPPED,
                          summary=f"cannot be judged for {_stamp(checked)}: automated snapshots are kept "
                                  f"{retention_days} days, the oldest left is from {_stamp(min(taken))}",
                          details={"oldest_snapshot": _stamp(min(taken)), "retention_days": retention_days})
            return
        if not before:
            yield Finding(check="backup.rds.latest_snapshot", resource=db, status=Status.CRITICAL,
                          severity=Severity.P2, summary=f"no automated snapshot taken before {_stamp(checked)}")
            return
        newest = max(before)
        age = _hours(checked - newest)
        metrics = {"snapshot_age_hours": Measurement(value=age, unit="h", critical=limit, bad_when="above")}
        if age > limit:
            yield Finding(check="backup.rds.latest_snapshot", resource=db, status=Status.CRITICAL,
                          severity=Severity.P2, summary=f"newest automated snapshot is {age:.1f} h old "
                          f"({_stamp(newest)}), limit {limit} h", metrics=metrics)
        else:
            yield Finding(check="backup.rds.latest_snapshot", resource=db, status=Status.OK,
                          summary=f"newest automated snapshot {age:.1f} h old ({_stamp(newest)})", metrics=metrics)

    def _dr_copies(self, db: str, instance: dict[str, Any], checked: datetime) -> Iterable[Finding]:
        arn = instance.get("DBInstanceArn", "")
        rds_dr = self.client("rds", self.dr_region)
        found: dict[str, datetime] = {}
        for page in rds_dr.get_paginator("describe_db_snapshots").paginate(DBInstanceIdentifier=db):
            for snapshot in page["DBSnapshots"]:
                created = snapshot.get("SnapshotCreateTime")
                if created and _utc(created) <= checked:
                    found["snapshot copy " + snapshot["DBSnapshotIdentifier"]] = _utc(created)
        resource_id = instance.get("DbiResourceId")
        replicated = rds_dr.describe_db_instance_automated_backups(DbiResourceId=resource_id).get(
            "DBInstanceAutomatedBackups", []) if resource_id else []
        for backup in replicated:
            window = backup.get("RestoreWindow") or {}
            earliest, latest = window.get("EarliestTime"), window.get("LatestTime")
            if earliest and latest and _utc(earliest) <= checked:
                # A live replica's window keeps moving past the checked time: it covers it up to there.
                found["replicated automated backup"] = min(_utc(latest), checked)
        backup_dr = self.client("backup", self.dr_region)
        try:
            points = backup_dr.list_recovery_points_by_backup_vault(
                BackupVaultName=self.policy.dr_backup_vault, ByResourceArn=arn, ByCreatedBefore=checked
            ).get("RecoveryPoints", []) if arn else []
        except backup_dr.exceptions.ResourceNotFoundException:
            points = []
        for point in points:
            if point.get("Status") == "COMPLETED":
                found[f"recovery point in {self.policy.dr_backup_vault}"] = max(
                    _utc(point["CreationDate"]), found.get(f"recovery point in {self.policy.dr_backup_vault}",
                                                           datetime.min.replace(tzinfo=UTC)))
        limit = self.policy.dr_copy_max_age_hours
        resource = f"{db} ({self.dr_region})"
        if not found:
            yield Finding(check="backup.rds.dr_copy", resource=resource, status=Status.CRITICAL, severity=Severity.P2,
                          summary=f"no copy of the database in the DR region {self.dr_region} before "
                                  f"{_stamp(checked)}: a regional outage would lose it",
                          details={"looked_for": "RDS snapshot copies, replicated automated backups, "
                                                 f"recovery points in {self.policy.dr_backup_vault}"})
            return
        kind, newest = max(found.items(), key=lambda item: item[1])
        age = _hours(checked - newest)
        metrics = {"dr_copy_age_hours": Measurement(value=age, unit="h", critical=limit, bad_when="above")}
        if age > limit:
            yield Finding(check="backup.rds.dr_copy", resource=resource, status=Status.WARNING, severity=Severity.P3,
                          summary=f"newest DR copy is {age:.1f} h old ({kind}, {_stamp(newest)}), limit {limit} h",
                          metrics=metrics)
        else:
            yield Finding(check="backup.rds.dr_copy", resource=resource, status=Status.OK,
                          summary=f"newest DR copy {age:.1f} h old ({kind})", metrics=metrics)


class AwsBackupOperator(_BackupCheck):
    """The database's AWS Backup plan against the policy, its jobs, and the freshness of each rule.

    A rule that differs from the policy shows the expected and the actual value side by side.
    """

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        window = TimeWindow.ending_at_run(context, self.lookback_minutes)
        checked = window.end
        backup = self.client("backup")
        instance = self._instance()
        db_arn = (instance or {}).get("DBInstanceArn") or self.db_instance_identifier
        plan_name = self.policy.backup_plan
        plans = [p for page in backup.get_paginator("list_backup_plans").paginate()
                 for p in page["BackupPlansList"] if p.get("BackupPlanName") == plan_name]
        if not plans:
            yield Finding(check="backup.plan", resource=plan_name, status=Status.CRITICAL, severity=Severity.P2,
                          summary=f"backup plan {plan_name!r} does not exist: the database has no scheduled "
                                  "AWS Backup")
            return
        plan_id = plans[0]["BackupPlanId"]
        plan = backup.get_backup_plan(BackupPlanId=plan_id)["BackupPlan"]
        rules = {rule["RuleName"]: rule for rule in plan.get("Rules", [])}
        account = plans[0]["BackupPlanArn"].split(":")[4]
        dr_vault_arn = f"arn:aws:backup:{self.dr_region}:{account}:backup-vault:{self.policy.dr_backup_vault}"
        for wanted in self.policy.rules:
            yield from self._rule(plan_name, wanted, rules.get(wanted.name), dr_vault_arn)
        yield from self._selection(backup, plan_name, plan_id, db_arn)
        yield from self._jobs(backup, window.start, checked, db_arn)
        yield from self._freshness(backup, plan_id, rules, checked, db_arn)

    def _rule(self, plan_name: str, wanted: Any, actual: dict[str, Any] | None, dr_vault_arn: str
              ) -> Iterable[Finding]:
        resource = f"{plan_name}/{wanted.name}"
        if actual is None:
            yield Finding(check="backup.plan.rule", resource=resource, status=Status.CRITICAL, severity=Severity.P2,
                          summary=f"rule {wanted.name!r} is missing from the plan",
                          details={"expected": f"{wanted.schedule}, kept {wanted.delete_after_days} days"})
            return
        differences: dict[str, dict[str, Any]] = {}
        if actual.get("ScheduleExpression") != wanted.schedule:
            differences["schedule"] = {"expected": wanted.schedule, "actual": actual.get("ScheduleExpression")}
        keep = (actual.get("Lifecycle") or {}).get("DeleteAfterDays")
        if keep != wanted.delete_after_days:
            differences["retention_days"] = {"expected": wanted.delete_after_days, "actual": keep}
        copies = [c.get("DestinationBackupVaultArn") for c in actual.get("CopyActions") or []]
        if wanted.copy_to_dr and dr_vault_arn not in copies:
            differences["copy_to_dr"] = {"expected": dr_vault_arn, "actual": ", ".join(copies) or "no copy"}
        if not differences:
            yield Finding(check="backup.plan.rule", resource=resource, status=Status.OK,
                          summary=f"{wanted.schedule}, kept {wanted.delete_after_days} days"
                                  f"{', copied to DR' if wanted.copy_to_dr else ''}: as the policy says")
            return
        side_by_side = "; ".join(f"{name}: expected {d['expected']}, actual {d['actual']}"
                                 for name, d in differences.items())
        yield Finding(check="backup.plan.rule", resource=resource, status=Status.WARNING, severity=Severity.P3,
                      summary=f"differs from the policy: {side_by_side}", details=differences)

    def _selection(self, backup: Any, plan_name: str, plan_id: str, db_arn: str) -> Iterable[Finding]:
        resources: list[str] = []
        for page in backup.get_paginator("list_backup_selections").paginate(BackupPlanId=plan_id):
            for item in page["BackupSelectionsList"]:
                selection = backup.get_backup_selection(BackupPlanId=plan_id, SelectionId=item["SelectionId"])
                resources += selection["BackupSelection"].get("Resources") or []
        if any(r in (db_arn, "*") or (r.endswith("*") and db_arn.startswith(r[:-1])) for r in resources):
            yield Finding(check="backup.plan.selection", resource=plan_name, status=Status.OK,
                          summary=f"selects {db_arn.rsplit(':', 1)[-1]}")
        else:
            yield Finding(check="backup.plan.selection", resource=plan_name, status=Status.CRITICAL,
                          severity=Severity.P2, summary=f"the plan does not select the database {db_arn}",
                          details={"selected": resources[:10]})

    def _jobs(self, backup: Any, since: datetime, until: datetime, db_arn: str) -> Iterable[Finding]:
        for kind, operation, key in (("backup", "list_backup_jobs", "BackupJobs"),
                                     ("copy", "list_copy_jobs", "CopyJobs")):
            bad: list[dict[str, Any]] = []
            total = 0
            for page in backup.get_paginator(operation).paginate(ByResourceArn=db_arn, ByCreatedAfter=since,
                                                                  ByCreatedBefore=until):
                for job in page[key]:
                    total += 1
                    if job.get("State") in FAILED_JOB_STATES:
                        bad.append(job)
            check = f"backup.{kind}_jobs"
            if bad:
                newest = sorted(bad, key=lambda j: j["CreationDate"], reverse=True)
                lines = [f"{j['State']} {_stamp(_utc(j['CreationDate']))}: {j.get('StatusMessage') or 'no message'}"
                         for j in newest[:5]]
                yield Finding(check=check, resource=db_arn.rsplit(":", 1)[-1], status=Status.CRITICAL,
                              severity=Severity.P2,
                              summary=f"{len(bad)} of {total} {kind} jobs failed, expired or were aborted since "
                                      f"{_stamp(since)}; newest: {lines[0]}", details={"jobs": lines})
            else:
                yield Finding(check=check, resource=db_arn.rsplit(":", 1)[-1], status=Status.OK,
                              summary=f"{total} {kind} jobs since {_stamp(since)}, none failed")

    def _freshness(self, backup: Any, plan_id: str, rules: dict[str, dict[str, Any]], checked: datetime,
                   db_arn: str) -> Iterable[Finding]:
        newest: dict[str, datetime] = {}
        for page in backup.get_paginator("list_recovery_points_by_backup_vault").paginate(
                BackupVaultName=self.policy.backup_vault, ByResourceArn=db_arn, ByBackupPlanId=plan_id,
                ByCreatedBefore=checked):
            for point in page["RecoveryPoints"]:
                if point.get("Status") != "COMPLETED":
                    continue
                rule_id = (point.get("CreatedBy") or {}).get("BackupRuleId", "")
                created = _utc(point["CreationDate"])
                newest[rule_id] = max(created, newest.get(rule_id, created))
        for wanted in self.policy.rules:
            actual = rules.get(wanted.name)
            if actual is None:
                continue  # reported as a missing rule
            resource = f"{self.policy.backup_vault}/{wanted.name}"
            due = previous_fire(wanted.schedule, checked - timedelta(hours=wanted.completion_hours))
            last = newest.get(actual.get("RuleId", ""))
            newest_shown = _stamp(last) if last else "none"
            details = {"scheduled": wanted.schedule, "expected_since": _stamp(due), "newest": newest_shown}
            kept_days = (actual.get("Lifecycle") or {}).get("DeleteAfterDays") or wanted.delete_after_days
            if (last is None or last < due) and due < utcnow() - timedelta(days=kept_days):
                # A backfill older than the rule's retention: its recovery points were deleted by design.
                yield Finding(check="backup.recovery_point", resource=resource, status=Status.SKIPPED,
                              summary=f"cannot be judged for the {_stamp(due)} backup: this rule keeps recovery "
                                      f"points {kept_days} days", details=details)
            elif last is None or last < due:
                yield Finding(check="backup.recovery_point", resource=resource, status=Status.CRITICAL,
                              severity=Severity.P2,
                              summary=f"no recovery point since the {_stamp(due)} backup; newest {newest_shown}",
                              details=details)
            else:
                yield Finding(check="backup.recovery_point", resource=resource, status=Status.OK,
                              summary=f"newest recovery point {_stamp(last)} (due since {_stamp(due)})",
                              details=details)
