"""Sending the announcements a watch claimed (or a previous watch left undelivered), each channel once.

* Slack always (P1 in the critical channel), naming who is on call and by when;
* e-mail for the severities in ``alerts.email_severities`` (opened, worse, resolved; reminders stay
  in Slack);
* SMS only for a P1 of one of ``alerts.sms_checks`` (the guide's emergencies), when it opens or
  becomes P1, and only from a live run;
* an escalation (``paged``) goes to the next on-call contact: a Slack mention, their e-mail and their
  SNS topic;
* PagerDuty, when configured, for its severities: trigger, acknowledge and resolve with one dedup key
  per incident.

A channel that received an announcement is not sent it again when another channel is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from solemate_maintenance.config import PlatformConfig
from solemate_maintenance.findings import Severity
from solemate_maintenance.incidents import Announcement, AnnouncementKind, Incident, IncidentRecord, IncidentStore
from solemate_maintenance.notifiers.delivery import (
    Delivery,
    DeliveryBudget,
    send_email,
    send_pagerduty,
    send_slack,
    send_sns,
    slack_channel_for,
)
from solemate_maintenance.notifiers.incident_messages import (
    PAGING_KINDS,
    announcement_message,
    contact_at,
    sms_text,
)
from solemate_maintenance.notifiers.messages import blocks_as_html

# After this many failed attempts (one per watch) an announcement is given up: the digest still lists it.
MAX_ATTEMPTS = 8

# A problem seen and cleared inside one watch is not sent to PagerDuty: it would phone someone about
# something already over (Slack, and for an emergency the SMS, have it).
PAGERDUTY_ACTION = {
    AnnouncementKind.OPENED: "trigger",
    AnnouncementKind.ESCALATED: "trigger",
    AnnouncementKind.ACKNOWLEDGED: "acknowledge",
    AnnouncementKind.RESOLVED: "resolve",
}


def _identity(item: Announcement) -> tuple[str, str, str]:
    return item.incident_id, item.kind.value, item.at.isoformat()


def pagerduty_dedup_key(environment: str, incident: Incident) -> str:
    """One key per incident: every trigger, acknowledge and resolve of it lands on the same PagerDuty alert."""
    return f"solemate/{environment}/{incident.id}"[:255]


class Announcer:
    """Delivers pending announcements. ``may_page``: the run checks the present (SMS and escalation
    pages only then); ``window``: what the watch judged (None for an acknowledgement)."""

    def __init__(self, *, config: PlatformConfig, store: IncidentStore, watch: str, context: Any, may_page: bool,
                 run_id: str, run_url: str, window: tuple[datetime, datetime] | None,
                 aws_conn_id: str | None) -> None:
        self.config, self.store, self.watch = config, store, watch
        self.context, self.may_page = context, may_page
        self.run_id, self.run_url, self.window = run_id, run_url, window
        self.aws_conn_id = aws_conn_id

    def deliver(self, record: IncidentRecord, until: datetime,
                only: Callable[[Announcement], bool] = lambda item: True) -> list[str]:
        pending = [a for a in record.pending(self.run_id, until) if a.attempts < MAX_ATTEMPTS and only(a)]
        if not pending:
            return []
        alerts = self.config.alerts
        budget = DeliveryBudget.for_run(alerts.delivery_budget_seconds, self.run_id, floor=alerts.slack_timeout_seconds)
        results: dict[tuple[str, str, str], list[Delivery]] = {}
        superseded: set[tuple[str, str, str]] = set()
        for item in pending:
            incident = record.incidents.get(item.incident_id)
            if incident is None:  # pruned meanwhile
                results[_identity(item)] = []
                continue
            if item.kind is AnnouncementKind.PAGED and (incident.acknowledged_at or not incident.is_open):
                # A page that failed earlier is not retried once somebody took the incident or it ended.
                results[_identity(item)] = []
                superseded.add(_identity(item))
                continue
            done = {d.get("channel") for d in item.deliveries if d.get("outcome") in ("delivered", "unknown")}
            results[_identity(item)] = self._send(incident, item, done, budget)

        def mark(current: IncidentRecord) -> None:
            for item in current.announcements:
                if _identity(item) not in results:
                    continue
                if _identity(item) in superseded:
                    item.outcome = "superseded"
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

    def _send(self, incident: Incident, item: Announcement, done: set, budget: DeliveryBudget) -> list[Delivery]:
        alerts = self.config.alerts
        window = self.window or (item.at, item.at)
        title, attachments = announcement_message(
            incident, item, environment=self.config.environment, alerts=alerts,
            watch=self.watch.replace("_", " "), run_url=self.run_url, window=window,
            reminder_hours=self.config.watch.reminder_hours)
        kind = f"incident-{item.kind.value}"
        sent: list[Delivery] = []
        channel = slack_channel_for(incident.severity, alerts)
        if f"slack:{channel}" not in done:
            sent.append(send_slack(kind=kind, conn_id=channel, text=title, attachments=attachments, alerts=alerts,
                                   context=self.context, budget=budget))
        html = blocks_as_html(attachments[0]["blocks"])
        if item.kind is AnnouncementKind.PAGED:
            _, contact = contact_at(alerts, int(item.detail or 1))
            if contact and contact.email and "email" not in done:
                sent.append(send_email(kind=kind, to=[contact.email], subject=title, html=html, alerts=alerts,
                                       context=self.context, budget=budget))
            if contact and contact.sns_topic_arn and self.may_page and "sns" not in done:
                sent.append(send_sns(kind=kind, topic_arn=contact.sns_topic_arn, subject=title,
                                     message=sms_text(incident, title, self.run_url, alerts),
                                     aws_conn_id=self.aws_conn_id, context=self.context, budget=budget))
            return sent
        if (incident.severity.value in alerts.email_severities and alerts.digest_email
                and item.kind not in (AnnouncementKind.REMINDER, AnnouncementKind.ACKNOWLEDGED)
                and "email" not in done):
            sent.append(send_email(kind=kind, to=list(alerts.digest_email), subject=title, html=html,
                                   alerts=alerts, context=self.context, budget=budget))
        if (incident.severity is Severity.P1 and item.kind in PAGING_KINDS and alerts.sns_topic_arn
                and alerts.pages_by_sms(incident.check) and self.may_page and "sns" not in done):
            sent.append(send_sns(kind=kind, topic_arn=alerts.sns_topic_arn, subject=title,
                                 message=sms_text(incident, title, self.run_url, alerts), aws_conn_id=self.aws_conn_id,
                                 context=self.context, budget=budget))
        pagerduty = alerts.pagerduty
        action = PAGERDUTY_ACTION.get(item.kind)
        if (pagerduty and action and incident.severity.value in pagerduty.severities and "pagerduty" not in done
                and (self.may_page or action != "trigger")):
            links = [{"href": url, "text": text} for url, text in (
                (alerts.acknowledge_url(incident.id), "Acknowledge in the maintenance dashboard"),
                (self.run_url, "The watch run in Airflow")) if url]
            sent.append(send_pagerduty(
                kind=kind, conn_id=pagerduty.conn_id, action=action,
                dedup_key=pagerduty_dedup_key(self.config.environment, incident), summary=title,
                severity=incident.severity.value, source=incident.resource, links=links,
                custom_details={"incident": incident.id, "check": incident.check,
                                "started": incident.started_at.isoformat(), "next step": incident.next_step,
                                "diagnosis": incident.diagnosis},
                context=self.context, budget=budget))
        return sent
