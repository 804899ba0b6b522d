"""The acknowledge link's page and its action: read the incident, record who took it, tell the channel."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from solemate_maintenance.config import PlatformConfig
from solemate_maintenance.incidents import (
    AcknowledgeRefused,
    AnnouncementKind,
    Incident,
    IncidentStore,
    acknowledge,
)
from solemate_maintenance.notifiers.incident_messages import duration, stamp
from solemate_maintenance.notifiers.messages import responder_line

AWS_CONN_ID = "aws_default"
PAGE = ("<!doctype html><meta charset='utf-8'><title>{title}</title>"
        "<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;max-width:50rem}} td{{padding:.2rem .6rem;"
        "vertical-align:top}} button{{font-size:1rem;padding:.4rem 1rem}} .muted{{color:#6e7781}}</style>"
        "<h1>{title}</h1>{body}")


def store_of(config: PlatformConfig) -> IncidentStore:
    return IncidentStore.for_config(config, aws_conn_id=AWS_CONN_ID, region_name=config.regions.primary)


def incident_html(config: PlatformConfig, incident_id: str, incident: Incident | None, *, action: str,
                  notice: str = "") -> str:
    if incident is None:
        return PAGE.format(title="Incident not found", body=(
            f"<p>No incident <code>{escape(incident_id)}</code> in the {escape(config.environment)} record: it was "
            "resolved and pruned, or the link is incomplete.</p>"))
    now = datetime.now(UTC)
    state = ("open for " + duration(now - incident.started_at)) if incident.is_open else \
        f"resolved at {stamp(incident.resolved_at)}"
    rows = {
        "Problem": incident.summary, "Resource": incident.resource, "Severity": incident.severity.value,
        "Started": stamp(incident.started_at), "State": state,
        "Response": responder_line(config.alerts, incident.severity, incident.responding_since,
                                   escalation_level=incident.escalation_level, plain=True,
                                   acknowledged_by=incident.acknowledged_by, acknowledged_at=incident.acknowledged_at),
        "What to do": incident.next_step or "—",
    }
    body = (f"<p>{escape(notice)}</p>" if notice else "") + "<table>" + "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
        for k, v in rows.items()) + "</table>"
    if incident.diagnosis:
        body += "<h2>Diagnosis</h2><ul>" + "".join(f"<li>{escape(line)}</li>" for line in incident.diagnosis) + "</ul>"
    if incident.is_open and incident.acknowledged_at is None:
        body += (f"<form method='post' action='{escape(action)}'><p><button type='submit'>"
                 "Acknowledge: I take it</button></p><p class='muted'>Stops the escalation to the next on-call "
                 "contact and acknowledges it in PagerDuty; the channel is told who took it.</p></form>")
    return PAGE.format(title=escape(f"{config.environment}: {incident.label or incident.check}"), body=body)


def acknowledge_and_tell(config: PlatformConfig, incident_id: str, who: str, now: datetime) -> tuple[int, str]:
    """(HTTP status, page). Records the acknowledgement (conditional write, re-applied on a race), then
    sends it to Slack and PagerDuty; what could not be sent is retried by the next watch."""
    from solemate_maintenance.operators.watch.announce import Announcer

    # The name goes into Slack: no mrkdwn control characters (a "<!channel>" user name would ping everyone).
    who = re.sub(r"[<>&*_~`|]", "", who).strip()[:80] or "unknown user"
    store = store_of(config)
    refused: list[str] = []

    def take(record: Any) -> Any:
        refused.clear()
        try:
            return acknowledge(record, incident_id, by=who, at=now)
        except AcknowledgeRefused as exc:
            refused.append(str(exc))
            return None

    record, item = store.update(take)
    incident = record.incidents.get(incident_id)
    if item is None:
        return (404 if incident is None else 409), incident_html(config, incident_id, incident, action="",
                                                                 notice=f"Not acknowledged: {refused[0]}")
    announcer = Announcer(config=config, store=store, watch="maintenance_dashboard", context={}, may_page=False,
                          run_id=item.claimed_by, run_url="", window=None, aws_conn_id=AWS_CONN_ID)
    # The incident's earlier undelivered announcements go first, in order: PagerDuty must see the trigger
    # before the acknowledge.
    sent = announcer.deliver(record, now + timedelta(microseconds=1), only=lambda a: a.incident_id == incident_id)
    told = "the channel was told" if f"{AnnouncementKind.ACKNOWLEDGED.value}:{incident_id}" in sent \
        else "the channel could not be told now; the next watch retries"
    return 200, incident_html(config, incident_id, incident, action="",
                              notice=f"Acknowledged by {who} at {now:%H:%M} UTC: {told}.")
