"""Disaster recovery: the drill's scorecard against the guide's table, and the failover's gate.

Pure logic, no AWS: the operators measure, this judges. A component's verdict is one of

* ``met``: measured RTO and RPO within the targets;
* ``missed``: it can fail over, but a measured value is over its target (P2);
* ``cannot fail over``: something it needs in the DR region is missing (P1);
* ``not measured``: not selected for this drill, or its measurement did not run.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from solemate_maintenance.config import DR_COMPONENTS, DrTarget

MET, MISSED, CANNOT, NOT_MEASURED = "met", "missed", "cannot fail over", "not measured"
LABELS = {"database": "Database", "application": "Application", "static_assets": "Static assets",
          "complete_system": "Complete system"}


@dataclass(frozen=True)
class ComponentResult:
    """What the drill measured for one component (minutes; None when not measured)."""

    component: str
    rto_minutes: float | None = None
    rpo_minutes: float | None = None
    can_fail_over: bool | None = None
    note: str = ""

    def verdict(self, target: DrTarget) -> str:
        if self.can_fail_over is False:
            return CANNOT
        if self.rto_minutes is None and self.rpo_minutes is None:
            return NOT_MEASURED
        # Met means both were measured within target: an RTO that was never reached (a restore that
        # did not validate) is a miss, not a pass on the RPO alone.
        if self.rto_minutes is None or self.rpo_minutes is None:
            return MISSED
        if self.rto_minutes > target.rto_minutes or self.rpo_minutes > target.rpo_minutes:
            return MISSED
        return MET


def estimate_complete_system(parts: dict[str, ComponentResult], dns_ttl_seconds: int | None,
                             ready: bool | None) -> ComponentResult:
    """The whole region's RTO from the measured parts: the database restore, then the application
    start (it needs the database), then clients following DNS (the record's TTL). Static assets are
    served from the live replica, so they add nothing. RPO: the worst of the data the system loses."""
    database, application = parts.get("database"), parts.get("application")
    if database is None or application is None:
        # Not drilled this time: no estimate, and no verdict beyond what the readiness checks found.
        return ComponentResult("complete_system", None, None, False if ready is False else None,
                               "select the database and application components to estimate it")
    rto_parts = [database.rto_minutes if database else None, application.rto_minutes if application else None]
    rto = None if any(v is None for v in rto_parts) else round(sum(rto_parts) + (dns_ttl_seconds or 0) / 60, 2)
    rpos = [p.rpo_minutes for p in (database, application) if p is not None and p.rpo_minutes is not None]
    blocked = [LABELS[name] for name, part in parts.items() if part.can_fail_over is False]
    can = ready if not blocked else False
    note = "estimated: database RTO + application RTO + DNS TTL" if rto is not None else \
        "estimate needs the database and application RTOs"
    if blocked:
        note += f"; blocked by: {', '.join(blocked)}"
    return ComponentResult("complete_system", rto, max(rpos) if rpos else None, can, note)


def scorecard_rows(results: dict[str, ComponentResult], targets: dict[str, DrTarget]) -> list[dict[str, Any]]:
    """One row per component of the guide's table, in the guide's order."""
    rows = []
    for name in DR_COMPONENTS:
        target = targets[name]
        result = results.get(name, ComponentResult(name))
        rows.append({"component": LABELS[name], "recovery_method": target.recovery_method,
                     "rto_target_minutes": target.rto_minutes, "rto_minutes": result.rto_minutes,
                     "rpo_target_minutes": target.rpo_minutes, "rpo_minutes": result.rpo_minutes,
                     "verdict": result.verdict(target), "note": result.note})
    return rows


def shown(value: Any, limit: int = 40) -> str:
    """A value as a person must see it to tell it apart: quoted, with anything outside printable ASCII
    escaped (a Cyrillic 'о' in 'prоduction' shows as \\u043e, not as an 'o')."""
    return ascii(str(value)[:limit])


def unknown_params(conf: Any, known: Iterable[str]) -> list[str]:
    """A problem line per key of the run's conf that the DAG has no param for (a misspelt key would
    otherwise be ignored and the defaults used)."""
    if not isinstance(conf, dict):
        return []
    unknown = sorted(str(key) for key in conf if key not in set(known))
    if not unknown:
        return []
    return [f"unknown param{'s' if len(unknown) > 1 else ''} {', '.join(shown(k) for k in unknown)} (known: "
            f"{', '.join(sorted(known))}): a misspelt key is refused, not ignored"]


def declared_params(operator: Any, context: Any) -> list[str]:
    """The params the DAG declares. Not the run's ``params``: Airflow copies every key of the run's conf
    into those (``dag_run_conf_overrides_params``), a misspelt one included."""
    dag = operator.dag if getattr(operator, "has_dag", lambda: False)() else context.get("dag")
    declared = getattr(dag, "params", None)
    return list(declared.keys()) if declared is not None else list((context.get("params") or {}).keys())


def blank_reason(reason: Any) -> list[str]:
    # Invisible characters (a zero-width space) are no reason either.
    visible = "".join(ch for ch in reason if unicodedata.category(ch)[0] not in ("C", "Z")) \
        if isinstance(reason, str) else ""
    if visible:
        return []
    return ["param 'reason' must say why (the incident, who decided), not be blank"]


def failover_refusal(*, confirm: Any, reason: Any, environment: str, allowed: bool,
                     unknown: Iterable[str] = ()) -> str | None:
    """Why this failover run must not start (one line for the person who triggered it), or None."""
    problems = list(unknown)
    if not allowed:
        problems.append("disaster_recovery.allow_failover is false in the platform config (a reviewed change "
                        "must set it to true first)")
    if not isinstance(confirm, str) or confirm.strip() != environment:
        problems.append(f"param 'confirm' must be the environment name {environment!r} (got {shown(confirm)})")
    problems += blank_reason(reason)
    if not problems:
        return None
    return "Failover refused, nothing was changed: " + "; ".join(problems)


def drill_refusal(*, conf: Any, known: Iterable[str], reason: Any) -> str | None:
    """Why this drill run must not start, or None: it restores a database and starts tasks, so a
    misspelt key must not silently become a full drill with the defaults."""
    problems = unknown_params(conf, known) + blank_reason(reason)
    return "Drill refused, nothing was started: " + "; ".join(problems) if problems else None
