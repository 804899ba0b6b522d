"""Slack updates while maintenance runs: the restore test, the DR drill and the failover say when they
start (what, why, how long it should take), when each long step is done, and when they end, so the
channel shows what is going on during the window.

A step's update is its ``on_success_callback`` (a failing step is told by the failure alert): it reads
what the step recorded (its findings) and says it in a line or two, with the time since the run
started. A step that only skipped (nothing to do for that date) posts nothing. Updates are never
paged and never e-mailed; a Slack outage costs the update, not the run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.common.compat.notifier import BaseNotifier

from solemate_maintenance.config import Alerts
from solemate_maintenance.findings import Severity
from solemate_maintenance.redaction import trim

STATUS_MARK = "🔧"
MAX_LINES = 6


def _minutes(start: datetime | None, end: datetime) -> str:
    if start is None:
        return "?"
    seconds = max(int((end - start).total_seconds()), 0)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class MaintenanceStatusNotifier(BaseNotifier):
    """One status update, posted when the task it is attached to succeeds.

    :param activity: what is running, as people say it ("Restore test", "DR drill", "DR failover").
    :param headline: what this step means ("started", "database restored in the DR region").
    :param why: for the start update: why it runs and what it proves.
    :param expected_minutes: for the start update: how long it should take.
    :param critical: post to the critical channel (the failover: its updates are the incident log).
    """

    template_fields = ()

    def __init__(self, *, alerts: Alerts, environment: str, activity: str, headline: str, why: str = "",
                 expected_minutes: float | None = None, critical: bool = False) -> None:
        super().__init__()
        self.alerts, self.environment = alerts, environment
        self.activity, self.headline, self.why = activity, headline, why
        self.expected_minutes, self.critical = expected_minutes, critical

    def notify(self, context: Any) -> None:
        from airflow.sdk.timezone import utcnow

        from solemate_maintenance.notifiers.delivery import send_slack, slack_channel_for

        findings = context["ti"].xcom_pull(task_ids=context["ti"].task_id, key="findings") or []
        if findings and all(f.get("status") == "skipped" for f in findings):
            # Nothing happened (a restore date outside the window, a component not selected): no update.
            return
        title, lines = self.message(context, utcnow())
        channel = slack_channel_for(Severity.P1 if self.critical else Severity.P4, self.alerts)
        send_slack(kind="status", conn_id=channel, text=title, alerts=self.alerts, context=context,
                   attachments=[{"color": "#439fe0", "fallback": title, "text": "\n".join(lines)}] if lines else [])

    def message(self, context: Any, now: datetime) -> tuple[str, list[str]]:
        ti, dag_run = context["ti"], context.get("dag_run")
        started = getattr(dag_run, "start_date", None)
        title = f"{STATUS_MARK} {self.environment}: {self.activity} — {self.headline} ({_minutes(started, now)} in)"
        lines: list[str] = []
        if self.why:
            lines.append(self.why)
        if self.expected_minutes:
            lines.append(f"Expected to take about {self.expected_minutes:g} min; updates follow here.")
        findings = ti.xcom_pull(task_ids=ti.task_id, key="findings") or []
        problems = [f for f in findings if f.get("severity")]
        shown = problems or findings
        for finding in shown[:MAX_LINES]:
            mark = f"[{finding['severity']}] " if finding.get("severity") else \
                ("– " if finding.get("status") == "skipped" else "✓ ")
            lines.append(trim(f"{mark}{finding.get('resource', '')}: {finding.get('summary', '')}", 240))
        if len(shown) > MAX_LINES:
            lines.append(f"… and {len(shown) - MAX_LINES} more in the report")
        lines.append(f"Run `{ti.run_id}`")
        return title, lines


def status_updates(alerts: Alerts, environment: str, activity: str, *, critical: bool = False):
    """A factory for one activity's updates: ``update("database restored", why=…)`` per step."""

    def update(headline: str, **kwargs: Any) -> MaintenanceStatusNotifier:
        return MaintenanceStatusNotifier(alerts=alerts, environment=environment, activity=activity,
                                         headline=headline, critical=critical, **kwargs)

    return update
