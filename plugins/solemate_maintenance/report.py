"""The run report: every finding of a DAG run, compared with the previous run's report."""

from __future__ import annotations

from collections import Counter
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.notifiers.slack import SEVERITY_EMOJI, Delivery


class Lifecycle(StrEnum):
    NEW = "new"
    ONGOING = "ongoing"
    RESOLVED = "resolved"


class ReportedFinding(Finding):
    task_id: str
    lifecycle: Lifecycle | None = None  # None for ok findings


class RunReport(BaseModel):
    dag_id: str
    run_id: str
    run_type: str
    logical_date: str | None
    data_interval_start: str | None
    data_interval_end: str | None
    environment: str
    task_states: dict[str, str | None]
    findings: list[ReportedFinding]
    resolved: list[ReportedFinding] = Field(default_factory=list)
    previous_run_id: str | None = None
    totals: dict[str, dict[str, int]] = Field(default_factory=dict)
    failed_tasks: list[str] = Field(default_factory=list)
    alert_deliveries: list[Delivery] = Field(default_factory=list)
    report_uri: str = ""

    def problems(self) -> list[ReportedFinding]:
        return [f for f in self.findings if f.status is not Status.OK]

    @property
    def worst_severity(self) -> Severity | None:
        return min((f.severity for f in self.problems() if f.severity), default=None)


def mark_lifecycle(current: list[ReportedFinding], previous: RunReport | None,
                   reporting_tasks: set[str]) -> tuple[list[ReportedFinding], list[ReportedFinding]]:
    """Mark each problem new or ongoing; list the previous problems that are gone as resolved.

    A previous problem counts as resolved only when the task that raised it reported this time: a
    check that crashed proves nothing about whether the problem went away.
    """
    before = {f.key: f for f in previous.problems()} if previous else {}
    now_problem_keys = {f.key for f in current if f.status is not Status.OK}
    marked = [
        f.model_copy(update={"lifecycle": None if f.status is Status.OK
                             else Lifecycle.ONGOING if f.key in before else Lifecycle.NEW})
        for f in current
    ]
    resolved = [
        f.model_copy(update={"lifecycle": Lifecycle.RESOLVED})
        for key, f in before.items()
        if key not in now_problem_keys and f.task_id in reporting_tasks
    ]
    return marked, resolved


def totals(findings: list[ReportedFinding], resolved: list[ReportedFinding]) -> dict[str, dict[str, int]]:
    problems = [f for f in findings if f.status is not Status.OK]
    status = Counter(f.status.value for f in findings)
    severity = Counter(f.severity.value for f in problems if f.severity)
    lifecycle = Counter(f.lifecycle.value for f in problems if f.lifecycle)
    lifecycle[Lifecycle.RESOLVED.value] = len(resolved)
    return {
        "status": {s.value: status.get(s.value, 0) for s in Status},
        "severity": {s.value: severity.get(s.value, 0) for s in Severity},
        "lifecycle": {s.value: lifecycle.get(s.value, 0) for s in Lifecycle},
    }


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: RunReport) -> str:
    lines = [
        f"# {report.dag_id} — {report.environment}",
        "",
        "| | |", "|---|---|",
        f"| Run | `{report.run_id}` ({report.run_type}) |",
        f"| Logical date | {report.logical_date} |",
        f"| Data interval | {report.data_interval_start} → {report.data_interval_end} |",
        f"| Previous run compared | {report.previous_run_id or '—'} |",
        f"| Failed tasks | {', '.join(report.failed_tasks) or 'none'} |",
        "",
        "## Totals",
        "",
        "| status | " + " | ".join(report.totals["status"]) + " |",
        "|---" * (len(report.totals["status"]) + 1) + "|",
        "| count | " + " | ".join(str(v) for v in report.totals["status"].values()) + " |",
        "",
        "| severity | " + " | ".join(report.totals["severity"]) + " |",
        "|---" * (len(report.totals["severity"]) + 1) + "|",
        "| count | " + " | ".join(str(v) for v in report.totals["severity"].values()) + " |",
        "",
        "## Problems",
        "",
    ]
    problems = sorted(report.problems(), key=lambda f: (f.severity or "P9", f.check))
    if problems:
        lines += ["| severity | status | since | check | resource | summary |", "|---|---|---|---|---|---|"]
        lines += [f"| {f.severity} | {f.status} | {f.lifecycle} | {f.check} | {_cell(f.resource)} | "
                  f"{_cell(f.summary)} |" for f in problems]
    else:
        lines.append("None.")
    if report.resolved:
        lines += ["", "## Resolved since the previous run", "", "| check | resource | was |", "|---|---|---|"]
        lines += [f"| {f.check} | {_cell(f.resource)} | {f.severity} {_cell(f.summary)} |" for f in report.resolved]
    lines += ["", "## Passed checks", ""]
    lines += [f"- {f.check} `{f.resource}`: {f.summary}" for f in report.findings if f.status is Status.OK]
    if report.alert_deliveries:
        lines += ["", "## Alert deliveries", "",
                  "| kind | task | channel | delivered | error |", "|---|---|---|---|---|"]
        lines += [f"| {d.kind} | {d.task_id or '—'} | {d.channel} | {'yes' if d.ok else 'NO'} | "
                  f"{_cell(d.error or '')} |" for d in report.alert_deliveries]
    return "\n".join(lines) + "\n"


def digest_message(report: RunReport, colors: dict[str, str], ok_color: str = "#2eb886") -> tuple[
        str, list[dict]]:
    """One Slack digest per run: counts, what is new, what was resolved, a link to the report."""
    worst = report.worst_severity
    verdict = "failed" if report.failed_tasks else "passed"
    title = f"{SEVERITY_EMOJI[worst.value if worst else None]} {report.environment}: {report.dag_id} {verdict}"
    status = report.totals["status"]
    severity = ", ".join(f"{k}: {v}" for k, v in report.totals["severity"].items() if v) or "none"
    new = [f for f in report.problems() if f.lifecycle is Lifecycle.NEW]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Run*\n{report.run_id} ({report.run_type})"},
            {"type": "mrkdwn", "text": f"*Findings*\nok {status['ok']}, warning {status['warning']}, "
                                       f"critical {status['critical']}"},
            {"type": "mrkdwn", "text": f"*By severity*\n{severity}"},
            {"type": "mrkdwn", "text": f"*Failed tasks*\n{', '.join(report.failed_tasks) or 'none'}"},
        ]},
    ]
    for heading, items in (("New", new), ("Resolved", report.resolved)):
        if items:
            text = "\n".join(f"• *{f.severity}* `{f.resource}` {f.summary}" for f in items[:10])
            more = f"\n… and {len(items) - 10} more" if len(items) > 10 else ""
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*{heading}*\n{text}{more}"}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Report: {report.report_uri}"}]})
    color = colors[worst.value] if worst else ok_color
    return title, [{"color": color, "fallback": title, "blocks": blocks}]
