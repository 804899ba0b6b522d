"""Slack (SNS for P1, e-mail for digests) alerts for maintenance runs.

Delivery goes through the providers' notifiers: ``SlackWebhookNotifier``, ``SnsNotifier`` and
``SmtpNotifier``. They
are built fresh per message and called through ``notify()`` directly, so exception text that
happens to contain ``{{ }}`` is sent as it is instead of being rendered as a template.

A channel that is down never raises out of here: the task's own outcome must stay visible. Every
attempt is returned as a :class:`Delivery` so the run report can show what reached whom.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from airflow.providers.amazon.aws.notifications.sns import SnsNotifier
from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import BaseHook, BaseNotifier
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException
from airflow.sdk.timezone import utcnow
from pydantic import BaseModel

from solemate_maintenance.config import Alerts
from solemate_maintenance.findings import Finding, Severity
from solemate_maintenance.redaction import scrub, trim

log = logging.getLogger(__name__)

ALERT_DELIVERIES_XCOM_KEY = "alert_deliveries"
MAX_FINDINGS_IN_MESSAGE = 10
SEVERITY_EMOJI = {"P1": ":red_circle:", "P2": ":large_orange_circle:", "P3": ":large_yellow_circle:",
                  "P4": ":large_blue_circle:", None: ":white_check_mark:"}


class Delivery(BaseModel):
    kind: str  # "failure" or "digest"
    channel: str  # "slack:<conn_id>", "sns" or "email"
    ok: bool
    error: str | None = None
    task_id: str | None = None


def _connection_exists(conn_id: str) -> bool:
    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def slack_channel_for(severity: Severity | str | None, alerts: Alerts) -> str:
    """P1 goes to the critical channel when that connection exists; everything else to the default."""
    if severity == Severity.P1 and _connection_exists(alerts.slack_critical_conn_id):
        return alerts.slack_critical_conn_id
    return alerts.slack_conn_id


def _deliver(kind: str, channel: str, notifier: Callable[[], BaseNotifier], context: Any) -> Delivery:
    """Send through a provider notifier; a channel that is down is logged and returned, never raised."""
    try:
        notifier().notify(context)
    except Exception as exc:  # a channel being down must not mask the run's real outcome
        error = trim(scrub(f"{type(exc).__name__}: {exc}"), 300)
        log.warning("%s alert via %s not delivered: %s", kind, channel, error)
        return Delivery(kind=kind, channel=channel, ok=False, error=error)
    log.info("%s alert delivered via %s", kind, channel)
    return Delivery(kind=kind, channel=channel, ok=True)


def send_slack(*, kind: str, conn_id: str, text: str, attachments: list[dict], alerts: Alerts,
               context: Any) -> Delivery:
    return _deliver(kind, f"slack:{conn_id}", lambda: SlackWebhookNotifier(
        slack_webhook_conn_id=conn_id, text=scrub(text), attachments=scrub(attachments),
        timeout=alerts.slack_timeout_seconds), context)


def send_sns(*, kind: str, topic_arn: str, subject: str, message: str, aws_conn_id: str | None,
             context: Any) -> Delivery:
    # SNS subjects are limited to 100 characters.
    return _deliver(kind, "sns", lambda: SnsNotifier(
        aws_conn_id=aws_conn_id, target_arn=topic_arn, subject=trim(scrub(subject), 100),
        message=scrub(message)), context)


def send_email(*, kind: str, to: list[str], subject: str, html: str, alerts: Alerts, context: Any) -> Delivery:
    return _deliver(kind, "email", lambda: SmtpNotifier(
        to=to, subject=scrub(subject), html_content=scrub(html), smtp_conn_id=alerts.smtp_conn_id), context)


def _run_type(dag_run: Any) -> str:
    run_type = getattr(dag_run, "run_type", None)
    return str(getattr(run_type, "value", run_type) or "unknown")


def _duration(start: datetime | None, end: datetime | None) -> str:
    if not start or not end:
        return "unknown"
    seconds = int((end - start).total_seconds())
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def _finding_lines(findings: Iterable[Finding]) -> str:
    findings = list(findings)
    lines = [f"{SEVERITY_EMOJI[f.severity]} *{f.severity}* `{f.resource}` {f.summary}"
             for f in findings[:MAX_FINDINGS_IN_MESSAGE]]
    if len(findings) > MAX_FINDINGS_IN_MESSAGE:
        lines.append(f"… and {len(findings) - MAX_FINDINGS_IN_MESSAGE} more in the report")
    return "\n".join(lines)


def failure_message(context: Any, alerts: Alerts, environment: str, now: datetime) -> tuple[
        Severity, str, list[dict]]:
    """Build (severity, fallback text, attachments) for a task's final failure."""
    ti, dag_run = context["ti"], context.get("dag_run")
    exception = context.get("exception")
    findings: Sequence[Finding] = getattr(exception, "findings", None) or []
    # A check that crashed before judging anything is treated as high: we are blind on that area.
    severity = min((f.severity for f in findings if f.severity), default=Severity.P2)
    error = trim(scrub(f"{type(exception).__name__}: {exception}"), 500) if exception else "unknown error"
    title = f"[{severity}] {environment}: {ti.dag_id}.{ti.task_id} failed"
    max_tries = getattr(ti, "max_tries", None)
    fields = {
        "Environment": environment,
        "DAG": ti.dag_id,
        "Task": ti.task_id,
        "Run id": ti.run_id,
        "Run type": _run_type(dag_run),
        "Try": (f"{ti.try_number} of {max_tries + 1}" if max_tries is not None else str(ti.try_number))
        + (" (final: not retried)" if isinstance(exception, AirflowFailException) else ""),
        "Duration": _duration(getattr(ti, "start_date", None), now),
        "Severity": f"{severity} - {alerts.severities[severity.value].description}",
    }
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": trim(title, 150)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields.items()]},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Error*\n```{error}```"}},
    ]
    if findings:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                    "text": f"*Failing findings*\n{_finding_lines(findings)}"}})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{ti.log_url}|Task log>"}})
    attachments = [{"color": alerts.severities[severity.value].color, "fallback": title, "blocks": blocks}]
    return severity, title, attachments


class MaintenanceFailureNotifier(BaseNotifier):
    """Task failure callback: one Slack message (plus SNS for P1) with what on-call needs.

    Airflow calls ``on_failure_callback`` only when the last try fails, so retries stay quiet.
    Build one per DAG with :func:`failure_notifier`; do not share instances between DAGs.
    """

    template_fields = ()

    def __init__(self, *, alerts: Alerts, environment: str, aws_conn_id: str | None = "aws_default") -> None:
        super().__init__()
        self.alerts = alerts
        self.environment = environment
        self.aws_conn_id = aws_conn_id

    def notify(self, context: Any) -> None:
        severity, title, attachments = failure_message(context, self.alerts, self.environment, utcnow())
        ti = context["ti"]
        deliveries = [
            send_slack(kind="failure", conn_id=slack_channel_for(severity, self.alerts), text=title,
                       attachments=attachments, alerts=self.alerts, context=context)
        ]
        if severity == Severity.P1 and self.alerts.sns_topic_arn:
            deliveries.append(send_sns(
                kind="failure", topic_arn=self.alerts.sns_topic_arn, subject=title,
                message=f"{title}\nRun {ti.run_id}\n{ti.log_url}", aws_conn_id=self.aws_conn_id,
                context=context,
            ))
        try:
            ti.xcom_push(key=ALERT_DELIVERIES_XCOM_KEY,
                         value=[d.model_copy(update={"task_id": ti.task_id}).model_dump() for d in deliveries])
        except Exception:  # the report then shows "unknown"; never let bookkeeping hide the failure
            log.exception("Could not record alert deliveries for %s", ti.task_id)


def failure_notifier(alerts: Alerts, environment: str) -> MaintenanceFailureNotifier:
    """A fresh notifier for one DAG (notifier instances keep per-call state; never share them)."""
    return MaintenanceFailureNotifier(alerts=alerts, environment=environment)
