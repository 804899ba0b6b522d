"""What people read about incidents: opened (naming when it started), a rare reminder ("open for 2 h
15 min"), worse, resolved ("resolved after 47 min"), and the SMS for an emergency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from solemate_maintenance.config import Alerts
from solemate_maintenance.config.platform import Contact
from solemate_maintenance.incidents import Announcement, AnnouncementKind, Incident
from solemate_maintenance.notifiers.messages import OK_COLOR, SEVERITY_EMOJI, responder_line, slack_escaped
from solemate_maintenance.redaction import trim

# Announcements that can page (SMS): an emergency seen for the first time, or one that became P1.
PAGING_KINDS = frozenset({AnnouncementKind.OPENED, AnnouncementKind.BRIEF, AnnouncementKind.ESCALATED})
# Announcements that carry the diagnosis (the first message about a problem, and a worse one).
DIAGNOSED_KINDS = frozenset({AnnouncementKind.OPENED, AnnouncementKind.BRIEF, AnnouncementKind.ESCALATED,
                             AnnouncementKind.PAGED})


def clock(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%H:%M UTC") if moment else "unknown"


def stamp(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "unknown"


def hhmm(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M")


def span(start: datetime, end: datetime) -> str:
    """'12:00–15:05 UTC', or with dates when it crosses midnight."""
    if start.astimezone(UTC).date() == end.astimezone(UTC).date():
        return f"{hhmm(start)}–{hhmm(end)} UTC"
    return f"{stamp(start)} – {stamp(end)}"


def duration(delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days {hours % 24} h"


def peak_text(incident: Incident) -> str:
    if incident.peak is None:
        return "—"
    return f"{incident.peak:.4g} {incident.unit}".strip() + (f" at {clock(incident.peak_at)}"
                                                               if incident.peak_at else "")


def announcement_message(incident: Incident, announcement: Announcement, *, environment: str, alerts: Alerts,
                         watch: str, run_url: str, window: tuple[datetime, datetime],
                         reminder_hours: float) -> tuple[str, list[dict]]:
    """(title, Slack attachments) for one announcement."""
    kind, at = announcement.kind, announcement.at
    severity = incident.severity.value
    started = clock(incident.started_at)
    if kind is AnnouncementKind.OPENED:
        title = f"[{severity}] {environment}: {incident.summary} — since {started}"
        state = f"*Incident opened* — bad since {stamp(incident.started_at)}, seen by the {watch} at {clock(at)}"
    elif kind is AnnouncementKind.ESCALATED:
        title = f"[{severity}] {environment}: worse, now {severity} — {incident.summary} (since {started})"
        state = (f"*Worse* — open since {stamp(incident.started_at)} ({duration(at - incident.started_at)}), "
                 f"now {severity}")
    elif kind is AnnouncementKind.REMINDER:
        title = (f"[{severity}] {environment}: still open for {duration(at - incident.started_at)} — "
                 f"{incident.summary}")
        state = (f"*Still open* since {stamp(incident.started_at)}; reminder {incident.reminders} (at most every "
                 f"{reminder_hours:g} h)")
    elif kind is AnnouncementKind.BRIEF:
        end = incident.resolved_at or at
        title = f"[{severity}] {environment}: {incident.summary} — {span(incident.started_at, end)}, cleared"
        state = f"*Seen and cleared* within one watch: {duration(end - incident.started_at)}"
    elif kind is AnnouncementKind.PAGED:
        role, contact = contact_at(alerts, int(announcement.detail or 1))
        waited = duration(at - incident.responding_since)
        title = (f"[{severity}] {environment}: not acknowledged after {waited}, paging the {role} "
                 f"{contact.name if contact else ''} — {incident.summary}").replace("  ", " ")
        state = (f"*Escalated to the {role}* {contact.mention if contact else ''}: nobody acknowledged within "
                 f"{alerts.severities[severity].response_minutes} min (open since {stamp(incident.started_at)})")
    elif kind is AnnouncementKind.ACKNOWLEDGED:
        title = f"👤 {environment}: {announcement.detail} acknowledged — {incident.summary}"
        state = (f"*Acknowledged* by {announcement.detail} at {clock(at)}, "
                 f"{duration(at - incident.started_at)} after it started: escalation stops")
    else:
        end = incident.resolved_at or at
        title = (f"✅ {environment}: resolved after {duration(end - incident.started_at)} — "
                 f"{incident.label or incident.check} on {incident.resource} ({span(incident.started_at, end)}, "
                 f"peak {peak_text(incident)})")
        state = f"*Resolved* — bad from {stamp(incident.started_at)} to {stamp(end)}"
    fields = {
        "Started": stamp(incident.started_at),
        "Open for" if incident.is_open else "Lasted": duration((incident.resolved_at or at) - incident.started_at),
        "Peak": peak_text(incident),
        "Severity": f"{severity} - {alerts.severities[severity].description}",
        "Resource": incident.resource,
        "Watch window": f"{clock(window[0])} → {clock(window[1])}",
    }
    emoji = ":white_check_mark:" if kind is AnnouncementKind.RESOLVED else SEVERITY_EMOJI[severity]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{emoji} {state}"}},
    ]
    if kind not in (AnnouncementKind.RESOLVED, AnnouncementKind.BRIEF):
        who = responder_line(alerts, severity, incident.responding_since, escalation_level=incident.escalation_level,
                             acknowledged_by=incident.acknowledged_by, acknowledged_at=incident.acknowledged_at,
                             escalates=_escalated_here(alerts, incident))
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f":bust_in_silhouette: {who}"}})
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"}
                                                 for k, v in fields.items()]})
    if kind in DIAGNOSED_KINDS and (incident.diagnosis or incident.diagnosis_missing):
        lines = [f"• {slack_escaped(line)}" for line in incident.diagnosis]
        if incident.diagnosis_missing:
            lines.append(f"• _diagnosis incomplete: {slack_escaped(incident.diagnosis_missing)}_")
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                    "text": trim("*Diagnosis*\n" + "\n".join(lines), 2900)}})
    if kind not in (AnnouncementKind.RESOLVED, AnnouncementKind.ACKNOWLEDGED) and incident.next_step:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*What to do*\n{incident.next_step}"}})
    acknowledge = alerts.acknowledge_url(incident.id)
    if acknowledge and incident.is_open and incident.acknowledged_at is None \
            and kind is not AnnouncementKind.ACKNOWLEDGED:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f":raising_hand: <{acknowledge}|Acknowledge this incident> — you take it: escalation stops"
            + (" and PagerDuty is told" if alerts.pagerduty else "") + ".")}})
    footer = f"Incident `{incident.id}`"
    if run_url:
        footer += f" · <{run_url}|Open the watch run in Airflow>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    color = OK_COLOR if kind is AnnouncementKind.RESOLVED else alerts.severities[severity].color
    return title, [{"color": color, "fallback": title, "blocks": blocks}]


def _escalated_here(alerts: Alerts, incident: Incident) -> bool:
    """Whether our chain escalates it (PagerDuty's policies do for its severities)."""
    return not (alerts.pagerduty and incident.severity.value in alerts.pagerduty.severities)


def contact_at(alerts: Alerts, level: int) -> tuple[str, Contact | None]:
    """The on-call role and contact at `level` of the chain (the last one past its end)."""
    chain = alerts.on_call.chain()
    if not chain:
        return "on-call contact", None
    return chain[min(level, len(chain) - 1)]


def sms_text(incident: Incident, title: str, run_url: str, alerts: Alerts | None = None) -> str:
    lines = [title, f"Started {stamp(incident.started_at)}; peak {peak_text(incident)}"]
    if incident.diagnosis:
        lines.append(f"Why: {incident.diagnosis[0]}")
    if incident.next_step:
        lines.append(f"Do: {incident.next_step}")
    acknowledge = alerts.acknowledge_url(incident.id) if alerts else None
    if acknowledge and incident.acknowledged_at is None:
        lines.append(f"Acknowledge: {acknowledge}")
    elif run_url:
        lines.append(run_url)
    return "\n".join(lines)
