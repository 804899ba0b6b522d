"""What the dashboard shows, read from the reports bucket (the same ReportStore the DAGs write with)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from solemate_maintenance.report import ReportedFinding, RunReport
from solemate_maintenance.report_store import ObjectArchived, ObjectNotReadable, ReportStore

DAG_IDS = ("daily_maintenance", "weekly_backup_verification", "weekly_review", "monthly_review", "dr_drill",
           "dr_failover", "airflow_housekeeping")
SEVERITIES = ("P1", "P2", "P3", "P4")
TREND_RUNS = 12  # weekly restore tests and monthly cost reviews: about three months and a year


@dataclass
class DagStatus:
    dag_id: str
    report: RunReport | None = None
    error: str | None = None

    @property
    def state(self) -> str:
        if self.error:
            return "unreadable"
        if self.report is None:
            return "no report yet"
        if self.report.failed_tasks:
            return "failed"
        return "problems" if self.report.problems() else "passed"

    @property
    def open_by_severity(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for finding in self.report.problems() if self.report else []:
            if finding.severity is not None:
                counts[finding.severity.value] += 1
        return counts

    @property
    def top_findings(self) -> list[ReportedFinding]:
        problems = self.report.problems() if self.report else []
        return sorted(problems, key=lambda f: (f.severity.value if f.severity else "P9", f.check))[:5]


@dataclass
class TrendPoint:
    label: str
    values: dict[str, float | None]


@dataclass
class Dashboard:
    environment: str
    generated_at: datetime
    dags: list[DagStatus]
    restore_trend: list[TrendPoint] = field(default_factory=list)
    restore_targets: dict[str, float] = field(default_factory=dict)
    drill: list[dict[str, Any]] = field(default_factory=list)
    drill_run: RunReport | None = None
    cost_trend: list[TrendPoint] = field(default_factory=list)
    # What could not be read (a missing s3:ListBucket, say): shown, never a blank page or a 500.
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment, "generated_at": self.generated_at.isoformat(),
            "dags": [{"dag_id": d.dag_id, "state": d.state, "error": d.error,
                      "run_id": d.report.run_id if d.report else None,
                      "logical_date": d.report.logical_date if d.report else None,
                      "open_by_severity": d.open_by_severity,
                      "findings": [{"severity": f.severity.value if f.severity else None, "check": f.check,
                                    "resource": f.resource, "summary": f.summary} for f in d.top_findings],
                      "airflow_url": d.report.airflow_url if d.report else None} for d in self.dags],
            "restore_trend": [{"logical_date": p.label, **p.values} for p in self.restore_trend],
            "restore_targets": self.restore_targets,
            "drill": [{str(k): _plain(v) for k, v in row.items()} for row in self.drill],
            "drill_run_id": self.drill_run.run_id if self.drill_run else None,
            "cost_trend": [{"month": p.label, **p.values} for p in self.cost_trend],
            "errors": self.errors,
        }


def _latest(store: ReportStore, dag_id: str) -> DagStatus:
    """A missing report is "no report yet"; one that S3 refuses or that does not parse is an error on
    the page (a permission problem must not look like a DAG that never ran)."""
    key = store.latest_key(dag_id)
    try:
        text = store.read_text(key)
        return DagStatus(dag_id, RunReport.model_validate_json(text) if text is not None else None)
    except ObjectArchived as exc:
        return DagStatus(dag_id, error=str(exc))
    except ObjectNotReadable as exc:
        return DagStatus(dag_id, error=f"S3 refused {exc} (403: no s3:GetObject, or no s3:ListBucket and missing)")
    except Exception as exc:  # one unreadable DAG must not hide the others
        return DagStatus(dag_id, error=f"{store.uri(key)} unreadable ({type(exc).__name__}: {exc})"[:300])


def _number(value: Any) -> float | None:
    """A measurement as the charts can draw it; anything else (a string, a bool, NaN, an integer too
    large for a float) is no point."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _plain(value: Any) -> Any:
    """A report's value as strict JSON can carry it: numbers as the charts read them (odd ones, NaN or a
    400-digit integer, become None), text cut to 200 characters, anything else None."""
    if value is None or isinstance(value, bool | str):
        return value if not isinstance(value, str) else value[:200]
    if isinstance(value, int | float):
        return _number(value)
    return None


def _history(store: ReportStore, board: Dashboard, dag_id: str, now: datetime) -> list[RunReport]:
    try:
        return store.reports_before(dag_id, now, limit=TREND_RUNS)
    except Exception as exc:
        board.errors.append(f"{dag_id} history unreadable ({type(exc).__name__}: {exc})"[:300])
        return []


def collect(store: ReportStore, environment: str, now: datetime) -> Dashboard:
    dags = [_latest(store, dag_id) for dag_id in DAG_IDS]
    board = Dashboard(environment=environment, generated_at=now, dags=dags)
    latest_archived = len(store.archived)  # those are each DAG's own error; the rest are history

    # Oldest first, as the charts read.
    for report in reversed(_history(store, board, "weekly_backup_verification", now)):
        measured = report.measurements.get("restore_validate")
        if measured:
            board.restore_trend.append(TrendPoint((report.logical_date or "")[:10], {
                "rto_minutes": _number(measured.get("rto_minutes")),
                "data_rpo_minutes": _number(measured.get("data_rpo_minutes"))}))
            board.restore_targets = {"rto_minutes": _number(measured.get("rto_target_minutes")),
                                     "data_rpo_minutes": _number(measured.get("rpo_target_minutes"))}

    drill = next((d.report for d in dags if d.dag_id == "dr_drill" and d.report), None)
    scorecard = drill.measurements.get("dr_scorecard") if drill else None
    if drill and isinstance(scorecard, dict):
        board.drill_run = drill
        components = scorecard.get("components")
        board.drill = [row for row in components if isinstance(row, dict)] if isinstance(components, list) else []

    for report in reversed(_history(store, board, "monthly_review", now)):
        measured = report.measurements.get("cost_review")
        if measured and isinstance(measured.get("month"), str):
            total = _number(measured.get("total_usd"))
            board.cost_trend.append(TrendPoint(measured["month"][:7], {"total_usd": total}))
    if archived := store.archived[latest_archived:]:
        # The trends skip them; a person who needs one restores it (or lengthens reports.lifecycle's wait).
        board.errors.append(f"{len(archived)} older report(s) are in Glacier and not in the trends: "
                            + ", ".join(store.uri(key) for key in archived[:3]) + (" …" if len(archived) > 3 else ""))
    return board
