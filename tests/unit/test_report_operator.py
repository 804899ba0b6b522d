"""PublishReportOperator and RunVerdictOperator against S3 in moto and a real Slack sink.

The task instance's XCom and state look-ups are recorded (the Airflow API is exercised end to end in
tests/e2e); S3 and Slack are real enough to fail the ways production does.
"""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from moto import mock_aws

from sandbox.servers import SlackSink
from solemate_maintenance.aws_errors import ErrorCause
from solemate_maintenance.config import load_config
from solemate_maintenance.operators.report import PublishReportOperator, RunVerdictOperator
from tests.helpers import ANCHOR, RecordingTaskInstance, make_context

BUCKET = "reports-bucket"
# What the failure callback pushes for a task that failed on a platform-wide cause.
CAUSE = {**ErrorCause("aws-unreachable", "AWS endpoint unreachable", retryable=True, platform_wide=True,
                      hint="check the network").as_dict(),
         "error": "EndpointConnectionError: Could not connect", "log_url": "http://a/log"}
PREFIX = "reports/daily_maintenance"


class ReportTaskInstance(RecordingTaskInstance):
    """Answers what the report asks the Airflow API: upstream XComs, task states, the previous run."""

    def __init__(self, xcoms: dict, states: dict, previous: tuple[str, str | None] | None = None, **kwargs):
        kwargs.setdefault("task_id", "report")
        super().__init__(**kwargs)
        self.xcoms, self.states, self.previous = xcoms, states, previous

    def xcom_pull(self, task_ids: str, key: str = "return_value"):
        return self.xcoms.get((task_ids, key))

    def get_task_states(self, dag_id: str, run_ids: list[str], task_ids=None):
        if self.previous and run_ids == [self.previous[0]]:
            return {run_ids[0]: {"report": self.previous[1]}}
        return {run_ids[0]: self.states}

    def get_previous_dagrun(self):
        if not self.previous:
            return None
        return SimpleNamespace(run_id=self.previous[0], state="running" if self.previous[1] != "success" else "success")


def finding(check, status="critical", severity="P2", resource="r"):
    return {"check": check, "resource": resource, "status": status,
            "severity": severity if status not in ("ok", "skipped") else None,
            "summary": f"{check} summary", "details": {}, "metrics": {}}


@pytest.fixture
def sink(tmp_path, monkeypatch):
    server = SlackSink(tmp_path / "slack.jsonl").start()
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps(
        {"conn_type": "slackwebhook", "host": f"{server.url}/services", "password": "T0ABCDEFG/B0ABCDEFG/secret123456"}))
    yield server
    server.stop()


@pytest.fixture
def s3(sink):
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def operator(cls=PublishReportOperator, upstream=(), **kwargs):
    config = load_config()
    op = cls(task_id=kwargs.pop("task_id", "report"), bucket=BUCKET, prefix="reports", environment="production",
             alerts=config.alerts.model_copy(update={"slack_timeout_seconds": 1}), region_name="us-east-1",
             **kwargs)
    op.upstream_task_ids.update(upstream)
    return op


def run_report(xcoms, states, run_id="r1", previous=None, anchor=ANCHOR, op=None, **context_kwargs):
    op = op or operator(upstream=states)
    try_number = context_kwargs.pop("try_number", 1)
    context = make_context(anchor=anchor, **context_kwargs)
    context["ti"] = ReportTaskInstance(xcoms, states, previous, run_id=run_id, try_number=try_number)
    return op.execute(context), context


def read(client, key):
    return json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def digests(sink):
    return [m["payload"] for m in sink.messages()]


def test_crashed_check_becomes_a_finding_and_the_report_is_findable_by_date(s3, sink):
    xcoms = {("rds_health", "findings"): [finding("rds.cpu")]}
    result, _ = run_report(xcoms, {"rds_health": "failed", "ecs_services": "failed"})
    report = read(s3, f"{PREFIX}/r1/report.json")
    assert {f["check"]: f["task_id"] for f in report["findings"]} == {"rds.cpu": "rds_health",
                                                                      "maintenance.task_error": "ecs_services"}
    assert report["failed_tasks"] == ["ecs_services", "rds_health"]
    assert result["report_uri"] == f"s3://{BUCKET}/{PREFIX}/r1/report.json"
    assert read(s3, f"{PREFIX}/by-logical-date/2026-11-20T0200Z/report.json")["run_id"] == "r1"
    assert report["report_url"].startswith("https://s3.console.aws.amazon.com/s3/object/reports-bucket?region=us-east-1")
    [digest] = digests(sink)
    assert digest["text"].endswith("daily_maintenance failed — 2026-11-20 02:00 UTC [PAST DATE checked 7 days later]") \
        or "— 2026-11-20 02:00 UTC [PAST DATE" in digest["text"]
    assert "Open the report" in json.dumps(digest) and report["report_url"] in json.dumps(digest)
    assert report["comparison"] == {"status": "first_run"}


def test_skipped_check_is_reported_with_its_reason(s3, sink):
    xcoms = {("rds_health", "findings"): [finding("rds.query", status="skipped")]}
    run_report(xcoms, {"rds_health": "success"})
    report = read(s3, f"{PREFIX}/r1/report.json")
    assert report["totals"]["status"]["skipped"] == 1
    markdown = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/r1/report.md")["Body"].read().decode()
    assert "## Skipped" in markdown and "rds.query summary" in markdown


def test_unreadable_previous_report_makes_the_comparison_impossible_not_new(s3, sink):
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/r0/report.json", Body=b"{not json")
    run_report({("t", "findings"): [finding("a")]}, {"t": "failed"}, previous=("r0", "success"))
    report = read(s3, f"{PREFIX}/r1/report.json")
    assert report["comparison"]["status"] == "impossible"
    assert "r0 left no readable report" in report["comparison"]["reason"]
    assert report["findings"][0]["lifecycle"] == "unknown"
    assert "No comparison with the previous run" in json.dumps(digests(sink))


def test_waits_deferrably_for_a_previous_date_still_running_then_gives_up_saying_so(s3, sink):
    from airflow.sdk.timezone import utcnow

    op = operator(upstream={"t": "failed"}, previous_report_wait_minutes=30)
    with pytest.raises(TaskDeferred) as deferred:
        run_report({("t", "findings"): [finding("a")]}, {"t": "failed"}, previous=("r0", "running"), op=op)
    assert deferred.value.method_name == "execute_complete" and deferred.value.kwargs == {"polls": 1}
    assert type(deferred.value.trigger).__name__ == "DateTimeTrigger"
    assert deferred.value.timeout is not None  # a stopped triggerer cannot leave it deferred forever
    assert sink.messages() == []  # nothing sent while waiting

    context = make_context()
    context["dag_run"].start_date = utcnow() - timedelta(minutes=31)  # the run started before the wait's end
    context["ti"] = ReportTaskInstance({("t", "findings"): [finding("a")]}, {"t": "failed"}, ("r0", "running"),
                                       run_id="r1")
    op.execute_complete(context, event=None, polls=5)
    report = read(s3, f"{PREFIX}/r1/report.json")
    assert report["comparison"]["status"] == "impossible"
    assert "had not finished its report (task running) within 30 min" in report["comparison"]["reason"]
    assert report["findings"][0]["lifecycle"] == "unknown"


def test_does_not_wait_for_a_previous_run_queued_behind_this_one(s3, sink):
    class Queued(ReportTaskInstance):
        def get_previous_dagrun(self):
            return SimpleNamespace(run_id="r0", state="queued")

    context = make_context()
    context["ti"] = Queued({("t", "findings"): [finding("a")]}, {"t": "failed"}, ("r0", None), run_id="r1")
    operator(upstream={"t": "failed"}).execute(context)  # no TaskDeferred
    assert "queued behind this one" in read(s3, f"{PREFIX}/r1/report.json")["comparison"]["reason"]


def test_once_the_previous_report_exists_it_is_compared(s3, sink):
    run_report({("t", "findings"): [finding("a"), finding("b")]}, {"t": "failed"}, run_id="r0",
               anchor=ANCHOR - timedelta(days=1))
    run_report({("t", "findings"): [finding("a")]}, {"t": "failed"}, previous=("r0", "success"))
    report = read(s3, f"{PREFIX}/r1/report.json")
    assert report["comparison"] == {"status": "compared", "previous_run_id": "r0"}
    assert report["findings"][0]["lifecycle"] == "ongoing"
    assert [f["check"] for f in report["resolved"]] == ["b"]


def test_older_run_does_not_roll_latest_back(s3, sink):
    run_report({("t", "findings"): [finding("a", "ok")]}, {"t": "success"}, run_id="newer")
    run_report({("t", "findings"): [finding("a", "ok")]}, {"t": "success"}, run_id="older",
               anchor=ANCHOR - timedelta(days=3))
    assert read(s3, f"{PREFIX}/latest.json")["run_id"] == "newer"
    assert s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/older/report.md")["Body"].read()


def test_run_without_logical_date_is_anchored_at_run_after(s3, sink):
    op = operator(upstream={"t": "success"})
    context = make_context()
    context["logical_date"] = None
    context["dag_run"].logical_date = None
    context["ti"] = ReportTaskInstance({("t", "findings"): [finding("a", "ok")]}, {"t": "success"}, run_id="api1")
    op.execute(context)
    report = read(s3, f"{PREFIX}/api1/report.json")
    assert report["logical_date"] == ANCHOR.isoformat()
    assert report["facts"]["logical_date_source"] == "run_after"
    assert report["comparison"]["status"] == "impossible"
    assert read(s3, f"{PREFIX}/latest.json")["run_id"] == "api1"


def test_report_that_cannot_be_written_still_reaches_people(s3, sink):
    """Bucket missing: a retry cannot heal it. The digest carries every finding; the task says why it failed."""
    s3.delete_bucket(Bucket=BUCKET)
    with pytest.raises(AirflowFailException) as failed:
        run_report({("t", "findings"): [finding("a", severity="P1")]}, {"t": "success"})
    assert "could not be written" in str(failed.value) and "NoSuchBucket" in str(failed.value)
    assert "no check failed because of this" in str(failed.value)
    [digest] = digests(sink)
    text = json.dumps(digest)
    assert "The report could not be written" in text and "a summary" in text and "*All problems*" in text


def test_transient_s3_error_retries_before_any_digest_then_the_last_try_sends_it(s3, sink, monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    from solemate_maintenance.report_store import ReportStore

    def unreachable(self, key, text):
        raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")

    monkeypatch.setattr(ReportStore, "write", unreachable)
    with pytest.raises(EndpointConnectionError):
        run_report({("t", "findings"): [finding("a")]}, {"t": "failed"}, try_number=1)
    assert sink.messages() == []  # the retry will write the report and link to it
    with pytest.raises(AirflowFailException):
        run_report({("t", "findings"): [finding("a")]}, {"t": "failed"}, try_number=3)  # last of 3 tries
    assert len(digests(sink)) == 1


def test_retry_after_the_digest_never_sends_it_twice(s3, sink, monkeypatch):
    from solemate_maintenance.report_store import ReportStore

    original, calls = ReportStore.write, {"n": 0}

    def second_write_fails(self, key, text):
        calls["n"] += 1
        if calls["n"] > 6 and key.endswith("/r1/report.json"):  # the rewrite with the deliveries
            raise RuntimeError("S3 hiccup")
        return original(self, key, text)

    monkeypatch.setattr(ReportStore, "write", second_write_fails)
    run_report({("t", "findings"): [finding("a")]}, {"t": "failed"})  # does not raise: the messages are out
    monkeypatch.setattr(ReportStore, "write", original)
    run_report({("t", "findings"): [finding("a")]}, {"t": "failed"}, try_number=2)  # a retry, e.g. worker lost
    assert len(digests(sink)) == 1
    report = read(s3, f"{PREFIX}/r1/report.json")
    assert [d["kind"] for d in report["alert_deliveries"]] == ["digest"]  # the recorded delivery is kept


def test_cleared_run_sends_a_new_digest_marking_already_alerted_findings(s3, sink):
    run_report({("t", "findings"): [finding("a")]}, {"t": "failed"})
    run_report({("t", "findings"): [finding("a"), finding("c")]}, {"t": "failed"}, clear_number=1, try_number=2)
    assert len(digests(sink)) == 2
    report = read(s3, f"{PREFIX}/r1/report.json")
    assert {f["check"]: f["already_alerted_by"] for f in report["findings"]} == {"a": "r1", "c": None}
    assert report["earlier_runs_for_date"] == ["r1"]
    assert "Already alerted for this date" in json.dumps(digests(sink)[1])


def test_escalation_on_a_rerun_is_news_not_a_repeat(s3, sink):
    run_report({("t", "findings"): [finding("a", severity="P2"), finding("b", severity="P1")]}, {"t": "failed"})
    run_report({("t", "findings"): [finding("a", severity="P1"), finding("b", severity="P2")]}, {"t": "failed"},
               clear_number=1)
    report = read(s3, f"{PREFIX}/r1/report.json")
    assert {f["check"]: f["already_alerted_by"] for f in report["findings"]} == {"a": None, "b": "r1"}


def test_second_manual_run_for_the_same_date_names_the_first(s3, sink):
    run_report({("t", "findings"): [finding("a")]}, {"t": "failed"}, run_id="scheduled__x")
    run_report({("t", "findings"): [finding("a")]}, {"t": "failed"}, run_id="manual__y", run_type="manual")
    by_date = read(s3, f"{PREFIX}/by-logical-date/2026-11-20T0200Z/report.json")
    assert by_date["run_id"] == "manual__y" and by_date["earlier_runs_for_date"] == ["scheduled__x"]
    assert by_date["findings"][0]["already_alerted_by"] == "scheduled__x"


def test_common_cause_is_one_alert_naming_every_affected_task(s3, sink):
    cause = CAUSE
    tasks = ["application_health", "ecs_services", "rds_health"]
    xcoms = {(t, "common_cause"): {**cause, "log_url": f"http://a/{t}"} for t in tasks}
    run_report(xcoms, dict.fromkeys(tasks, "failed"))
    messages = digests(sink)
    assert len(messages) == 2  # one cause alert and the digest, not three pages
    assert messages[0]["text"].startswith("[P2] production: daily_maintenance: 3 tasks could not run: "
                                          "AWS endpoint unreachable — 2026-11-20 02:00 UTC")
    assert "application_health, ecs_services, rds_health" in json.dumps(messages[0])
    report = read(s3, f"{PREFIX}/r1/report.json")
    assert report["common_causes"][0]["tasks"] == tasks
    assert {f["summary"] for f in report["findings"]} == {"check could not run: AWS endpoint unreachable"}


def test_verdict_rebuilds_a_stale_report_after_clear_only_failed(s3, sink):
    before = {("t", "findings"): [finding("a")]}
    result, _ = run_report(before, {"t": "failed"})
    after = {("t", "findings"): [finding("a", "ok")], ("report", "return_value"): result}
    verdict = operator(RunVerdictOperator, upstream={"t", "report"}, task_id="run_verdict")
    context = make_context(clear_number=1)
    context["ti"] = ReportTaskInstance(after, {"t": "success", "report": "success"}, run_id="r1", task_id="run_verdict")
    verdict.execute(context)  # nothing failed now: does not raise
    report = read(s3, f"{PREFIX}/r1/report.json")
    assert report["refreshed_after_rerun"] is True and report["failed_tasks"] == []
    assert report["findings"][0]["status"] == "ok"
    assert "passed (updated after a re-run)" in digests(sink)[-1]["text"]


def test_verdict_leaves_a_fresh_report_alone_and_names_what_failed(s3, sink):
    xcoms = {("t", "findings"): [finding("a")]}
    result, _ = run_report(xcoms, {"t": "failed"})
    verdict = operator(RunVerdictOperator, upstream={"t", "report"}, task_id="run_verdict")
    context = make_context()
    context["ti"] = ReportTaskInstance({**xcoms, ("report", "return_value"): result},
                                       {"t": "failed", "report": "success"}, run_id="r1", task_id="run_verdict")
    with pytest.raises(AirflowFailException, match=r"check\(s\) failed: t\."):
        verdict.execute(context)
    assert len(digests(sink)) == 1


def test_verdict_does_not_blame_checks_for_a_failed_report(s3, sink):
    verdict = operator(RunVerdictOperator, upstream={"t", "report"}, task_id="run_verdict")
    context = make_context()
    context["ti"] = ReportTaskInstance({("t", "findings"): [finding("a", "ok")]}, {"t": "success", "report": "failed"},
                                       run_id="r1", task_id="run_verdict")
    with pytest.raises(AirflowFailException) as failed:
        verdict.execute(context)
    assert "the report task failed" in str(failed.value) and "the checks themselves all passed" in str(failed.value)
    assert "check(s) failed" not in str(failed.value)





@pytest.mark.parametrize(("report_delivered", "expected_messages"), [([], 1), (["cause-aws-unreachable"], 0)])
def test_verdict_sends_a_common_cause_alert_the_failed_report_never_sent(s3, sink, report_delivered,
                                                                          expected_messages):
    xcoms = {(t, "common_cause"): CAUSE for t in ("ecs_services", "rds_health")}
    xcoms[("report", "delivered")] = report_delivered
    verdict = operator(RunVerdictOperator, upstream={"ecs_services", "rds_health", "report"}, task_id="run_verdict")
    context = make_context()
    context["ti"] = ReportTaskInstance(xcoms, {"ecs_services": "failed", "rds_health": "failed", "report": "failed"},
                                       run_id="r1", task_id="run_verdict")
    with pytest.raises(AirflowFailException):
        verdict.execute(context)
    messages = digests(sink)
    assert len(messages) == expected_messages
    if messages:
        assert "2 tasks could not run: AWS endpoint unreachable" in messages[0]["text"]


def test_report_records_what_it_delivered_for_the_verdict(s3, sink):
    xcoms = {("ecs_services", "common_cause"): CAUSE}
    _, context = run_report(xcoms, {"ecs_services": "failed"})
    assert context["ti"].pushed["delivered"] == ["cause-aws-unreachable", "digest"]


def test_a_problem_the_watch_already_announced_is_ongoing_since_not_new_and_the_days_incidents_are_listed(
        s3, sink):
    """The daily report reads the watch's incident record: its window's incidents (resolved and open)
    are listed, and a failing check the watch already opened an incident for is "ongoing since"."""
    from solemate_maintenance.findings import Severity
    from solemate_maintenance.incidents import IncidentRecord, IncidentStore, Observation, apply_observations

    day = ANCHOR - timedelta(days=1)
    record = IncidentRecord(environment="production")
    for check, resource, start, end, still in (("business.payment_success_rate", "SoleMate/Business", 8, 9, False),
                                               ("rds.cpu", "r", 20, 22, True)):
        seen = Observation(key=f"{check}|{resource}", check=check, resource=resource, severity=Severity.P2,
                           summary=f"{check} bad", label=check.split(".")[1], first_bad=day.replace(hour=start),
                           last_bad=day.replace(hour=end), still_bad=still, peak=70.0, peak_at=day.replace(hour=start),
                           unit="%")
        apply_observations(record, [seen], watch="performance_watch", run_id="w", window_end=day.replace(hour=end),
                           open_severity=Severity.P2, reminder=timedelta(hours=4))
    key = "reports/incidents/production.json"
    IncidentStore(s3_client=s3, bucket=BUCKET, key=key, environment="production").write(record, None)
    xcoms = {("rds_health", "findings"): [finding("rds.cpu"), finding("rds.storage")],
             ("rds_health", "window"): {"start": (ANCHOR - timedelta(days=1)).isoformat(), "end": ANCHOR.isoformat()}}
    run_report(xcoms, {"rds_health": "failed"}, op=operator(upstream={"rds_health"}, incident_key=key))
    report = read(s3, f"{PREFIX}/r1/report.json")
    assert [(i["check"], i["resolved_at"] is None) for i in report["incidents"]] == [
        ("business.payment_success_rate", False), ("rds.cpu", True)]
    since = {f["check"]: f["incident_since"] for f in report["findings"]}
    assert since == {"rds.cpu": day.replace(hour=20).isoformat(), "rds.storage": None}
    text = json.dumps(digests(sink)[0])
    assert "*Already reported by the watch*" in text and "ongoing since 2026-11-19 20:00 UTC" in text
    assert "*New*\\n\\u2022 *P2* `r` rds.storage summary" in text
    assert "payment_success_rate on `SoleMate/Business`: 08:00\\u201309:05 UTC (1 h 5 min), peak 70 %" in text
    assert "cpu on `r`: open since 2026-11-19 20:00 UTC" in text


def test_an_unreadable_incident_record_is_said_and_costs_nothing_else(s3, sink):
    key = "reports/incidents/production.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"{not json")
    run_report({("t", "findings"): [finding("a")]}, {"t": "failed"}, op=operator(upstream={"t"}, incident_key=key))
    report = read(s3, f"{PREFIX}/r1/report.json")
    assert report["incident_record"].startswith("unreadable") and report["findings"][0]["incident_since"] is None
    assert "incident record could not be read" in json.dumps(digests(sink)[0])
