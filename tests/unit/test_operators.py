"""Each check operator against the platform in moto: healthy, each failure mode, missing resource,
throttling. The HTTP health endpoint and PostgreSQL are real servers."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from solemate_maintenance.findings import ChecksFailedError
from solemate_maintenance.operators.health.application import ApplicationHealthOperator
from solemate_maintenance.operators.health.business import BusinessMetricsOperator
from solemate_maintenance.operators.health.ecs import EcsServiceHealthOperator
from solemate_maintenance.operators.health.elasticache import ElastiCacheHealthOperator
from solemate_maintenance.operators.health.kpi import KpiOperator
from solemate_maintenance.operators.health.rds import RdsHealthOperator
from tests.helpers import ANCHOR, findings_of, make_context
from tests.unit.conftest import problems

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def world():
    """One platform for the module: creating one costs seconds, and these checks change little."""
    from moto import mock_aws

    from sandbox.platform import Platform
    from solemate_maintenance.config import load_config
    from tests.unit.conftest import cached_clients

    config = load_config()
    with mock_aws():
        platform = Platform(config, cached_clients(config.regions.primary))
        platform.create()
        yield platform


@pytest.fixture
def platform(world):
    """The module's platform, healthy at ANCHOR again: seeding resets the services, targets and metrics
    a test changed; what seeding does not describe (a stopped database) is put back here."""
    world.seed(ANCHOR)
    yield world
    rds = boto3.client("rds", region_name="us-east-1")
    if rds.describe_db_instances(DBInstanceIdentifier="production-postgres")["DBInstances"][0][
            "DBInstanceStatus"] != "available":
        rds.start_db_instance(DBInstanceIdentifier="production-postgres")


def run(operator):
    """Execute like Airflow would; return (findings by check, exception or None)."""
    context = make_context(task_id=operator.task_id)
    try:
        operator.execute(context)
        error = None
    except ChecksFailedError as exc:
        error = exc
    return findings_of(context), error


# -- application ---------------------------------------------------------------------------------
def application(config, health, **overrides):
    args = dict(task_id="application_health", endpoint=health.health_url, load_balancer_name=config.resources.alb.name,
                timeout_seconds=2, latency_ms=config.checks.application.latency_ms)
    return ApplicationHealthOperator(**{**args, **overrides})


def test_application_healthy(platform, config, health):
    findings, error = run(application(config, health))
    assert error is None
    assert findings["application.endpoint"]["status"] == "ok"
    assert findings["application.endpoint"]["details"]["status_code"] == 200
    assert findings["application.alb_targets"]["summary"] == "2 of 2 targets healthy"


def test_application_non_2xx_is_p1(platform, config, health):
    health.status = 503
    findings, error = run(application(config, health))
    assert problems(findings) == {"application.endpoint": "P1"}
    assert "HTTP 503" in findings["application.endpoint"]["summary"]
    assert error is not None and "HTTP 503" in str(error)


def test_application_unreachable_is_p1(platform, config, health):
    from sandbox.servers import free_port

    findings, error = run(application(config, health, endpoint=f"http://127.0.0.1:{free_port()}/health"))
    assert findings["application.endpoint"]["severity"] == "P1"
    assert "unreachable (ConnectionError)" in findings["application.endpoint"]["summary"]
    assert error is not None


def test_application_unhealthy_target_is_p2(platform, config, health):
    platform.seed(ANCHOR, {"unhealthy_target"})
    findings, error = run(application(config, health))
    assert problems(findings) == {"application.alb_targets": "P2"}
    assert findings["application.alb_targets"]["summary"] == "1 of 2 targets not healthy"


def test_application_missing_load_balancer_is_a_finding(platform, config, health):
    findings, error = run(application(config, health, load_balancer_name="no-such-alb"))
    assert findings["application.alb_targets"]["summary"] == "load balancer not found"
    assert findings["application.alb_targets"]["severity"] == "P1"


# -- ECS ------------------------------------------------------------------------------------------
def ecs(config, **overrides):
    args = dict(task_id="ecs_services", cluster=config.resources.ecs.cluster, services=config.resources.ecs.services,
                thresholds=config.checks.ecs)
    return EcsServiceHealthOperator(**{**args, **overrides})


def test_ecs_healthy(platform, config):
    findings, error = run(ecs(config))
    assert error is None and problems(findings) == {}
    assert findings["ecs.task_count"]["metrics"]["running_tasks"]["value"] == 2
    assert findings["ecs.cpu_utilization"]["metrics"]["cpu_utilization_percent"]["critical"] == 80


def test_ecs_under_desired_is_p2(platform, config):
    platform.seed(ANCHOR, {"ecs_under_desired"})
    findings, error = run(ecs(config))
    assert problems(findings) == {"ecs.task_count": "P2"}
    assert findings["ecs.task_count"]["summary"] == "1 running of 2 desired (minimum 2)"
    assert isinstance(error, ChecksFailedError)


def test_ecs_no_running_task_is_p1(platform, config):
    service = platform._ecs_service("solemate-backend")
    service.running_count = 0
    findings, _ = run(ecs(config))
    assert findings["ecs.task_count"]["severity"] == "P1"


def test_ecs_failed_deployment_pending_tasks_and_ceiling(platform, config):
    service = platform._ecs_service("solemate-backend")
    service.pending_count = 3
    service.deployments[0].update(rolloutState="FAILED", rolloutStateReason="tasks failed to start",
                                  updatedAt=ANCHOR.replace(hour=1))
    tight = [config.resources.ecs.services[0].model_copy(update={"max_tasks": 2})]
    findings, error = run(ecs(config, services=tight))
    assert problems(findings) == {"ecs.deployments": "P2", "ecs.pending_tasks": "P3", "ecs.scaling_ceiling": "P3"}
    assert findings["ecs.deployments"]["details"]["failed_deployments"][0]["reason"] == "tasks failed to start"


def test_ecs_deployment_failure_after_the_window_is_ignored(platform, config):
    service = platform._ecs_service("solemate-backend")
    service.deployments[0].update(rolloutState="FAILED", updatedAt=ANCHOR.replace(day=ANCHOR.day + 1))
    findings, _ = run(ecs(config))
    assert findings["ecs.deployments"]["status"] == "ok"


def test_ecs_missing_service_is_a_finding(platform, config):
    ghost = config.resources.ecs.services[0].model_copy(update={"name": "ghost"})
    findings, error = run(ecs(config, services=[ghost]))
    assert findings["ecs.service"]["resource"] == "production-cluster/ghost"
    assert findings["ecs.service"]["severity"] == "P1"


def test_ecs_high_cpu_from_cloudwatch(platform, config):
    high = config.checks.ecs.model_copy(update={"cpu_percent": config.checks.ecs.cpu_percent.model_copy(
        update={"warning": 10, "critical": 95})})
    findings, error = run(ecs(config, thresholds=high))
    assert problems(findings) == {"ecs.cpu_utilization": "P3"}
    assert error is None  # P3 reports but does not fail


def test_ecs_retries_through_throttling(platform, config, throttle_cloudwatch):
    findings, error = run(ecs(config))
    assert throttle_cloudwatch["count"] == 3  # two throttled, then answered
    assert findings["ecs.cpu_utilization"]["metrics"]["cpu_utilization_percent"]["value"] > 0


# -- RDS ------------------------------------------------------------------------------------------
def rds(config, **overrides):
    args = dict(task_id="rds_health", db_instance_identifier=config.resources.rds.instance_id, db_conn_id=None,
                thresholds=config.checks.rds)
    return RdsHealthOperator(**{**args, **overrides})


def test_rds_healthy(platform, config):
    findings, error = run(rds(config))
    assert error is None and problems(findings) == {}
    assert findings["rds.read_latency"]["metrics"]["read_latency_ms"]["unit"] == "ms"
    assert 2 <= findings["rds.read_latency"]["metrics"]["read_latency_ms"]["value"] <= 3
    assert 55 < findings["rds.free_storage"]["metrics"]["free_storage_gb"]["value"] < 61
    assert 5600 < findings["rds.freeable_memory"]["metrics"]["freeable_memory_mb"]["value"] < 6400


def test_rds_high_cpu_is_p2(platform, config):
    platform.seed(ANCHOR, {"rds_high_cpu"})
    findings, error = run(rds(config))
    assert problems(findings) == {"rds.cpu_utilization": "P2"}
    assert findings["rds.cpu_utilization"]["metrics"]["cpu_percent"]["value"] >= 92


def test_rds_not_available_is_p1(platform, config):
    boto3.client("rds", region_name="us-east-1").stop_db_instance(DBInstanceIdentifier="production-postgres")
    findings, error = run(rds(config))
    assert findings["rds.status"]["severity"] == "P1"
    assert "'stopped'" in findings["rds.status"]["summary"]


def test_rds_missing_instance_is_a_finding(platform, config):
    findings, error = run(rds(config, db_instance_identifier="gone"))
    assert list(findings) == ["rds.status"]
    assert findings["rds.status"]["summary"] == "DB instance not found"


def test_rds_low_storage_warns(platform, config):
    low = config.checks.rds.model_copy(update={"free_storage_gb": config.checks.rds.free_storage_gb.model_copy(
        update={"warning": 100, "critical": 5})})
    findings, _ = run(rds(config, thresholds=low))
    assert problems(findings) == {"rds.free_storage": "P3"}


def test_rds_low_freeable_memory_is_p2_under_the_critical_line(platform, config):
    tight = config.checks.rds.model_copy(update={"freeable_memory_mb": config.checks.rds.freeable_memory_mb.model_copy(
        update={"warning": 8192, "critical": 7168})})
    findings, _ = run(rds(config, thresholds=tight))
    assert problems(findings) == {"rds.freeable_memory": "P2"}
    assert "lowest FreeableMemory" in findings["rds.freeable_memory"]["summary"]


def test_rds_without_metrics_reports_no_data(platform, config):
    get_backend("cloudwatch")[DEFAULT_ACCOUNT_ID]["us-east-1"].metric_data = []
    findings, error = run(rds(config))
    assert findings["rds.cpu_utilization"]["summary"] == "peak CPUUtilization: no data in the window"
    assert findings["rds.cpu_utilization"]["severity"] == "P3"


def test_rds_round_trip_against_real_postgres(platform, config, postgres, monkeypatch):
    import json

    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_DB", json.dumps(postgres.connection))
    findings, error = run(rds(config, db_conn_id="platform_db"))
    assert findings["rds.query"]["status"] == "ok"
    assert findings["rds.query"]["metrics"]["query_latency_ms"]["value"] > 0


def test_rds_round_trip_failure_is_p1_without_the_password(platform, config, postgres, monkeypatch):
    import json

    wrong = {**postgres.connection, "password": "not-the-password-123"}
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_DB", json.dumps(wrong))
    findings, error = run(rds(config, db_conn_id="platform_db"))
    assert findings["rds.query"]["severity"] == "P1"
    assert "password authentication failed" in findings["rds.query"]["details"]["error"]
    assert "not-the-password-123" not in json.dumps(findings)


def test_rds_round_trip_skipped_without_connection_says_so(platform, config):
    findings, error = run(rds(config, db_conn_id="platform_db_not_defined"))
    assert error is None
    skipped = findings["rds.query"]
    assert (skipped["status"], skipped["severity"]) == ("skipped", None)
    assert skipped["summary"] == "SQL round trip skipped: connection 'platform_db_not_defined' is not defined"


def raised(operator) -> BaseException:
    with pytest.raises(Exception) as excinfo:
        operator.execute(make_context(task_id=operator.task_id))
    return excinfo.value


def test_permanent_aws_errors_fail_at_once_without_retrying(platform, config, monkeypatch):
    """No credentials, access denied, a missing cluster: retrying cannot heal them."""
    from botocore.exceptions import NoCredentialsError

    from solemate_maintenance.aws_errors import PermanentAwsError
    from solemate_maintenance.operators.health.ecs import EcsServiceHealthOperator

    operator = EcsServiceHealthOperator(task_id="ecs_services", cluster="no-such-cluster",
                                        services=config.resources.ecs.services, thresholds=config.checks.ecs,
                                        region_name=config.regions.primary)
    error = raised(operator)
    assert isinstance(error, PermanentAwsError) and error.cause.key.startswith("aws-not-found")
    assert "not retried" in str(error)

    monkeypatch.setattr(type(rds(config)), "collect_findings",
                        lambda self, context: (_ for _ in ()).throw(NoCredentialsError()))
    error = raised(rds(config))
    assert isinstance(error, PermanentAwsError) and error.cause.key == "aws-credentials"


def test_transient_aws_errors_still_use_the_retries(platform, config, monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    from solemate_maintenance.aws_errors import PermanentAwsError

    monkeypatch.setattr(type(rds(config)), "collect_findings",
                        lambda self, context: (_ for _ in ()).throw(EndpointConnectionError(endpoint_url="x")))
    error = raised(rds(config))
    assert isinstance(error, EndpointConnectionError) and not isinstance(error, PermanentAwsError)


# -- ElastiCache ----------------------------------------------------------------------------------
def cache(config, **overrides):
    args = dict(task_id="elasticache_health", cache_cluster_id=config.resources.elasticache.cluster_id,
                thresholds=config.checks.elasticache)
    return ElastiCacheHealthOperator(**{**args, **overrides})


def test_elasticache_healthy(platform, config):
    findings, error = run(cache(config))
    assert error is None and problems(findings) == {}
    assert 95 < findings["elasticache.hit_ratio"]["metrics"]["hit_ratio_percent"]["value"] < 97


def test_elasticache_low_hit_ratio_and_evictions(platform, config):
    strict = config.checks.elasticache.model_copy(update={
        "hit_ratio_percent": config.checks.elasticache.hit_ratio_percent.model_copy(
            update={"warning": 99, "critical": 97}),
        "evictions": config.checks.elasticache.evictions.model_copy(update={"warning": 0, "critical": 10}),
    })
    findings, error = run(cache(config, thresholds=strict))
    assert problems(findings) == {"elasticache.hit_ratio": "P3", "elasticache.evictions": "P4"}
    assert error is None


def test_elasticache_missing_cluster_is_p2(platform, config):
    findings, error = run(cache(config, cache_cluster_id="nope"))
    assert findings["elasticache.status"]["severity"] == "P2"
    assert isinstance(error, ChecksFailedError)


# -- business -------------------------------------------------------------------------------------
def business(config, **overrides):
    args = dict(task_id="business_metrics", namespace=config.resources.business_metrics_namespace,
                thresholds=config.checks.business)
    return BusinessMetricsOperator(**{**args, **overrides})


def test_business_healthy(platform, config):
    findings, error = run(business(config))
    assert error is None and problems(findings) == {}
    orders = findings["business.orders_per_minute"]["metrics"]
    assert orders["orders_per_minute_week_ago"]["value"] > 0


def test_business_payment_failures_are_p1(platform, config):
    platform.seed(ANCHOR, {"payment_failures"})
    findings, error = run(business(config))
    assert problems(findings) == {"business.payment_success_rate": "P1"}
    assert "P1" in str(error)


def own_datums(matches):
    """The world's datapoints that match, replaced by copies this test may change: worlds seeded alike
    share their datapoints (sandbox.platform), so a change in place would leak into later worlds."""
    import copy

    backend = get_backend("cloudwatch")[DEFAULT_ACCOUNT_ID]["us-east-1"]
    backend.metric_data = [copy.copy(d) if matches(d) else d for d in backend.metric_data]
    return [d for d in backend.metric_data if matches(d)]


def test_business_orders_drop_against_last_week(platform, config):
    # The day's orders (the window: the 24 hours before the run) at 30 % of the same day a week earlier.
    for datum in own_datums(lambda d: d.name == "OrdersPerMinute" and d.timestamp >= ANCHOR - timedelta(days=1)):
        datum.value *= 0.3
    findings, error = run(business(config))
    assert problems(findings) == {"business.orders_per_minute": "P2"}
    assert findings["business.orders_per_minute"]["metrics"]["drop_percent"]["value"] == pytest.approx(70, abs=1)


# -- KPIs -----------------------------------------------------------------------------------------
def kpis(config, **overrides):
    args = dict(task_id="performance_kpis", load_balancer_name=config.resources.alb.name, kpis=config.kpis,
                thresholds=config.checks.kpis)
    return KpiOperator(**{**args, **overrides})


def test_kpis_healthy_uses_percentiles_and_metric_math(platform, config):
    findings, error = run(kpis(config))
    assert error is None and problems(findings) == {}
    p95 = findings["kpi.response_time_p95"]["metrics"]["response_time_p95_ms"]["value"]
    p99 = findings["kpi.response_time_p99"]["metrics"]["response_time_p99_ms"]["value"]
    assert 150 < p95 < p99 < 500
    assert findings["kpi.error_rate"]["metrics"]["error_rate_percent"]["value"] == pytest.approx(0.02, abs=0.01)


def test_kpis_slow_responses_are_p3(platform, config):
    platform.seed(ANCHOR, {"slow_responses"})
    findings, error = run(kpis(config))
    assert problems(findings) == {"kpi.response_time_p95": "P3", "kpi.response_time_p99": "P3"}
    assert error is None


def test_kpis_high_error_rate_is_p2(platform, config):
    for datum in own_datums(lambda d: d.name == "HTTPCode_ELB_5XX_Count" and d.timestamp >= ANCHOR.replace(day=19)):
        datum.value = 600
    findings, error = run(kpis(config))
    assert problems(findings)["kpi.error_rate"] == "P2"
    assert problems(findings)["kpi.availability"] == "P3"


def test_kpis_missing_load_balancer(platform, config):
    findings, error = run(kpis(config, load_balancer_name="other"))
    assert findings["kpi.load_balancer"]["severity"] == "P1"


def test_window_follows_the_logical_date(platform, config):
    """A backfilled run measures its own day: before the incident, the same check is green."""
    platform.seed(ANCHOR, {"rds_high_cpu"})
    earlier = make_context(anchor=ANCHOR.replace(day=18), task_id="rds_health")
    rds(config).execute(earlier)
    assert all(f["status"] == "ok" for f in earlier["ti"].pushed["findings"])


# -- throttling, for every check ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "backend", "method"),
    [
        pytest.param(lambda c, h: application(c, h), "moto.elbv2.models.ELBv2Backend", "describe_target_health",
                     id="application"),
        pytest.param(lambda c, h: ecs(c), "moto.ecs.models.EC2ContainerServiceBackend", "describe_services", id="ecs"),
        pytest.param(lambda c, h: rds(c), "moto.rds.models.RDSBackend", "describe_db_instances", id="rds"),
        pytest.param(lambda c, h: cache(c), "moto.elasticache.models.ElastiCacheBackend", "describe_cache_clusters",
                     id="elasticache"),
        pytest.param(lambda c, h: business(c), "moto.cloudwatch.models.CloudWatchBackend", "get_metric_data",
                     id="business"),
        pytest.param(lambda c, h: kpis(c), "moto.cloudwatch.models.CloudWatchBackend", "get_metric_data", id="kpis"),
    ],
)
def test_every_check_retries_through_throttling(platform, config, health, monkeypatch, build, backend, method):
    import importlib

    from tests.unit.conftest import throttle

    module, cls = backend.rsplit(".", 1)
    calls = throttle(monkeypatch, getattr(importlib.import_module(module), cls), method)
    findings, error = run(build(config, health))
    assert calls["count"] >= 3  # two throttled answers, then real ones
    assert error is None and problems(findings) == {}


def test_p1_found_before_aws_stops_answering_is_kept_and_fails_on_findings(platform, config, health, monkeypatch):
    """Endpoint down (P1), then the ALB call fails: the P1 must still alert and page, not be folded away."""
    from botocore.exceptions import EndpointConnectionError

    from solemate_maintenance.findings import ChecksFailedError as Failed
    from solemate_maintenance.operators.health.application import ApplicationHealthOperator

    health.status = 503

    def unreachable(self):
        raise EndpointConnectionError(endpoint_url="https://elasticloadbalancing.us-east-1.amazonaws.com")

    monkeypatch.setattr(ApplicationHealthOperator, "_targets_finding", unreachable)
    operator = application(config, health)
    context = make_context(task_id=operator.task_id)
    with pytest.raises(Failed) as failed:
        operator.execute(context)
    assert [f.severity for f in failed.value.findings] == ["P1", "P2"]
    assert failed.value.findings[1].summary == "check stopped part-way: AWS endpoint unreachable"
    assert context["ti"].pushed["incomplete"] is True
    assert {f["check"] for f in context["ti"].pushed["findings"]} == {"application.endpoint", "maintenance.task_error"}


def test_findings_made_before_a_deferral_are_kept_for_the_resumed_check():
    """A deferrable check resumes in a new call (often a new process): what it found before deferring
    must reach the report with what it finds after, once, and only within the same try."""
    from airflow.sdk.exceptions import TaskDeferred

    from solemate_maintenance.findings import Finding, Severity, Status
    from solemate_maintenance.operators.base import MaintenanceCheckOperator

    class WaitsThenJudges(MaintenanceCheckOperator):
        def collect_findings(self, context):
            yield Finding(check="before", resource="x", status=Status.CRITICAL, severity=Severity.P2, summary="seen")
            self.defer(trigger=None, method_name="resume")

        def resume(self, context, event=None):
            return self.record_findings(context, iter([Finding(check="after", resource="x", status=Status.OK,
                                                               summary="done")]))

    check = WaitsThenJudges(task_id="check")
    context = make_context()
    with pytest.raises(TaskDeferred):
        check.execute(context)
    assert "findings" not in context["ti"].pushed  # nothing judged yet: the check is waiting
    with pytest.raises(ChecksFailedError):  # the P2 found before the wait still fails the task
        check.resume(context)
    assert [f["check"] for f in context["ti"].pushed["findings"]] == ["before", "after"]
