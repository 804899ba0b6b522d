"""Incidents: a problem the watch saw, opened once, reminded rarely, resolved once.

The record is one small JSON object per environment beside the reports
(``<reports.prefix>/<watch.state_prefix>/<environment>.json``). Every watch reads it, applies what it
measured and writes it back *conditionally* (S3 ``If-Match`` on the ETag it read, ``If-None-Match: *``
for the first one): two watches racing (another Celery worker, a manual trigger beside the schedule)
cannot both open the same incident, because the second write fails and is redone on the first's
record, where the incident is already open. An announcement is claimed in the record before it is
sent and marked delivered after, so a retry or a later watch sends what a crashed one did not, and
nothing twice.

The daily, weekly and monthly reports read the same record: a problem the watch already reported is
"ongoing since 14:05" there, not new.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from solemate_maintenance.findings import Diagnosis, Severity

SCHEMA_VERSION = 1
# Delivered announcements older than this leave the record (the incident keeps its history summary).
ANNOUNCEMENT_HISTORY = timedelta(days=2)
MAX_WRITE_ATTEMPTS = 5


class AnnouncementKind(StrEnum):
    OPENED = "opened"
    # Seen and cleared inside one watch window: one message says both.
    BRIEF = "brief"
    ESCALATED = "escalated"
    REMINDER = "reminder"
    RESOLVED = "resolved"
    # A P1 nobody acknowledged within its response time: the next on-call contact is paged.
    PAGED = "paged"
    # Somebody took it (from the alert's acknowledge link): the channel hears who, and PagerDuty stops.
    ACKNOWLEDGED = "acknowledged"


class Announcement(BaseModel):
    incident_id: str
    kind: AnnouncementKind
    # The end of the watch window that decided it (the run's time, never the wall clock).
    at: datetime
    claimed_by: str
    # pending: claimed, not yet delivered; delivered (or unknown: timed out, may have arrived); failed.
    outcome: str = "pending"
    attempts: int = 0
    deliveries: list[dict[str, Any]] = Field(default_factory=list)
    # PAGED: the on-call role paged ("secondary", "escalation"); ACKNOWLEDGED: who.
    detail: str = ""


class Incident(BaseModel):
    id: str
    key: str  # Finding.key: check|resource, the same as the daily report's
    check: str
    resource: str
    severity: Severity
    summary: str
    label: str = ""
    # First bad datapoint, latest bad datapoint, and the first good time after it (resolution).
    started_at: datetime
    last_bad_at: datetime
    resolved_at: datetime | None = None
    # When the watch decided each (its window's end) and which run did.
    opened_at: datetime
    opened_by: str
    resolved_by: str | None = None
    last_announced_at: datetime
    peak: float | None = None
    peak_at: datetime | None = None
    unit: str = ""
    # ok when the metric is bad when high ("above") or low ("below"), for the peak.
    bad_when: str = "above"
    reminders: int = 0
    next_step: str = ""
    # Since when the incident has had its current severity: its response time counts from here.
    severity_since: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    # How far along the on-call chain it has gone: 0 the primary (told when it opened), 1 the next…
    escalation_level: int = 0
    # What AWS said when asked why (stopped tasks' reasons, target health, top SQL…), and what could
    # not be asked. Collected once, when the incident opens or gets worse.
    diagnosis: list[str] = Field(default_factory=list)
    diagnosis_missing: str | None = None

    @property
    def responding_since(self) -> datetime:
        return self.severity_since or self.opened_at

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    def duration(self, until: datetime) -> timedelta:
        return (self.resolved_at or until) - self.started_at

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.started_at < end and (self.resolved_at is None or self.resolved_at > start)


class IncidentRecord(BaseModel):
    version: int = SCHEMA_VERSION
    environment: str
    # Per watch (its dag id): the end of the last window it judged. A run whose window ends at or
    # before this (a cleared run, a retry after the record was written, a slow racer) changes nothing.
    watched_until: dict[str, datetime] = Field(default_factory=dict)
    incidents: dict[str, Incident] = Field(default_factory=dict)
    announcements: list[Announcement] = Field(default_factory=list)
    # Small per-watch memories (e.g. pg_stat_statements counters from the previous hour).
    memory: dict[str, Any] = Field(default_factory=dict)

    def open_incident(self, key: str) -> Incident | None:
        return next((i for i in self.incidents.values() if i.key == key and i.is_open), None)

    def between(self, start: datetime, end: datetime) -> list[Incident]:
        """Incidents open at any time in [start, end), oldest first."""
        return sorted((i for i in self.incidents.values() if i.overlaps(start, end)), key=lambda i: i.started_at)

    def pending(self, run_id: str, window_end: datetime) -> list[Announcement]:
        """Announcements this run should send: its own claims, and those a watch before it claimed and did
        not deliver (it crashed, or the channel was down)."""
        return [a for a in self.announcements if a.outcome in ("pending", "failed")
                and (a.claimed_by == run_id or a.at < window_end)]


@dataclass(frozen=True)
class Observation:
    """What one watch saw of one problem in its window: the worst severity (None: healthy throughout),
    the bad datapoints' span, the peak, and whether the last datapoint was still bad."""

    key: str
    check: str
    resource: str
    severity: Severity | None
    summary: str
    # What was measured, in words ("payment success rate"): the resolution message names it.
    label: str = ""
    first_bad: datetime | None = None
    last_bad: datetime | None = None
    still_bad: bool = False
    peak: float | None = None
    peak_at: datetime | None = None
    unit: str = ""
    bad_when: str = "above"
    next_step: str = ""
    # The length of one datapoint: an incident ends one period after its last bad datapoint began.
    period: timedelta = timedelta(minutes=5)
    # False: no datapoint in the window. No evidence either way: an open incident stays open.
    has_data: bool = True
    # The guide's troubleshooting, asked only for a problem about to open an incident or get worse.
    diagnosis: Diagnosis | None = None


def _incident_id(key: str, started: datetime) -> str:
    return f"{key}@{started.astimezone(UTC).strftime('%Y-%m-%dT%H:%MZ')}"


def apply_observations(record: IncidentRecord, observations: Iterable[Observation], *, watch: str, run_id: str,
                       window_end: datetime, open_severity: Severity, reminder: timedelta) -> list[Announcement]:
    """Advance the record by one watch window; return the announcements it claims (already in the record).

    Only problems at `open_severity` or worse open an incident. A problem without data in the window
    changes nothing (CloudWatch late or a metric not published is no evidence of recovery)."""
    watched = record.watched_until.get(watch)
    if watched is not None and window_end <= watched:
        return []
    claimed: list[Announcement] = []

    def announce(incident: Incident, kind: AnnouncementKind) -> None:
        item = Announcement(incident_id=incident.id, kind=kind, at=window_end, claimed_by=run_id)
        record.announcements.append(item)
        claimed.append(item)
        if kind is not AnnouncementKind.RESOLVED:
            incident.last_announced_at = window_end

    for seen in observations:
        current = record.open_incident(seen.key)
        bad = seen.severity is not None and seen.first_bad is not None and seen.last_bad is not None
        if current is None:
            if not bad or seen.severity > open_severity:  # P1 < P2 < P3 as strings
                continue
            incident = Incident(
                id=_incident_id(seen.key, seen.first_bad), key=seen.key, check=seen.check, resource=seen.resource,
                severity=seen.severity, summary=seen.summary, label=seen.label or seen.check,
                started_at=seen.first_bad, last_bad_at=seen.last_bad,
                opened_at=window_end, opened_by=run_id, last_announced_at=window_end, peak=seen.peak,
                peak_at=seen.peak_at, unit=seen.unit, bad_when=seen.bad_when, next_step=seen.next_step)
            incident.severity_since = window_end
            _note_diagnosis(incident, seen)
            record.incidents[incident.id] = incident
            if seen.still_bad:
                announce(incident, AnnouncementKind.OPENED)
            else:
                incident.resolved_at, incident.resolved_by = seen.last_bad + seen.period, run_id
                announce(incident, AnnouncementKind.BRIEF)
            continue
        if not bad:
            if seen.has_data:
                current.resolved_at = current.last_bad_at + seen.period
                current.resolved_by = run_id
                announce(current, AnnouncementKind.RESOLVED)
            continue
        current.last_bad_at = max(current.last_bad_at, seen.last_bad)
        current.summary = seen.summary
        if seen.peak is not None and (current.peak is None or _worse(seen.peak, current.peak, current.bad_when)):
            current.peak, current.peak_at = seen.peak, seen.peak_at
        if seen.severity < current.severity:  # P1 < P2: worse
            current.severity, current.severity_since = seen.severity, window_end
            # Worse is a new problem to respond to: "I'll look in the morning" about a P2 does not cover a P1.
            current.acknowledged_by = current.acknowledged_at = None
            current.escalation_level = 0
            _note_diagnosis(current, seen)
            announce(current, AnnouncementKind.ESCALATED)
        elif seen.still_bad and window_end - current.last_announced_at >= reminder:
            current.reminders += 1
            announce(current, AnnouncementKind.REMINDER)
        if not seen.still_bad:
            current.resolved_at, current.resolved_by = seen.last_bad + seen.period, run_id
            announce(current, AnnouncementKind.RESOLVED)
    record.watched_until[watch] = window_end
    return claimed


def _note_diagnosis(incident: Incident, seen: Observation) -> None:
    if seen.diagnosis is None:
        return
    incident.diagnosis, incident.diagnosis_missing = list(seen.diagnosis.lines), seen.diagnosis.missing
    if seen.diagnosis.next_step:
        incident.next_step = seen.diagnosis.next_step


def escalate(record: IncidentRecord, *, window_end: datetime, run_id: str, response: timedelta, contacts: int,
             skip: Callable[[Incident], bool] = lambda incident: False) -> list[Announcement]:
    """Page the next on-call contact for each open P1 nobody acknowledged within its response time.

    Level n is due n response times after the incident became P1 (secondary after one, the
    escalation contact after two). After a scheduler gap only the level now due is paged, once: the
    level reached is in the record, which is written conditionally, so two watches never page twice.
    """
    claimed: list[Announcement] = []
    for incident in record.incidents.values():
        if not incident.is_open or incident.severity is not Severity.P1 or incident.acknowledged_at or skip(incident):
            continue
        if incident.severity_since is None:
            # Opened before escalation existed: its response time starts now, not hours ago.
            incident.severity_since = window_end
            continue
        due = min(int((window_end - incident.responding_since) / response), contacts - 1)
        if due > incident.escalation_level:
            incident.escalation_level = due
            item = Announcement(incident_id=incident.id, kind=AnnouncementKind.PAGED, at=window_end,
                                claimed_by=run_id, detail=str(due))
            record.announcements.append(item)
            claimed.append(item)
    return claimed


class AcknowledgeRefused(Exception):
    """The incident cannot be acknowledged (unknown, resolved, or already acknowledged): the reason."""


def acknowledge(record: IncidentRecord, incident_id: str, *, by: str, at: datetime) -> Announcement:
    """Record who took the incident; the announcement tells the channel and PagerDuty."""
    incident = record.incidents.get(incident_id)
    if incident is None:
        raise AcknowledgeRefused(f"no incident {incident_id!r} in the record (resolved and pruned, or mistyped)")
    if incident.acknowledged_at is not None:
        raise AcknowledgeRefused(f"already acknowledged by {incident.acknowledged_by} at "
                                 f"{incident.acknowledged_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    if not incident.is_open:
        raise AcknowledgeRefused(f"already resolved at {incident.resolved_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    incident.acknowledged_by, incident.acknowledged_at = by, at
    item = Announcement(incident_id=incident.id, kind=AnnouncementKind.ACKNOWLEDGED, at=at,
                        claimed_by=f"dashboard:{by}", detail=by)
    record.announcements.append(item)
    return item


def _worse(value: float, than: float, bad_when: str) -> bool:
    return value > than if bad_when == "above" else value < than


def prune(record: IncidentRecord, now: datetime, keep_resolved: timedelta) -> None:
    """Keep the record small: resolved incidents past `keep_resolved`, delivered announcements past two days."""
    record.incidents = {i.id: i for i in record.incidents.values()
                        if i.resolved_at is None or now - i.resolved_at <= keep_resolved}
    record.announcements = [a for a in record.announcements
                            if a.outcome in ("pending", "failed") or now - a.at <= ANNOUNCEMENT_HISTORY]


def response_times(record: IncidentRecord, start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
    """Per severity, of the incidents that began in [start, end): how many, MTTA (acknowledged after
    the on-call contact was told) and MTTR (resolved after the problem began), in minutes."""
    by_severity: dict[str, list[Incident]] = {}
    for incident in record.incidents.values():
        if start <= incident.started_at < end:
            by_severity.setdefault(incident.severity.value, []).append(incident)

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 1) if values else None

    return {severity: {
        "incidents": len(incidents),
        "acknowledged": sum(1 for i in incidents if i.acknowledged_at),
        "mtta_minutes": mean([(i.acknowledged_at - i.responding_since).total_seconds() / 60
                              for i in incidents if i.acknowledged_at]),
        "resolved": sum(1 for i in incidents if i.resolved_at),
        "mttr_minutes": mean([(i.resolved_at - i.started_at).total_seconds() / 60 for i in incidents if i.resolved_at]),
    } for severity, incidents in sorted(by_severity.items())}


def incident_key(config: Any) -> str:
    """Where the environment's record lives in the reports bucket."""
    prefix = config.reports.prefix.strip("/")
    return "/".join(p for p in (prefix, config.watch.state_prefix, f"{config.environment}.json") if p)


def incident_for(incidents: Iterable[Incident], check: str, resource: str) -> Incident | None:
    """The earliest incident about a finding's check and resource (the watch may name a part of the
    resource: "production-alb (target 5xx)", "production-alb/solemate-backend")."""
    matching = [i for i in incidents if i.check == check and (
        i.resource == resource or i.resource.startswith((resource + " ", resource + "/")))]
    return min(matching, key=lambda i: i.started_at, default=None)


class RecordConflict(Exception):
    """Another watch wrote the record between this one's read and write (S3 answered 412 or 409)."""


class IncidentStore:
    """The record in S3, read with its ETag and written only over that ETag."""

    def __init__(self, *, s3_client: Any, bucket: str, key: str, environment: str) -> None:
        self.s3 = s3_client
        self.bucket = bucket
        self.key = key
        self.environment = environment

    @classmethod
    def for_config(cls, config: Any, *, aws_conn_id: str | None, region_name: str | None) -> IncidentStore:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return cls(s3_client=S3Hook(aws_conn_id=aws_conn_id, region_name=region_name).conn,
                   bucket=config.reports.bucket, key=incident_key(config), environment=config.environment)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def read(self) -> tuple[IncidentRecord, str | None]:
        """The record and its ETag; an empty record and None when there is none yet."""
        from botocore.exceptions import ClientError

        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404", "NotFound"):
                return IncidentRecord(environment=self.environment), None
            raise
        text = response["Body"].read().decode("utf-8")
        return IncidentRecord.model_validate_json(text), response["ETag"]

    def write(self, record: IncidentRecord, etag: str | None) -> str:
        """Write over `etag` (None: only if there is still no record). Raises RecordConflict otherwise."""
        from botocore.exceptions import ClientError

        body = json.dumps(record.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            response = self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=body.encode(),
                                          ContentType="application/json", **condition)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                raise RecordConflict(f"{self.uri} changed since it was read ({code})") from exc
            if code in ("NoSuchKey",) and etag:  # deleted meanwhile: treat as a conflict, re-read
                raise RecordConflict(f"{self.uri} was deleted since it was read") from exc
            raise
        return response.get("ETag", "")

    def update(self, change: Callable[[IncidentRecord], Any]) -> tuple[IncidentRecord, Any]:
        """Read, apply `change`, write conditionally; on a conflict read again and re-apply (the change
        must be a function of the record it gets). Returns the written record and `change`'s result."""
        for _attempt in range(MAX_WRITE_ATTEMPTS):
            record, etag = self.read()
            result = change(record)
            try:
                self.write(record, etag)
            except RecordConflict:
                continue
            return record, result
        raise RecordConflict(f"{self.uri}: still changing after {MAX_WRITE_ATTEMPTS} attempts")
