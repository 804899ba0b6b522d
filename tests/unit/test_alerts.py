"""Failure alerts and Slack outages, against a real HTTP webhook sink (and SNS and S3 in moto)."""

from __future__ import annotations

import email
import json
import logging
import re
import time
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from sandbox.servers import SlackSink, free_port
from solemate_maintenance.aws_errors import PermanentAwsError, classify
from solemate_maintenance.config import load_config
from solemate_maintenance.config.platform import Contact, OnCall
from solemate_maintenance.findings import ChecksFailedError, Finding, Severity, Status
from solemate_maintenance.notifiers.delivery import DeliveryBudget, secret_forms, send_slack, slack_channel_for
from solemate_maintenance.notifiers.failure import COMMON_CAUSE_XCOM_KEY, MaintenanceFailureNotifier
from tests.helpers import ANCHOR, live_anchor, make_context

TOKEN = "T0TESTTEST/B0TESTTEST/" + "x1y2z3" * 4


@pytest.fixture
def sink(tmp_path, monkeypatch):
    server = SlackSink(tmp_path / "slack.jsonl").start()
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps(
        {"conn_type": "slackwebhook", "host": f"{server.url}/services", "password": TOKEN}))
    yield server
    server.stop()


@pytest.fixture
def config():
    return load_config()


@pytest.fixture
def alerts(config):
    return config.alerts.model_copy(update={"slack_timeout_seconds": 1, "on_call": OnCall(
        primary=Contact(name="Ana", slack="U0PRIMARY1"), secondary=Contact(name="Ben", email="ben@solemate.example"))})


def notifier(alerts, config=None, **kwargs):
    return MaintenanceFailureNotifier(alerts=alerts, environment="production",
                                      reports=config.reports if config else None, region_name="us-east-1", **kwargs)


def failed_context(severity=Severity.P2, anchor=None, summary="max CPUUtilization 95 % >= critical threshold 80",
                   check=None, **kwargs):
    # A P1 of the database is an outage (an SMS emergency); its CPU is at worst P2.
    check = check or ("rds.status" if severity == Severity.P1 else "rds.cpu_utilization")
    findings = [Finding(check=check, resource="production-postgres", status=Status.CRITICAL,
                        severity=severity, summary=summary)]
    context = make_context(anchor=anchor or live_anchor(), **{"task_id": "rds_health", **kwargs})
    context["exception"] = ChecksFailedError(findings)
    return context


def blocks_text(payload: dict) -> str:
    return json.dumps(payload["attachments"][0]["blocks"])


def test_failure_message_carries_what_on_call_needs(sink, alerts):
    anchor = live_anchor()
    context = failed_context(anchor=anchor)
    notifier(alerts).notify(context)
    [message] = sink.messages()
    payload = message["payload"]
    date = anchor.strftime("%Y-%m-%d %H:%M UTC")
    assert payload["text"] == f"[P2] production: daily_maintenance.rds_health failed — {date}"
    assert payload["attachments"][0]["color"] == alerts.severities["P2"].color
    text = blocks_text(payload)
    for expected in (f"*Checked date*\\n{date}", "*Window*\\nlive state at run time", "*Environment*\\nproduction",
                     "*Task*\\ndaily_maintenance.rds_health", "*Run*\\nscheduled__2026-11-20T02:00:00+00:00 (scheduled)",
                     "*What happened*\\nfailed on its findings; checks are not retried", "*Duration*",
                     "ChecksFailedError: 1 failing finding(s), worst P2", "max CPUUtilization 95 %",
                     "*What to do*\\nOpen Performance Insights for the window", context["ti"].log_url):
        assert expected in text, expected
    assert "BACKFILL" not in text and "PAST DATE" not in text and "(final: not retried)" not in text
    # Who is on and by when (P2: the guide's hour), counted from the alert.
    assert re.search(r"P2 \\u2014 respond by (\d{4}-\d\d-\d\d )?\d\d:\d\d UTC \(1 h\); on call: <@U0PRIMARY1>\"", text)
    [delivery] = context["ti"].pushed["alert_deliveries"]
    assert (delivery["channel"], delivery["ok"], delivery["outcome"], delivery["task_id"]) == \
        ("slack:slack_alerts", True, "delivered", "rds_health")


def test_backfill_of_a_past_day_says_so_and_does_not_page(sink, alerts, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_CRITICAL", json.dumps(
        {"conn_type": "slackwebhook", "host": f"{sink.url}/critical", "password": TOKEN}))
    with mock_aws():
        topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="solemate-p1")["TopicArn"]
        context = failed_context(Severity.P1, anchor=ANCHOR, run_type="backfill")
        notifier(alerts.model_copy(update={"sns_topic_arn": topic})).notify(context)
        sent = get_backend("sns")[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[topic].sent_notifications
    assert sent == []  # a backfill never pages
    [message] = sink.messages()
    assert message["payload"]["text"] == ("[P1] production: daily_maintenance.rds_health failed — "
                                          "2026-11-20 02:00 UTC [BACKFILL of a past date]")
    assert "not paging: a backfill" in blocks_text(message["payload"])
    assert "P1 \\u2014 a past date: no response time, nobody paged" in blocks_text(message["payload"])
    sns = [d for d in context["ti"].pushed["alert_deliveries"] if d["channel"] == "sns"]
    assert sns[0]["outcome"] == "skipped" and "not paging" in sns[0]["error"]


def test_manual_rerun_of_a_past_date_does_not_page_either(sink, alerts):
    with mock_aws():
        topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="p1")["TopicArn"]
        context = failed_context(Severity.P1, anchor=live_anchor() - timedelta(days=3), run_type="manual")
        notifier(alerts.model_copy(update={"sns_topic_arn": topic})).notify(context)
        assert get_backend("sns")[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[topic].sent_notifications == []
    assert "[PAST DATE checked 3 days later]" in sink.messages()[0]["payload"]["text"]


def test_live_p1_goes_to_the_critical_channel_and_pages_with_the_finding(sink, alerts, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_CRITICAL", json.dumps(
        {"conn_type": "slackwebhook", "host": f"{sink.url}/critical", "password": TOKEN}))
    with mock_aws():
        topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="solemate-p1")["TopicArn"]
        context = failed_context(Severity.P1, summary="payment success rate 80 % <= critical threshold 95")
        notifier(alerts.model_copy(update={"sns_topic_arn": topic})).notify(context)
        sent = get_backend("sns")[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[topic].sent_notifications
    assert [m["path"].split("/")[1] for m in sink.messages()] == ["critical"]
    [(_, message, subject, *_)] = sent
    assert subject.startswith("[P1] production: daily_maintenance.rds_health failed")
    assert "[P1] production-postgres: payment success rate 80 % <= critical threshold 95" in message
    assert "Checked: " + context["logical_date"].strftime("%Y-%m-%d %H:%M UTC") in message
    assert "Do: Check the RDS instance's events" in message  # rds.status's next step
    assert [d["channel"] for d in context["ti"].pushed["alert_deliveries"]] == ["slack:slack_critical", "sns"]


def test_only_an_emergency_p1_pages_by_sms_and_every_live_p1_is_emailed(sink, alerts, monkeypatch, tmp_path):
    """The guide: SMS for application unavailable, payment failures, database outage, a data breach. A
    certificate 7 days from expiry is P1 too: the critical channel and e-mail, not a phone at 3 a.m."""
    from sandbox.servers import SmtpSink

    monkeypatch.setenv("AIRFLOW_CONN_SLACK_CRITICAL", json.dumps(
        {"conn_type": "slackwebhook", "host": f"{sink.url}/critical", "password": TOKEN}))
    smtp = SmtpSink(tmp_path / "mail.jsonl").start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "ops@solemate.example"}}))
    try:
        with mock_aws():
            topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="p1")["TopicArn"]
            configured = alerts.model_copy(update={"sns_topic_arn": topic, "digest_email": ["oncall@solemate.example"]})
            certificate = failed_context(Severity.P1, check="certificates.acm", summary="7 days left",
                                         task_id="certificates")
            notifier(configured).notify(certificate)
            assert get_backend("sns")[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[topic].sent_notifications == []
            payments = failed_context(Severity.P1, check="business.payment_success_rate", summary="70 %",
                                      task_id="business_metrics")
            notifier(configured).notify(payments)
            pages = get_backend("sns")[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[topic].sent_notifications
            backfill = failed_context(Severity.P1, check="business.payment_success_rate", run_type="backfill",
                                      anchor=ANCHOR, task_id="business_metrics")
            notifier(configured).notify(backfill)
        mails = smtp.messages()
    finally:
        smtp.stop()
    [sms] = [d for d in certificate["ti"].pushed["alert_deliveries"] if d["channel"] == "sns"]
    assert sms["outcome"] == "skipped" and "certificates.acm is not one of alerts.sms_checks" in sms["error"]
    assert len(pages) == 1 and "70 %" in pages[0][1]
    assert [m["path"].split("/")[1] for m in sink.messages()] == ["critical"] * 3
    # Both live P1s by e-mail (the backfill's not: it is no alert about now).
    assert [m["to"] for m in mails] == [["oncall@solemate.example"]] * 2
    subjects = [str(email.header.make_header(email.header.decode_header(
        email.message_from_string(m["data"])["Subject"]))) for m in mails]
    assert "daily_maintenance.certificates failed" in subjects[0]
    assert "daily_maintenance.business_metrics failed" in subjects[1]


def test_p1_falls_back_to_the_default_channel(sink, alerts, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_CRITICAL", raising=False)
    assert slack_channel_for(Severity.P1, alerts) == "slack_alerts"
    assert slack_channel_for(Severity.P2, alerts) == "slack_alerts"


def test_crash_without_findings_is_p2_with_trimmed_scrubbed_error(sink, alerts):
    context = make_context(anchor=live_anchor(), task_id="ecs_services", try_number=3)
    context["exception"] = RuntimeError("boom " + "x" * 2000 + " postgresql://u:pw-in-url@h/db")
    notifier(alerts).notify(context)
    payload = sink.messages()[0]["payload"]
    assert payload["text"].startswith("[P2]")
    assert "RuntimeError: boom" in blocks_text(payload)
    assert "*What happened*\\nfailed on try 3 of 3 (retried 2\\u00d7, retries exhausted)" in blocks_text(payload)
    assert len(blocks_text(payload)) < 4000
    assert "pw-in-url" not in json.dumps(payload)


def test_permanent_aws_error_says_it_was_not_retried(sink, alerts):
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": "ClusterNotFoundException", "Message": "Cluster not found."}},
                        "DescribeServices")
    context = make_context(anchor=live_anchor(), task_id="ecs_services")
    context["exception"] = PermanentAwsError(classify(error), error)
    notifier(alerts).notify(context)
    text = blocks_text(sink.messages()[0]["payload"])
    assert "failed at once, not retried: AWS resource not found (ClusterNotFoundException)" in text
    assert "*What to do*\\nthe resource name in the platform config may be wrong" in text


def test_a_watch_without_a_report_alerts_a_platform_wide_cause_itself(sink, alerts):
    """performance_watch has no report task to send the one alert for a shared cause: its task says it."""
    from types import SimpleNamespace

    from botocore.exceptions import NoCredentialsError

    context = make_context(anchor=live_anchor(), task_id="watch", dag_id="performance_watch")
    context["task"] = SimpleNamespace(dag=SimpleNamespace(task_ids=["watch"]))
    error = NoCredentialsError()
    context["exception"] = PermanentAwsError(classify(error), error)
    notifier(alerts).notify(context)
    [message] = sink.messages()
    assert message["payload"]["text"].startswith("[P2] production: performance_watch.watch failed")
    assert "aws_default" in blocks_text(message["payload"])


def test_platform_wide_cause_is_left_to_the_report_not_alerted_per_task(sink, alerts):
    from botocore.exceptions import NoCredentialsError

    context = make_context(anchor=live_anchor(), task_id="ecs_services")
    error = NoCredentialsError()
    context["exception"] = PermanentAwsError(classify(error), error)
    notifier(alerts).notify(context)
    assert sink.messages() == []
    cause = context["ti"].pushed[COMMON_CAUSE_XCOM_KEY]
    assert cause["key"] == "aws-credentials" and cause["retryable"] is False
    assert "aws_default" in cause["hint"] and cause["log_url"] == context["ti"].log_url


def _earlier_report(config, anchor, severity, sns_outcome, key=None, run_id="scheduled__first"):
    from solemate_maintenance.notifiers.delivery import Delivery
    from solemate_maintenance.report import ReportedFinding, RunReport

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=config.reports.bucket)
    deliveries = [Delivery(kind="failure", channel="sns", ok=sns_outcome == "delivered", outcome=sns_outcome,
                           task_id="rds_health")] if sns_outcome else []
    earlier = RunReport(
        dag_id="daily_maintenance", run_id=run_id, run_type="scheduled",
        logical_date=anchor.isoformat(), data_interval_start=None, data_interval_end=None,
        environment="production", task_states={}, alert_deliveries=deliveries, findings=[ReportedFinding(
            check="rds.status" if severity == Severity.P1 else "rds.cpu_utilization", resource="production-postgres", status=Status.CRITICAL,
            severity=severity, summary="x", task_id="rds_health")])
    key = key or f"reports/daily_maintenance/by-logical-date/{anchor:%Y-%m-%dT%H%MZ}/report.json"
    s3.put_object(Bucket=config.reports.bucket, Key=key, Body=earlier.model_dump_json().encode())


@pytest.mark.parametrize(("earlier_severity", "earlier_page", "repeat"), [
    pytest.param(Severity.P1, "delivered", True, id="same-P1-already-paged"),
    pytest.param(Severity.P2, None, False, id="escalation-P2-to-P1-pages"),
    pytest.param(Severity.P1, "failed", False, id="earlier-page-never-arrived"),
    pytest.param(Severity.P1, "skipped", False, id="earlier-run-was-a-backfill"),
])
def test_rerun_of_an_alerted_date(sink, alerts, config, earlier_severity, earlier_page, repeat):
    anchor = live_anchor()
    with mock_aws():
        _earlier_report(config, anchor, earlier_severity, earlier_page)
        topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="p1")["TopicArn"]
        context = failed_context(Severity.P1, anchor=anchor, run_type="manual")
        notifier(alerts.model_copy(update={"sns_topic_arn": topic}), config).notify(context)
        pages = get_backend("sns")[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[topic].sent_notifications
    text = blocks_text(sink.messages()[0]["payload"])
    sns = [d for d in context["ti"].pushed["alert_deliveries"] if d["channel"] == "sns"]
    if repeat:
        assert pages == [] and "Already alerted" in text and "scheduled__first" in text
        assert sns[0]["error"] == "not paged: already paged by scheduled__first"
    else:
        assert len(pages) == 1 and "Already alerted" not in text
        assert sns[0]["outcome"] == "delivered"


@pytest.mark.parametrize(("hours_since_previous", "paged"), [(1, False), (8, True)])
def test_ongoing_p1_paged_by_the_previous_run_is_not_paged_again_soon_after(sink, alerts, config,
                                                                            hours_since_previous, paged):
    """A manual re-check an hour after the 02:00 run paged is the same incident; a day later it pages again."""
    from types import SimpleNamespace

    anchor = live_anchor()
    previous = anchor - timedelta(hours=hours_since_previous)
    with mock_aws():
        _earlier_report(config, previous, Severity.P1, "delivered", run_id="scheduled__previous",
                        key="reports/daily_maintenance/scheduled__previous/report.json")
        topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="p1")["TopicArn"]
        context = failed_context(Severity.P1, anchor=anchor, run_type="manual")
        context["ti"].previous_dagrun = SimpleNamespace(run_id="scheduled__previous", logical_date=previous)
        notifier(alerts.model_copy(update={"sns_topic_arn": topic}), config).notify(context)
        pages = get_backend("sns")[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[topic].sent_notifications
    assert len(pages) == (1 if paged else 0)
    assert ("scheduled__previous" in blocks_text(sink.messages()[0]["payload"])) is not paged


@pytest.mark.parametrize("outage", ["refused", "http_500"])
def test_channel_down_is_retried_once_then_recorded_not_raised(sink, alerts, outage, monkeypatch, caplog, capfd):
    if outage == "refused":
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps(
            {"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{free_port()}/services", "password": TOKEN}))
    sink.mode = "error"
    with caplog.at_level(logging.INFO):
        delivery = send_slack(kind="failure", conn_id="slack_alerts", text="t", attachments=[], alerts=alerts,
                              context=make_context())
    assert (delivery.ok, delivery.outcome) == (False, "failed")
    assert TOKEN.rsplit("/", 1)[1] not in delivery.error
    assert any("not delivered" in r.getMessage() for r in caplog.records)
    assert sink.messages() == []
    printed = "".join(capfd.readouterr())
    if outage == "refused":
        assert "Connection refused" in printed  # the libraries did log the failure...
    assert all(form not in printed for form in secret_forms(TOKEN))  # ...without the webhook token
    assert [r.getMessage().split("(attempt ")[1][:6] for r in caplog.records if "not delivered" in r.getMessage()] \
        == ["1 of 2", "2 of 2"]  # retried once, then given up
    if outage == "http_500":
        assert sink.attempts == 2


def test_a_stalled_webhook_is_unknown_not_failed_and_not_retried(sink, alerts):
    sink.mode, sink.slow_seconds = "slow", 2.0
    delivery = send_slack(kind="digest", conn_id="slack_alerts", text="t", attachments=[], alerts=alerts,
                          context=make_context())
    assert (delivery.ok, delivery.outcome) == (False, "unknown")
    time.sleep(1.5)
    assert sink.attempts == 1 and len(sink.messages()) == 1  # it did arrive, once


def test_delivery_budget_bounds_the_time_a_stalled_channel_costs(sink, alerts):
    sink.mode, sink.slow_seconds = "slow", 5.0
    budget = DeliveryBudget(1.5)
    started = time.monotonic()
    outcomes = [send_slack(kind="failure", conn_id="slack_alerts", text="t", attachments=[], alerts=alerts,
                           context=make_context(), budget=budget).outcome for _ in range(4)]
    assert outcomes == ["unknown", "unknown", "skipped", "skipped"]
    assert time.monotonic() - started < 3.5


def test_notifier_survives_slack_down(sink, alerts):
    sink.mode = "error"
    context = failed_context()
    notifier(alerts).notify(context)  # must not raise
    [delivery] = context["ti"].pushed["alert_deliveries"]
    assert delivery["ok"] is False and "500" in delivery["error"]


def test_secret_forms_cover_encodings():
    forms = secret_forms("p@ss/w0rd+x")
    assert {"p@ss/w0rd+x", "p%40ss%2Fw0rd%2Bx", "p%40ss/w0rd%2Bx", "cEBzcy93MHJkK3g=", "w0rd+x"} <= forms


def test_digest_email_through_the_smtp_provider(alerts, tmp_path, monkeypatch):
    from sandbox.servers import SmtpSink
    from solemate_maintenance.notifiers.delivery import send_email

    smtp = SmtpSink(tmp_path / "mail.jsonl").start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port,
            "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "ops@solemate.example"}}))
        delivery = send_email(kind="digest", to=["a@solemate.example"], subject="production: daily passed",
                              html="<pre>report token=abcdef1234567</pre>", alerts=alerts, context=make_context())
        [mail] = smtp.messages()
    finally:
        smtp.stop()
    assert delivery.ok is True and delivery.channel == "email"
    assert mail["from"] == "ops@solemate.example" and mail["to"] == ["a@solemate.example"]
    message = email.message_from_string(mail["data"])
    assert message["Subject"] == "production: daily passed"
    body = "".join(part.get_payload(decode=True).decode() for part in message.walk() if not part.is_multipart())
    assert "<pre>report token=***</pre>" in body  # decoded: the MIME body is base64


def test_email_server_down_is_recorded(alerts, monkeypatch):
    from solemate_maintenance.notifiers.delivery import send_email

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": free_port(), "extra": {"disable_tls": True}}))
    delivery = send_email(kind="digest", to=["a@solemate.example"], subject="s", html="h", alerts=alerts,
                          context=make_context())
    assert delivery.ok is False and delivery.error


def test_one_runs_deliveries_share_one_budget(sink, alerts):
    """Sequential tasks of one run (airflow dags test) do not each get the whole budget again."""
    sink.mode, sink.slow_seconds = "slow", 5.0
    alerts = alerts.model_copy(update={"delivery_budget_seconds": 2})
    started = time.monotonic()
    outcomes = []
    for _ in range(4):  # four failing tasks of the same run, one after another
        budget = DeliveryBudget.for_run(alerts.delivery_budget_seconds, "run-a")
        outcomes.append(send_slack(kind="failure", conn_id="slack_alerts", text="t", attachments=[], alerts=alerts,
                                   context=make_context(), budget=budget).outcome)
    assert outcomes == ["unknown", "unknown", "skipped", "skipped"]
    assert time.monotonic() - started < 3.5
    other_run = DeliveryBudget.for_run(alerts.delivery_budget_seconds, "run-b")
    assert other_run.remaining > 1.9  # another run starts afresh
    floor = DeliveryBudget.for_run(alerts.delivery_budget_seconds, "run-a", floor=1)
    assert floor.remaining > 0.9  # the digest always keeps one attempt


def test_nested_connection_extras_are_registered_with_the_masker(monkeypatch):
    from solemate_maintenance.notifiers import delivery

    registered = []
    monkeypatch.setattr(delivery, "register_secrets", lambda *values: registered.extend(values))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_NESTED", json.dumps({
        "conn_type": "aws", "login": "AKIANESTEDNESTED1234", "password": "top-secret-key",
        "extra": {"region_name": "us-east-1", "session_kwargs": {"aws_secret_access_key": "nested-secret-value",
                                                                  "profile_name": "not-a-secret"}}}))
    delivery.register_connection_secrets("aws_nested")
    assert {"top-secret-key", "AKIANESTEDNESTED1234", "nested-secret-value"} <= set(registered)
    assert "not-a-secret" not in registered and "us-east-1" not in registered


def test_one_cause_that_fails_several_tasks_pages_once_per_run(sink, alerts):
    """An image missing in DR fails readiness, the RTO and the scorecard: one page, three Slack alerts."""
    from types import SimpleNamespace

    recorded: dict[str, list] = {}

    def drill_task(task_id: str) -> dict:
        context = failed_context(Severity.P1, task_id=task_id, dag_id="dr_drill",
                                 summary="the service cannot start in the DR region")
        ti = context["ti"]
        ti.xcom_pull = lambda task_ids, key="return_value": [recorded.get(t) for t in task_ids if t in recorded]
        context["task"] = SimpleNamespace(dag=SimpleNamespace(task_ids=["readiness", "rto", "scorecard"]))
        return context

    with mock_aws():
        topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="solemate-p1")["TopicArn"]
        paging = notifier(alerts.model_copy(update={"sns_topic_arn": topic}))
        for task_id in ("readiness", "rto", "scorecard"):
            context = drill_task(task_id)
            paging.notify(context)
            recorded[task_id] = context["ti"].pushed["alert_deliveries"]
        sent = get_backend("sns")[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[topic].sent_notifications
    assert len(sent) == 1 and len(sink.messages()) == 3
    [skipped] = [d for d in recorded["scorecard"] if d["channel"] == "sns"]
    assert skipped["outcome"] == "skipped" and "this run already paged (task readiness)" in skipped["error"]
    assert "Not paged again" in blocks_text(sink.messages()[-1]["payload"])  # on-call sees why


def test_an_announcement_page_does_not_silence_a_failure_page_and_an_odd_record_is_ignored(sink, alerts):
    """dr_failover's notify_start pages to announce the failover: a later P1 failure still pages."""
    from types import SimpleNamespace

    context = failed_context(Severity.P1, task_id="failover_database", dag_id="dr_failover")
    context["ti"].xcom_pull = lambda task_ids, key="return_value": [
        [{"kind": "failover-start", "channel": "sns", "ok": True, "task_id": "notify_start"}],
        [{"unexpected": "shape"}], "not a list"]
    context["task"] = SimpleNamespace(dag=SimpleNamespace(task_ids=["notify_start", "other", "x",
                                                                   "failover_database"]))
    with mock_aws():
        topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="solemate-p1")["TopicArn"]
        notifier(alerts.model_copy(update={"sns_topic_arn": topic})).notify(context)
        sent = get_backend("sns")[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[topic].sent_notifications
    assert len(sent) == 1


def test_a_refused_run_says_what_to_fix_and_never_pages(sink, alerts):
    from solemate_maintenance import dr
    from solemate_maintenance.findings import RunRefused

    refusal = dr.failover_refusal(confirm="pr\u043eduction", reason="\u200b ", environment="production", allowed=True,
                                  unknown=dr.unknown_params({"component": ["database"], "```<!channel>": 1},
                                                            ["confirm", "reason"]))
    context = make_context(anchor=live_anchor(), task_id="failover_gate", dag_id="dr_failover", run_type="manual")
    context["exception"] = RunRefused(refusal)
    with mock_aws():
        topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="solemate-p1")["TopicArn"]
        notifier(alerts.model_copy(update={"sns_topic_arn": topic})).notify(context)
        sent = get_backend("sns")[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[topic].sent_notifications
    [message] = sink.messages()
    payload = message["payload"]
    text = blocks_text(payload)
    assert payload["text"].startswith("[Refused] production: dr_failover did not start")
    assert "utilization" not in text and "report" not in text.lower()  # no severity model, no report to open
    assert "nothing: refused before any AWS call" in text
    assert "'pr\\\\u043eduction'" in text  # the look-alike shown escaped: a person sees why it differs
    assert "unknown params " in text and "'component'" in text and "'reason' must say why" in text
    assert "<!channel>" not in text and text.count("```") == 2  # a hostile key stays inside its code block
    assert sent == [] and [d["channel"] for d in context["ti"].pushed["alert_deliveries"]] == ["slack:slack_alerts"]


@pytest.mark.parametrize("watch_paged", [True, False])
def test_a_failure_the_watch_already_paged_is_not_paged_again(sink, alerts, config, watch_paged):
    """The 15-minute watch opened (and paged) the payment incident at 10:15; the daily check that finds it
    says so instead of paging again. Had the watch's page not gone out, this alert pages."""
    from solemate_maintenance.incidents import IncidentRecord, IncidentStore, Observation, apply_observations

    anchor = live_anchor()
    record = IncidentRecord(environment="production")
    seen = Observation(key="business.payment_success_rate|production-postgres", check="business.payment_success_rate",
                       resource="production-postgres", severity=Severity.P1, summary="payment success rate 70 %",
                       first_bad=anchor - timedelta(hours=2), last_bad=anchor, still_bad=True)
    [opened] = apply_observations(record, [seen], watch="performance_watch", run_id="w",
                                  window_end=anchor - timedelta(hours=2) + timedelta(minutes=15),
                                  open_severity=Severity.P2, reminder=timedelta(hours=4))
    opened.deliveries = [{"channel": "sns", "outcome": "delivered" if watch_paged else "failed"}]
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=config.reports.bucket)
        key = "reports/incidents/production.json"
        IncidentStore(s3_client=s3, bucket=config.reports.bucket, key=key, environment="production").write(record, None)
        topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="p1")["TopicArn"]
        context = failed_context(Severity.P1, anchor=anchor, check="business.payment_success_rate")
        notifier(alerts.model_copy(update={"sns_topic_arn": topic}), config, incident_key=key).notify(context)
        pages = get_backend("sns")[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[topic].sent_notifications
    text = blocks_text(sink.messages()[0]["payload"])
    assert len(pages) == (0 if watch_paged else 1)
    assert ("the watch (incident business.payment_success_rate|production-postgres@" in text) is watch_paged
