"""Failure alerts and Slack outages, against a real HTTP webhook sink (and SNS in moto)."""

from __future__ import annotations

import email
import json

import boto3
import pytest
from moto import mock_aws
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from sandbox.servers import SlackSink, free_port
from solemate_maintenance.config import load_config
from solemate_maintenance.findings import ChecksFailedError, Finding, Severity, Status
from solemate_maintenance.notifiers.slack import MaintenanceFailureNotifier, send_slack, slack_channel_for
from tests.helpers import make_context

TOKEN = "T0TESTTEST/B0TESTTEST/" + "x1y2z3" * 4


@pytest.fixture
def sink(tmp_path, monkeypatch):
    server = SlackSink(tmp_path / "slack.jsonl").start()
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps(
        {"conn_type": "slackwebhook", "host": f"{server.url}/services", "password": TOKEN}))
    yield server
    server.stop()


@pytest.fixture
def alerts():
    config = load_config()
    return config.alerts.model_copy(update={"slack_timeout_seconds": 1})


def failed_context(severity=Severity.P2, **ti):
    findings = [Finding(check="rds.cpu_utilization", resource="production-postgres", status=Status.CRITICAL,
                        severity=severity, summary="max CPUUtilization 95 % >= critical threshold 80")]
    context = make_context(task_id="rds_health", try_number=3, **ti)
    context["exception"] = ChecksFailedError(findings)
    return context


def blocks_text(payload: dict) -> str:
    return json.dumps(payload["attachments"][0]["blocks"])


def test_failure_message_carries_what_on_call_needs(sink, alerts):
    context = failed_context()
    MaintenanceFailureNotifier(alerts=alerts, environment="production").notify(context)
    [message] = sink.messages()
    payload = message["payload"]
    assert payload["text"] == "[P2] production: daily_maintenance.rds_health failed"
    assert payload["attachments"][0]["color"] == alerts.severities["P2"].color
    text = blocks_text(payload)
    for expected in ("*Environment*\\nproduction", "*DAG*\\ndaily_maintenance", "*Task*\\nrds_health",
                     "*Run id*\\nscheduled__2026-11-20T02:00:00+00:00", "*Run type*\\nscheduled", "*Try*\\n3 of 3 (final: not retried)",
                     "*Duration*", "ChecksFailedError: 1 failing finding(s), worst P2",
                     "max CPUUtilization 95 %", context["ti"].log_url):
        assert expected in text, expected
    assert context["ti"].pushed["alert_deliveries"] == [
        {"kind": "failure", "channel": "slack:slack_alerts", "ok": True, "error": None, "task_id": "rds_health"}]


def test_crash_without_findings_is_p2_with_trimmed_scrubbed_error(sink, alerts):
    context = make_context(task_id="ecs_services")
    context["exception"] = RuntimeError("boom " + "x" * 2000 + " postgresql://u:pw-in-url@h/db")
    MaintenanceFailureNotifier(alerts=alerts, environment="production").notify(context)
    payload = sink.messages()[0]["payload"]
    assert payload["text"].startswith("[P2]")
    assert "RuntimeError: boom" in blocks_text(payload)
    assert "*Try*\\n1 of 3\"" in blocks_text(payload)  # an error that did use its retries    assert len(blocks_text(payload)) < 4000
    assert "pw-in-url" not in json.dumps(payload)


def test_p1_goes_to_the_critical_channel_and_sns(sink, alerts, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_CRITICAL", json.dumps(
        {"conn_type": "slackwebhook", "host": f"{sink.url}/critical", "password": TOKEN}))
    with mock_aws():
        topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="solemate-p1")["TopicArn"]
        p1_alerts = alerts.model_copy(update={"sns_topic_arn": topic})
        context = failed_context(Severity.P1)
        MaintenanceFailureNotifier(alerts=p1_alerts, environment="production").notify(context)
        sent = get_backend("sns")[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[topic].sent_notifications
    assert [m["path"].split("/")[1] for m in sink.messages()] == ["critical"]
    assert len(sent) == 1 and "[P1] production: daily_maintenance.rds_health failed" in sent[0][1]
    assert [d["channel"] for d in context["ti"].pushed["alert_deliveries"]] == ["slack:slack_critical", "sns"]


def test_p1_falls_back_to_the_default_channel(sink, alerts, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_CRITICAL", raising=False)
    assert slack_channel_for(Severity.P1, alerts) == "slack_alerts"
    assert slack_channel_for(Severity.P2, alerts) == "slack_alerts"


@pytest.mark.parametrize("outage", ["refused", "http_500", "timeout"])
def test_slack_down_is_recorded_not_raised(sink, alerts, outage, monkeypatch, caplog):
    if outage == "refused":
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps(
            {"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{free_port()}/services", "password": TOKEN}))
    sink.mode = {"http_500": "error", "timeout": "slow"}.get(outage, "ok")
    sink.slow_seconds = 2.5
    delivery = send_slack(kind="failure", conn_id="slack_alerts", text="t", attachments=[], alerts=alerts,
                          context=make_context())
    assert delivery.ok is False
    assert delivery.error
    assert TOKEN.rsplit("/", 1)[1] not in delivery.error
    assert any("not delivered" in r.getMessage() for r in caplog.records)
    assert sink.messages() == []


def test_notifier_survives_slack_down(sink, alerts):
    sink.mode = "error"
    context = failed_context()
    MaintenanceFailureNotifier(alerts=alerts, environment="production").notify(context)  # must not raise
    [delivery] = context["ti"].pushed["alert_deliveries"]
    assert delivery["ok"] is False and "500" in delivery["error"]


def test_digest_email_through_the_smtp_provider(alerts, tmp_path, monkeypatch):
    from sandbox.servers import SmtpSink
    from solemate_maintenance.notifiers.slack import send_email

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
    from solemate_maintenance.notifiers.slack import send_email

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": free_port(), "extra": {"disable_tls": True}}))
    delivery = send_email(kind="digest", to=["a@solemate.example"], subject="s", html="h", alerts=alerts,
                          context=make_context())
    assert delivery.ok is False and delivery.error
