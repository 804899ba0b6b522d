"""The reports bucket's lifecycle: what the project writes there (reports, reviews and charts, the
configuration backups, the Cost Explorer cache, the incident record, Airflow's exported metadata) ages
per prefix, the guide's
way (Standard, Standard-IA, Glacier). Read-only unless ``reports.lifecycle.enforce`` is true."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from solemate_maintenance.config import ArchiveClass, PlatformConfig
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.operators.housekeeping import bucket_lifecycle
from solemate_maintenance.operators.housekeeping.airflow_db import ARCHIVE_PREFIX
from solemate_maintenance.operators.housekeeping.bucket_lifecycle import WantedRule

RULE_ID_PREFIX = "solemate-reports-"
# DAGs that file something under <reports.prefix>/<dag_id>/ and run only when a person starts them.
MANUAL_REPORTING_DAGS = ("dr_failover",)


def wanted_rules(config: PlatformConfig) -> list[WantedRule]:
    """One rule per prefix: each reporting DAG's directory, the configuration backups, the Cost Explorer
    cache and the incident record. Prefixes end with "/" so that one never covers another's objects."""
    from solemate_maintenance.incidents import incident_key
    from solemate_maintenance.schedules import scheduled_dags

    reports = config.reports
    base = reports.prefix.strip("/")

    def under(*parts: str) -> str:
        return "/".join(p.strip("/") for p in (base, *parts) if p.strip("/")) + "/"

    def rule(name: str, prefix: str, archive: ArchiveClass, label: str, key: str) -> WantedRule:
        return WantedRule(rule_id=f"{RULE_ID_PREFIX}{name}", bucket=reports.bucket, prefix=prefix,
                          transitions=tuple((t.after_days, t.storage_class) for t in archive.transitions),
                          expire_after_days=archive.expire_after_days,
                          noncurrent_expire_after_days=archive.noncurrent_expire_after_days,
                          label=f"{label} (reports.lifecycle.{key})", enforce_key="reports.lifecycle.enforce")

    lifecycle = reports.lifecycle
    dags = [d for d, s in scheduled_dags(config).items() if s.record] + list(MANUAL_REPORTING_DAGS)
    rules = [rule(dag_id, under(dag_id), lifecycle.reports, f"{dag_id} reports", "reports") for dag_id in dags]
    rules.append(rule("config-backups", under(config.config_backup.prefix), lifecycle.config_backups,
                      "configuration backups", "config_backups"))
    rules.append(rule("cost-explorer-cache", under(config.cost.cache_prefix), lifecycle.cost_cache,
                      "Cost Explorer cache", "cost_cache"))
    record_dir = incident_key(config).rsplit("/", 1)[0]
    rules.append(rule("incidents", record_dir + "/", lifecycle.incidents, "incident record", "incidents"))
    rules.append(rule("airflow-archive", under(ARCHIVE_PREFIX), lifecycle.airflow_archive,
                      "Airflow's exported metadata", "airflow_archive"))
    return rules


class ReportsLifecycleOperator(MaintenanceCheckOperator):
    """Check (and, with ``reports.lifecycle.enforce``, apply) the reports bucket's lifecycle rules.

    Each prefix has a rule of its own (``solemate-reports-<name>``); a missing or different one is P3,
    another enabled rule that expires the same objects earlier is P3 and never touched. When
    enforcing, only these rules are added or updated, with their other settings kept.

    :param config: the platform config (``reports``, and where the backups and caches live).
    """

    def __init__(self, *, config: PlatformConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        lifecycle = self.config.reports.lifecycle
        bucket = self.config.reports.bucket
        s3 = self.client("s3")
        rules = bucket_lifecycle.bucket_rules(s3, bucket)
        if rules is None:
            yield Finding(check="reports.bucket", resource=f"s3://{bucket}", status=Status.CRITICAL,
                          severity=Severity.P2, summary="the reports bucket does not exist: no report can be kept",
                          details={"fix": "create the bucket or correct reports.bucket"})
            return
        changes: list[dict[str, Any]] = []
        findings = [finding for wanted in wanted_rules(self.config)
                    for finding in bucket_lifecycle.compare(wanted, rules, check="reports.lifecycle",
                                                            enforce=lifecycle.enforce, changes=changes)]
        if lifecycle.enforce and changes:
            bucket_lifecycle.apply(s3, changes, self.log)  # before any finding says "fixed"
        yield from findings
        mode = "applied" if lifecycle.enforce else "would apply"
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": (f"Reports bucket lifecycle: {len(changes)} rule change(s) {mode}" if changes
                         else "Reports bucket lifecycle: matches the policy"),
            "mode": "enforce" if lifecycle.enforce else "report only (reports.lifecycle.enforce is false)",
            "changes": len(changes),
            "tables": {f"Changes {mode}": {
                "columns": ["target", "change", "from", "to"],
                "rows": [[c["target"], c["change"], c["from"], c["to"]] for c in changes]}} if changes else {},
        })
