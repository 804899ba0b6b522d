"""The month's data for the guide's "review the backup strategy": the restore tests (RTO and RPO
against their targets, the trend), AWS Backup's failed jobs, the recovery points' worst age (the
longest the newest restorable copy got old) and the storage each vault holds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from solemate_maintenance.config import Backups
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.window import TimeWindow, as_utc, month_reviewed

FAILED_STATES = ("FAILED", "ABORTED", "EXPIRED")
# How far back AWS Backup lists jobs.
JOBS_KEPT = timedelta(days=30)


def worst_age(created: list[datetime], month: TimeWindow) -> timedelta | None:
    """The longest the newest recovery point got old during the month, from the points' creation times
    (the last one before the month included); None without any point."""
    points = sorted(created)
    earlier = [c for c in points if c < month.start]
    newest = earlier[-1] if earlier else None
    worst = None
    for moment in [*(c for c in points if month.start <= c < month.end), month.end]:
        if newest is not None:
            worst = max(worst or timedelta(0), moment - newest)
        newest = moment if moment < month.end else newest
    return worst


class BackupStrategyOperator(MaintenanceCheckOperator):
    """Backup facts of the month for the stakeholder summary (measurements; P3 when a target was missed).

    :param policy: the ``backups`` section (vaults, RPO/RTO targets).
    :param dr_region: where the DR vault is.
    :param bucket: reports bucket; :param reports_prefix: the reports' key prefix.
    :param backup_dag_id: whose reports hold the restore tests.
    """

    template_fields = (*MaintenanceCheckOperator.template_fields, "bucket")

    def __init__(self, *, policy: Backups, dr_region: str, bucket: str, reports_prefix: str,
                 backup_dag_id: str = "weekly_backup_verification", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy
        self.dr_region = dr_region
        self.bucket = bucket
        self.reports_prefix = reports_prefix
        self.backup_dag_id = backup_dag_id

    def checked_window(self, context: Any) -> TimeWindow:
        return month_reviewed(context)

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        from airflow.sdk.timezone import utcnow

        month = self.checked_window(context)
        label = f"{month.start:%B %Y}"
        tests = self._restore_tests(month)
        # AWS Backup lists the jobs of the last 30 days: the part of the month before that is not known
        # (a fact of the wall clock; a backfill of an older month says so instead of "no failed job").
        covered = TimeWindow(max(month.start, utcnow() - JOBS_KEPT), month.end)
        backup = self.client("backup")
        jobs = [] if covered.start >= covered.end else [
            job for page in self.pages(backup, "list_backup_jobs", ByCreatedAfter=covered.start - timedelta(days=2),
                                       ByCreatedBefore=covered.end) for job in page.get("BackupJobs", [])]
        in_month = [j for j in jobs if covered.start <= as_utc(j["CreationDate"]) < covered.end]
        states = Counter(j.get("State", "?") for j in in_month)
        failed = [j for j in in_month if j.get("State") in FAILED_STATES]
        vaults, points = [], []
        for name, region in ((self.policy.backup_vault, None), (self.policy.dr_backup_vault, self.dr_region)):
            summary, found = self._vault(name, region)
            vaults.append(summary)
            points += found if region is None else []  # the primary vault's points: what a restore starts from
        worst, worst_resource = self._worst_age(jobs, points, covered)
        rto_target, rpo_target = self.policy.database_rto_minutes, self.policy.database_rpo_minutes
        missed = [t for t in tests
                  if (t[2] is not None and t[2] > rto_target) or (t[3] is not None and t[3] > rpo_target)]
        coverage = "the whole month" if covered.start == month.start else \
            ("none of it (AWS Backup lists 30 days of jobs)" if covered.start >= covered.end
             else f"from {covered.start:%Y-%m-%d} (AWS Backup lists 30 days of jobs)")
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": (f"Backups, {label}: {len(tests)} restore test(s) ({len(missed)} missed a target), "
                         f"{len(failed)} failed backup job(s) of {len(in_month)}, newest recovery point at worst "
                         f"{_age(worst)} old ({worst_resource or 'no resource'}); jobs known for {coverage}"),
            "restore_tests": len(tests), "restore_tests_missing_target": len(missed),
            "rto_target_minutes": rto_target, "rpo_target_minutes": rpo_target, "jobs_coverage": coverage,
            "backup_jobs": len(in_month), "backup_jobs_failed": len(failed), "job_states": dict(states),
            "worst_recovery_point_age_hours": None if worst is None else round(worst.total_seconds() / 3600, 1),
            "worst_recovery_point_resource": worst_resource,
            "vault_gb": {name: gb for name, gb, _ in vaults},
            "tables": {
                "Restore tests": {"columns": ["date", "validation", "RTO (min)", "data RPO (min)"],
                                  "rows": [[d, v, _minutes(rto), _minutes(rpo)] for d, v, rto, rpo in tests]},
                "Failed backup jobs": {"columns": ["created", "resource", "state", "why"],
                                       "rows": [[f"{as_utc(j['CreationDate']):%Y-%m-%d %H:%M}",
                                                 str(j.get("ResourceArn", "")).rsplit(":", 1)[-1], j.get("State"),
                                                 j.get("StatusMessage", "")] for j in failed]},
                "Storage by vault": {"columns": ["vault", "GB", "recovery points"],
                                     "rows": [[name, gb, count] for name, gb, count in vaults]}}})
        if missed:
            yield Finding(check="backups.strategy.restore_targets", resource=label, status=Status.WARNING,
                          severity=Severity.P3, summary=f"{len(missed)} restore test(s) missed the RTO "
                                                        f"{rto_target} min / RPO {rpo_target} min target")
        if failed:
            yield Finding(check="backups.strategy.failed_jobs", resource=label, status=Status.WARNING,
                          severity=Severity.P3, summary=f"{len(failed)} of {len(in_month)} backup job(s) failed")
        too_old = worst is not None and worst > timedelta(hours=self.policy.snapshot_max_age_hours)
        if too_old:
            yield Finding(check="backups.strategy.recovery_point_age", resource=worst_resource or label,
                          status=Status.WARNING, severity=Severity.P3,
                          summary=f"the newest recovery point of {worst_resource} was {_age(worst)} old at worst "
                                  f"in {label} (policy {self.policy.snapshot_max_age_hours} h)")
        if not (missed or failed or too_old):
            yield Finding(check="backups.strategy", resource=label, status=Status.OK,
                          summary=f"{len(tests)} restore test(s) within target, no failed backup job in {coverage}")

    @staticmethod
    def _worst_age(jobs: list[dict[str, Any]], points: list[dict[str, Any]],
                   covered: TimeWindow) -> tuple[timedelta | None, str | None]:
        """Per protected resource (one backing up daily must not hide one that stopped), the longest its newest
        recovery point got old in `covered`; the worst resource."""
        created: dict[str, list[datetime]] = {}
        for job in jobs:
            if job.get("State") == "COMPLETED" and job.get("ResourceArn"):
                created.setdefault(job["ResourceArn"], []).append(as_utc(job.get("CompletionDate")
                                                                         or job["CreationDate"]))
        for point in points:
            if point.get("ResourceArn") and point.get("CreationDate"):
                created.setdefault(point["ResourceArn"], []).append(as_utc(point["CreationDate"]))
        ages = {arn: worst_age(times, covered) for arn, times in created.items()}
        ages = {arn: age for arn, age in ages.items() if age is not None}
        if not ages or covered.start >= covered.end:
            return None, None
        arn = max(ages, key=lambda key: ages[key])
        return ages[arn], arn.rsplit(":", 1)[-1]

    def _restore_tests(self, month: TimeWindow) -> list[tuple[str, str, float | None, float | None]]:
        store = self.report_store(self.bucket, self.reports_prefix)
        tests = []
        for report in store.reports_between(self.backup_dag_id, month.start, month.end, log=self.log):
            measured = report.measurements.get("restore_validate") or {}
            tests.append((report.checked_label, measured.get("validation", "not run"),
                          measured.get("rto_minutes"), measured.get("data_rpo_minutes")))
        return tests

    def _vault(self, name: str, region: str | None) -> tuple[tuple[str, float | None, int], list[dict[str, Any]]]:
        backup = self.client("backup", region)
        try:
            points = [p for page in self.pages(backup, "list_recovery_points_by_backup_vault", BackupVaultName=name)
                      for p in page.get("RecoveryPoints", [])]
        except backup.exceptions.ResourceNotFoundException:
            return (name, None, 0), []
        size = sum(p.get("BackupSizeInBytes") or 0 for p in points)
        return (name, round(size / 1e9, 2), len(points)), points


def _minutes(value: Any) -> str:
    return "—" if value is None else f"{value:.1f}"


def _age(delta: timedelta | None) -> str:
    if delta is None:
        return "unknown"
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours < 72 else f"{hours / 24:.1f} days"
