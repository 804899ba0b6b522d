"""Alerts that diagnose and escalate, on one sandbox day watched by the real performance watch.

Each troubleshooting case of the guide is staged as AWS shows it (stopped tasks and their containers,
target health, security groups, a CPU-heavy statement in the real PostgreSQL) beside the metric
episode that opens an incident; the Slack message received by the sink must carry the diagnosis and
the guide's next step, who is on call and by when, and the acknowledge link. Then: an unacknowledged
P1 pages the secondary and then the escalation contact on schedule, once each; an acknowledged one
pages nobody; PagerDuty (the provider, through a local Events API stand-in) sees trigger, acknowledge
and resolve with one dedup key.
"""

from __future__ import annotations

import email
import json
import os
import re
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from sandbox import troubles
from sandbox.platform import Platform
from sandbox.servers import PagerDutyEvents, SlackSink, SmtpSink
from solemate_maintenance.config.platform import Contact, OnCall, PagerDuty
from solemate_maintenance.dashboard.app import create_app
from solemate_maintenance.incidents import IncidentRecord, IncidentStore
from solemate_maintenance.operators.watch.performance import PerformanceWatchOperator
from tests.helpers import UNIT_NOW, make_context
from tests.unit.conftest import cached_clients

DAY = UNIT_NOW.replace(hour=0)
SECONDARY_TOPIC, ESCALATION_TOPIC = "solemate-oncall-secondary", "solemate-oncall-escalation"


def at(hour: int, minute: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute)


def text_of(payload: dict) -> str:
    """Everything a person reads in one Slack message: the title and every block."""
    return json.dumps(payload, ensure_ascii=False).replace("\\n", "\n")


class World:
    def __init__(self, platform, config, slack, smtp, pagerduty):
        self.platform, self.config, self.slack, self.smtp, self.pagerduty = platform, config, slack, smtp, pagerduty
        self.store = IncidentStore(s3_client=platform._client("s3"), bucket=config.reports.bucket,
                                   key=f"reports/incidents/{config.environment}.json", environment=config.environment)

    def fresh(self, memory: dict | None = None) -> None:
        """A new incident record (each case starts with no open incident), empty sinks, healthy AWS state."""
        troubles.clear(self.platform)
        self.store.s3.delete_object(Bucket=self.store.bucket, Key=self.store.key)
        if memory:
            self.store.write(IncidentRecord(environment=self.config.environment, memory=memory), None)
        self.slack.clear()
        self.smtp.clear()
        self.pagerduty.clear()

    def watch(self, moment: datetime, config=None) -> dict:
        operator = PerformanceWatchOperator(task_id="watch", config=config or self.config, interval_minutes=15,
                                            max_window_minutes=240)
        return operator.execute(make_context(moment, dag_id="performance_watch", task_id="watch",
                                             run_id=f"scheduled__{moment.isoformat()}"))

    def messages(self) -> list[str]:
        return [text_of(m["payload"]) for m in self.slack.messages()]

    def opened(self, check: str) -> str:
        found = [m for m in self.messages() if "Incident opened" in m and check in m]
        assert found, f"no opening message for {check}: {[m[:160] for m in self.messages()]}"
        return found[0]

    def pages(self, topic: str) -> list:
        arn = f"arn:aws:sns:us-east-1:{DEFAULT_ACCOUNT_ID}:{topic}"
        return list(get_backend("sns")[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[arn].sent_notifications)


@pytest.fixture(scope="module")
def world(tmp_path_factory, postgres):
    tmp = tmp_path_factory.mktemp("diagnosis")
    slack, smtp = SlackSink(tmp / "slack.jsonl").start(), SmtpSink(tmp / "mail.jsonl").start()
    pagerduty = PagerDutyEvents(tmp / "pagerduty.jsonl", tmp).start()
    saved = dict(os.environ)
    os.environ.update({
        "AIRFLOW_CONN_SLACK_ALERTS": json.dumps({"conn_type": "slackwebhook", "host": f"{slack.url}/services",
                                                 "password": "T0/B0/diagnosetoken1"}),
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port,
            "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "ops@solemate.example"}}),
        "AIRFLOW_CONN_PLATFORM_DB": json.dumps(postgres.connection),
        "AIRFLOW_CONN_PAGERDUTY_EVENTS_DEFAULT": json.dumps({"conn_type": "pagerduty_events",
                                                             "password": "R0UTINGKEYsandbox42"}),
        **pagerduty.environment()})
    from sandbox import client_speedups
    from solemate_maintenance.config import load_config

    client_speedups.install()
    base = load_config()
    topic = f"arn:aws:sns:us-east-1:{DEFAULT_ACCOUNT_ID}:"
    on_call = OnCall(primary=Contact(name="Ana (primary)", slack="U0PRIMARY1", email="ana@solemate.example"),
                     secondary=Contact(name="Ben (secondary)", slack="U0SECOND22", email="ben@solemate.example",
                                       sns_topic_arn=topic + SECONDARY_TOPIC),
                     escalation=Contact(name="Cleo (engineering lead)", email="cleo@solemate.example",
                                        sns_topic_arn=topic + ESCALATION_TOPIC))
    config = base.model_copy(update={"alerts": base.alerts.model_copy(update={
        "on_call": on_call, "airflow_url": "https://airflow.solemate.example"})})
    try:
        with mock_aws():
            platform = Platform(config, cached_clients(config.regions.primary))
            platform.create()
            platform.seed(at(21))
            # Performance Insights off: under mock_aws there is no PI to ask (the moto server's stand-in
            # is in the end-to-end watch test); the diagnosis then says to turn it on.
            from moto.backends import get_backend

            get_backend("rds")[DEFAULT_ACCOUNT_ID][config.regions.primary].databases[
                config.resources.rds.instance_id].performance_insights_enabled = False
            for name in (SECONDARY_TOPIC, ESCALATION_TOPIC):
                platform._client("sns").create_topic(Name=name)
            yield World(platform, config, slack, smtp, pagerduty)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for server in (slack, smtp, pagerduty):
            server.stop()
        postgres.drop_pg_stat_statements()


# -- the troubleshooting cases ---------------------------------------------------------------------
def test_tasks_that_cannot_pull_their_image_name_the_image_and_the_fix(world):
    world.fresh()
    world.platform.stage([("ecs_tasks", at(5), at(6))])
    troubles.stage(world.platform, "image_missing", at(5, 2))
    world.watch(at(5, 15))
    message = world.opened("ecs.task_count")
    assert "CannotPullContainerError" in message
    assert troubles.MISSING_TAG in message  # the image named, from the stopped task and the task definition
    assert "unable to place a task" in message  # the service's latest event
    assert "exists in ECR" in message and "execution role" in message  # the guide's solutions
    # Who and by when: P2 responds within an hour; the primary is mentioned (Slack notifies them).
    assert "P2 — respond by 06:15 UTC (1 h); on call: <@U0PRIMARY1>" in message
    assert "https://airflow.solemate.example/solemate/incidents/" in message and "Acknowledge" in message


def test_tasks_killed_for_memory_show_the_exit_code_the_memory_used_and_the_limit(world):
    world.fresh()
    world.platform.stage([("ecs_tasks", at(6), at(7))])
    troubles.stage(world.platform, "out_of_memory", at(6, 3))
    world.watch(at(6, 15))
    message = world.opened("ecs.task_count")
    assert "OutOfMemoryError" in message and "exit 137" in message
    assert "memory used: peak 99 %" in message
    assert "raise the task definition's memory (now 1024 MiB in container limits)" in message


def test_502_from_unhealthy_targets_names_the_health_check_answer_and_who_produced_the_errors(world):
    world.fresh()
    world.platform.stage([("targets_down", at(7), at(8)), ("alb_502", at(7), at(8))])
    troubles.stage(world.platform, "targets_failing", at(7))
    world.watch(at(7, 15))
    targets = world.opened("application.alb_targets")
    assert "Target.ResponseCodeMismatch — Health checks failed with these codes: [500]" in targets
    assert "health-check path" in targets
    errors = world.opened("ELB 5xx")
    assert re.search(r"ELB 502 [1-9]\d+, 503 0, 504 0; target 5xx \d\b", errors)  # who produced them
    assert "The load balancer produced most errors" in errors


def test_502_from_a_blocked_security_group_names_the_rule_to_add(world):
    world.fresh()
    world.platform.stage([("targets_down", at(8), at(9)), ("alb_502", at(8), at(9))])
    troubles.stage(world.platform, "security_group_blocked", at(8))
    world.watch(at(8, 15))
    message = world.opened("application.alb_targets")
    assert "Target.Timeout — Request timed out" in message
    assert "allow no inbound TCP 8080 from the ALB's sg-" in message
    what_to_do = message.split("*What to do*", 1)[1]
    assert what_to_do.lstrip().startswith("Add an inbound rule to sg-")  # the cause first, not the symptom
    assert "for TCP 8080 from the ALB's security group sg-" in what_to_do


def test_high_database_cpu_names_the_statement_that_used_the_time(world, postgres):
    heavy = "SELECT * FROM orders WHERE lower(customer_email) = $1"
    # The hourly database watch's counters: the heavy statement was cheap an hour ago.
    world.fresh(memory={"database_watch": {"statements": {"202": [1000, 2000.0, 2.0], "101": [500, 500.0, 1.0]}}})
    postgres.stand_in_pg_stat_statements([(101, "SELECT 1", 600, 1.0), (202, heavy, 6000, 150.0)])
    world.platform.stage([("rds_cpu", at(11), at(12))])
    world.watch(at(11, 15))
    message = world.opened("rds.cpu_utilization")
    # 6000 calls × 150 ms = 900 s in all, 2 s of it before the watch's counters: 898 s in 5000 calls.
    assert "statement 202: 898.0 s in 5000 calls" in message and "since the hourly database watch" in message
    assert "lower(customer_email)" in message
    assert "connections: " in message and "of max_connections" in message
    assert "Performance Insights is off" in message and "read replicas: none" in message
    assert "EXPLAIN (ANALYZE, BUFFERS) on statement 202" in message


def test_a_diagnosis_call_that_fails_still_sends_the_alert_saying_what_is_missing(world, monkeypatch):
    from moto.core.exceptions import ServiceException
    from moto.ecs.models import EC2ContainerServiceBackend

    # The usual real-world cause: the role lacks a permission the diagnosis needs.
    denied = type("AccessDeniedException", (ServiceException,),
                  {"code": "AccessDeniedException", "__module__": EC2ContainerServiceBackend.__module__})

    def refuse(self, *args, **kwargs):
        raise denied("User is not authorized to perform: ecs:DescribeTasks")

    world.fresh()
    world.platform.stage([("ecs_tasks", at(12), at(13))])
    troubles.stage(world.platform, "image_missing", at(12))
    monkeypatch.setattr(EC2ContainerServiceBackend, "describe_tasks", refuse)
    world.watch(at(12, 15))
    message = world.opened("ecs.task_count")
    assert ("diagnosis incomplete: the stopped tasks (ecs:ListTasks, ecs:DescribeTasks): AccessDeniedException: "
            "User is not authorized to perform: ecs:DescribeTasks") in message
    assert "unable to place a task" in message  # what the other calls learnt is kept


# -- escalation and acknowledgement -----------------------------------------------------------------
def test_an_unacknowledged_p1_pages_the_secondary_then_the_escalation_contact_once_each(world):
    world.fresh()
    world.platform.stage([("targets_down", at(13), at(15))])
    troubles.stage(world.platform, "targets_failing", at(13))
    secondary_before, escalation_before = len(world.pages(SECONDARY_TOPIC)), len(world.pages(ESCALATION_TOPIC))
    claimed = {moment: world.watch(at(*moment))["claimed"] for moment in ((13, 15), (13, 30), (13, 45), (14, 0))}
    paged = {moment: [c for c in kinds if c.startswith("paged:")] for moment, kinds in claimed.items()}
    # Opened at 13:15; P1 responds within 15 min: 13:30 the secondary, 13:45 the escalation contact, then no one.
    assert [len(paged[m]) for m in ((13, 15), (13, 30), (13, 45), (14, 0))] == [0, 1, 1, 0]
    assert world.watch(at(13, 45))["claimed"] == []  # a re-run of 13:45 pages nobody again
    messages = [m for m in world.messages() if "not acknowledged after" in m]
    assert len(messages) == 2
    assert "paging the secondary Ben (secondary)" in messages[0] and "<@U0SECOND22>" in messages[0]
    assert "paging the escalation Cleo (engineering lead)" in messages[1]
    assert len(world.pages(SECONDARY_TOPIC)) == secondary_before + 1
    assert len(world.pages(ESCALATION_TOPIC)) == escalation_before + 1
    mails = {email.message_from_string(m["data"])["To"] for m in world.smtp.messages()}
    assert {"ben@solemate.example", "cleo@solemate.example"} <= mails
    opening = world.opened("application.alb_targets")
    assert "P1 — respond by 13:30 UTC (15 min); on call: <@U0PRIMARY1>; unacknowledged, <@U0SECOND22> " \
           "(secondary) is paged then" in opening


def dashboard(config) -> TestClient:
    def allow_everyone() -> None:
        return None

    def operator_ana() -> str:
        return "ana"

    return TestClient(create_app(config_loader=lambda: config, guard=allow_everyone,
                                 login_url=lambda url: url, operator=operator_ana))


def test_an_acknowledged_p1_pages_nobody_and_the_channel_hears_who_took_it(world, frozen_calendar):
    world.fresh()
    world.platform.stage([("payment_failures", at(16), at(17))])
    world.watch(at(16, 15))
    record, _ = world.store.read()
    (incident_id,) = [i for i in record.incidents if i.startswith("business.payment_success_rate")]
    client = dashboard(world.config)
    page = client.get(f"/incidents/{incident_id}")
    assert page.status_code == 200 and "Acknowledge: I take it" in page.text
    assert world.store.read()[0].incidents[incident_id].acknowledged_at is None  # opening the link changes nothing
    frozen_calendar.move_to(at(16, 22))
    answer = client.post(f"/incidents/{incident_id}/acknowledge")
    assert answer.status_code == 200 and "Acknowledged by ana at 16:22 UTC: the channel was told" in answer.text
    assert [m for m in world.messages() if "ana acknowledged" in m and "escalation stops" in m]
    assert client.post(f"/incidents/{incident_id}/acknowledge").status_code == 409  # already taken: says by whom
    claimed = [c for moment in ((16, 30), (16, 45), (17, 0), (17, 15)) for c in world.watch(at(*moment))["claimed"]]
    assert not [c for c in claimed if c.startswith("paged:")]
    assert [c for c in claimed if c.startswith("resolved:")] == [f"resolved:{incident_id}"]  # it still ends once
    refused = client.post("/incidents/no-such-incident/acknowledge")
    assert refused.status_code == 404 and "No incident <code>no-such-incident</code>" in refused.text
    cross_site = client.post(f"/incidents/{incident_id}/acknowledge", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403


def test_pagerduty_triggers_acknowledges_and_resolves_one_incident_with_one_dedup_key(world, frozen_calendar):
    config = world.config.model_copy(update={"alerts": world.config.alerts.model_copy(
        update={"pagerduty": PagerDuty(severities=["P1"])})})
    world.fresh()
    world.platform.stage([("targets_down", at(18), at(19))])
    troubles.stage(world.platform, "targets_failing", at(18))
    world.watch(at(18, 15), config)
    record, _ = world.store.read()
    (incident_id,) = [i for i in record.incidents if i.startswith("application.alb_targets")]
    frozen_calendar.move_to(at(18, 25))
    assert dashboard(config).post(f"/incidents/{incident_id}/acknowledge").status_code == 200
    for moment in ((18, 30), (18, 45), (19, 0), (19, 15)):
        claimed = world.watch(at(*moment), config)["claimed"]
        assert not [c for c in claimed if c.startswith("paged:")]  # PagerDuty's escalation policy applies
    events = world.pagerduty.events()
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert len({e["dedup_key"] for e in events}) == 1 and incident_id in events[0]["dedup_key"]
    trigger = events[0]
    assert trigger["payload"]["severity"] == "critical" and trigger["routing_key"] == "R0UTINGKEYsandbox42"
    assert "Target.ResponseCodeMismatch" in json.dumps(trigger["payload"]["custom_details"])
    assert any("/solemate/incidents/" in link["href"] for link in trigger.get("links", []))
    assert "R0UTINGKEYsandbox42" not in "".join(world.messages())  # the key never reaches Slack


# -- the daily checks: the diagnosis travels with the finding ---------------------------------------
def ecs_check(world):
    from solemate_maintenance.operators.health.ecs import EcsServiceHealthOperator

    res = world.config.resources
    return EcsServiceHealthOperator(task_id="ecs_services", cluster=res.ecs.cluster, services=res.ecs.services,
                                    thresholds=world.config.checks.ecs, troubleshoot=world.config)


def test_a_failing_daily_check_carries_the_diagnosis_into_its_alert(world, frozen_calendar):
    from solemate_maintenance.notifiers.messages import failure_message
    from solemate_maintenance.run_facts import RunFacts

    frozen_calendar.move_to(at(5, 5))  # the run checks the present
    world.fresh()
    troubles.stage(world.platform, "image_missing", at(4, 40))
    context = failing_daily_ecs_check(world, make_context(at(5), dag_id="daily_maintenance", task_id="ecs_services"))
    [finding] = [f for f in context["ti"].pushed["findings"] if f["check"] == "ecs.task_count"]
    assert finding["diagnosis"]["calls"] <= 8 and any("CannotPullContainerError" in line
                                                       for line in finding["diagnosis"]["lines"])
    facts = RunFacts.from_context(context, page_max_age_hours=6, now=at(5, 5))
    _, _, attachments = failure_message(context, world.config.alerts, "production", facts, at(5, 5))
    text = json.dumps(attachments, ensure_ascii=False)
    assert "*Diagnosis*" in text and troubles.MISSING_TAG in text
    assert "exists in ECR" in text.split("*What to do*", 1)[1]  # the diagnosis's step, not the generic one
    # Who and by when; a failed task is not an incident: nobody is promised an escalation.
    assert "P1 — respond by 05:20 UTC (15 min); on call: <@U0PRIMARY1>\"" in text


def failing_daily_ecs_check(world, context):
    from solemate_maintenance.findings import ChecksFailedError

    service = world.platform._ecs_service(world.config.resources.ecs.services[0].name)
    service.running_count = 0  # no task could start: the service is down (P1)
    try:
        with pytest.raises(ChecksFailedError) as failed:
            ecs_check(world).execute(context)
    finally:
        service.running_count = service.desired_count
    context["exception"] = failed.value
    return context


def test_a_backfill_is_not_diagnosed_with_todays_state(world, frozen_calendar):
    frozen_calendar.move_to(at(5, 5))
    world.fresh()
    troubles.stage(world.platform, "image_missing", at(4, 40))
    context = failing_daily_ecs_check(world, make_context(at(5) - timedelta(days=3), run_type="backfill",
                                                          dag_id="daily_maintenance", task_id="ecs_services"))
    assert all(f.get("diagnosis") is None for f in context["ti"].pushed["findings"])


def test_a_healthy_daily_check_asks_aws_nothing_more(world, monkeypatch):
    from solemate_maintenance import troubleshooting

    def no_diagnosis(*args, **kwargs):
        raise AssertionError("a healthy run must not diagnose")

    world.fresh()
    monkeypatch.setattr(troubleshooting, "diagnose_findings", no_diagnosis)
    context = make_context(at(5), dag_id="daily_maintenance", task_id="ecs_services")
    ecs_check(world).execute(context)
    assert all(f.get("diagnosis") is None for f in context["ti"].pushed["findings"])
