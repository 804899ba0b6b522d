"""The monthly stakeholder summary: one page a person outside operations reads in two minutes.

Incidents by severity (from the month's daily reports), KPI attainment, backups and restore tests,
the DR drill, cost, and the security audit, as Markdown and HTML next to the report, e-mailed to the
configured list once per month (a retry or a re-run does not send it again unless it changed).
"""

from __future__ import annotations

import hashlib
import html
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from solemate_maintenance.config import Alerts, MonthlySummary
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.report import RunReport
from solemate_maintenance.report_store import ReportStore
from solemate_maintenance.window import TimeWindow, month_reviewed

SEVERITIES = ["P1", "P2", "P3", "P4"]


class StakeholderSummaryOperator(MaintenanceCheckOperator):
    """Build the month's summary from the other DAGs' stored reports and this run's reviews.

    :param summary: the ``monthly_summary`` section (recipients, title).
    :param alerts: the ``alerts`` section (the SMTP connection).
    :param environment: shown in the title.
    :param bucket: reports bucket; :param reports_prefix: the reports' key prefix.
    :param review_tasks: this DAG's tasks whose measurements the summary quotes, by role
        (``performance``, ``cost``, ``audit``, ``backups``, ``thresholds``).
    :param incident_key: the incident record's key in the bucket (MTTA and MTTR per severity); None: none.
    :param daily_dag_id / backup_dag_id / drill_dag_id: whose reports tell the month's story.
    """

    template_fields: Sequence[str] = (*MaintenanceCheckOperator.template_fields, "bucket")

    def __init__(self, *, summary: MonthlySummary, alerts: Alerts, environment: str, bucket: str,
                 reports_prefix: str, review_tasks: dict[str, str], incident_key: str | None = None,
                 daily_dag_id: str = "daily_maintenance",
                 backup_dag_id: str = "weekly_backup_verification", drill_dag_id: str = "dr_drill",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.summary = summary
        self.alerts = alerts
        self.environment = environment
        self.bucket = bucket
        self.reports_prefix = reports_prefix
        self.review_tasks = review_tasks
        self.incident_key = incident_key
        self.daily_dag_id, self.backup_dag_id, self.drill_dag_id = daily_dag_id, backup_dag_id, drill_dag_id

    def checked_window(self, context: Any) -> TimeWindow:
        return month_reviewed(context)

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        month = self.checked_window(context)
        label = month.start.strftime("%B %Y")
        store = self.report_store(self.bucket, self.reports_prefix)
        measured = {role: context["ti"].xcom_pull(task_ids=task_id, key=MEASUREMENTS_XCOM_KEY) or {}
                    for role, task_id in self.review_tasks.items()}
        sections = [
            ("Incidents", self._incidents(store, month)),
            ("Incident response (MTTA / MTTR)", self._response(store, month)),
            ("Service levels (KPIs)", _kpis(measured.get("performance", {}))),
            ("Backups and restore tests", self._restore_tests(store, month)),
            ("Backup strategy", _strategy(measured.get("backups", {}))),
            ("Monitoring thresholds", _thresholds(measured.get("thresholds", {}))),
            ("Disaster recovery drill", self._drill(store, month)),
            ("Cost", _cost(measured.get("cost", {}))),
            ("Security audit", [[measured.get("audit", {}).get("headline", "not measured this month")]]),
        ]
        title = f"{self.summary.title} — {label} ({self.environment})"
        markdown = _markdown(title, sections)
        body = _html(title, sections)
        dag_id = context["ti"].dag_id
        # Filed by the month reviewed, not the run's date: a manual re-review of the month finds the same files
        # and the same sent-marker (and does not mail the stakeholders again).
        keys = {name: self._month_key(store, dag_id, month, name) for name in ("summary.md", "summary.html")}
        store.write(keys["summary.md"], markdown)
        store.write(keys["summary.html"], body)
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": f"Stakeholder summary for {label}: {store.uri(keys['summary.html'])}",
            "summary_uri": store.uri(keys["summary.md"]), "summary_url": store.browse_url(keys["summary.html"])})
        yield from self._send(store, dag_id, month, title, body, context)

    def _send(self, store: ReportStore, dag_id: str, month: TimeWindow, title: str, body: str,
              context: Any) -> Iterable[Finding]:
        from solemate_maintenance.notifiers.delivery import send_email

        recipients = self.summary.recipients
        resource = f"summary {month.start:%Y-%m}"
        if not recipients:
            yield Finding(check="summary.email", resource=resource, status=Status.SKIPPED,
                          summary="no recipients configured (monthly_summary.recipients): summary stored, not sent")
            return
        digest = hashlib.sha256(body.encode()).hexdigest()
        sent_key = self._month_key(store, dag_id, month, "summary-sent.json")
        sent = store.read_json(sent_key)
        if sent and sent.get("sha256") == digest and sent.get("to") == recipients:
            yield Finding(check="summary.email", resource=resource, status=Status.OK,
                          summary=f"already sent to {len(recipients)} recipient(s) at {sent['at']}; unchanged")
            return
        delivery = send_email(kind="summary", to=recipients, subject=title, html=body, alerts=self.alerts,
                              context=context)
        if not delivery.ok:
            yield Finding(check="summary.email", resource=resource, status=Status.WARNING, severity=Severity.P3,
                          summary=f"summary not e-mailed ({delivery.error}); it is in the reports bucket")
            return
        from datetime import UTC, datetime

        store.write(sent_key, json.dumps({"sha256": digest, "to": recipients, "at": datetime.now(UTC).isoformat()}))
        yield Finding(check="summary.email", resource=resource, status=Status.OK,
                      summary=f"sent to {', '.join(recipients)}")

    @staticmethod
    def _month_key(store: ReportStore, dag_id: str, month: TimeWindow, name: str) -> str:
        return store.key(dag_id, "by-month", month.start.strftime("%Y-%m"), name)

    def _reports(self, store: ReportStore, dag_id: str, month: TimeWindow) -> list[RunReport]:
        return store.reports_between(dag_id, month.start, month.end, log=self.log)

    def _incidents(self, store: ReportStore, month: TimeWindow) -> list[list[Any]]:
        reports = self._reports(store, self.daily_dag_id, month)
        if not reports:
            return [["no daily report stored for this month"]]
        new = Counter(f.severity.value for r in reports for f in r.findings
                      if f.lifecycle == "new" and f.severity is not None)
        worst_days = Counter(r.worst_severity.value for r in reports if r.worst_severity is not None)
        return [["daily runs reported", len(reports)],
                ["new problems by severity", ", ".join(f"{s}: {new.get(s, 0)}" for s in SEVERITIES)],
                ["days whose worst finding was P1 / P2", f"{worst_days.get('P1', 0)} / {worst_days.get('P2', 0)}"]]

    def _response(self, store: ReportStore, month: TimeWindow) -> list[list[Any]]:
        """Mean time to acknowledge and to resolve, per severity, of the incidents that began in the month."""
        from solemate_maintenance.incidents import IncidentRecord, response_times

        if not self.incident_key:
            return [["no incident record configured"]]
        try:
            text = store.read_text(self.incident_key)
            record = IncidentRecord.model_validate_json(text) if text else None
        except Exception as exc:  # the rest of the summary must still go out
            return [[f"incident record unreadable ({type(exc).__name__})"]]
        if record is None:
            return [["no incident record yet"]]
        rows = [[severity, stats["incidents"], f"{stats['acknowledged']} acknowledged", _minutes(stats["mtta_minutes"]),
                 f"{stats['resolved']} resolved", _minutes(stats["mttr_minutes"])]
                for severity, stats in response_times(record, month.start, month.end).items()]
        if not rows:
            return [["no incident began this month (the record keeps resolved incidents watch.keep_resolved_days)"]]
        return [["severity", "incidents", "acknowledged", "MTTA", "resolved", "MTTR"], *rows]

    def _restore_tests(self, store: ReportStore, month: TimeWindow) -> list[list[Any]]:
        rows = []
        for report in self._reports(store, self.backup_dag_id, month):
            restore = report.measurements.get("restore_validate", {})
            rows.append([report.checked_label, restore.get("validation", "not run"),
                         _minutes(restore.get("rto_minutes")), _minutes(restore.get("data_rpo_minutes")),
                         "failed: " + ", ".join(report.failed_tasks) if report.failed_tasks else "all checks passed"])
        return rows or [["no backup verification stored for this month"]]

    def _drill(self, store: ReportStore, month: TimeWindow) -> list[list[Any]]:
        drills = self._reports(store, self.drill_dag_id, month)
        if not drills:
            return [["no DR drill stored for this month"]]
        scorecard = drills[-1].measurements.get("dr_scorecard", {})
        return [[drills[-1].checked_label, scorecard.get("headline", "no scorecard")]]


def _kpis(performance: dict[str, Any]) -> list[list[Any]]:
    kpis = performance.get("kpis") or {}
    return [[k["name"], k["value"], k["target"], "met" if k["met"] else "MISSED",
             f"{len(k['days_missed'])} of {k['days']} days missed"] for k in kpis.values()] or [["not measured"]]


def _cost(cost: dict[str, Any]) -> list[list[Any]]:
    """The closed month's figures; not the forecast, which changes daily and would make every re-run a
    different summary (and a second e-mail)."""
    if "total_usd" not in cost:
        return [["not measured"]]
    month = cost.get("month", "")
    previous = cost.get("previous_total_usd") or 0
    change = f"{100 * (cost['total_usd'] - previous) / previous:+.0f} % on the month before" if previous else ""
    return [["total", f"${cost['total_usd']:,.2f}", change],
            ["anomalies", len(cost.get("tables", {}).get("Cost anomalies", {}).get("rows", [])), month]]


def _strategy(backups: dict[str, Any]) -> list[list[Any]]:
    if "backup_jobs" not in backups:
        return [["not measured"]]
    vaults = ", ".join(f"{name}: {'—' if gb is None else f'{gb} GB'}" for name, gb in backups["vault_gb"].items())
    worst = backups.get("worst_recovery_point_age_hours")
    return [["restore tests", backups["restore_tests"], f"{backups['restore_tests_missing_target']} missed the RTO "
             f"{backups['rto_target_minutes']} min / RPO {backups['rpo_target_minutes']} min target"],
            ["backup jobs", backups["backup_jobs"], f"{backups['backup_jobs_failed']} failed; known for "
             f"{backups.get('jobs_coverage', 'the whole month')}"],
            ["newest recovery point, worst age", "—" if worst is None else f"{worst} h",
             backups.get("worst_recovery_point_resource") or ""],
            ["storage by vault", vaults, ""]]


def _thresholds(thresholds: dict[str, Any]) -> list[list[Any]]:
    if "alarms" not in thresholds:
        return [["not measured"]]
    return [[f"{thresholds['alarms']} alarms and {thresholds['check_thresholds']} check thresholds reviewed: "
             f"{thresholds['never_fired']} alarm(s) never fired, {thresholds['flapping']} flapped, "
             f"{thresholds['suggestions']} suggestion(s) in the monthly report (nothing was changed)"]]


def _minutes(value: Any) -> str:
    return "—" if value is None else f"{value:.1f} min"


def _markdown(title: str, sections: list[tuple[str, list[list[Any]]]]) -> str:
    lines = [f"# {title}", ""]
    for heading, rows in sections:
        lines += [f"## {heading}", ""]
        if rows and len(rows[0]) == 1:
            lines += [f"- {row[0]}" for row in rows]
        else:
            width = max(len(r) for r in rows)
            lines += ["| " + " | ".join([""] * width) + " |", "|" + "---|" * width]
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


def _html(title: str, sections: list[tuple[str, list[list[Any]]]]) -> str:
    parts = [f"<html><body style=\"font-family: sans-serif\"><h1>{html.escape(title)}</h1>"]
    for heading, rows in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><table border=\"1\" cellpadding=\"4\" "
                     "style=\"border-collapse: collapse\">")
        parts += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)
