"""daily_maintenance end to end: real Airflow (dag.test) against the sandbox.

moto server, embedded PostgreSQL, the Slack webhook sink, the SMTP sink and the health endpoint are
real servers on loopback; Airflow reaches them only through AWS_ENDPOINT_URL and AIRFLOW_CONN_*
variables. The scenarios run in order, each on a later logical date than the one before (except the
backfill and the outage, which are earlier days), so each run compares with the one before.
"""

from __future__ import annotations

import email
import email.header
import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sandbox.servers import free_port
from sandbox.world import Sandbox
from solemate_maintenance.notifiers.delivery import secret_forms
from tests.e2e.conftest import sandbox_as_environment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
# The health problems, and the housekeeping ones (security, log lifecycle, unused resources, secrets, alarms).
ESTATE_BROKEN = frozenset({"brute_force_logins", "open_database_port", "log_retention_drift", "unused_resources",
                           "rotation_overdue", "overnight_alarm"})
# The monitoring layer's: a drifted alarm, capped scaling, a pending OS upgrade, logs no longer shipped.
MONITORING_BROKEN = frozenset({"alarm_threshold_drift", "scaling_capped", "pending_os_upgrade",
                               "subscription_filter_removed"})
BROKEN = frozenset({"ecs_under_desired", "rds_high_cpu", "payment_failures", "slow_responses"}) | ESTATE_BROKEN | \
    MONITORING_BROKEN
CHECK_TASKS = {"application_health", "ecs_services", "rds_health", "elasticache_health", "business_metrics",
               "performance_kpis", "security_events", "open_security_groups", "log_lifecycle", "reports_lifecycle",
               "unused_resources",
               "config_backup", "overnight_alarms", "alarms", "notification_paths", "overview_dashboard",
               "auto_scaling", "pending_updates", "log_pipeline", "application_errors"}
UNUSED_KINDS = ("unattached_volumes", "unassociated_elastic_ips", "old_rds_snapshots", "idle_load_balancers",
                "stopped_instances", "silent_log_groups")
# "Live" runs check the present (within alerts.page_max_age_hours), so a P1 pages; past days do not.
LIVE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def day(n: int) -> datetime:
    """A past day at 02:00, three weeks back or so (day(10) is 20 days before today, day(9) 21): far
    enough that its seeded metrics do not overlap today's, within the sandbox's month of history."""
    return (LIVE - timedelta(days=30 - n)).replace(hour=2)


def label(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@pytest.fixture(scope="module")
def sandbox(airflow_db):
    with sandbox_as_environment(slack_critical=True) as world:
        yield world


class Outcome:
    def __init__(self, sandbox: Sandbox, dag_run, messages: list[dict]):
        self.state = str(dag_run.state)
        self.run_id = dag_run.run_id
        self.task_states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        self.messages = messages
        s3 = sandbox.client("s3")
        bucket, prefix = sandbox.config.reports.bucket, sandbox.config.reports.prefix
        base = f"{prefix}/daily_maintenance/{dag_run.run_id}"
        try:
            self.report = json.loads(s3.get_object(Bucket=bucket, Key=f"{base}/report.json")["Body"].read())
            self.markdown = s3.get_object(Bucket=bucket, Key=f"{base}/report.md")["Body"].read().decode()
        except s3.exceptions.NoSuchKey:
            self.report, self.markdown = None, ""
        self.latest = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/daily_maintenance/latest.json")
                                 ["Body"].read())

    def failed(self) -> set[str]:
        return {t for t, s in self.task_states.items() if s == "failed"}

    def problems(self) -> dict[str, tuple[str, str]]:
        return {f["check"]: (f["severity"], f["lifecycle"]) for f in self.report["findings"]
                if f["status"] in ("warning", "critical")}

    def failure_alerts(self) -> list[dict]:
        return [m for m in self.messages if re.search(r"daily_maintenance\.\w+ failed", m["payload"]["text"])]

    def cause_alerts(self) -> list[dict]:
        return [m for m in self.messages if "could not run" in m["payload"]["text"]]

    def digests(self) -> list[dict]:
        return [m for m in self.messages if m not in self.failure_alerts() and m not in self.cause_alerts()]

    def sns(self, sandbox: Sandbox) -> list:
        from moto.backends import get_backend
        from moto.core import DEFAULT_ACCOUNT_ID

        topics = get_backend("sns")[DEFAULT_ACCOUNT_ID][sandbox.config.regions.primary].topics
        return list(topics[sandbox.config.alerts.sns_topic_arn].sent_notifications)


def run_daily(sandbox: Sandbox, capfd, logical_date: datetime | None, problems=frozenset(), slack_mode="ok",
              days: dict | None = None, run_after: datetime | None = None) -> Outcome:
    from airflow.dag_processing.dagbag import DagBag

    capfd.readouterr()
    sandbox.seed_days(days or {logical_date or run_after: problems})
    sandbox.slack.clear()
    sandbox.smtp.clear()
    sandbox.slack.mode = slack_mode
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    sns_before = len(Outcome.sns(None, sandbox))
    dag_run = bag.dags["daily_maintenance"].test(logical_date=logical_date, run_after=run_after)
    sandbox.slack.mode = "ok"
    outcome = Outcome(sandbox, dag_run, sandbox.slack.messages())
    outcome.pages = Outcome.sns(None, sandbox)[sns_before:]
    outcome.mails = sandbox.smtp.messages()
    out, err = capfd.readouterr()
    outcome.printed = out + err
    assert "Task instance state updated" in outcome.printed  # the task logs were captured for the scan
    return outcome


@pytest.fixture(scope="module")
def history(sandbox):
    return {}


def test_healthy_past_day(sandbox, history, capfd):
    outcome = history["healthy"] = run_daily(sandbox, capfd, day(10))
    assert outcome.state == "success", (outcome.task_states, outcome.problems())
    assert {t: s for t, s in outcome.task_states.items()} == dict.fromkeys(
        CHECK_TASKS | {"report", "run_verdict", "maintenance_status"}, "success")
    assert outcome.problems() == {} and outcome.failure_alerts() == []
    [digest] = outcome.digests()
    headlines = json.dumps(digest["payload"])
    assert "Unused resources: 0 costing ~$0.00/month" in headlines
    assert "Overnight alarms: none went into ALARM" in headlines
    assert "Log lifecycle: matches the policy" in headlines
    s3 = sandbox.client("s3")
    backup = f"{sandbox.config.reports.prefix}/{sandbox.config.config_backup.prefix}/{day(10):%Y-%m-%d}/"
    stored = {o["Key"][len(backup):] for o in s3.list_objects_v2(Bucket=sandbox.config.reports.bucket,
                                                                  Prefix=backup)["Contents"]}
    assert stored == {"manifest.json", "secrets-manager.json", "ssm-parameters.json", "ecs/solemate-backend-1.json"}
    assert digest["payload"]["text"].startswith(":white_check_mark: production: daily_maintenance passed — "
                                                f"{label(day(10))} [PAST DATE checked")
    blocks = json.dumps(digest["payload"])
    assert f"metric windows end {label(day(10))}, look-back 1440 min" in blocks
    assert "https://s3.console.aws.amazon.com/s3/object/" in blocks  # a link a browser opens
    [mail] = outcome.mails  # the daily summary by e-mail, through the SMTP provider (with AUTH)
    assert mail["to"] == sandbox.config.alerts.digest_email
    subject = str(email.header.make_header(email.header.decode_header(email.message_from_string(mail["data"])["Subject"])))
    assert subject.startswith(f"production: daily_maintenance passed — {label(day(10))} [PAST DATE")
    report = outcome.report
    assert report["logical_date"] == day(10).isoformat()
    assert report["facts"]["run_kind"].startswith("PAST DATE")
    assert report["environment"] == "production" and report["run_type"] == "manual"
    assert report["totals"]["status"]["ok"] == len(report["findings"]) >= 20
    assert outcome.latest["run_id"] == outcome.run_id


def test_broken_live_run_fails_the_right_tasks_alerts_and_pages(sandbox, history, capfd):
    when = LIVE - timedelta(hours=3)
    outcome = history["broken"] = run_daily(sandbox, capfd, when, BROKEN)
    assert outcome.state == "failed"
    assert outcome.failed() == {"ecs_services", "rds_health", "business_metrics", "security_events",
                                "open_security_groups", "log_pipeline", "run_verdict"}
    assert outcome.task_states["report"] == "success"
    assert outcome.task_states["maintenance_status"] == "success"
    for task in ("performance_kpis", "log_lifecycle", "unused_resources", "config_backup", "overnight_alarms",
                 "alarms", "auto_scaling", "pending_updates", "notification_paths", "application_errors"):
        assert outcome.task_states[task] == "success", task  # P3/P4 only: reported, stays green
    assert outcome.problems() == {
        "ecs.task_count": ("P2", "new"),
        "rds.cpu_utilization": ("P2", "new"),
        "business.payment_success_rate": ("P1", "new"),
        "kpi.response_time_p95": ("P3", "new"),
        "kpi.response_time_p99": ("P3", "new"),
        "security.failed_logins_per_ip": ("P2", "new"),
        "security.credential_stuffing": ("P3", "new"),
        "security.open_ingress": ("P2", "new"),
        "logs.retention.never_expires": ("P3", "new"),
        "logs.retention.too_short": ("P3", "new"),
        "logs.archive_lifecycle": ("P3", "new"),
        **{f"unused.{kind}": ("P4", "new") for kind in UNUSED_KINDS},
        "secrets.rotation_overdue": ("P3", "new"),
        "cloudwatch.overnight_alarm": ("P3", "new"),
        "monitoring.alarm.drift": ("P3", "new"),
        "scaling.range": ("P3", "new"),
        "updates.rds.maintenance": ("P3", "new"),
        "log_pipeline.subscription": ("P2", "new"),
    }
    assert outcome.report["comparison"]["previous_run_id"] == history["healthy"].run_id
    alerts = {m["payload"]["text"]: m for m in outcome.failure_alerts()}
    suffix = f" — {label(when)}"  # live: the date, and no backfill/past tag
    assert set(alerts) == {
        f"[P2] production: daily_maintenance.ecs_services failed{suffix}",
        f"[P2] production: daily_maintenance.rds_health failed{suffix}",
        f"[P1] production: daily_maintenance.business_metrics failed{suffix}",
        f"[P2] production: daily_maintenance.security_events failed{suffix}",
        f"[P2] production: daily_maintenance.open_security_groups failed{suffix}",
        f"[P2] production: daily_maintenance.log_pipeline failed{suffix}",
    }
    shipped = json.dumps(alerts[f"[P2] production: daily_maintenance.log_pipeline failed{suffix}"]["payload"])
    assert "/ecs/production/application" in shipped and "put-subscription-filter" in shipped
    brute = json.dumps(alerts[f"[P2] production: daily_maintenance.security_events failed{suffix}"]["payload"])
    assert "203.0.113.66: 150 failed logins (30 users)" in brute  # the offender, in the alert itself
    port = json.dumps(alerts[f"[P2] production: daily_maintenance.open_security_groups failed{suffix}"]["payload"])
    assert "production-db-sg" in port and "PostgreSQL 5432" in port and "0.0.0.0/0" in port
    p1 = alerts[f"[P1] production: daily_maintenance.business_metrics failed{suffix}"]
    assert p1["path"].startswith("/critical/")  # P1 goes to slack_critical when it exists
    assert p1["payload"]["attachments"][0]["color"] == sandbox.config.alerts.severities["P1"].color
    blocks = json.dumps(p1["payload"]["attachments"][0]["blocks"])
    for field in (f"*Checked date*\\n{label(when)}", "*Window*\\n", "*Task*\\ndaily_maintenance.business_metrics",
                  f"*Run*\\n{outcome.run_id} (manual)", "*What happened*\\nfailed on its findings", "*Duration*",
                  "ChecksFailedError", "payment success rate", "/tasks/business_metrics?try_number=1",
                  "*What to do*\\nCheck the payment provider's status page"):
        assert field in blocks, field
    [(_, page, subject, *_)] = outcome.pages  # the SMS carries the finding itself
    assert subject.startswith("[P1] production: daily_maintenance.business_metrics failed")
    # The worst 5 minutes, and when it was bad: not the hour's (or the day's) average.
    assert re.search(r"\[P1\] SoleMate/Business: payment success rate \(worst 5 min\) [\d.]+ % <= critical "
                     r"threshold 95 \\u2014 \d\d:\d\d\\u2013\d\d:\d\d UTC, peak", page), page  # JSON-escaped
    assert "Do: Check the payment provider's status page" in page
    [digest] = outcome.digests()
    assert f"daily_maintenance failed — {label(when)}" in digest["payload"]["text"]
    headlines = json.dumps(digest["payload"])
    cost = next(m for m in outcome.report["measurements"].values() if "estimated_monthly_usd" in m)
    assert cost["estimated_monthly_usd"] == pytest.approx(10.0 + 3.65 + 9.5 + 16.43 + 4.0, abs=0.05)
    assert f"Unused resources: 6 costing ~${cost['estimated_monthly_usd']:.2f}/month" in headlines
    assert "Overnight alarms: 1 went into ALARM" in headlines and "still in ALARM" in headlines
    assert "Log lifecycle: 2 change(s) would apply" in headlines  # report only: enforcement is off
    assert "| put_retention_policy | 30 days | 90 days |" in outcome.markdown  # the diff, in the report
    deliveries = {(d["task_id"], d["channel"]): d["ok"] for d in outcome.report["alert_deliveries"]}
    assert deliveries[("business_metrics", "slack:slack_critical")] is True
    assert deliveries[("business_metrics", "sns")] is True
    assert deliveries[("report", "slack:slack_alerts")] is True
    assert deliveries[("report", "email")] is True
    assert "| P1 | critical | new | business.payment_success_rate |" in outcome.markdown


def test_second_broken_run_marks_findings_ongoing(sandbox, history, capfd):
    outcome = history["ongoing"] = run_daily(sandbox, capfd, LIVE - timedelta(hours=2), BROKEN)
    assert outcome.report["previous_run_id"] == history["broken"].run_id
    assert {check: lifecycle for check, (_, lifecycle) in outcome.problems().items()} == dict.fromkeys(
        history["broken"].problems(), "ongoing")
    # The same P1 an hour later is the same incident: Slack hears of it, the pager does not again.
    assert outcome.pages == []
    sns = next(d for d in outcome.report["alert_deliveries"] if d["channel"] == "sns")
    assert sns["error"] == f"not paged: already paged by {history['broken'].run_id}"


def test_fixing_the_world_resolves_findings(sandbox, history, capfd):
    outcome = history["fixed"] = run_daily(sandbox, capfd, LIVE - timedelta(hours=1))
    assert outcome.state == "success"
    assert outcome.problems() == {}
    assert {f["check"] for f in outcome.report["resolved"]} == set(history["broken"].problems())
    assert outcome.report["totals"]["lifecycle"]["resolved"] == len(history["broken"].problems())
    [digest] = outcome.digests()
    assert "*Resolved*" in json.dumps(digest["payload"])


def test_slack_refusing_connections_keeps_the_real_outcome(sandbox, history, capfd, monkeypatch):
    closed = f"http://127.0.0.1:{free_port()}"
    for name in ("AIRFLOW_CONN_SLACK_ALERTS", "AIRFLOW_CONN_SLACK_CRITICAL"):
        conn = json.loads(os.environ[name])
        monkeypatch.setenv(name, json.dumps({**conn, "host": closed + "/services"}))
    outcome = history["slack_refused"] = run_daily(sandbox, capfd, LIVE, {"rds_high_cpu"})
    assert outcome.state == "failed"
    assert outcome.failed() == {"rds_health", "run_verdict"}
    assert outcome.messages == []
    deliveries = {(d["task_id"], d["channel"]): d for d in outcome.report["alert_deliveries"]}
    assert deliveries[("rds_health", "slack:slack_alerts")]["outcome"] == "failed"
    assert "Connection refused" in deliveries[("rds_health", "slack:slack_alerts")]["error"]
    assert deliveries[("report", "slack:slack_alerts")]["ok"] is False
    assert deliveries[("report", "email")]["ok"] is True  # one channel down does not take the others
    assert "| digest | report | slack:slack_alerts | NO |" in outcome.markdown
    assert "Connection refused" in outcome.printed  # the refusal was logged, and scanned for the token below


def test_second_run_for_the_same_date_is_marked_not_repeated_as_new(sandbox, history, capfd):
    outcome = history["rerun"] = run_daily(sandbox, capfd, LIVE, {"rds_high_cpu"})
    assert outcome.run_id != history["slack_refused"].run_id
    assert outcome.report["earlier_runs_for_date"] == [history["slack_refused"].run_id]
    cpu = next(f for f in outcome.report["findings"] if f["check"] == "rds.cpu_utilization")
    assert cpu["already_alerted_by"] == history["slack_refused"].run_id
    [alert] = outcome.failure_alerts()
    assert "Already alerted" in json.dumps(alert["payload"])
    [digest] = outcome.digests()
    assert "*Already alerted for this date*" in json.dumps(digest["payload"])
    s3 = sandbox.client("s3")
    stamp = LIVE.strftime("%Y-%m-%dT%H%MZ")
    by_date = json.loads(s3.get_object(Bucket=sandbox.config.reports.bucket,
                                       Key=f"reports/daily_maintenance/by-logical-date/{stamp}/report.json")["Body"].read())
    assert by_date["run_id"] == outcome.run_id  # the report for a date is one predictable key


def test_backfill_measures_its_own_day_and_does_not_page(sandbox, history, capfd):
    # Today the database is hot; three weeks ago it was not, but payments failed. The backfill must see that day.
    outcome = history["backfill"] = run_daily(sandbox, capfd, day(9), days={
        day(9): {"payment_failures"}, LIVE: {"rds_high_cpu"}})
    assert outcome.report["logical_date"] == day(9).isoformat()
    assert set(outcome.problems()) == {"business.payment_success_rate"}  # no CPU problem on that day
    [alert] = outcome.failure_alerts()
    assert alert["payload"]["text"].startswith("[P1] production: daily_maintenance.business_metrics failed — "
                                               f"{label(day(9))} [PAST DATE checked")
    assert outcome.pages == []  # a past date never pages
    sns = next(d for d in outcome.report["alert_deliveries"] if d["channel"] == "sns")
    assert sns["outcome"] == "skipped" and "not paged" in sns["error"]
    assert outcome.latest["run_id"] == history["rerun"].run_id  # an older date never rolls latest back


def test_run_without_logical_date_is_anchored_at_run_after(sandbox, history, capfd):
    """The REST API allows a run with no logical date: it checks the time it runs after."""
    run_after = LIVE + timedelta(minutes=30)
    outcome = history["no_logical_date"] = run_daily(sandbox, capfd, None, {"rds_high_cpu"}, run_after=run_after)
    report = outcome.report
    assert report["logical_date"] == run_after.isoformat()
    assert report["facts"]["logical_date_source"] == "run_after"
    assert report["comparison"]["status"] == "impossible" and "no logical date" in report["comparison"]["reason"]
    assert {f["check"]: f["lifecycle"] for f in report["findings"] if f["status"] == "critical"} == \
        {"rds.cpu_utilization": "unknown"}
    assert outcome.latest["run_id"] == outcome.run_id  # the newest date checked
    [alert] = outcome.failure_alerts()
    assert alert["payload"]["text"].endswith(f"— {label(run_after)}")


def test_aws_wide_outage_is_one_alert_and_still_a_digest(sandbox, history, capfd, monkeypatch):
    """No usable AWS credentials: every check fails at once (no retries), S3 too, and on-call gets
    one alert naming the cause plus the digest, not seven pages."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(
        {"conn_type": "aws", "extra": {"region_name": sandbox.config.regions.primary}}))
    outcome = history["outage"] = run_daily(sandbox, capfd, day(8))
    assert outcome.state == "failed"
    assert outcome.failed() == CHECK_TASKS | {"report", "run_verdict", "maintenance_status"}
    assert outcome.report is None  # S3 was unreachable too
    assert outcome.failure_alerts() == []
    [cause] = outcome.cause_alerts()
    assert cause["payload"]["text"].startswith(f"[P2] production: daily_maintenance: {len(CHECK_TASKS)} tasks could "
                                               f"not run: no usable AWS credentials — {label(day(8))}")
    assert "aws_default" in json.dumps(cause["payload"])
    [digest] = outcome.digests()
    text = json.dumps(digest["payload"])
    assert "The report could not be written" in text and "check could not run: no usable AWS credentials" in text
    assert "check the aws_default connection" in text  # the write error says what to do too
    assert "Task's retry" not in outcome.printed and outcome.printed.count("up_for_retry") == 0
    assert "the checks themselves also failed" in outcome.printed  # the verdict names both


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
    sent += json.dumps([page[1:3] for o in history.values() for page in o.pages])
    printed = "".join(o.printed for o in history.values())
    assert written and sent != "[]" and len(history) == 9
    assert "Connection refused" in printed  # the refused-connection case is in the scan
    for secret in sandbox.secrets():
        for form in secret_forms(secret):
            assert form not in written, f"a form of a secret was written: {form[:4]}…"
            assert form not in sent, f"a form of a secret was sent: {form[:4]}…"
            assert form not in printed, f"a form of a secret was printed: {form[:4]}…"
