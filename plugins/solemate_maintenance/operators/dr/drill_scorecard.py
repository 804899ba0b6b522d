"""The drill's scorecard: the guide's DR table with each component's measured RTO/RPO and verdict, the
earlier drills as a trend, and what the drill created and deleted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from solemate_maintenance import dr
from solemate_maintenance.config import DR_COMPONENTS, DrTarget
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.operators.dr.drill import _DrClients, drill_token, selected_components
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.window import run_end


# -- the scorecard -----------------------------------------------------------------------------------------
class DrDrillScorecardOperator(_DrClients, MaintenanceCheckOperator):
    """The drill's evidence: the guide's table with target, measured and verdict per component, the
    trend against earlier drills, and what the drill created and deleted (live-checked: zero left)."""

    template_fields = (*MaintenanceCheckOperator.template_fields, "dr_cluster")

    def __init__(self, *, targets: dict[str, DrTarget], measured_by: dict[str, list[str]], cleanup_task_ids: list[str],
                 token_prefix: str, dr_cluster: str, reports: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.targets = targets
        self.measured_by = measured_by
        self.cleanup_task_ids = cleanup_task_ids
        self.token_prefix = token_prefix
        self.dr_cluster = dr_cluster
        self.reports = reports

    def _measured(self, context: Any) -> dict[str, dr.ComponentResult]:
        ti = context["ti"]
        results: dict[str, dr.ComponentResult] = {}
        extra: dict[str, dict[str, Any]] = {}
        for component, task_ids in self.measured_by.items():
            merged: dict[str, Any] = {}
            for task_id in task_ids:
                value = ti.xcom_pull(task_ids=task_id, key=MEASUREMENTS_XCOM_KEY) or {}
                for key, item in value.items():
                    if key == "can_fail_over":
                        merged[key] = merged.get(key, True) and item
                    elif item is not None and key not in merged:
                        merged[key] = item
            extra[component] = merged
            if component in selected_components(context) and merged:
                results[component] = dr.ComponentResult(
                    component, rto_minutes=merged.get("rto_minutes"),
                    rpo_minutes=merged.get("rpo_minutes", merged.get("data_rpo_minutes")),
                    can_fail_over=merged.get("can_fail_over"))
        if "complete_system" in selected_components(context):
            system = extra.get("complete_system", {})
            results["complete_system"] = dr.estimate_complete_system(
                results, system.get("dns_ttl_seconds"), system.get("can_fail_over"))
        return results

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        results = self._measured(context)
        rows = dr.scorecard_rows(results, self.targets)
        for row in rows:
            yield _verdict_finding(row)
        created, deleted = self._created_and_deleted(context)
        left = self._left_behind(context)
        if left:
            yield Finding(check="dr.cleanup.leftovers", resource=self.region_name or "DR region",
                          status=Status.CRITICAL, severity=Severity.P2,
                          summary=f"the drill left {len(left)} resource(s) behind: {', '.join(left)}; delete them "
                                  "(the restore janitor removes expired database copies on the next drill)")
        else:
            yield Finding(check="dr.cleanup.leftovers", resource=self.region_name or "DR region", status=Status.OK,
                          summary=f"created {len(created)}, deleted {len(deleted)}, left 0")
        earlier = self._earlier(context)
        met = sum(r["verdict"] == dr.MET for r in rows)
        measured = sum(r["verdict"] != dr.NOT_MEASURED for r in rows)
        headline = f"DR drill ({self.region_name}): {met}/{measured} components met the guide's targets; " + "; ".join(
            f"{r['component']} {r['verdict']}" for r in rows if r["verdict"] != dr.NOT_MEASURED)
        reason = (context.get("params") or {}).get("reason")
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": headline, "region": self.region_name, "reason": reason, "components": rows,
            "created": created, "deleted": deleted, "left": left,
            "tables": {
                "Components against the guide": _table(
                    ["component", "recovery method", "RTO target", "RTO measured", "RPO target", "RPO measured",
                     "verdict", "note"],
                    [[r["component"], r["recovery_method"], r["rto_target_minutes"], _num(r["rto_minutes"]),
                      r["rpo_target_minutes"], _num(r["rpo_minutes"]), r["verdict"], r["note"]] for r in rows]),
                "Created and deleted": _table(["resource", "deleted"],
                                              [[c, "yes" if c in deleted else "NO"] for c in created]),
                "Earlier drills": _table(["logical date", *[dr.LABELS[c] for c in DR_COMPONENTS]], [
                    [e["logical_date"], *[_verdict_cell(e, dr.LABELS[c]) for c in DR_COMPONENTS]] for e in earlier]),
            }})

    def _created_and_deleted(self, context: Any) -> tuple[list[str], list[str]]:
        created: list[str] = []
        deleted: list[str] = []
        for task_id in self.cleanup_task_ids:
            value = context["ti"].xcom_pull(task_ids=task_id, key=MEASUREMENTS_XCOM_KEY) or {}
            created += value.get("created", [])
            deleted += value.get("deleted", [])
        return created, deleted

    def _left_behind(self, context: Any) -> list[str]:
        token = drill_token(self.token_prefix, context)
        left = []
        rds = self.client("rds")
        try:
            rds.describe_db_instances(DBInstanceIdentifier=token)
            left.append(f"RDS instance {token}")
        except rds.exceptions.DBInstanceNotFoundFault:
            pass
        ecs = self.client("ecs")
        try:
            running = ecs.list_tasks(cluster=self.dr_cluster, startedBy=token, desiredStatus="RUNNING")["taskArns"]
        except ecs.exceptions.ClusterNotFoundException:
            running = []
        left += [f"ECS task {arn}" for arn in running]
        return left

    def _earlier(self, context: Any) -> list[dict[str, Any]]:
        from solemate_maintenance.report_store import ReportStore

        store = ReportStore(bucket=self.reports["bucket"], prefix=self.reports.get("prefix", "reports"),
                            aws_conn_id=self.aws_conn_id, region_name=None)
        try:
            reports = store.reports_before(context["ti"].dag_id, run_end(context), limit=6, log=self.log)
        except Exception as exc:  # the trend is context, not the drill
            self.log.warning("Earlier drills could not be read: %s", trim(scrub(str(exc)), 200))
            return []
        return [{"logical_date": r.logical_date, "components": r.measurements[self.task_id].get("components", [])}
                for r in reports if r.measurements.get(self.task_id)]


def _verdict_finding(row: dict[str, Any]) -> Finding:
    verdict = row["verdict"]
    summary = (f"{verdict}: RTO {_num(row['rto_minutes'])} min (target {row['rto_target_minutes']}), "
               f"RPO {_num(row['rpo_minutes'])} min (target {row['rpo_target_minutes']})"
               + (f"; {row['note']}" if row["note"] else ""))
    check = "dr.verdict." + row["component"].lower().replace(" ", "_")
    if verdict == dr.CANNOT:
        return Finding(check=check, resource=row["component"], status=Status.CRITICAL, severity=Severity.P1,
                       summary=summary)
    if verdict == dr.MISSED:
        return Finding(check=check, resource=row["component"], status=Status.CRITICAL, severity=Severity.P2,
                       summary=f"target missed: {summary}")
    if verdict == dr.NOT_MEASURED:
        return Finding(check=check, resource=row["component"], status=Status.SKIPPED, summary=summary)
    return Finding(check=check, resource=row["component"], status=Status.OK, summary=summary)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _verdict_cell(earlier: dict[str, Any], label: str) -> str:
    row = next((r for r in earlier["components"] if r.get("component") == label), None)
    if not row:
        return "—"
    return f"{row['verdict']} (RTO {_num(row.get('rto_minutes'))}, RPO {_num(row.get('rpo_minutes'))})"


def _table(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"columns": columns, "rows": rows}
