"""Sending the announcements a watch claimed (or a previous watch left undelivered), each channel once.

Slack always (P1 in the critical channel); e-mail for the severities in ``alerts.email_severities``
(opened, worse, resolved; reminders stay in Slack); SMS only for a P1 of one of ``alerts.sms_checks``
(the guide's emergencies), when it opens or becomes P1, and only from a live run. A channel that
received an announcement is not sent it again when another channel is retried.
"""

from __future__ import annotations

from typing import Any

from solemate_maintenance.config import PlatformConfig
from solemate_maintenance.findings import Severity
from solemate_maintenance.incidents import Announcement, AnnouncementKind, IncidentRecord, IncidentStore
from solemate_maintenance.notifiers.delivery import (
    Delivery,
    DeliveryBudget,
    send_email,
    send_slack,
    send_sns,
    slack_channel_for,
)
from solemate_maintenance.notifiers.incident_messages import PAGING_KINDS, announcement_message, sms_text
from solemate_maintenance.notifiers.messages import blocks_as_html
from solemate_maintenance.run_facts import RunFacts
from solemate_maintenance.window import TimeWindow

# After this many failed attempts (one per watch) an announcement is given up: the digest still lists it.
MAX_ATTEMPTS = 8


def _identity(item: Announcement) -> tuple[str, str, str]:
    return item.incident_id, item.kind.value, item.at.isoformat()


class Announcer:
    def __init__(self, *, config: PlatformConfig, store: IncidentStore, watch: str, context: Any, facts: RunFacts,
                 window: TimeWindow, aws_conn_id: str | None) -> None:
        self.config, self.store, self.watch = config, store, watch
        self.context, self.facts, self.window = context, facts, window
        self.aws_conn_id = aws_conn_id
        ti = context["ti"]
        self.run_id = ti.run_id
        self.run_url = str(getattr(ti, "log_url", "") or "").split("/tasks/", 1)[0]

    def deliver(self, record: IncidentRecord) -> list[str]:
        pending = [a for a in record.pending(self.run_id, self.window.end) if a.attempts < MAX_ATTEMPTS]
        if not pending:
            return []
        alerts = self.config.alerts
        budget = DeliveryBudget.for_run(alerts.delivery_budget_seconds, self.run_id, floor=alerts.slack_timeout_seconds)
        results: dict[tuple[str, str, str], list[Delivery]] = {}
        for item in pending:
            incident = record.incidents.get(item.incident_id)
            if incident is None:  # pruned meanwhile
                results[_identity(item)] = []
                continue
            done = {d.get("channel") for d in item.deliveries if d.get("outcome") in ("delivered", "unknown")}
            title, attachments = announcement_message(
                incident, item, environment=self.config.environment, alerts=alerts,
                watch=self.watch.replace("_", " "), run_url=self.run_url, window=(self.window.start, self.window.end),
                reminder_hours=self.config.watch.reminder_hours)
            kind = f"incident-{item.kind.value}"
            channel = slack_channel_for(incident.severity, alerts)
            sent: list[Delivery] = []
            if f"slack:{channel}" not in done:
                sent.append(send_slack(kind=kind, conn_id=channel, text=title, attachments=attachments, alerts=alerts,
                                       context=self.context, budget=budget))
            if (incident.severity.value in alerts.email_severities and alerts.digest_email
                    and item.kind is not AnnouncementKind.REMINDER and "email" not in done):
                sent.append(send_email(kind=kind, to=list(alerts.digest_email), subject=title,
                                       html=blocks_as_html(attachments[0]["blocks"]),
                                       alerts=alerts, context=self.context, budget=budget))
            if (incident.severity is Severity.P1 and item.kind in PAGING_KINDS and alerts.sns_topic_arn
                    and alerts.pages_by_sms(incident.check) and self.facts.may_page and "sns" not in done):
                sent.append(send_sns(kind=kind, topic_arn=alerts.sns_topic_arn, subject=title,
                                     message=sms_text(incident, title, self.run_url), aws_conn_id=self.aws_conn_id,
                                     context=self.context, budget=budget))
            results[_identity(item)] = sent

        def mark(current: IncidentRecord) -> None:
            for item in current.announcements:
                if _identity(item) not in results:
                    continue
                item.attempts += 1
                item.deliveries += [d.model_dump(exclude={"task_id"}) for d in results[_identity(item)]]
                arrived = {d.get("channel") for d in item.deliveries if d.get("outcome") in ("delivered", "unknown")}
                slack_out = any(str(c).startswith("slack:") for c in arrived)
                failed = [d for d in results[_identity(item)] if d.outcome in ("failed", "skipped")]
                item.outcome = "delivered" if slack_out and not failed else \
                    ("failed" if item.attempts < MAX_ATTEMPTS else "abandoned")

        self.store.update(mark)
        return [f"{kind}:{incident_id}" for (incident_id, kind, _), sent in results.items()
                if any(d.arrived for d in sent)]

