"""The run report: every finding of a DAG run, compared with the previous run's report."""

from __future__ import annotations

from collections import Counter
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.notifiers.delivery import Delivery


class Lifecycle(StrEnum):
    NEW = "new"
    ONGOING = "ongoing"
    RESOLVED = "resolved"
    # The previous run could not be compared with (its report is missing or still being written).
    UNKNOWN = "unknown"


class ReportedFinding(Finding):
    task_id: str
    lifecycle: Lifecycle | None = None  # None for ok and skipped findings
    # An earlier run for the same logical date already reported (and alerted) this problem.
    already_alerted_by: str | None = None
    # The watch already announced this problem as an incident that started then (ISO time).
    incident_since: str | None = None


class RunReport(BaseModel):
    dag_id: str
    run_id: str
    run_type: str
    logical_date: str | None
    data_interval_start: str | None
    data_interval_end: str | None
    environment: str
    facts: dict[str, Any] = Field(default_factory=dict)
    checked_label: str = ""
    windows: dict[str, dict[str, str]] = Field(default_factory=dict)
    windows_label: str = ""
    clear_number: int = 0
    task_states: dict[str, str | None]
    findings: list[ReportedFinding]
    resolved: list[ReportedFinding] = Field(default_factory=list)
    previous_run_id: str | None = None
    # status: compared | first_run | impossible; reason when impossible.
    comparison: dict[str, Any] = Field(default_factory=dict)
    earlier_runs_for_date: list[str] = Field(default_factory=list)
    totals: dict[str, dict[str, int]] = Field(default_factory=dict)
    failed_tasks: list[str] = Field(default_factory=list)
    common_causes: list[dict[str, Any]] = Field(default_factory=list)
    alert_deliveries: list[Delivery] = Field(default_factory=list)
    report_uri: str = ""
    report_url: str = ""
    by_date_uri: str = ""
    airflow_url: str = ""
    write_error: str | None = None
    refreshed_after_rerun: bool = False
    # What the report was built from (task states and findings); a later change means it is stale.
    fingerprint: str = ""
    # Headline numbers a task measured (e.g. the restore test's RTO and RPO), by task id.
    measurements: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # The watch's incidents during the report's window (opened, resolved, still open), and how the
    # record was read ("read", "none": no record yet, or why it could not be).
    incidents: list[dict[str, Any]] = Field(default_factory=list)
    incident_record: str = ""

    def problems(self) -> list[ReportedFinding]:
        return [f for f in self.findings if f.is_problem]

    def skipped(self) -> list[ReportedFinding]:
        return [f for f in self.findings if f.status is Status.SKIPPED]

    def already_failing(self, key: str, severity: Severity) -> bool:
        """This report had the problem `key` failing at `severity` or worse (P2 then P1 is news)."""
        return any(f.key == key and f.is_failing and f.severity is not None and f.severity <= severity
                   for f in self.findings)

    @property
    def worst_severity(self) -> Severity | None:
        return min((f.severity for f in self.problems() if f.severity), default=None)


def mark_lifecycle(current: list[ReportedFinding], previous: RunReport | None, reporting_tasks: set[str], *,
                   comparable: bool = True) -> tuple[list[ReportedFinding], list[ReportedFinding]]:
    """Mark each problem new or ongoing; list the previous problems that are gone as resolved.

    A previous problem counts as resolved only when the task that raised it reported this time: a
    check that crashed proves nothing about whether the problem went away. When the previous run
    exists but its report cannot be read, nothing is new or resolved: every problem is `unknown`.
    """
    if not comparable:
        return [f.model_copy(update={"lifecycle": Lifecycle.UNKNOWN if f.is_problem else None})
                for f in current], []
    before = {f.key: f for f in previous.problems()} if previous else {}
    now_problem_keys = {f.key for f in current if f.is_problem}
    marked = [
        f.model_copy(update={"lifecycle": None if not f.is_problem
                             else Lifecycle.ONGOING if f.key in before else Lifecycle.NEW})
        for f in current
    ]
    resolved = [
        f.model_copy(update={"lifecycle": Lifecycle.RESOLVED, "already_alerted_by": None})
        for key, f in before.items()
        if key not in now_problem_keys and f.task_id in reporting_tasks
    ]
    return marked, resolved


def mark_already_alerted(findings: list[ReportedFinding], earlier: RunReport | None) -> list[ReportedFinding]:
    """Findings that an earlier run for the same logical date already reported as failing, at the same
    severity or worse (an escalation from P2 to P1 is news, not a repeat)."""
    if earlier is None:
        return findings
    first_alerted_by = {f.key: f.already_alerted_by or earlier.run_id for f in earlier.findings}
    return [f.model_copy(update={"already_alerted_by": first_alerted_by[f.key]})
            if f.is_failing and f.severity is not None and earlier.already_failing(f.key, f.severity)
            else f.model_copy(update={"already_alerted_by": None}) for f in findings]


def mark_known_incidents(findings: list[ReportedFinding], incidents: list[Any]) -> list[ReportedFinding]:
    """A new problem the watch already announced is "ongoing since 14:05", not new."""
    from solemate_maintenance.incidents import incident_for

    marked = []
    for finding in findings:
        incident = incident_for(incidents, finding.check, finding.resource) if finding.is_problem else None
        marked.append(finding.model_copy(update={"incident_since": incident.started_at.isoformat()})
                      if incident is not None else finding)
    return marked


def totals(findings: list[ReportedFinding], resolved: list[ReportedFinding]) -> dict[str, dict[str, int]]:
    problems = [f for f in findings if f.is_problem]
    status = Counter(f.status.value for f in findings)
    severity = Counter(f.severity.value for f in problems if f.severity)
    lifecycle = Counter(f.lifecycle.value for f in problems if f.lifecycle)
    lifecycle[Lifecycle.RESOLVED.value] = len(resolved)
    return {
        "status": {s.value: status.get(s.value, 0) for s in Status},
        "severity": {s.value: severity.get(s.value, 0) for s in Severity},
        "lifecycle": {s.value: lifecycle.get(s.value, 0) for s in Lifecycle},
    }


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _count_table(name: str, counts: dict[str, int]) -> list[str]:
    return [f"| {name} | " + " | ".join(counts) + " |", "|---" * (len(counts) + 1) + "|",
            "| count | " + " | ".join(str(v) for v in counts.values()) + " |", ""]


def render_markdown(report: RunReport) -> str:
    comparison = report.comparison or {}
    compared = {"compared": f"with `{report.previous_run_id}`", "first_run": "no previous run",
                "impossible": f"impossible: {comparison.get('reason')}"}.get(comparison.get("status"), "—")
    lines = [
        f"# {report.dag_id} — {report.environment} — {report.checked_label}",
        "",
        "| | |", "|---|---|",
        f"| Checked date | {report.checked_label} ({report.facts.get('logical_date_source', 'logical_date')}) |",
        f"| Windows | {_cell(report.windows_label)} |",
        f"| Run | `{report.run_id}` ({report.run_type}) |",
        f"| Run kind | {_cell(report.facts.get('run_kind', 'live'))} |",
        f"| Paging | {_cell(report.facts.get('paging', ''))} |",
        f"| Compared | {_cell(compared)} |",
        f"| Earlier runs for this date | {', '.join(report.earlier_runs_for_date) or 'none'} |",
        f"| Failed tasks | {', '.join(report.failed_tasks) or 'none'} |",
    ]
    if report.refreshed_after_rerun:
        lines.append("| Note | rebuilt after a re-run of failed tasks; describes the run's final state |")
    if report.write_error:
        lines.append(f"| Write error | {_cell(report.write_error)} |")
    for task_id, measured in report.measurements.items():
        lines += ["", f"## Measured by {task_id}", ""]
        if measured.get("headline"):
            lines += [f"**{measured['headline']}**", ""]
        lines += ["| measure | value |", "|---|---|"]
        lines += [f"| {key} | {_cell(_shown(value))} |" for key, value in measured.items()
                  if key not in ("headline", "trend", "tables", "components", "charts")]
        for title, table in (measured.get("tables") or {}).items():
            lines += ["", f"{title}:", "", "| " + " | ".join(table["columns"]) + " |",
                      "|" + "---|" * len(table["columns"])]
            lines += ["| " + " | ".join(_cell(_shown(v)) for v in row) + " |" for row in table["rows"]] or \
                ["| " + " | ".join(["none"] + [""] * (len(table["columns"]) - 1)) + " |"]
        if measured.get("charts"):
            lines += ["", "Charts:", ""]
            lines += [f"- [{_cell(c['title'])}]({c['url']}) (`{c['uri']}`)" for c in measured["charts"]]
        if measured.get("trend"):
            lines += ["", "Earlier runs:", "", "| logical date | RTO (min) | data RPO (min) |", "|---|---|---|"]
            lines += [f"| {t.get('logical_date')} | {_shown(t.get('rto_minutes'))} | "
                      f"{_shown(t.get('data_rpo_minutes'))} |" for t in measured["trend"]]
    lines += ["", "## Totals", "", *_count_table("status", report.totals["status"]),
              *_count_table("severity", report.totals["severity"]), "## Problems", ""]
    problems = sorted(report.problems(), key=lambda f: (f.severity or "P9", f.check))
    if problems:
        lines += ["| severity | status | since | check | resource | summary |", "|---|---|---|---|---|---|"]
        lines += [f"| {f.severity} | {f.status} | {f.lifecycle}"
                  f"{' (already alerted by ' + f.already_alerted_by + ')' if f.already_alerted_by else ''} | "
                  f"{f.check} | {_cell(f.resource)} | {_cell(f.summary)} |" for f in problems]
    else:
        lines.append("None.")
    if report.common_causes:
        lines += ["", "## Common causes", "", "| cause | tasks | what to check |", "|---|---|---|"]
        lines += [f"| {_cell(c['title'])} | {', '.join(c['tasks'])} | {_cell(c['hint'])} |"
                  for c in report.common_causes]
    if report.resolved:
        lines += ["", "## Resolved since the previous run", "", "| check | resource | was |", "|---|---|---|"]
        lines += [f"| {f.check} | {_cell(f.resource)} | {f.severity} {_cell(f.summary)} |" for f in report.resolved]
    if report.skipped():
        lines += ["", "## Skipped", "", "| check | resource | reason |", "|---|---|---|"]
        lines += [f"| {f.check} | {_cell(f.resource)} | {_cell(f.summary)} |" for f in report.skipped()]
    lines += ["", "## Passed checks", ""]
    lines += [f"- {f.check} `{f.resource}`: {f.summary}" for f in report.findings if f.status is Status.OK]
    if report.alert_deliveries:
        lines += ["", "## Alert deliveries", "",
                  "| kind | task | channel | delivered | error |", "|---|---|---|---|---|"]
        lines += [f"| {d.kind} | {d.task_id or '—'} | {d.channel} | "
                  f"{'yes' if d.ok else 'NO' if d.outcome == 'failed' else d.outcome.upper()} | "
                  f"{_cell(d.error or '')} |" for d in report.alert_deliveries]
    return "\n".join(lines) + "\n"
