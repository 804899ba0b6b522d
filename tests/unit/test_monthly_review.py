"""The monthly review's checks against the platform in moto: the cost review and its Cost Explorer
cache, the performance report, the security audit and the stakeholder summary. One world per module
(ANCHOR's month is November, so the month reviewed is October), reset to healthy between tests."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from moto import mock_aws
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID
from PIL import Image

from sandbox import monthly as sandbox_monthly
from sandbox import moto_ce, moto_iam
from sandbox.platform import Platform
from solemate_maintenance.config import load_config
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY
from solemate_maintenance.operators.reviews.audit import SecurityAuditOperator
from solemate_maintenance.operators.reviews.cost import CostReviewOperator
from solemate_maintenance.operators.reviews.performance import PerformanceReportOperator
from solemate_maintenance.operators.reviews.summary import StakeholderSummaryOperator
from solemate_maintenance.report import ReportedFinding, RunReport
from solemate_maintenance.window import month_reviewed
from tests.helpers import ANCHOR, make_context
from tests.unit.conftest import cached_clients
from tests.unit.test_daily_housekeeping import by_check, problems, run

pytestmark = pytest.mark.timeout(120)
CONFIG = load_config()
REGION = CONFIG.regions.primary
OCTOBER = datetime(2026, 10, 1, tzinfo=UTC)
# The forecast is of the month in progress, a wall-clock fact: the unit tests' clock is frozen in late
# November 2026 (tests/unit/conftest.py), so October's review forecasts November.


@pytest.fixture(scope="module")
def world():
    with mock_aws():
        platform = Platform(CONFIG, cached_clients(REGION), history_days=60)
        platform.create()
        platform.seed(ANCHOR)
        yield platform


@pytest.fixture
def world_with(world):
    def apply(*problems: str):
        world.seed(ANCHOR, frozenset(problems))
        return world

    apply()
    yield apply
    apply()
    moto_iam.ROOT.__init__()


def s3_objects(world, prefix):
    listed = world._client("s3").list_objects_v2(Bucket=CONFIG.reports.bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def clear_cost_cache(world):
    s3 = world._client("s3")
    for key in s3_objects(world, f"{CONFIG.reports.prefix}/{CONFIG.cost.cache_prefix}/"):
        s3.delete_object(Bucket=CONFIG.reports.bucket, Key=key)


def test_month_reviewed_is_the_data_interval_or_the_last_complete_month():
    scheduled = {"data_interval_start": datetime(2026, 9, 1, 6, tzinfo=UTC),
                 "data_interval_end": datetime(2026, 10, 1, 6, tzinfo=UTC), "logical_date": datetime(2026, 9, 1, 6)}
    assert month_reviewed(scheduled).start == datetime(2026, 9, 1, tzinfo=UTC)
    assert month_reviewed(scheduled).end == datetime(2026, 10, 1, tzinfo=UTC)
    assert month_reviewed(make_context(ANCHOR)).start == OCTOBER  # zero-length interval in November


# -- cost review (Cost Explorer through the sandbox's ledger) ------------------------------------------
def cost(**overrides):
    return CostReviewOperator(task_id="cost_review", settings=CONFIG.cost.model_copy(update=overrides),
                              bucket=CONFIG.reports.bucket, reports_prefix=CONFIG.reports.prefix)


def test_cost_review_healthy_month_asks_cost_explorer_a_handful_of_times_then_never(world_with):
    world = world_with()
    clear_cost_cache(world)
    before = sum(moto_ce.LEDGER.calls.values())
    findings, error, measured = run(cost())
    first_calls = sum(moto_ce.LEDGER.calls.values()) - before
    assert error is None and not problems(findings)
    expected = sum(sum(day.values()) for d, day in moto_ce.LEDGER.daily.items() if d.month == 10 and d.year == 2026)
    assert measured["total_usd"] == pytest.approx(expected, abs=0.01)
    assert measured["month"] == "2026-10-01"
    # By service over two months, daily, anomalies; and while November is in progress, November so far
    # and its forecast (a review of a month long past has no month in progress to forecast).
    assert first_calls == measured["cost_explorer_calls"] == 5
    assert (measured["forecast"] or {}).get("month") == "November 2026"
    services = measured["tables"]["By service, October 2026 against September 2026"]["rows"]
    assert {row[0] for row in services} == set(sandbox_monthly.DAILY_COSTS)
    findings, error, measured = run(cost())  # a re-run (or a retry) of the same month
    assert sum(moto_ce.LEDGER.calls.values()) - before == first_calls  # not one more request
    assert measured["cost_explorer_calls"] == 0 and measured["cost_explorer_cache_hits"] == first_calls
    chart = measured["charts"][0]
    image = Image.open(io.BytesIO(world._client("s3").get_object(Bucket=CONFIG.reports.bucket,
                                                                  Key=chart["key"])["Body"].read()))
    assert image.info["Series"] == "daily cost" and "October 2026" in image.info["Title"]


def test_unsettled_answers_expire_and_settled_ones_do_not(world_with):
    world = world_with()
    clear_cost_cache(world)
    run(cost())
    s3 = world._client("s3")
    for key in s3_objects(world, f"{CONFIG.reports.prefix}/{CONFIG.cost.cache_prefix}/"):
        record = json.loads(s3.get_object(Bucket=CONFIG.reports.bucket, Key=key)["Body"].read())
        record["cached_at"] = (datetime.fromisoformat(record["cached_at"]) - timedelta(hours=30)).isoformat()
        s3.put_object(Bucket=CONFIG.reports.bucket, Key=key, Body=json.dumps(record))
    before = dict(moto_ce.LEDGER.calls)
    _, _, measured = run(cost())
    asked = {op: n - before.get(op, 0) for op, n in moto_ce.LEDGER.calls.items() if n - before.get(op, 0)}
    # October closed more than settle_days ago: its answers stand; the month in progress is asked again.
    assert asked == {"GetCostAndUsage": 1, "GetCostForecast": 1}
    assert measured["cost_explorer_calls"] == len(asked)


def test_a_cost_spike_and_its_anomaly_are_p3(world_with):
    world = world_with("cost_spike")
    clear_cost_cache(world)  # October's healthy answers are settled and cached by the earlier tests
    findings, error, measured = run(cost())
    assert error is None
    found = problems(findings)
    assert found[("cost.spike", sandbox_monthly.SPIKED_SERVICE)] == "P3"
    assert found[("cost.anomaly", f"{sandbox_monthly.SPIKED_SERVICE} from 2026-10-15")] == "P3"
    spike = by_check(findings, "cost.spike")[0]
    assert "October 2026" in spike["summary"] and "on September 2026" in spike["summary"]
    assert measured["tables"]["Biggest movers"]["rows"][0][0] == sandbox_monthly.SPIKED_SERVICE


def test_budget_and_forecast_against_it(world_with):
    world_with()
    findings, _, measured = run(cost(monthly_budget_usd=3500))
    found = problems(findings)
    assert found[("cost.budget", "October 2026")] == "P3"
    if measured["forecast"]:  # the month in progress has a forecast; ~$3,950 is over 90 % of $3,500
        assert found[("cost.forecast", "November 2026")] == "P3"
        assert measured["forecast"]["low"] <= measured["forecast"]["mean"] <= measured["forecast"]["high"]


def test_a_past_month_has_no_forecast_and_its_own_figures(world_with):
    world_with()
    _, _, october = run(cost())
    _, _, august = run(cost(), anchor=datetime(2026, 9, 10, 2, tzinfo=UTC))
    assert august["month"] == "2026-08-01" and august["forecast"] is None
    assert august["total_usd"] != october["total_usd"]


# -- performance report -------------------------------------------------------------------------------
def performance(**overrides):
    return PerformanceReportOperator(
        task_id="performance_report", load_balancer_name=CONFIG.resources.alb.name, kpis=CONFIG.kpis,
        cluster=CONFIG.resources.ecs.cluster, services=CONFIG.resources.ecs.services,
        db_instance_identifier=CONFIG.resources.rds.instance_id,
        right_sizing=CONFIG.right_sizing.model_copy(update=overrides), bucket=CONFIG.reports.bucket,
        reports_prefix=CONFIG.reports.prefix)


def test_performance_month_meets_its_kpis_with_charts(world_with):
    world = world_with()
    findings, error, measured = run(performance())
    assert error is None and not problems(findings)
    kpis = measured["kpis"]
    assert {k: v["met"] for k, v in kpis.items()} == dict.fromkeys(kpis, True)
    assert all(v["days"] == 31 and v["days_missed"] == [] for v in kpis.values())
    assert 0 < kpis["p95_ms"]["value"] < kpis["p99_ms"]["value"] < 1000
    titles = {}
    for chart in measured["charts"]:
        body = world._client("s3").get_object(Bucket=CONFIG.reports.bucket, Key=chart["key"])["Body"].read()
        titles[chart["key"].rsplit("/", 1)[1]] = Image.open(io.BytesIO(body)).info["Series"]
    assert titles == {"performance-latency.png": "P95; P99; P95 target", "performance-errors.png": "error rate; target"}


def test_a_slow_day_is_named_and_saturation_gets_a_hint(world_with):
    world = world_with()
    backend = get_backend("cloudwatch")[DEFAULT_ACCOUNT_ID][REGION]
    slow_day = datetime(2026, 10, 13, tzinfo=UTC)
    backend.put_metric_data("AWS/ApplicationELB", [
        {"MetricName": "TargetResponseTime", "Timestamp": slow_day + timedelta(hours=h),
         "Dimensions": [{"Name": "LoadBalancer", "Value": world.alb_dimension}], "Values": [2.5] * 200,
         "Unit": "Seconds"} for h in range(24)])
    findings, error, measured = run(performance(saturated_peak_percent=45))
    p95 = by_check(findings, "performance.p95_ms")[0]
    assert measured["kpis"]["p95_ms"]["days_missed"] == ["2026-10-13"]
    assert "missed on 1 of 31 days (13)" in p95["summary"]
    hints = {f["resource"]: f["severity"] for f in by_check(findings, "performance.right_sizing")}
    assert hints["solemate-backend CPU"] == "P4"  # its hourly P95 (~46 %) reaches the lowered 45 %


# -- security audit -----------------------------------------------------------------------------------
def audit():
    return SecurityAuditOperator(task_id="security_audit", regions=[REGION, CONFIG.regions.dr])


def test_security_audit_healthy(world_with):
    world_with()
    findings, error, measured = run(audit())
    assert error is None and not problems(findings)
    assert {f["check"] for f in findings} == {"security.root", "security.iam_users", "security.s3",
                                              "security.encryption", "security.cloudtrail"}
    assert measured["headline"] == "Security audit: nothing found"


def test_user_without_mfa_and_public_bucket(world_with):
    world_with("user_without_mfa", "public_bucket")
    findings, error, _ = run(audit())
    found = problems(findings)
    assert found[("security.iam_mfa", "bob")] == "P3"
    assert found[("security.s3_public", sandbox_monthly.PUBLIC_BUCKET)] == "P2"
    assert error is not None  # P2: the task fails and alerts
    public = by_check(findings, "security.s3_public")[0]
    assert "public by ACL" in public["summary"] and public["details"]["prowler_check"] == "s3_bucket_public_access"
    assert ("security.iam_mfa", "alice") not in found  # console user with a virtual MFA device


def test_root_account_old_keys_trail_and_unencrypted_volume(world_with):
    world = world_with()
    moto_iam.ROOT.access_key_active, moto_iam.ROOT.mfa_active = True, False
    moto_iam.ROOT.password_last_used = datetime.now(UTC) - timedelta(days=2)
    key = get_backend("iam")[DEFAULT_ACCOUNT_ID]["global"].users["deploy-bot"].access_keys[0]
    saved = key.create_date
    key.create_date = datetime.now(UTC) - timedelta(days=120)
    world._client("cloudtrail").stop_logging(Name="solemate-organization")
    volume = world._client("ec2").create_volume(AvailabilityZone=f"{REGION}a", Size=8)["VolumeId"]
    try:
        findings, error, _ = run(audit())
    finally:
        key.create_date = saved
        world._client("cloudtrail").start_logging(Name="solemate-organization")
        world._client("ec2").delete_volume(VolumeId=volume)
    found = problems(findings)
    assert {c: s for (c, r), s in found.items() if r == "root account"} == {
        "security.root_keys": "P2", "security.root_mfa": "P2", "security.root_use": "P2"}
    assert found[("security.iam_key_age", "deploy-bot key 1")] == "P3"
    assert found[("security.iam_key_unused", "deploy-bot key 1")] == "P4"
    assert found[("security.cloudtrail", "account")] == "P2"
    assert found[("security.ebs_encryption", f"{volume} ({REGION})")] == "P3"


# -- stakeholder summary --------------------------------------------------------------------------------
def stored_report(world, dag_id, logical_date, findings=(), measurements=None, failed=()):
    report = RunReport(dag_id=dag_id, run_id=f"scheduled__{logical_date.isoformat()}", run_type="scheduled",
                       logical_date=logical_date.isoformat(), data_interval_start=None, data_interval_end=None,
                       environment="production", checked_label=logical_date.strftime("%Y-%m-%d %H:%M UTC"),
                       task_states={}, findings=list(findings), measurements=measurements or {},
                       failed_tasks=list(failed))
    key = f"{CONFIG.reports.prefix}/{dag_id}/by-logical-date/{logical_date:%Y-%m-%dT%H%MZ}/report.json"
    world._client("s3").put_object(Bucket=CONFIG.reports.bucket, Key=key, Body=report.model_dump_json())


def problem(check, severity, lifecycle="new"):
    return ReportedFinding(check=check, resource="r", status="critical", severity=severity, summary="s",
                           task_id="t", lifecycle=lifecycle)


def test_stakeholder_summary_tells_the_month_and_is_mailed_once(world_with, tmp_path, monkeypatch):
    from sandbox.servers import SmtpSink

    world = world_with()
    stored_report(world, "daily_maintenance", datetime(2026, 10, 3, 2, tzinfo=UTC), [problem("rds.cpu", "P2")])
    stored_report(world, "daily_maintenance", datetime(2026, 10, 4, 2, tzinfo=UTC),
                  [problem("rds.cpu", "P2", "ongoing"), problem("kpi.p95", "P3")])
    stored_report(world, "daily_maintenance", datetime(2026, 11, 2, 2, tzinfo=UTC), [problem("ecs", "P1")])
    stored_report(world, "weekly_backup_verification", datetime(2026, 10, 7, 3, tzinfo=UTC),
                  measurements={"restore_validate": {"validation": "passed", "rto_minutes": 11.2,
                                                     "data_rpo_minutes": 1.5}})
    smtp = SmtpSink(tmp_path / "mail.jsonl").start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "ops@solemate.example"}}))
    op = StakeholderSummaryOperator(
        task_id="stakeholder_summary", summary=CONFIG.monthly_summary.model_copy(update={"recipients": ["cto@x.io"]}),
        alerts=CONFIG.alerts, environment="production", bucket=CONFIG.reports.bucket,
        reports_prefix=CONFIG.reports.prefix, review_tasks={"performance": "performance_report", "cost": "cost_review"})
    upstream = {"performance_report": {"kpis": {"p95_ms": {"name": "P95 response time", "value": 250.0,
                                                           "target": 500, "met": True, "days": 31,
                                                           "days_missed": []}}},
                "cost_review": {"total_usd": 5144.28, "previous_total_usd": 3939.62, "month": "2026-10-01",
                                "tables": {"Cost anomalies": {"rows": [["2026-10-15", "ECS", 1075.95, 0.9]]}}}}
    try:
        outcomes = []
        for _ in range(2):  # the second run (a retry, a re-run) must not mail it again
            context = make_context(task_id=op.task_id, dag_id="monthly_review")
            ti = context["ti"]
            ti.xcom_pull = lambda task_ids, key="return_value", ti=ti: (  # noqa: E731
                upstream.get(task_ids) if key == MEASUREMENTS_XCOM_KEY and task_ids != ti.task_id
                else ti.pushed.get(key) if task_ids == ti.task_id else None)
            op.execute(context)
            outcomes.append((ti.pushed["findings"], ti.pushed[MEASUREMENTS_XCOM_KEY]))
        mails = smtp.messages()
    finally:
        smtp.stop()
    assert len(mails) == 1 and mails[0]["to"] == ["cto@x.io"]
    assert outcomes[0][0][0]["summary"] == "sent to cto@x.io"
    assert outcomes[1][0][0]["summary"].startswith("already sent to 1 recipient(s)")
    key = outcomes[0][1]["summary_uri"].split(f"{CONFIG.reports.bucket}/", 1)[1]
    markdown = world._client("s3").get_object(Bucket=CONFIG.reports.bucket, Key=key)["Body"].read().decode()
    assert "— October 2026 (production)" in markdown
    assert "| new problems by severity | P1: 0, P2: 1, P3: 1, P4: 0 |" in markdown  # the November P1 is not October's
    assert "| daily runs reported | 2 |" in markdown
    assert "| passed | 11.2 min | 1.5 min |" in markdown
    assert "| P95 response time | 250.0 | 500 | met | 0 of 31 days missed |" in markdown
    assert "| total | $5,144.28 | +31 % on the month before |" in markdown and "| anomalies | 1 |" in markdown
    assert "no DR drill stored for this month" in markdown


def test_account_public_access_block_covers_buckets_and_an_unreadable_bucket_does_not_end_the_audit(
        world_with, monkeypatch):
    from moto.s3.exceptions import BucketAccessDeniedError
    from moto.s3.models import S3Backend

    world = world_with()
    s3, s3control = world._client("s3"), world._client("s3control")
    s3.delete_public_access_block(Bucket=CONFIG.reports.bucket)
    findings, _, _ = run(audit())
    assert problems(findings) == {("security.s3_public_access_block", CONFIG.reports.bucket): "P3"}
    block = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
             "RestrictPublicBuckets": True}
    s3control.put_public_access_block(AccountId=DEFAULT_ACCOUNT_ID, PublicAccessBlockConfiguration=block)
    original = S3Backend.get_bucket_encryption

    def denied(self, bucket_name, *args, **kwargs):
        if bucket_name == "solemate-cloudtrail":
            raise BucketAccessDeniedError(bucket=bucket_name)
        return original(self, bucket_name, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "get_bucket_encryption", denied)
    try:
        findings, _, _ = run(audit())
    finally:
        s3control.delete_public_access_block(AccountId=DEFAULT_ACCOUNT_ID)
    found = problems(findings)
    assert found == {("security.s3_unreadable", "solemate-cloudtrail"): "P3"}  # the account block covers the rest
    assert [f["status"] for f in by_check(findings, "security.cloudtrail")] == ["ok"]  # the audit went on


# -- the "review" items' data: thresholds and backup strategy (pure rules, fixed dates) ------------

def test_alarm_suggestions_name_flapping_chronic_and_lax_alarms_and_change_nothing():
    from solemate_maintenance.operators.reviews.thresholds import suggest_alarm

    assert suggest_alarm(fired=14, share_in_alarm=0.01, p99=90, threshold=80, operator="GreaterThanThreshold") \
        .startswith("flapping (14 times into ALARM)")
    assert suggest_alarm(fired=2, share_in_alarm=0.35, p99=90, threshold=80, operator="GreaterThanThreshold") \
        .startswith("in ALARM 35% of the month")
    lax = suggest_alarm(fired=0, share_in_alarm=0, p99=20, threshold=80, operator="GreaterThanThreshold")
    assert lax == "never fired, p99 20 is under half the threshold 80: consider about 30 so that it fires before users notice"
    assert suggest_alarm(fired=0, share_in_alarm=0, p99=60, threshold=80,
                         operator="GreaterThanThreshold").startswith("never fired: keep it")
    assert suggest_alarm(fired=3, share_in_alarm=0.02, p99=85, threshold=80, operator="GreaterThanThreshold") == "keep"
    # A bad-when-low alarm (payment success under 95 %) far above its threshold is lax the other way.
    assert suggest_alarm(fired=0, share_in_alarm=0, p99=99.9, threshold=40,
                         operator="LessThanThreshold").startswith("never fired, p99 99.9 is far from")


def test_time_in_alarm_counts_only_the_covered_month_and_says_when_it_cannot_know():
    from solemate_maintenance.operators.reviews.thresholds import ThresholdReviewOperator
    from solemate_maintenance.window import TimeWindow

    month = TimeWindow(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    at = lambda day, hour: datetime(2026, 11, day, hour, tzinfo=UTC)  # noqa: E731
    time_in_alarm = ThresholdReviewOperator._time_in_alarm
    # In ALARM since October, OK on the 2nd at 06:00; again from the 10th 00:00 to 12:00.
    changes = [(at(2, 6), "ALARM", "OK"), (at(10, 0), "OK", "ALARM"), (at(10, 12), "ALARM", "OK")]
    assert time_in_alarm(changes, month, {}) == timedelta(days=1, hours=18)
    # Still in ALARM when the month ends: counted to its end, not to now.
    assert time_in_alarm([(at(30, 12), "OK", "ALARM")], month, {}) == timedelta(hours=12)
    # No transition: the state now held all month only if it last changed before the month.
    assert time_in_alarm([], month, {"StateValue": "ALARM", "StateUpdatedTimestamp": at(1, 0) - timedelta(days=3)}) \
        == timedelta(days=30)
    assert time_in_alarm([], month, {"StateValue": "OK", "StateUpdatedTimestamp": at(3, 0) + timedelta(days=40)}) \
        is None


def test_the_newest_recovery_points_worst_age_includes_the_gap_into_the_month():
    from solemate_maintenance.operators.reviews.backup_strategy import worst_age
    from solemate_maintenance.window import TimeWindow

    month = TimeWindow(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    daily = [datetime(2026, 1, 31, 5, tzinfo=UTC) + timedelta(days=n) for n in range(29)]
    assert worst_age(daily, month) == timedelta(hours=24)
    # Four nightly backups failed (10th to 13th): the newest point got five days old.
    gap = [d for d in daily if not datetime(2026, 2, 10, tzinfo=UTC) < d < datetime(2026, 2, 13, 12, tzinfo=UTC)]
    assert worst_age(gap, month) == timedelta(days=5)
    assert worst_age([], month) is None
