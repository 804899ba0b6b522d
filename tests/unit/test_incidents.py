"""The incident record: opened once, quiet while it lasts, reminded rarely, resolved once; written only
over the version that was read, so two watches racing never both announce."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto.server import ThreadedMotoServer

from sandbox.servers import free_port
from solemate_maintenance.config import Lower, Upper
from solemate_maintenance.findings import Severity, Status
from solemate_maintenance.incidents import (
    AcknowledgeRefused,
    AnnouncementKind,
    IncidentRecord,
    IncidentStore,
    Observation,
    RecordConflict,
    acknowledge,
    apply_observations,
    escalate,
    prune,
)
from solemate_maintenance.series import judge

DAY = datetime(2026, 11, 26, tzinfo=UTC)
FIVE = timedelta(minutes=5)
KEY = "rds.cpu_utilization|production-postgres"


def at(hour: int, minute: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute)


def cpu(first: datetime | None, last: datetime | None, *, still_bad: bool = True,
        severity: Severity | None = Severity.P2, has_data: bool = True) -> Observation:
    return Observation(key=KEY, check="rds.cpu_utilization", resource="production-postgres",
                       severity=severity if first else None, summary="CPUUtilization 95 %", first_bad=first,
                       last_bad=last, still_bad=still_bad, peak=95.0 if first else None, peak_at=first, unit="%",
                       has_data=has_data)


def advance(record: IncidentRecord, seen: Observation, end: datetime, run: str = "r") -> list[str]:
    claimed = apply_observations(record, [seen], watch="performance_watch", run_id=run, window_end=end,
                                 open_severity=Severity.P2, reminder=timedelta(hours=2))
    return [a.kind.value for a in claimed]


def test_an_incident_opens_once_stays_quiet_reminds_and_resolves_once():
    record = IncidentRecord(environment="production")
    assert advance(record, cpu(at(12), at(12, 10)), at(12, 15)) == ["opened"]
    [incident] = record.incidents.values()
    assert incident.started_at == at(12) and incident.opened_at == at(12, 15)
    # Quiet while it persists, until reminder_hours after the last announcement.
    for minute in range(30, 120 + 15, 15):
        end = at(12) + timedelta(minutes=minute)
        assert advance(record, cpu(end - timedelta(minutes=15), end - FIVE), end) == [], end
    assert advance(record, cpu(at(14), at(14, 10)), at(14, 15)) == ["reminder"]
    assert advance(record, cpu(at(14, 15), at(14, 25)), at(14, 30)) == []
    # Healthy on data: resolved one period after the last bad datapoint began.
    assert advance(record, cpu(None, None), at(14, 45)) == ["resolved"]
    assert incident.resolved_at == at(14, 30) and incident.duration(at(23)) == timedelta(hours=2, minutes=30)
    assert advance(record, cpu(None, None), at(15)) == []
    # Without data nothing is decided: a new incident, once; still open while the metric is silent.
    assert advance(record, cpu(at(16), at(16, 10)), at(16, 15)) == ["opened"]
    assert advance(record, cpu(None, None, has_data=False), at(16, 30)) == []
    assert sum(i.is_open for i in record.incidents.values()) == 1


def test_worse_is_news_and_a_window_already_watched_changes_nothing():
    record = IncidentRecord(environment="production")
    advance(record, cpu(at(12), at(12, 10)), at(12, 15))
    assert advance(record, cpu(at(12, 15), at(12, 25), severity=Severity.P1), at(12, 30)) == ["escalated"]
    assert next(iter(record.incidents.values())).severity is Severity.P1
    # A cleared run or a retry for 12:15 (already judged): it neither re-opens nor resolves anything.
    assert advance(record, cpu(None, None), at(12, 15), run="cleared") == []
    assert advance(record, cpu(None, None), at(12, 30), run="retry") == []
    assert record.watched_until["performance_watch"] == at(12, 30)


def test_a_problem_seen_and_cleared_inside_one_window_is_one_message_and_milder_ones_open_nothing():
    record = IncidentRecord(environment="production")
    assert advance(record, cpu(at(12), at(12, 5), still_bad=False), at(12, 15)) == ["brief"]
    [incident] = record.incidents.values()
    assert (incident.started_at, incident.resolved_at) == (at(12), at(12, 10))
    assert advance(record, cpu(at(13), at(13, 10), severity=Severity.P3), at(13, 15)) == []
    assert len(record.incidents) == 1


def test_pruning_keeps_open_incidents_and_undelivered_announcements():
    record = IncidentRecord(environment="production")
    advance(record, cpu(at(1), at(1, 5), still_bad=False), at(1, 15))
    advance(record.model_copy(), cpu(None, None), at(1, 30))
    later = at(1) + timedelta(days=50)
    prune(record, later, timedelta(days=45))
    assert record.incidents == {}
    assert [a.outcome for a in record.announcements] == ["pending"]  # never delivered: kept for a retry


@pytest.mark.parametrize(("values", "status", "spans", "still_bad"), [
    ([20, 30, 25], Status.OK, [], False),
    ([20, 75, 95, 96, 30, 85], Status.CRITICAL, [(5, 20), (25, 30)], True),
    ([20, 75, 20], Status.WARNING, [(5, 10)], False),
])
def test_every_datapoint_is_judged_with_when_it_was_bad(values, status, spans, still_bad):
    points = [(at(12) + i * FIVE, float(v)) for i, v in enumerate(values)]
    verdict = judge(points, Upper(warning=70, critical=80), FIVE)
    assert verdict.status is status
    assert verdict.spans == [(at(12, a), at(12, b)) for a, b in spans]
    assert verdict.still_bad is still_bad
    if spans:
        assert "peak" in verdict.when("%") and verdict.when("%").startswith(f"12:{spans[0][0]:02d}–")


def test_a_rate_is_judged_on_its_worst_datapoint_not_its_average():
    # An hour at 70 % in a day at 99.4 %: the day's average is 98.2 %, the worst 5 minutes 70 %.
    points = [(DAY + i * FIVE, 70.0 if 120 <= i < 132 else 99.4) for i in range(288)]
    verdict = judge(points, Lower(warning=98, critical=95), FIVE)
    assert verdict.status is Status.CRITICAL and verdict.worst == 70
    assert verdict.spans == [(at(10), at(11))] and verdict.minutes_bad == 60


# -- the record in S3, written conditionally -------------------------------------------------------
@pytest.fixture(scope="module")
def s3_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    url = f"http://127.0.0.1:{server._port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    client.create_bucket(Bucket="reports")
    yield url
    server.stop()


def store_for(url: str, key: str) -> IncidentStore:
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    return IncidentStore(s3_client=client, bucket="reports", key=key, environment="production")


def test_sandbox_s3_decides_racing_conditional_writes_one_at_a_time(s3_server):
    """What the watch relies on: of many simultaneous creators, S3 lets exactly one win (the sandbox's
    moto server too, on its request threads)."""
    clients = [boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1") for _ in range(8)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(clients))

    def create(client) -> None:
        barrier.wait()
        try:
            client.put_object(Bucket="reports", Key="race/create.json", Body=b"{}", IfNoneMatch="*")
            outcomes.append("written")
        except client.exceptions.ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])

    threads = [threading.Thread(target=create, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["PreconditionFailed"] * 7 + ["written"]


def test_a_write_over_a_stale_version_is_refused(s3_server):
    store = store_for(s3_server, "stale/production.json")
    record, etag = store.read()
    assert etag is None and record.incidents == {}
    first = store.write(record, None)
    with pytest.raises(RecordConflict):
        store.write(record, None)  # created meanwhile
    changed = record.model_copy(update={"watched_until": {"performance_watch": at(12)}})
    store.write(changed, first)
    with pytest.raises(RecordConflict):
        store.write(record, first)  # changed since `first` (S3's ETag is the content's: a change is needed)


def test_two_watches_racing_open_the_incident_once(s3_server):
    """Eight watches (workers, a manual trigger beside the schedule) see the same problem at once:
    one opens it; the others redo their change on its record and find it already open."""
    store_key = "race/production.json"
    claims: list[list[str]] = []
    barrier = threading.Barrier(8)

    def watch(run: int) -> None:
        store = store_for(s3_server, store_key)
        barrier.wait()
        _, claimed = store.update(lambda record: advance(record, cpu(at(12), at(12, 10)), at(12, 15) + run * FIVE,
                                                         run=f"run-{run}"))
        claims.append(claimed)

    threads = [threading.Thread(target=watch, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claims) == [[]] * 7 + [["opened"]]
    record, _ = store_for(s3_server, store_key).read()
    assert [a.kind for a in record.announcements] == [AnnouncementKind.OPENED]
    assert len(record.incidents) == 1


def escalations(record: IncidentRecord, end: datetime) -> list[str]:
    return [a.detail for a in escalate(record, window_end=end, run_id="r", response=timedelta(minutes=15),
                                       contacts=3)]


def test_acknowledging_a_p2_does_not_cover_it_becoming_p1():
    record = IncidentRecord(environment="production")
    advance(record, cpu(at(2), at(2), severity=Severity.P2), at(2, 15))
    [incident] = record.incidents.values()
    acknowledge(record, incident.id, by="ana", at=at(2, 20))
    with pytest.raises(AcknowledgeRefused, match="already acknowledged by ana at 2026-11-26 02:20 UTC"):
        acknowledge(record, incident.id, by="ben", at=at(2, 21))
    assert advance(record, cpu(at(2), at(3), severity=Severity.P1), at(3, 15)) == ["escalated"]
    assert incident.acknowledged_at is None and incident.severity_since == at(3, 15)
    # Its response time counts from when it became P1: the secondary at 03:30, the escalation at 03:45.
    assert [escalations(record, at(h, m)) for h, m in ((3, 15), (3, 30), (3, 30), (3, 45), (4, 0))] == \
        [[], ["1"], [], ["2"], []]


def test_after_a_gap_only_the_level_now_due_is_paged_and_an_old_p1_starts_its_clock_now():
    record = IncidentRecord(environment="production")
    advance(record, cpu(at(2), at(2), severity=Severity.P1), at(2, 15))
    assert escalations(record, at(4)) == ["2"]  # the scheduler was down: the escalation contact, once
    assert escalations(record, at(4, 15)) == []
    [incident] = record.incidents.values()
    incident.severity_since, incident.escalation_level = None, 0  # an incident opened before escalation existed
    assert escalations(record, at(9)) == []  # not straight to the escalation contact: its clock starts now
    assert escalations(record, at(9, 15)) == ["1"]


def test_a_resolved_or_unknown_incident_cannot_be_acknowledged():
    record = IncidentRecord(environment="production")
    advance(record, cpu(at(2), at(2)), at(2, 15))
    advance(record, cpu(None, None), at(2, 30))
    [incident] = record.incidents.values()
    with pytest.raises(AcknowledgeRefused, match="already resolved at 2026-11-26 02:05 UTC"):
        acknowledge(record, incident.id, by="ana", at=at(2, 40))
    with pytest.raises(AcknowledgeRefused, match="no incident 'nope'"):
        acknowledge(record, "nope", by="ana", at=at(2, 40))
