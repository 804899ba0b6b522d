"""PublishReportOperator against S3 in moto, with the task instance's XCom and state look-ups recorded."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from solemate_maintenance.config import load_config
from solemate_maintenance.operators.report import PublishReportOperator
from tests.helpers import ANCHOR, RecordingTaskInstance, make_context

BUCKET = "reports-bucket"


class ReportTaskInstance(RecordingTaskInstance):
    """Answers what the report asks the Airflow API: upstream XComs, task states, the previous run."""

    def __init__(self, xcoms: dict, states: dict, previous_run_id: str | None, **kwargs):
        super().__init__(task_id="report", **kwargs)
        self.xcoms, self.states, self.previous_run_id = xcoms, states, previous_run_id

    def xcom_pull(self, task_ids: str, key: str):
        return self.xcoms.get((task_ids, key))

    def get_task_states(self, dag_id: str, run_ids: list[str]):
        return {run_ids[0]: self.states}

    def get_previous_dagrun(self):
        return SimpleNamespace(run_id=self.previous_run_id) if self.previous_run_id else None


def finding(check, status="critical", severity="P2"):
    return {"check": check, "resource": "r", "status": status, "severity": severity if status != "ok" else None,
            "summary": check, "details": {}, "metrics": {}}


@pytest.fixture
def s3(monkeypatch):
    # The digest goes to a closed port: delivery fails, is recorded, and the report is still written.
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps(
        {"conn_type": "slackwebhook", "host": "http://127.0.0.1:9/services", "password": "T0/B0/x"}))
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def run_report(xcoms, states, run_id, previous_run_id=None, anchor=ANCHOR):
    config = load_config()
    operator = PublishReportOperator(task_id="report", bucket=BUCKET, prefix="reports", environment="production",
                                     alerts=config.alerts.model_copy(update={"slack_timeout_seconds": 1}))
    operator.upstream_task_ids.update(states)
    context = make_context(anchor=anchor)
    context["ti"] = ReportTaskInstance(xcoms, states, previous_run_id, run_id=run_id)
    return operator.execute(context)


def read(client, key):
    return json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_crashed_check_becomes_a_finding_and_digest_failure_is_recorded(s3):
    xcoms = {("rds_health", "findings"): [finding("rds.cpu")]}
    result = run_report(xcoms, {"rds_health": "failed", "ecs_services": "failed"}, run_id="r1")
    report = read(s3, "reports/daily_maintenance/r1/report.json")
    assert {f["check"]: f["task_id"] for f in report["findings"]} == {"rds.cpu": "rds_health",
                                                                      "maintenance.task_error": "ecs_services"}
    assert report["failed_tasks"] == ["ecs_services", "rds_health"]
    assert result["report_uri"] == f"s3://{BUCKET}/reports/daily_maintenance/r1/report.json"
    [digest] = report["alert_deliveries"]
    assert digest["kind"] == "digest" and digest["ok"] is False


def test_unreadable_previous_report_is_ignored(s3):
    s3.put_object(Bucket=BUCKET, Key="reports/daily_maintenance/r0/report.json", Body=b"{not json")
    run_report({("t", "findings"): [finding("a")]}, {"t": "failed"}, run_id="r1", previous_run_id="r0")
    report = read(s3, "reports/daily_maintenance/r1/report.json")
    assert report["previous_run_id"] is None
    assert report["findings"][0]["lifecycle"] == "new"


def test_older_run_does_not_roll_latest_back(s3):
    run_report({("t", "findings"): [finding("a", "ok")]}, {"t": "success"}, run_id="newer")
    run_report({("t", "findings"): [finding("a", "ok")]}, {"t": "success"}, run_id="older",
               anchor=ANCHOR.replace(day=ANCHOR.day - 3))
    assert read(s3, "reports/daily_maintenance/latest.json")["run_id"] == "newer"
    assert s3.get_object(Bucket=BUCKET, Key="reports/daily_maintenance/older/report.md")["Body"].read()


def test_no_digest_when_the_report_cannot_be_written(s3, tmp_path, monkeypatch):
    """If S3 fails the task fails (and retries); the digest waits for a report it can link to."""
    from sandbox.servers import SlackSink

    sink = SlackSink(tmp_path / "slack.jsonl").start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps(
            {"conn_type": "slackwebhook", "host": f"{sink.url}/services", "password": "T0/B0/x"}))
        s3.delete_bucket(Bucket=BUCKET)
        with pytest.raises(Exception, match="NoSuchBucket"):
            run_report({("t", "findings"): [finding("a")]}, {"t": "failed"}, run_id="r1")
        assert sink.messages() == []
    finally:
        sink.stop()
