"""Monitoring the monitoring, against the platform in moto: the guide's alarms (report and enforce),
their topics' subscriptions, the overview dashboard, ECS auto scaling, pending updates, stack drift
and the log pipeline. Each: healthy, each injected problem, more than one page. One world per module;
every test starts from the healthy monitoring layer (`monitoring.apply` puts the guide's back)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk.exceptions import TaskDeferred
from moto import mock_aws
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from sandbox import moto_monitoring
from sandbox.monitoring import MONITORING_PROBLEMS, PLATFORM_STACK
from sandbox.platform import Platform
from solemate_maintenance.config import load_config
from solemate_maintenance.findings import ChecksFailedError
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY
from solemate_maintenance.operators.monitoring.alarms import (
    CloudWatchAlarmsOperator,
    NotificationPathsOperator,
    OverviewDashboardOperator,
)
from solemate_maintenance.operators.monitoring.drift import StackDriftOperator
from solemate_maintenance.operators.monitoring.log_pipeline import ApplicationErrorsOperator, LogPipelineOperator
from solemate_maintenance.operators.monitoring.scaling import EcsScalingPolicyOperator
from solemate_maintenance.operators.monitoring.updates import PendingUpdatesOperator
from tests.helpers import ANCHOR, make_context
from tests.unit.conftest import cached_clients

pytestmark = pytest.mark.timeout(180)
CONFIG = load_config()
REGION = CONFIG.regions.primary
PREFIX = f"solemate-{CONFIG.environment}"
SERVICE = CONFIG.resources.ecs.services[0].name


@pytest.fixture(scope="module")
def world():
    with mock_aws():
        platform = Platform(CONFIG, cached_clients(REGION))
        platform.create()
        platform.seed(ANCHOR)
        yield platform


@pytest.fixture
def world_with(world):
    def apply(*problems: str, anchor=ANCHOR):
        world.monitoring.apply({anchor: frozenset(problems)}, anchor)
        return world

    apply()
    yield apply
    apply()


def run(operator, anchor=ANCHOR):
    context = make_context(anchor=anchor, task_id=operator.task_id)
    try:
        operator.execute(context)
        error = None
    except ChecksFailedError as exc:
        error = exc
    return context["ti"].pushed["findings"], error, context["ti"].pushed.get(MEASUREMENTS_XCOM_KEY)


def problems(findings):
    return {(f["check"], f["resource"]): f["severity"] for f in findings if f["status"] in ("warning", "critical")}


def alarms_op(enforce=False, **kwargs):
    monitoring = CONFIG.monitoring.model_copy(update={"enforce": enforce})
    return CloudWatchAlarmsOperator(task_id="alarms", monitoring=monitoring, platform=CONFIG.resources,
                                    environment=CONFIG.environment, **kwargs)


def healthy_operators():
    m = CONFIG.monitoring
    return [alarms_op(), NotificationPathsOperator(task_id="notification_paths", monitoring=m),
            OverviewDashboardOperator(task_id="overview_dashboard", monitoring=m),
            EcsScalingPolicyOperator(task_id="auto_scaling", ecs=CONFIG.resources.ecs, policy=m.scaling),
            PendingUpdatesOperator(task_id="pending_updates", platform=CONFIG.resources, updates=m.updates),
            LogPipelineOperator(task_id="log_pipeline", pipeline=m.log_pipeline)]


def test_the_guides_monitoring_layer_passes_every_check(world_with):
    world_with()
    for operator in healthy_operators():
        findings, error, _ = run(operator)
        assert error is None and not problems(findings), (operator.task_id, problems(findings))
        assert findings, operator.task_id
    findings, _, measured = run(alarms_op())
    # The guide's seven alarms, one per ECS service and per target group where they say so.
    assert measured["alarms"] == 7 and measured["changes"] == 0
    assert {f["resource"] for f in findings if f["check"] == "monitoring.alarm"} >= {
        f"{PREFIX}-rds-cpu-high", f"{PREFIX}-{SERVICE}-cpu-high", f"{PREFIX}-error-rate-high",
        f"{PREFIX}-application-unavailable-solemate-backend"}


def test_each_broken_alarm_is_named_with_expected_and_actual(world_with):
    world_with("alarm_deleted", "alarm_action_removed", "alarm_threshold_drift", "alarm_no_data")
    findings, error, measured = run(alarms_op())
    assert error is None  # all warning-level alarms: P3, the task stays green
    assert problems(findings) == {
        ("monitoring.alarm.missing", f"{PREFIX}-rds-cpu-high"): "P3",
        ("monitoring.alarm.no_actions", f"{PREFIX}-{SERVICE}-memory-high"): "P3",
        ("monitoring.alarm.drift", f"{PREFIX}-error-rate-high"): "P3",
        ("monitoring.alarm.no_data", f"{PREFIX}-redis-memory-high"): "P3",
    }
    drift = next(f for f in findings if f["check"] == "monitoring.alarm.drift")
    assert "Threshold expected 5.0, actual 10.0" in drift["summary"]
    assert "set monitoring.enforce: true" in drift["details"]["fix"]
    no_data = next(f for f in findings if f["check"] == "monitoring.alarm.no_data")
    assert "INSUFFICIENT_DATA for 10 h" in no_data["summary"]
    table = measured["tables"]["Alarm changes would apply"]["rows"]
    assert [f"{PREFIX}-error-rate-high", "Threshold", "5.0", "10.0"] in table
    assert [f"{PREFIX}-rds-cpu-high", "(alarm)", "create", "missing"] in table
    assert "3 change(s) would apply" in measured["headline"] and "1 missing" in measured["headline"]


def test_a_missing_critical_alarm_fails_the_task_and_an_alarm_without_action_is_found(world_with, world):
    world_with()
    cloudwatch = world._client("cloudwatch")
    cloudwatch.delete_alarms(AlarmNames=[f"{PREFIX}-payment-failures"])
    cloudwatch.put_metric_alarm(AlarmName="someones-test-alarm", Namespace="Custom", MetricName="X",
                                Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                                ComparisonOperator="GreaterThanThreshold")
    try:
        findings, error, _ = run(alarms_op())
        assert error is not None
        found = problems(findings)
        assert found[("monitoring.alarm.missing", f"{PREFIX}-payment-failures")] == "P2"
        assert found[("monitoring.alarm.no_actions", "other alarms")] == "P3"
        assert "someones-test-alarm" in next(f["summary"] for f in findings if f["resource"] == "other alarms")
    finally:
        cloudwatch.delete_alarms(AlarmNames=["someones-test-alarm"])


def test_enforcement_fixes_the_alarms_once_and_never_deletes_one(world_with, world):
    world_with("alarm_deleted", "alarm_action_removed", "alarm_threshold_drift")
    backend = get_backend("cloudwatch")[DEFAULT_ACCOUNT_ID][REGION]
    before = set(backend.alarms)
    world._client("cloudwatch").put_metric_alarm(
        AlarmName="not-ours", Namespace="Custom", MetricName="X", Statistic="Sum", Period=60, EvaluationPeriods=1,
        Threshold=1, ComparisonOperator="GreaterThanThreshold", AlarmActions=[world.monitoring.topics["warning"]])
    try:
        findings, error, measured = run(alarms_op(enforce=True))
        assert error is None and not problems(findings)
        assert measured["changes"] == 3 and "3 change(s) applied" in measured["headline"]
        assert {f["summary"].split(":")[0] for f in findings if f["check"].startswith("monitoring.alarm.")} == {"fixed"}
        assert set(backend.alarms) == before | {f"{PREFIX}-rds-cpu-high", "not-ours"}
        assert backend.alarms[f"{PREFIX}-error-rate-high"].threshold == 5.0
        memory = backend.alarms[f"{PREFIX}-{SERVICE}-memory-high"]
        assert memory.alarm_actions == [world.monitoring.topics["warning"]]
        tags = world._client("cloudwatch").list_tags_for_resource(
            ResourceARN=backend.alarms[f"{PREFIX}-rds-cpu-high"].alarm_arn)["Tags"]
        assert {"Key": "solemate:managed-by", "Value": "solemate-maintenance"} in tags
        again, _, measured = run(alarms_op(enforce=True))
        assert measured["changes"] == 0 and not problems(again)
        assert not [f for f in again if f["summary"].startswith("fixed")]
        assert backend.alarms["not-ours"].threshold == 1.0
    finally:
        world._client("cloudwatch").delete_alarms(AlarmNames=["not-ours"])


def test_enforcement_leaves_a_muted_alarm_muted_and_keeps_its_runbook(world_with):
    world_with("alarm_threshold_drift")
    alarm = get_backend("cloudwatch")[DEFAULT_ACCOUNT_ID][REGION].alarms[f"{PREFIX}-error-rate-high"]
    alarm.actions_enabled, alarm.description = False, "Runbook: https://wiki.solemate.example/5xx"
    findings, _, _ = run(alarms_op(enforce=True))
    alarm = get_backend("cloudwatch")[DEFAULT_ACCOUNT_ID][REGION].alarms[f"{PREFIX}-error-rate-high"]
    assert alarm.threshold == 5.0  # the policy's field is fixed
    assert alarm.actions_enabled is False and alarm.description == "Runbook: https://wiki.solemate.example/5xx"
    assert problems(findings) == {("monitoring.alarm.no_actions", f"{PREFIX}-error-rate-high"): "P3"}
    muted = next(f for f in findings if f["check"] == "monitoring.alarm.no_actions")
    assert "enable-alarm-actions" in muted["details"]["fix"]


def test_alarms_behind_a_composite_alarm_need_no_action_of_their_own():
    from solemate_maintenance.operators.monitoring.alarms import composite_children

    rule = 'ALARM("api-5xx") AND (ALARM(api-latency) OR NOT OK("db cpu"))'
    assert composite_children([{"AlarmName": "api-degraded", "AlarmRule": rule}]) == {"api-5xx", "api-latency",
                                                                                       "db cpu"}


def test_the_delivery_metrics_follow_the_streams_destination():
    from solemate_maintenance.operators.monitoring.log_pipeline import delivery_metric_prefix

    # botocore's key for OpenSearch is lower-case "service"; such a stream also backs up to S3.
    to_search = {"Destinations": [{"DestinationId": "d-1", "AmazonopensearchserviceDestinationDescription": {
        "DomainARN": "arn:aws:es:us-east-1:1:domain/logs", "S3DestinationDescription": {}}}]}
    assert delivery_metric_prefix(to_search) == "DeliveryToAmazonOpenSearchService"
    to_s3 = {"Destinations": [{"DestinationId": "d-1", "ExtendedS3DestinationDescription": {},
                               "S3DestinationDescription": {}}]}
    assert delivery_metric_prefix(to_s3) == "DeliveryToS3"


def test_error_lines_show_no_customer_card_or_token():
    from solemate_maintenance.operators.monitoring.log_pipeline import error_signature
    from solemate_maintenance.redaction import scrub

    line = ("charge failed for anna@example.com card 4111111111111111 order 5521 "
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl")
    shown = error_signature(scrub(line))
    assert "anna@example.com" not in shown and "4111" not in shown and "eyJ" not in shown
    assert shown == "charge failed for <email> card <id> order <n> Authorization: Bearer ***"


def test_a_fixed_size_service_needs_no_scaling_target(world_with):
    world_with()
    from solemate_maintenance.config import EcsService

    ecs = CONFIG.resources.ecs.model_copy(update={"services": [
        *CONFIG.resources.ecs.services, EcsService(name="solemate-cron", min_tasks=1, max_tasks=1),
        EcsService(name="solemate-search", min_tasks=2, max_tasks=6)]})
    findings, error, _ = run(EcsScalingPolicyOperator(task_id="auto_scaling", ecs=ecs,
                                                      policy=CONFIG.monitoring.scaling))
    assert problems(findings) == {("scaling.target", "solemate-search"): "P2"}
    assert error is not None
    fixed = next(f for f in findings if f["resource"] == "solemate-cron")
    assert fixed["summary"] == "fixed at 1 task(s) (min_tasks = max_tasks): no auto scaling"


def test_the_alarms_of_the_account_are_read_page_by_page(world_with):
    world_with("alarm_threshold_drift")
    paged, _, paged_measured = run(alarms_op(page_size=2))
    whole, _, whole_measured = run(alarms_op())
    assert problems(paged) == problems(whole) == {("monitoring.alarm.drift", f"{PREFIX}-error-rate-high"): "P3"}
    assert paged_measured["alarms"] == whole_measured["alarms"] == 7


def test_an_unconfirmed_subscription_is_a_p2_on_the_critical_topic(world_with):
    world_with("subscription_unconfirmed")
    findings, error, _ = run(NotificationPathsOperator(task_id="notification_paths", monitoring=CONFIG.monitoring))
    assert error is not None
    assert problems(findings) == {("monitoring.subscriptions", "solemate-critical-alerts"): "P2"}
    summary = next(f["summary"] for f in findings if f["status"] == "critical")
    assert summary == "no confirmed sms subscription on the critical topic (sms pending confirmation)"


def test_a_missing_topic_and_a_thin_dashboard_are_found(world_with, world):
    world_with()
    monitoring = CONFIG.monitoring.model_copy(update={
        "topics": {**CONFIG.monitoring.topics,
                   "warning": CONFIG.monitoring.topics["warning"].model_copy(update={"topic": "nobody-made-this"})},
        "dashboard": CONFIG.monitoring.dashboard.model_copy(update={
            "metric_groups": {**CONFIG.monitoring.dashboard.metric_groups, "business": ["SoleMate/Business/Orders"]}})})
    findings, _, _ = run(NotificationPathsOperator(task_id="n", monitoring=monitoring))
    assert problems(findings) == {("monitoring.topic", "nobody-made-this"): "P3"}
    findings, _, _ = run(OverviewDashboardOperator(task_id="d", monitoring=monitoring))
    assert problems(findings) == {("monitoring.dashboard.group", "SoleMate-Overview: business"): "P4"}
    world._client("cloudwatch").delete_dashboards(DashboardNames=["SoleMate-Overview"])
    try:
        findings, _, _ = run(OverviewDashboardOperator(task_id="d", monitoring=monitoring))
        assert problems(findings) == {("monitoring.dashboard", "SoleMate-Overview"): "P3"}
    finally:
        world.monitoring._dashboard()


def test_scaling_capped_below_the_guide_is_named_with_the_fix(world_with):
    world_with("scaling_capped")
    findings, error, measured = run(EcsScalingPolicyOperator(task_id="auto_scaling", ecs=CONFIG.resources.ecs,
                                                             policy=CONFIG.monitoring.scaling))
    assert error is None
    assert problems(findings) == {("scaling.range", SERVICE): "P3"}
    finding = next(f for f in findings if f["check"] == "scaling.range")
    assert finding["summary"] == "max tasks 10, guide 20: capped below the guide's peak capacity"
    assert "--max-capacity 20" in finding["details"]["fix"]
    assert [SERVICE, "max tasks", "20", "10"] in measured["tables"]["Auto scaling against the guide"]["rows"]
    stricter = CONFIG.monitoring.scaling.model_copy(update={"cpu_percent": 60, "scale_in_cooldown_seconds": 600})
    findings, _, _ = run(EcsScalingPolicyOperator(task_id="auto_scaling", ecs=CONFIG.resources.ecs, policy=stricter))
    policies = next(f for f in findings if f["check"] == "scaling.policies")
    assert "ECSServiceAverageCPUUtilization target 70, guide 60" in policies["summary"]
    assert "scale-in cooldown 300, guide 600" in policies["summary"]


def test_pending_updates_are_listed_with_deadlines(world_with):
    world_with("pending_os_upgrade")
    cluster = CONFIG.resources.elasticache.cluster_id
    moto_monitoring.UPDATE_ACTIONS[:] = [{
        "ServiceUpdateName": "elasticache-20261201-security", "CacheClusterId": cluster,
        "ServiceUpdateSeverity": "important", "ServiceUpdateType": "security-update",
        "UpdateActionStatus": "not-applied", "ServiceUpdateRecommendedApplyByDate": ANCHOR + timedelta(days=30)}]
    try:
        findings, error, measured = run(PendingUpdatesOperator(task_id="pending_updates", platform=CONFIG.resources,
                                                               updates=CONFIG.monitoring.updates))
    finally:
        moto_monitoring.UPDATE_ACTIONS.clear()
    assert error is None
    instance = CONFIG.resources.rds.instance_id
    assert problems(findings) == {("updates.rds.maintenance", f"{instance}: system-update"): "P3",
                                  ("updates.elasticache.service_update",
                                   f"{cluster}: elasticache-20261201-security"): "P4"}
    rds = next(f for f in findings if f["check"] == "updates.rds.maintenance")
    due = ANCHOR + timedelta(days=3)
    assert f"AWS applies it on its own from {due:%Y-%m-%d}" in rds["summary"]
    rows = measured["tables"]["Pending updates"]["rows"]
    assert [r[3] for r in rows] == [f"{due:%Y-%m-%d}", f"{ANCHOR + timedelta(days=30):%Y-%m-%d}"]  # soonest first


def test_performance_insights_off_is_a_p3_with_the_command(world_with, world):
    world_with()
    instance = get_backend("rds")[DEFAULT_ACCOUNT_ID][REGION].databases[CONFIG.resources.rds.instance_id]
    instance.performance_insights_enabled = False
    try:
        findings, _, _ = run(PendingUpdatesOperator(task_id="pending_updates", platform=CONFIG.resources,
                                                    updates=CONFIG.monitoring.updates))
    finally:
        instance.performance_insights_enabled = True
    finding = next(f for f in findings if f["check"] == "updates.rds.performance_insights")
    assert finding["severity"] == "P3" and "--enable-performance-insights" in finding["details"]["fix"]


def drift_operator():
    return StackDriftOperator(task_id="stack_drift", drift=CONFIG.monitoring.drift)


def run_drift():
    """The drift check as Airflow runs it: defer while AWS detects, resume with the trigger's event."""
    operator = drift_operator()
    context = make_context(task_id=operator.task_id)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    trigger = deferred.value.trigger
    assert trigger.waiter_name == "stack_drift_detection_complete"
    # As dag.test() resumes it: the trigger's event only (the detections come back from XCom).
    assert set(deferred.value.kwargs["detections"]) == {PLATFORM_STACK}
    operator.resume(context, event={"status": "success"})
    return context["ti"].pushed["findings"], context["ti"].pushed[MEASUREMENTS_XCOM_KEY]


def test_stack_drift_defers_then_lists_each_drifted_property(world_with):
    world_with("stack_drift")
    findings, measured = run_drift()
    assert problems(findings) == {("drift.stack", PLATFORM_STACK): "P3"}
    assert "AssetsBucket/VersioningConfiguration/Status: Enabled -> Suspended" in findings[0]["summary"]
    assert measured["tables"]["Drifted resources"]["rows"] == [
        [PLATFORM_STACK, "AssetsBucket (AWS::S3::Bucket)", "/VersioningConfiguration/Status", "Enabled", "Suspended"]]
    world_with()
    findings, measured = run_drift()
    assert not problems(findings) and "match their templates" in measured["headline"]


def test_drift_over_more_than_one_page_is_read_whole(world_with):
    world_with("stack_drift")
    one = moto_monitoring.STACK_DRIFTS[PLATFORM_STACK][0]
    moto_monitoring.STACK_DRIFTS[PLATFORM_STACK] = [{**one, "LogicalResourceId": f"Bucket{i:03}"} for i in range(101)]
    findings, measured = run_drift()  # 100 drifts a page
    drift = next(f for f in findings if f["check"] == "drift.stack")
    assert drift["details"]["drifted_resources"] == [f"Bucket{i:03}" for i in range(101)]
    assert drift["summary"].startswith("101 resource(s) drifted from the template")
    assert len(measured["tables"]["Drifted resources"]["rows"]) == 101


def test_the_drift_waiter_is_the_providers_machinery_with_our_waiter_file():
    from solemate_maintenance.hooks.cloudformation import StackDriftHook

    hook = StackDriftHook(aws_conn_id=None, region_name=REGION)
    assert "stack_drift_detection_complete" in hook._list_custom_waiters()


def test_a_removed_subscription_filter_and_a_stalled_stream_are_p2(world_with, world):
    world_with("subscription_filter_removed")
    operator = LogPipelineOperator(task_id="log_pipeline", pipeline=CONFIG.monitoring.log_pipeline)
    findings, error, _ = run(operator)
    assert error is not None
    group = CONFIG.resources.logs.application_log_group
    assert problems(findings) == {("log_pipeline.subscription", group): "P2"}
    world_with()
    world.seed(ANCHOR, {"delivery_stalled"})
    try:
        findings, error, _ = run(operator)
    finally:
        world.seed(ANCHOR)
    stream = CONFIG.monitoring.log_pipeline.delivery_stream
    assert problems(findings) == {("log_pipeline.freshness", stream): "P2", ("log_pipeline.delivered", stream): "P3"}
    stalled = next(f for f in findings if f["check"] == "log_pipeline.freshness")
    # The last datapoint, 5 minutes before the anchor, of a stream stalled an hour (and 2 min) before it.
    assert stalled["summary"].startswith("delivery stalled: the oldest undelivered record was 57 min old")


def test_the_days_errors_are_summarised_and_a_new_one_is_marked(world):
    def errors():
        return ApplicationErrorsOperator(task_id="application_errors",
                                         log_group=CONFIG.resources.logs.application_log_group,
                                         pipeline=CONFIG.monitoring.log_pipeline, bucket=CONFIG.reports.bucket,
                                         reports_prefix=CONFIG.reports.prefix, poll_seconds=0.01)

    yesterday = ANCHOR - timedelta(days=1)
    world.seed_days({yesterday: frozenset(), ANCHOR: frozenset({"new_application_error"})})
    try:
        first, _, _ = run(errors(), anchor=yesterday)
        assert "no previous summary" in first[-1]["summary"]
        findings, error, measured = run(errors())
    finally:
        world.seed(ANCHOR)
    assert error is None
    assert problems(findings) == {("logs.errors.new", "inventory service unavailable"): "P3"}
    new = next(f for f in findings if f["check"] == "logs.errors.new")
    assert new["summary"].startswith("new error, 40x between")
    table = measured["tables"]["Top application errors"]["rows"]
    assert table[0][:2] == ["NEW inventory service unavailable", "40"]
    # One line for the timeouts of many orders: the order numbers are masked in the signature.
    assert ["payment provider timeout for order 1234"] != [r[0] for r in table if "timeout" in r[0]]
    assert sum(1 for r in table if "payment provider timeout" in r[0]) == 1
    assert "70 error(s)" in findings[-1]["summary"]


def test_every_injected_monitoring_problem_is_described():
    assert all(text.endswith(")") for text in MONITORING_PROBLEMS.values())
