"""daily_maintenance end to end: real Airflow (dag.test) against the sandbox.

moto server, embedded PostgreSQL, the Slack webhook sink and the health endpoint are real servers
on loopback; Airflow reaches them only through AWS_ENDPOINT_URL and AIRFLOW_CONN_* variables.
The scenarios run in order, one logical date each, so each run compares with the one before.
"""

from __future__ import annotations

import email
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sandbox.world import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
BROKEN = frozenset({"ecs_under_desired", "rds_high_cpu", "payment_failures", "slow_responses"})
CHECK_TASKS = {"application_health", "ecs_services", "rds_health", "elasticache_health", "business_metrics",
               "performance_kpis"}


def day(n: int) -> datetime:
    return datetime(2026, 11, n, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sandbox(airflow_db):
    saved = dict(os.environ)
    with Sandbox(slack_critical=True) as world:
        os.environ.update(world.env())
        try:
            yield world
        finally:
            os.environ.clear()
            os.environ.update(saved)


class Outcome:
    def __init__(self, sandbox: Sandbox, dag_run, messages: list[dict]):
        self.state = str(dag_run.state)
        self.run_id = dag_run.run_id
        self.task_states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        self.messages = messages
        s3 = sandbox.client("s3")
        bucket, prefix = sandbox.config.reports.bucket, sandbox.config.reports.prefix
        base = f"{prefix}/daily_maintenance/{dag_run.run_id}"
        self.report = json.loads(s3.get_object(Bucket=bucket, Key=f"{base}/report.json")["Body"].read())
        self.markdown = s3.get_object(Bucket=bucket, Key=f"{base}/report.md")["Body"].read().decode()
        self.latest = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/daily_maintenance/latest.json")
                                 ["Body"].read())

    def failed(self) -> set[str]:
        return {t for t, s in self.task_states.items() if s == "failed"}

    def problems(self) -> dict[str, tuple[str, str]]:
        return {f["check"]: (f["severity"], f["lifecycle"]) for f in self.report["findings"] if f["status"] != "ok"}

    def failure_alerts(self) -> list[dict]:
        return [m for m in self.messages if "failed" in m["payload"]["text"] and "daily_maintenance." in
                m["payload"]["text"]]

    def digests(self) -> list[dict]:
        return [m for m in self.messages if m not in self.failure_alerts()]


def run_daily(sandbox: Sandbox, capfd, logical_date: datetime, problems=frozenset(), slack_mode="ok") -> Outcome:
    from airflow.dag_processing.dagbag import DagBag

    capfd.readouterr()
    sandbox.seed(logical_date, problems)
    sandbox.slack.clear()
    sandbox.smtp.clear()
    sandbox.slack.mode = slack_mode
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    dag_run = bag.dags["daily_maintenance"].test(logical_date=logical_date)
    sandbox.slack.mode = "ok"
    outcome = Outcome(sandbox, dag_run, sandbox.slack.messages())
    outcome.mails = sandbox.smtp.messages()
    out, err = capfd.readouterr()
    outcome.printed = out + err
    assert "Task instance state updated" in outcome.printed  # the task logs were captured for the scan
    return outcome


@pytest.fixture(scope="module")
def history(sandbox):
    return {}


def test_healthy_world(sandbox, history, capfd):
    outcome = history["healthy"] = run_daily(sandbox, capfd, day(10))
    assert outcome.state == "success"
    assert {t: s for t, s in outcome.task_states.items() if t in CHECK_TASKS | {"report"}} == \
        dict.fromkeys(CHECK_TASKS | {"report"}, "success")
    assert outcome.task_states["fail_run_if_checks_failed"] == "skipped"
    assert outcome.problems() == {}
    assert outcome.failure_alerts() == []
    [digest] = outcome.digests()
    assert "daily_maintenance passed" in digest["payload"]["text"]
    [mail] = outcome.mails  # the daily summary by e-mail, through the SMTP provider
    assert mail["to"] == sandbox.config.alerts.digest_email
    assert "Subject: production: daily_maintenance passed" in mail["data"]
    report = outcome.report
    assert report["logical_date"] == "2026-11-10T02:00:00+00:00"
    assert report["data_interval_end"] == "2026-11-10T02:00:00+00:00"
    assert report["environment"] == "production" and report["run_type"] == "manual"
    assert report["totals"]["status"]["ok"] == len(report["findings"]) >= 20
    assert outcome.latest["run_id"] == outcome.run_id


def test_broken_world_fails_the_right_tasks_and_alerts(sandbox, history, capfd):
    outcome = history["broken"] = run_daily(sandbox, capfd, day(11), BROKEN)
    assert outcome.state == "failed"
    assert outcome.failed() == {"ecs_services", "rds_health", "business_metrics", "fail_run_if_checks_failed"}
    assert outcome.task_states["report"] == "success"
    assert outcome.task_states["performance_kpis"] == "success"  # P3 only: reported, stays green
    assert outcome.problems() == {
        "ecs.task_count": ("P2", "new"),
        "rds.cpu_utilization": ("P2", "new"),
        "business.payment_success_rate": ("P1", "new"),
        "kpi.response_time_p95": ("P3", "new"),
        "kpi.response_time_p99": ("P3", "new"),
    }
    assert sorted(outcome.report["failed_tasks"]) == ["business_metrics", "ecs_services", "rds_health"]

    alerts = {m["payload"]["text"]: m for m in outcome.failure_alerts()}
    assert set(alerts) == {
        "[P2] production: daily_maintenance.ecs_services failed",
        "[P2] production: daily_maintenance.rds_health failed",
        "[P1] production: daily_maintenance.business_metrics failed",
    }
    p1 = alerts["[P1] production: daily_maintenance.business_metrics failed"]
    assert p1["path"].startswith("/critical/")  # P1 goes to slack_critical when it exists
    assert p1["payload"]["attachments"][0]["color"] == sandbox.config.alerts.severities["P1"].color
    blocks = json.dumps(p1["payload"]["attachments"][0]["blocks"])
    for field in ("*Environment*\\nproduction", "*DAG*\\ndaily_maintenance", "*Task*\\nbusiness_metrics",
                  f"*Run id*\\n{outcome.run_id}", "*Run type*\\nmanual", "*Try*\\n1 of 3", "*Duration*",
                  "ChecksFailedError", "payment success rate", "/tasks/business_metrics?try_number=1"):
        assert field in blocks, field
    [digest] = outcome.digests()
    assert "daily_maintenance failed" in digest["payload"]["text"]
    assert outcome.report["report_uri"] in json.dumps(digest["payload"])

    deliveries = {(d["task_id"], d["channel"]): d["ok"] for d in outcome.report["alert_deliveries"]}
    assert deliveries[("business_metrics", "slack:slack_critical")] is True
    assert deliveries[("business_metrics", "sns")] is True
    assert deliveries[("report", "slack:slack_alerts")] is True
    assert deliveries[("report", "email")] is True
    assert "| P1 | critical | new | business.payment_success_rate |" in outcome.markdown


def test_second_broken_run_marks_findings_ongoing(sandbox, history, capfd):
    outcome = history["ongoing"] = run_daily(sandbox, capfd, day(12), BROKEN)
    assert outcome.report["previous_run_id"] == history["broken"].run_id
    assert {check: lifecycle for check, (_, lifecycle) in outcome.problems().items()} == dict.fromkeys(
        history["broken"].problems(), "ongoing")


def test_fixing_the_world_resolves_findings(sandbox, history, capfd):
    outcome = history["fixed"] = run_daily(sandbox, capfd, day(13))
    assert outcome.state == "success"
    assert outcome.problems() == {}
    assert {f["check"] for f in outcome.report["resolved"]} == set(history["broken"].problems())
    assert outcome.report["totals"]["lifecycle"]["resolved"] == 5
    [digest] = outcome.digests()
    assert "*Resolved*" in json.dumps(digest["payload"])


def test_slack_down_keeps_the_real_outcome(sandbox, history, capfd):
    outcome = history["slack_down"] = run_daily(sandbox, capfd, day(14), {"rds_high_cpu"}, slack_mode="error")
    assert outcome.state == "failed"
    assert outcome.failed() == {"rds_health", "fail_run_if_checks_failed"}
    assert outcome.messages == []
    deliveries = {(d["task_id"], d["channel"]): d for d in outcome.report["alert_deliveries"]}
    assert deliveries[("rds_health", "slack:slack_alerts")]["ok"] is False
    assert "500" in deliveries[("rds_health", "slack:slack_alerts")]["error"]
    assert deliveries[("report", "slack:slack_alerts")]["ok"] is False
    assert deliveries[("report", "email")]["ok"] is True  # one channel down does not take the others
    assert "| digest | report | slack:slack_alerts | NO |" in outcome.markdown


def test_backfill_measures_its_own_day_and_keeps_latest(sandbox, history, capfd):
    # The world is broken now, but a backfill for an earlier day sees that day's (healthy) metrics.
    sandbox.seed(day(14), {"rds_high_cpu"})
    outcome = history["backfill"] = run_daily(sandbox, capfd, day(9), {"rds_high_cpu"})
    assert outcome.report["logical_date"] == "2026-11-09T02:00:00+00:00"
    cpu = next(f for f in outcome.report["findings"] if f["check"] == "rds.cpu_utilization")
    assert cpu["status"] == "critical"  # seeded broken for the 9th as well: measured, not inherited
    assert outcome.latest["run_id"] == history["slack_down"].run_id  # an older run never rolls latest back


def _decoded(raw: str) -> str:
    message = email.message_from_string(raw)
    return "".join(p.get_payload(decode=True).decode() for p in message.walk() if not p.is_multipart())


def test_no_secret_in_anything_the_runs_printed_sent_or_wrote(sandbox, history):
    s3 = sandbox.client("s3")
    bucket = sandbox.config.reports.bucket
    written = "".join(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode()
                      for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    # What was sent is the payloads; the request path *is* the webhook address, Slack's side of it.
    sent = json.dumps([m["payload"] for o in history.values() for m in o.messages])
    sent += "".join(_decoded(m["data"]) for o in history.values() for m in o.mails)
    printed = "".join(o.printed for o in history.values())
    assert written and sent != "[]" and len(history) == 6
    for secret in sandbox.secrets():
        assert secret not in written
        assert secret not in sent
        assert secret not in printed
