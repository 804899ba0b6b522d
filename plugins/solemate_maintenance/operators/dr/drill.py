"""The DR drill's shared parts: the run's token, the component a task measures, the gate that
refuses a bad conf before anything starts, and the RPO finding against the guide's table."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator

from solemate_maintenance import dr, restore
from solemate_maintenance.config import DR_COMPONENTS, DrTarget
from solemate_maintenance.findings import Finding, Measurement, RunRefused, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.window import run_end

TAG_TOKEN = "solemate:drill"
# Objects listed per asset bucket to find the newest (a listing is by key; a million-object bucket
# would take longer than the drill).
SCAN_LIMIT = 10_000


def drill_token(prefix: str, context: Any) -> str:
    """The name of everything one drill run creates: the restored instance and the task's startedBy."""
    return restore.instance_id(prefix, context["ti"].dag_id, run_end(context))


class DrDrillGateOperator(BaseOperator):
    """Step 0 of a drill: refuse, before any AWS call, a run whose conf has a key the DAG does not know
    (a misspelt ``components`` would otherwise start a full drill with a real restore) or a blank
    reason. A setup with no teardown: when it fails nothing downstream starts, not even the report."""

    ui_color = "#fbe3e3"

    def __init__(self, **kwargs: Any) -> None:
        kwargs["retries"] = 0
        super().__init__(**kwargs)

    def execute(self, context: Any) -> dict[str, Any]:
        params = context.get("params") or {}
        refusal = dr.drill_refusal(conf=getattr(context.get("dag_run"), "conf", None),
                                   known=dr.declared_params(self, context), reason=params.get("reason"))
        if refusal:
            raise RunRefused(refusal)
        return {"components": selected_components(context), "reason": trim(scrub(str(params["reason"]).strip()), 500)}


def selected_components(context: Any) -> list[str]:
    chosen = (context.get("params") or {}).get("components")
    return list(DR_COMPONENTS) if chosen is None else [c for c in chosen if c in DR_COMPONENTS]


def _minutes(seconds: float) -> float:
    return round(seconds / 60, 2)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _error(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    code = (response.get("Error") or {}).get("Code") if isinstance(response, dict) else None
    return trim(scrub(f"{code or type(exc).__name__}: {exc}"), 300)


class _DrClients:
    """What the DR tasks share; their region (``client()``'s default) is the templated ``region_name``."""

    def push_component(self, context: Any, component: str, **measured: Any) -> None:
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={"component": component, **measured})

    def not_selected(self, context: Any, component: str) -> Finding | None:
        if component in selected_components(context):
            return None
        return Finding(check=f"dr.{component}", resource=component, status=Status.SKIPPED,
                       summary="not selected for this drill (param 'components')")


class _DrCheck(_DrClients, MaintenanceCheckOperator):
    """A drill check: its targets and the region it measures (templated: ``{{ params.region }}``)."""

    component: str

    def __init__(self, *, target: DrTarget, primary_region: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.primary_region = primary_region

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        skipped = self.not_selected(context, self.component)
        if skipped is not None:
            yield skipped
            return
        yield from self.measure(context)

    def measure(self, context: Any) -> Iterable[Finding]:
        raise NotImplementedError

    def rpo_finding(self, check: str, resource: str, rpo: float, what: str) -> Finding:
        return rpo_finding(self.target, check, resource, rpo, what)


def rpo_finding(target: DrTarget, check: str, resource: str, rpo: float, what: str) -> Finding:
    limit = target.rpo_minutes
    metrics = {"rpo_minutes": Measurement(value=rpo, unit="min", critical=limit, bad_when="above")}
    if rpo > limit:
        return Finding(check=check, resource=resource, status=Status.CRITICAL, severity=Severity.P2,
                       summary=f"RPO {rpo:.1f} min ({what}), target {limit} min: a failover now would lose "
                               f"{rpo:.0f} min of data", metrics=metrics)
    return Finding(check=check, resource=resource, status=Status.OK,
                   summary=f"RPO {rpo:.1f} min ({what}), target {limit} min", metrics=metrics)
