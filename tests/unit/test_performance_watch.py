"""performance_watch across a day: the issue's incidents staged at their times, a watch every 15
minutes (with a scheduler outage, a retry, a cleared run and two watches at once), each incident told
once within one watch of its start and once when it ends; SMS only for the emergency."""

from __future__ import annotations

import email
import email.header
import json
import threading
from datetime import datetime, timedelta

import pytest
from airflow.sdk.exceptions import AirflowSkipException
from moto import mock_aws
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from sandbox.platform import SNS_TOPIC, Platform
from sandbox.servers import SlackSink, SmtpSink
from solemate_maintenance.incidents import IncidentStore
from solemate_maintenance.operators.watch.performance import PerformanceWatchOperator
from solemate_maintenance.operators.watch.performance_plan import PerformancePlan, Targets
from tests.helpers import UNIT_NOW, make_context
from tests.unit.conftest import cached_clients

# The watched day is the unit tests' "now" (a live day: the watch pages only for the present).
DAY = UNIT_NOW.replace(hour=0)
INTERVAL = timedelta(minutes=15)
# The table, on one day.
EPISODES = [("payment_failures", 10, 11), ("rds_cpu", 12, 15), ("ecs_tasks", 12, 13), ("alb_5xx", 14, 16),
            ("slow_p99", 18, 19)]
OUTAGE = (DAY.replace(hour=16, minute=15), DAY.replace(hour=17, minute=45))  # no watch ran in between


def at(hour: int, minute: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute)


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """The watched day: every watch run of it, the messages, pages and mails they sent."""
    import os

    from sandbox import client_speedups
    from solemate_maintenance.config import load_config

    client_speedups.install()  # ~50 watch runs, each building its AWS clients as a task process does
    tmp = tmp_path_factory.mktemp("watch")
    slack, smtp = SlackSink(tmp / "slack.jsonl").start(), SmtpSink(tmp / "mail.jsonl").start()
    saved = dict(os.environ)
    os.environ["AIRFLOW_CONN_SLACK_ALERTS"] = json.dumps(
        {"conn_type": "slackwebhook", "host": f"{slack.url}/services", "password": "T0/B0/watchtoken123"})
    os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "ops@solemate.example"}})
    base = load_config()
    config = base.model_copy(update={
        "alerts": base.alerts.model_copy(update={
            "digest_email": ["oncall@solemate.example"],
            "sns_topic_arn": f"arn:aws:sns:us-east-1:{DEFAULT_ACCOUNT_ID}:{SNS_TOPIC}"}),
        "watch": base.watch.model_copy(update={"reminder_hours": 2})})
    try:
        with mock_aws():
            world = Platform(config, cached_clients(config.regions.primary))
            world.create()
            world.seed(at(21))
            world.stage([(kind, at(start), at(end)) for kind, start, end in EPISODES])
            results = Day(config)
            moment = at(9, 15)
            while moment <= at(20):
                if not OUTAGE[0] <= moment <= OUTAGE[1]:
                    results.watch(moment)
                if moment == at(13):
                    results.retried = results.watch(at(12, 15))  # try 2 of 12:15, after try 1 wrote
                    results.cleared = results.watch(at(12, 30), clear_number=1)
                if moment == at(14):
                    results.concurrent = results.racing(at(14, 15))
                    moment += INTERVAL  # 14:15 ran, twice at once
                moment += INTERVAL
            results.backfill_refused = _refused(config, at(11))
            results.record, _ = IncidentStore(s3_client=world._client("s3"), bucket=config.reports.bucket,
                                              key=f"reports/incidents/{config.environment}.json",
                                              environment=config.environment).read()
            results.pages = list(get_backend("sns")[DEFAULT_ACCOUNT_ID]["us-east-1"]
                                 .topics[config.alerts.sns_topic_arn].sent_notifications)
        results.messages = [m["payload"]["text"] for m in slack.messages()]
        results.mails = smtp.messages()
        yield results
    finally:
        os.environ.clear()
        os.environ.update(saved)
        slack.stop()
        smtp.stop()


class Day:
    def __init__(self, config):
        self.config = config
        self.results: dict[datetime, dict] = {}

    def watch(self, moment: datetime, clear_number: int = 0, run_id: str | None = None) -> dict:
        operator = PerformanceWatchOperator(task_id="watch", config=self.config, interval_minutes=15,
                                            max_window_minutes=240)
        context = make_context(moment, clear_number=clear_number, dag_id="performance_watch", task_id="watch",
                               run_id=run_id or f"scheduled__{moment.isoformat()}")
        result = operator.execute(context)
        self.results.setdefault(moment, result)
        return result

    def racing(self, moment: datetime) -> list[dict]:
        out: list[dict] = []
        barrier = threading.Barrier(2)

        def run(run_id: str) -> None:
            barrier.wait()
            out.append(self.watch(moment, run_id=run_id))

        threads = [threading.Thread(target=run, args=(r,)) for r in (f"scheduled__{moment.isoformat()}",
                                                                     f"manual__{moment.isoformat()}")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return out


def _refused(config, moment: datetime) -> str:
    operator = PerformanceWatchOperator(task_id="watch", config=config, interval_minutes=15, max_window_minutes=240)
    try:
        operator.execute(make_context(moment, run_type="backfill", dag_id="performance_watch"))
    except AirflowSkipException as exc:
        return str(exc)
    return ""


def titles(day: Day, needle: str) -> list[str]:
    return [m for m in day.messages if needle in m]


@pytest.mark.parametrize(("needle", "opened", "since", "resolved"), [
    ("payment success rate 70 %", "10:15", "10:00", "resolved after 1 h"),
    ("CPUUtilization 95 %", "12:15", "12:00", "resolved after 3 h"),
    ("1 of 4 tasks running", "12:15", "12:00", "resolved after 1 h"),
    ("target 5xx rate 20 %", "14:15", "14:00", "resolved after 2 h"),
    ("P99 response time 2995 ms", "18:15", "18:00", "resolved after 1 h"),
])
def test_each_incident_is_told_once_within_one_watch_of_its_start_and_once_when_it_ends(
        day, needle, opened, since, resolved):
    [incident] = [i for i in day.record.incidents.values() if i.summary.startswith(needle)]
    assert incident.started_at.strftime("%H:%M") == since
    assert incident.opened_at.strftime("%H:%M") == opened
    assert incident.opened_at - incident.started_at <= INTERVAL
    assert len([t for t in titles(day, incident.summary) if f"since {since} UTC" in t]) == 1
    [end] = [t for t in day.messages if resolved in t and f"{incident.label} on {incident.resource} " in t]
    assert f"({since}–" in end and "peak" in end


def test_a_long_incident_reminds_rarely_with_how_long_it_has_been_open(day):
    reminders = [t for t in day.messages if "still open for" in t]
    # rds CPU 12:00-15:00 with reminder_hours 2: one reminder at 14:15 ("open for 2 h 15 min").
    assert reminders == [t for t in reminders if "CPUUtilization" in t]
    assert len(reminders) == 1 and "still open for 2 h 15 min" in reminders[0]


def test_sms_only_for_the_emergency_and_email_for_critical(day):
    assert len(day.pages) == 1
    subject, message = day.pages[0][2], day.pages[0][1]
    assert "payment success rate" in subject and "Started" in message
    subjects = [str(email.header.make_header(email.header.decode_header(
        email.message_from_string(m["data"])["Subject"]))) for m in day.mails]
    # The P1 opened and resolved; the P2s stay in Slack (alerts.email_severities: [P1]).
    assert len(subjects) == 2, subjects
    assert "payment success rate" in subjects[0] and "since 10:00 UTC" in subjects[0]
    assert "resolved after 1 h" in subjects[1] and "payment success rate" in subjects[1]


def test_a_scheduler_outage_leaves_no_gap_unwatched(day):
    after = day.results[at(18)]
    assert after["window"] == {"start": at(16).isoformat(), "end": at(18).isoformat()}
    assert after["coverage"]["note"] == "since the previous watch"


def test_a_retry_a_cleared_run_and_two_watches_at_once_send_nothing_twice(day):
    assert day.retried["coverage"]["already_watched"] and day.retried["claimed"] == []
    assert day.cleared["coverage"]["already_watched"] and day.cleared["claimed"] == []
    claims = sorted(len(r["claimed"]) for r in day.concurrent)
    assert claims[0] == 0 and claims[1] >= 1  # one of the two opened the 5xx incident
    assert len(titles(day, "target 5xx rate 20")) == 1


def test_a_backfill_is_refused_and_pages_nothing(day):
    assert "BACKFILL" in day.backfill_refused and "daily_maintenance" in day.backfill_refused


def test_a_healthy_window_is_quiet_and_costs_two_metric_calls(day):
    quiet = day.results[at(9, 15)]
    assert quiet["problems"] == [] and quiet["claimed"] == [] and quiet["without_data"] == []
    plan = PerformancePlan(day.config, Targets(load_balancer="app/x/1", target_groups={"tg": "targetgroup/tg/1"}))
    assert len(plan.queries) <= 500 and len(plan.week_ago_queries) == 1


def test_every_message_names_when_it_started_or_how_long_it_lasted(day):
    assert day.messages
    for text in day.messages:
        assert "since" in text or "still open for" in text or "resolved after" in text or "cleared" in text, text


def test_the_record_stays_small(day):
    size = len(day.record.model_dump_json())
    assert size < 20_000, size
    assert not any(i.is_open for i in day.record.incidents.values())

