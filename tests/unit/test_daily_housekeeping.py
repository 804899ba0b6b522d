"""The daily housekeeping checks against the platform in moto: security events and open ports, log
lifecycle (report and enforce), unused resources and their cost, configuration backups, overnight
alarms and the maintenance status in CloudWatch. Each: healthy, each failure mode, missing resource,
more than one page. One world per module (seeding metrics costs seconds); every test starts from
the healthy estate (`estate.apply` resets what the problems change)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from moto import mock_aws
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from sandbox import estate as sandbox_estate
from sandbox.platform import Platform
from solemate_maintenance.config import LogLifecycle, load_config
from solemate_maintenance.findings import ChecksFailedError
from solemate_maintenance.hooks.logs_insights import LogsInsightsQueryError
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY
from solemate_maintenance.operators.housekeeping.config_backup import ConfigBackupOperator
from solemate_maintenance.operators.housekeeping.logs import LogLifecycleOperator
from solemate_maintenance.operators.housekeeping.security import OpenSecurityGroupsOperator, SecurityEventsOperator
from solemate_maintenance.operators.housekeeping.unused import UnusedResourcesOperator
from solemate_maintenance.operators.monitoring.cloudwatch_status import (
    MaintenanceStatusOperator,
    OvernightAlarmsOperator,
)
from tests.helpers import ANCHOR, make_context
from tests.unit.conftest import cached_clients

pytestmark = pytest.mark.timeout(120)
CONFIG = load_config()
REGION = CONFIG.regions.primary


@pytest.fixture(scope="module")
def world():
    with mock_aws():
        platform = Platform(CONFIG, cached_clients(REGION))
        platform.create()
        platform.seed(ANCHOR)
        yield platform


@pytest.fixture
def world_with(world):
    """Set the estate's problems for ANCHOR (none: the healthy estate)."""
    def apply(*problems: str, anchor: datetime = ANCHOR):
        world.estate.apply({anchor: frozenset(problems)}, anchor)
        return world

    apply()
    yield apply
    apply()


@pytest.fixture
def calls(monkeypatch):
    """Every AWS operation made (the operators' clients and the provider hooks'), from botocore."""
    from botocore.client import BaseClient

    recorded: list[tuple[str, str]] = []
    original = BaseClient._make_api_call

    def recording(self, operation_name, api_params):
        if _OPERATOR_RUNNING:  # the operator's calls, not the test's own set-up and checks
            recorded.append((self.meta.service_model.service_name, operation_name))
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return recorded


_OPERATOR_RUNNING: list[bool] = []


def run(operator, anchor=ANCHOR, **context_args):
    context = make_context(anchor=anchor, task_id=operator.task_id, **context_args)
    _OPERATOR_RUNNING.append(True)
    try:
        operator.execute(context)
        error = None
    except ChecksFailedError as exc:
        error = exc
    finally:
        _OPERATOR_RUNNING.clear()
    return context["ti"].pushed["findings"], error, context["ti"].pushed.get(MEASUREMENTS_XCOM_KEY)


def problems(findings):
    return {(f["check"], f["resource"]): f["severity"] for f in findings if f["status"] in ("warning", "critical")}


def by_check(findings, check):
    return [f for f in findings if f["check"] == check]


# -- security events (Logs Insights) -------------------------------------------------------------------
def security(**overrides):
    return SecurityEventsOperator(task_id="security_events", log_group=CONFIG.resources.logs.application_log_group,
                                  thresholds=CONFIG.checks.security.model_copy(update={"poll_seconds": 0.01,
                                                                                        **overrides}))


def test_security_events_healthy_counts_the_everyday_noise(world_with):
    world_with()
    findings, error, _ = run(security())
    assert error is None and not problems(findings)
    per_ip = by_check(findings, "security.failed_logins_per_ip")[0]
    assert per_ip["details"]["rows"] == 12  # the failed logins of the day before ANCHOR (one query per kind)
    assert by_check(findings, "security.rate_limit_violations")[0]["details"]["rows"] == 5
    assert per_ip["metrics"]["worst"]["value"] == 2


def test_brute_force_from_one_ip_is_p2_and_names_the_offender(world_with):
    world_with("brute_force_logins")
    findings, error, _ = run(security())
    assert error is not None
    found = problems(findings)
    log_group = CONFIG.resources.logs.application_log_group
    assert found[("security.failed_logins_per_ip", log_group)] == "P2"
    assert found[("security.credential_stuffing", log_group)] == "P3"  # 30 users from one address
    assert ("security.failed_logins_per_user", log_group) not in found  # 5 each: under 10
    per_ip = by_check(findings, "security.failed_logins_per_ip")[0]
    assert sandbox_estate.ATTACKER_IP in per_ip["summary"] and "150 failed logins (30 users)" in per_ip["summary"]
    assert per_ip["details"]["top_ips"][0] == {"key": sandbox_estate.ATTACKER_IP, "count": 150, "users": 30}


def add_auth_events(world, events):
    stream = world.estate._backend("logs").groups[CONFIG.resources.logs.application_log_group].streams[
        sandbox_estate.AUTH_STREAM]
    stream.put_log_events([{"timestamp": int((ANCHOR - timedelta(hours=1, seconds=i)).timestamp() * 1000),
                            "message": json.dumps(event)} for i, event in enumerate(events)])


def test_one_user_attacked_from_many_ips_and_rate_limit_violations(world_with):
    world = world_with()
    add_auth_events(world, [{"event_type": "AUTH_FAILED", "client_ip": f"100.64.{i // 250}.{i % 250}",
                             "user_id": "u-ceo"} for i in range(60)]
                    + [{"event_type": "RATE_LIMITED", "client_ip": "192.0.2.99"} for _ in range(120)])
    findings, error, _ = run(security())
    log_group = CONFIG.resources.logs.application_log_group
    assert problems(findings) == {("security.failed_logins_per_user", log_group): "P2",
                                  ("security.rate_limit_violations", log_group): "P3"}
    assert error is not None
    per_user = by_check(findings, "security.failed_logins_per_user")[0]
    assert "user u-ceo: 60 failed logins from 60 IPs" in per_user["summary"]
    assert "192.0.2.99: 120 violations" in by_check(findings, "security.rate_limit_violations")[0]["summary"]


def test_the_window_follows_the_logical_date(world_with):
    world_with("brute_force_logins")
    findings, error, _ = run(security(), anchor=ANCHOR + timedelta(days=2))  # a day with no events seeded
    assert error is None and by_check(findings, "security.failed_logins_per_ip")[0]["details"]["rows"] == 0


def test_truncated_results_are_lower_bounds(world_with):
    world_with("brute_force_logins")
    findings, _, _ = run(security(max_rows=100))
    per_ip = by_check(findings, "security.failed_logins_per_ip")[0]
    assert per_ip["details"]["truncated"] and per_ip["details"]["records_matched"] == 162
    assert "at least" in per_ip["summary"] and "counts are lower bounds" in per_ip["details"]["note"]


@pytest.mark.parametrize("status", ["Failed", "Cancelled", "Timeout"])
def test_a_query_that_ends_badly_fails_the_task_for_a_retry(world_with, monkeypatch, status):
    from moto.logs.models import LogQuery

    monkeypatch.setattr(LogQuery, "to_result_json", lambda self: {"results": [], "status": status})
    with pytest.raises(LogsInsightsQueryError, match=f"ended {status}"):
        security().execute(make_context(task_id="security_events"))


def test_a_query_still_running_at_the_deadline_is_stopped(world_with, monkeypatch, calls):
    from moto.logs.models import LogQuery

    monkeypatch.setattr(LogQuery, "to_result_json", lambda self: {"results": [], "status": "Running"})
    _OPERATOR_RUNNING.append(True)
    try:
        with pytest.raises(LogsInsightsQueryError, match="still Running after 1 s"):
            security(query_timeout_seconds=1, poll_seconds=0.2).execute(make_context(task_id="security_events"))
    finally:
        _OPERATOR_RUNNING.clear()
    assert ("logs", "StopQuery") in calls


def test_missing_log_group_is_a_p2_finding(world_with):
    operator = security()
    operator.log_group = "/ecs/production/renamed"
    findings, error, _ = run(operator)
    assert error is not None
    assert problems(findings) == {("security.log_query", "/ecs/production/renamed"): "P2"}


# -- open security groups ------------------------------------------------------------------------------
def open_groups():
    return OpenSecurityGroupsOperator(task_id="open_security_groups",
                                      allowed=CONFIG.checks.security.open_ingress_allowed)


def test_only_the_allowed_load_balancer_ports_are_open(world_with):
    world_with()
    findings, error, _ = run(open_groups())
    assert error is None and not problems(findings)
    assert "no world-open ingress" in findings[0]["summary"]


def test_database_open_to_the_world_is_p2_and_says_what_uses_it(world_with):
    world_with("open_database_port")
    findings, error, _ = run(open_groups())
    assert error is not None
    [finding] = [f for f in findings if f["status"] == "critical"]
    assert finding["severity"] == "P2" and finding["resource"].endswith(":tcp/5432")
    assert "production-db-sg" in finding["summary"] and "PostgreSQL 5432" in finding["summary"]
    assert "RDSNetworkInterface" in finding["summary"]


def test_other_ports_are_p3_and_all_traffic_is_p2(world_with):
    world = world_with()
    ec2 = world._client("ec2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    web = ec2.create_security_group(GroupName="admin-ui", Description="x", VpcId=vpc)["GroupId"]
    anything = ec2.create_security_group(GroupName="debug", Description="x", VpcId=vpc)["GroupId"]
    try:
        ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 8443, "ToPort": 8443, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
        ec2.authorize_security_group_ingress(GroupId=anything, IpPermissions=[
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        findings, _, _ = run(open_groups())
        assert problems(findings) == {(f"{web}:tcp/8443", ): None} or problems(findings) == {
            ("security.open_ingress", f"{web}:tcp/8443"): "P3",
            ("security.open_ingress", f"{anything}:all traffic"): "P2"}
    finally:
        ec2.delete_security_group(GroupId=web)
        ec2.delete_security_group(GroupId=anything)


def test_open_groups_follow_every_page(world_with, calls):
    world = world_with("open_database_port")
    ec2 = world._client("ec2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    extra = [ec2.create_security_group(GroupName=f"spare-{i}", Description="x", VpcId=vpc)["GroupId"]
             for i in range(8)]
    try:
        operator = open_groups()
        operator.page_size = 5  # EC2's smallest page
        findings, _, _ = run(operator)
        groups = len(ec2.describe_security_groups()["SecurityGroups"])
        assert groups > 10
        assert [op for _, op in calls].count("DescribeSecurityGroups") == -(-groups // 5)
        assert problems(findings)  # the database group is found on whichever page it is
    finally:
        for group in extra:
            ec2.delete_security_group(GroupId=group)


# -- log lifecycle ------------------------------------------------------------------------------------
def lifecycle(**overrides):
    return LogLifecycleOperator(task_id="log_lifecycle",
                                lifecycle=CONFIG.log_lifecycle.model_copy(update=overrides))


def retention(world, group):
    return {g["logGroupName"]: g.get("retentionInDays") for g in
            world._client("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]}[group]


def test_log_lifecycle_healthy(world_with):
    world_with()
    findings, error, measured = run(lifecycle())
    assert error is None and not problems(findings)
    assert measured["headline"] == "Log lifecycle: matches the policy, nothing to change"
    assert {f["check"] for f in findings} == {"logs.retention", "logs.archive_lifecycle", "logs.firehose"}


def test_drift_is_reported_with_the_diff_it_would_apply_and_nothing_changes(world_with):
    world = world_with("log_retention_drift")
    findings, error, measured = run(lifecycle())
    assert error is None  # P3: reported, not failing
    assert problems(findings) == {
        ("logs.retention.never_expires", "log class application"): "P3",
        ("logs.retention.too_short", "log class security"): "P3",
        ("logs.archive_lifecycle", "s3://solemate-logs-access/"): "P3",
    }
    table = measured["tables"]["Changes would apply"]["rows"]
    assert len(table) == 2  # never-expire is not in it: applying it needs allow_shortening
    assert [sandbox_estate.SECURITY_LOG_GROUP, "put_retention_policy", "30 days", "90 days"] in table
    assert ["s3://solemate-logs-access/", "put_bucket_lifecycle_configuration", "no rule",
            "expire after 30 d"] in table
    assert retention(world, CONFIG.resources.logs.application_log_group) is None  # report only


def test_enforcement_applies_the_diff_once_and_never_expire_needs_allow_shortening(world_with, calls):
    world = world_with("log_retention_drift")
    findings, error, measured = run(lifecycle(enforce=True))
    assert error is None
    # Giving "never expire" a retention deletes the older events: that is shortening, not done by default.
    assert problems(findings) == {("logs.retention.never_expires", "log class application"): "P3"}
    assert "allow_shortening" in by_check(findings, "logs.retention.never_expires")[0]["details"]["fix"]
    assert measured["headline"] == "Log lifecycle: 2 change(s) applied"
    fixed = {f["check"] for f in findings if f["summary"].startswith("fixed: ")}
    assert fixed == {"logs.retention.too_short", "logs.archive_lifecycle"}
    assert retention(world, CONFIG.resources.logs.application_log_group) is None
    run(lifecycle(enforce=True, allow_shortening=True))
    assert retention(world, CONFIG.resources.logs.application_log_group) == 30
    assert retention(world, sandbox_estate.SECURITY_LOG_GROUP) == 90
    rules = world._client("s3").get_bucket_lifecycle_configuration(Bucket="solemate-logs-access")["Rules"]
    assert rules[0]["Expiration"] == {"Days": 30} and rules[0]["Status"] == "Enabled"
    calls.clear()
    _, _, again = run(lifecycle(enforce=True))
    assert again["headline"] == "Log lifecycle: matches the policy, nothing to change"
    assert not {op for _, op in calls} & {"PutRetentionPolicy", "PutBucketLifecycleConfiguration"}


def test_enforcement_never_shortens_unless_told(world_with):
    world = world_with()
    group = CONFIG.resources.logs.application_log_group
    world._client("logs").put_retention_policy(logGroupName=group, retentionInDays=365)
    findings, _, measured = run(lifecycle(enforce=True))
    assert problems(findings) == {("logs.retention.too_long", "log class application"): "P4"}
    assert retention(world, group) == 365 and measured["changes"] == 0
    run(lifecycle(enforce=True, allow_shortening=True))
    assert retention(world, group) == 30


def test_other_rules_on_an_archive_bucket_are_kept_when_enforcing(world_with):
    world = world_with("log_retention_drift")
    s3 = world._client("s3")
    s3.put_bucket_lifecycle_configuration(Bucket="solemate-logs-access", LifecycleConfiguration={"Rules": [
        {"ID": "tmp-uploads", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 1}}]})
    run(lifecycle(enforce=True))
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket="solemate-logs-access")["Rules"]}
    assert set(rules) == {"tmp-uploads", "solemate-log-class-access"}


def test_a_rule_expiring_the_archive_early_is_reported_and_left_alone(world_with):
    world = world_with()
    s3 = world._client("s3")
    from solemate_maintenance.operators.housekeeping.logs import expected_rule

    ours = expected_rule("security", CONFIG.log_lifecycle.classes["security"].archive)
    everything = {"ID": "cost-cutting", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 90}}
    s3.put_bucket_lifecycle_configuration(Bucket="solemate-logs-security",
                                          LifecycleConfiguration={"Rules": [ours, everything]})
    findings, _, measured = run(lifecycle(enforce=True))
    assert problems(findings) == {("logs.archive_lifecycle.conflict", "s3://solemate-logs-security/"): "P3"}
    assert "cost-cutting" in by_check(findings, "logs.archive_lifecycle.conflict")[0]["summary"]
    rules = {r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket="solemate-logs-security")["Rules"]}
    assert rules == {"cost-cutting", "solemate-log-class-security"} and measured["changes"] == 0


def test_nothing_is_shortened_while_the_archive_is_not_receiving(world_with):
    world = world_with("log_retention_drift", "firehose_down")
    findings, _, _ = run(lifecycle(enforce=True, allow_shortening=True))
    assert retention(world, CONFIG.resources.logs.application_log_group) is None  # CloudWatch may hold the only copy
    assert "delivery stream is down" in by_check(findings, "logs.retention.never_expires")[0]["details"]["fix"]
    assert retention(world, sandbox_estate.SECURITY_LOG_GROUP) == 90  # lengthening is always safe


def test_unclassified_group_missing_bucket_and_stream(world_with):
    world = world_with()
    world._client("logs").create_log_group(logGroupName="/ecs/production/worker-debug")
    try:
        settings = CONFIG.log_lifecycle.model_dump()
        settings["classes"]["access"]["archive"]["bucket"] = "solemate-logs-nowhere"
        settings["firehose_streams"] = [{"name": "solemate-logs-to-s3"}, {"name": "solemate-logs-to-opensearch"}]
        findings, error, _ = run(LogLifecycleOperator(task_id="log_lifecycle",
                                                      lifecycle=LogLifecycle.model_validate(settings)))
        assert problems(findings) == {
            ("logs.unclassified", "log-groups"): "P4",
            ("logs.archive_bucket", "s3://solemate-logs-nowhere/"): "P2",
            ("logs.firehose", "solemate-logs-to-opensearch"): "P2",
        }
        assert "/ecs/production/worker-debug" in by_check(findings, "logs.unclassified")[0]["summary"]
        assert error is not None
    finally:
        world._client("logs").delete_log_group(logGroupName="/ecs/production/worker-debug")


def test_firehose_not_active_is_p2(world_with):
    world_with("firehose_down")
    findings, error, _ = run(lifecycle())
    assert problems(findings) == {("logs.firehose", "solemate-logs-to-s3"): "P2"} and error is not None
    assert "CREATING_FAILED" in by_check(findings, "logs.firehose")[0]["summary"]


def test_log_groups_follow_every_page(world_with, calls):
    world_with("log_retention_drift")
    operator = lifecycle()
    operator.page_size = 1
    findings, _, _ = run(operator)
    groups = len(world_with("log_retention_drift")._client("logs").describe_log_groups()["logGroups"])
    assert [op for _, op in calls].count("DescribeLogGroups") == groups  # one group per page
    assert ("logs.retention.too_short", "log class security") in problems(findings)


# -- unused resources ---------------------------------------------------------------------------------
def unused():
    return UnusedResourcesOperator(task_id="unused_resources", thresholds=CONFIG.checks.unused_resources,
                                   excluded_snapshot_prefixes=[CONFIG.restore_test.instance_prefix])


def test_no_unused_resources_in_the_healthy_estate(world_with):
    world_with()
    findings, error, measured = run(unused())
    assert error is None and not problems(findings), problems(findings)
    assert len(findings) == 8 and measured["estimated_monthly_usd"] == 0


def test_each_unused_kind_is_found_with_its_cost_and_nothing_is_deleted(world_with, calls):
    world = world_with("unused_resources")
    ecr = world._client("ecr")
    ecr.create_repository(repositoryName="solemate/old-worker")
    try:
        findings, error, measured = run(unused())
    finally:
        ecr.delete_repository(repositoryName="solemate/old-worker")
    assert error is None  # P4: housekeeping
    found = problems(findings)
    assert set(found) == {(f"unused.{kind}", kind) for kind in (
        "unattached_volumes", "unassociated_elastic_ips", "old_rds_snapshots", "idle_load_balancers",
        "stopped_instances", "ecr_without_lifecycle", "silent_log_groups")}
    assert set(found.values()) == {"P4"}
    cost = {f["check"]: f["details"]["estimated_monthly_usd"] for f in findings if f["severity"]}
    assert cost["unused.unattached_volumes"] == 10.0  # 100 GiB gp2 at $0.10
    assert cost["unused.unassociated_elastic_ips"] == 3.65
    assert cost["unused.old_rds_snapshots"] == 9.5  # 100 GiB at $0.095
    assert cost["unused.idle_load_balancers"] == 16.43
    assert cost["unused.stopped_instances"] == 4.0  # its 50 GiB gp3 volume
    assert measured["estimated_monthly_usd"] == pytest.approx(sum(cost.values()))
    assert f"~${measured['estimated_monthly_usd']:.2f}/month" in measured["headline"]
    assert "solemate-old-campaign" in by_check(findings, "unused.idle_load_balancers")[0]["summary"]
    assert not [op for _, op in calls if op.startswith(("Delete", "Release", "Terminate", "Deregister"))]


def test_own_and_recent_snapshots_are_not_unused(world_with):
    world = world_with("unused_resources")
    rds = world._client("rds")
    rds.create_db_snapshot(DBSnapshotIdentifier="restore-test-20260901-0300-abcdef",
                           DBInstanceIdentifier=CONFIG.resources.rds.instance_id)
    rds.create_db_snapshot(DBSnapshotIdentifier="fresh-manual", DBInstanceIdentifier=CONFIG.resources.rds.instance_id)
    backend = get_backend("rds")[DEFAULT_ACCOUNT_ID][REGION]
    backend.database_snapshots["restore-test-20260901-0300-abcdef"].created = ANCHOR - timedelta(days=80)
    backend.database_snapshots["fresh-manual"].created = ANCHOR - timedelta(days=2)
    try:
        findings, _, _ = run(unused())
        names = [r["id"] for r in by_check(findings, "unused.old_rds_snapshots")[0]["details"]["resources"]]
        assert names == ["production-postgres-before-migration"]
    finally:
        rds.delete_db_snapshot(DBSnapshotIdentifier="restore-test-20260901-0300-abcdef")
        rds.delete_db_snapshot(DBSnapshotIdentifier="fresh-manual")


def test_unused_log_groups_follow_every_page(world_with, calls):
    world = world_with()
    logs = world._client("logs")
    backend = get_backend("logs")[DEFAULT_ACCOUNT_ID][REGION]
    created = [f"/ecs/retired-{i}/application" for i in range(12)]
    for name in created:
        logs.create_log_group(logGroupName=name)
        backend.groups[name].creation_time = (ANCHOR - timedelta(days=90)).replace(tzinfo=None)
    try:
        operator = unused()
        operator.page_size = 5
        findings, _, _ = run(operator)
        groups = len(logs.describe_log_groups()["logGroups"])
        assert [op for _, op in calls].count("DescribeLogGroups") == -(-groups // 5)
        finding = by_check(findings, "unused.silent_log_groups")[0]
        assert sorted(r["id"] for r in finding["details"]["resources"]) == sorted(created)
        # One GetMetricData call for all the groups' traffic, not one per group (the sandbox's load
        # balancers are younger than the idle window, so they need none).
        assert [op for _, op in calls].count("GetMetricData") == 1
    finally:
        for name in created:
            logs.delete_log_group(logGroupName=name)


# -- configuration backup -----------------------------------------------------------------------------
def backup():
    return ConfigBackupOperator(task_id="config_backup", cluster=CONFIG.resources.ecs.cluster,
                                services=CONFIG.resources.ecs.services, bucket=CONFIG.reports.bucket,
                                reports_prefix=CONFIG.reports.prefix, settings=CONFIG.config_backup)


def stored(world, prefix):
    s3 = world._client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=CONFIG.reports.bucket, Prefix=prefix).get("Contents", [])]
    return {k[len(prefix):]: s3.get_object(Bucket=CONFIG.reports.bucket, Key=k)["Body"].read() for k in keys}


def test_config_backup_writes_task_definitions_and_metadata_never_a_value(world_with, calls):
    world = world_with()
    anchor = ANCHOR + timedelta(days=8)  # a date no other test wrote
    findings, error, measured = run(backup(), anchor=anchor)
    assert error is None and not problems(findings)
    prefix = f"{CONFIG.reports.prefix}/config-backups/{anchor:%Y-%m-%d}/"
    files = stored(world, prefix)
    assert set(files) == {"ecs/solemate-backend-1.json", "secrets-manager.json", "ssm-parameters.json",
                          "manifest.json"}
    manifest = json.loads(files["manifest.json"])
    for name, entry in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == entry["sha256"]
    definition = json.loads(files["ecs/solemate-backend-1.json"])["taskDefinition"]
    assert definition["containerDefinitions"][0]["name"] == "backend"
    assert {v["name"]: v["value"] for v in definition["containerDefinitions"][0]["environment"]} == {
        "DATABASE_URL": "<not backed up>", "LOG_LEVEL": "<not backed up>"}
    assert world.db_master_password.encode() not in b"".join(files.values())
    secrets = json.loads(files["secrets-manager.json"])
    assert [s["Name"] for s in secrets] == ["production/db-password", "production/stripe-api-key"]
    assert secrets[0]["RotationEnabled"] is True and "LastRotatedDate" in secrets[0]
    parameters = {p["Name"]: p for p in json.loads(files["ssm-parameters.json"])}
    assert parameters["/solemate/production/db-url"]["Type"] == "SecureString"
    everything = b"".join(files.values())
    assert b"postgresql://" not in everything and b"SecretString" not in everything and b"Value" not in everything
    for value in world.estate.secret_values:
        assert value.encode() not in everything
    operations = {op for _, op in calls}
    assert not operations & {"GetSecretValue", "BatchGetSecretValue", "GetParameter", "GetParameters",
                             "GetParametersByPath", "Decrypt"}
    assert measured["location"] == f"s3://{CONFIG.reports.bucket}/{prefix}"
    calls.clear()
    findings, _, _ = run(backup(), anchor=anchor)  # the same date again
    assert "unchanged" in findings[0]["summary"] and ("s3", "PutObject") not in calls


def test_secrets_and_parameters_follow_every_page(world_with, calls):
    world = world_with()
    ssm, secrets = world._client("ssm"), world._client("secretsmanager")
    names = [f"/solemate/production/flag-{i}" for i in range(12)]
    for name in names:
        ssm.put_parameter(Name=name, Type="String", Value="on")
    for i in range(6):
        secrets.create_secret(Name=f"production/partner-{i}", SecretString="x")
    try:
        operator = backup()
        operator.page_size = 5
        findings, _, _ = run(operator, anchor=ANCHOR + timedelta(days=9))
        operations = [op for _, op in calls]
        assert operations.count("DescribeParameters") == -(-14 // 5)  # 12 + the sandbox's 2
        assert operations.count("ListSecrets") == -(-8 // 5)
        files = stored(world, f"{CONFIG.reports.prefix}/config-backups/{ANCHOR + timedelta(days=9):%Y-%m-%d}/")
        assert len(json.loads(files["ssm-parameters.json"])) == 14
        assert len(json.loads(files["secrets-manager.json"])) == 8
    finally:
        for name in names:
            ssm.delete_parameter(Name=name)
        for i in range(6):
            secrets.delete_secret(SecretId=f"production/partner-{i}", ForceDeleteWithoutRecovery=True)


def test_a_past_date_keeps_the_backup_taken_on_its_day(world_with):
    world = world_with()
    anchor = ANCHOR - timedelta(days=3)
    run(backup(), anchor=anchor)
    before = stored(world, f"{CONFIG.reports.prefix}/config-backups/{anchor:%Y-%m-%d}/")
    world._client("ssm").put_parameter(Name="/solemate/production/new-flag", Type="String", Value="1")
    try:
        findings, _, _ = run(backup(), anchor=anchor)
        assert "not written: the backup captured at" in findings[0]["summary"]
        assert stored(world, f"{CONFIG.reports.prefix}/config-backups/{anchor:%Y-%m-%d}/") == before
    finally:
        world._client("ssm").delete_parameter(Name="/solemate/production/new-flag")


def test_overdue_rotation_and_a_missing_service_are_findings(world_with):
    world_with("rotation_overdue")
    operator = backup()
    operator.services = [*operator.services, "solemate-ghost"]
    findings, error, _ = run(operator)
    assert error is None
    assert problems(findings) == {("secrets.rotation_overdue", "production/db-password"): "P3",
                                  ("config_backup.task_definition", f"{CONFIG.resources.ecs.cluster}/solemate-ghost"): "P3"}


# -- overnight alarms and maintenance status ---------------------------------------------------------------
def test_overnight_alarms_none_then_one_still_firing(world_with):
    world_with()
    findings, error, measured = run(OvernightAlarmsOperator(task_id="overnight_alarms"))
    assert error is None and not problems(findings) and measured["headline"].endswith("none went into ALARM")
    world_with("overnight_alarm")
    findings, error, measured = run(OvernightAlarmsOperator(task_id="overnight_alarms"))
    assert error is None
    assert problems(findings) == {("cloudwatch.overnight_alarm", sandbox_estate.OVERNIGHT_ALARM): "P3"}
    assert "23:40 UTC" in findings[0]["summary"] and "now ALARM" in findings[0]["summary"]
    assert f"{sandbox_estate.OVERNIGHT_ALARM} (23:40 UTC, still in ALARM)" in measured["headline"]
    # The day before does not see it.
    findings, _, _ = run(OvernightAlarmsOperator(task_id="overnight_alarms"), anchor=ANCHOR - timedelta(days=1))
    assert not problems(findings)


def test_overnight_alarms_follow_every_page(world_with, calls):
    world = world_with()
    from sandbox.moto_patches import record_state_change

    alarm = get_backend("cloudwatch")[DEFAULT_ACCOUNT_ID][REGION].alarms[sandbox_estate.OVERNIGHT_ALARM]
    for hour in range(5):
        record_state_change(alarm, "OK", "ALARM", "x", ANCHOR - timedelta(hours=hour + 1))
        record_state_change(alarm, "ALARM", "OK", "x", ANCHOR - timedelta(hours=hour + 1) + timedelta(minutes=5))
    operator = OvernightAlarmsOperator(task_id="overnight_alarms")
    operator.page_size = 3
    findings, _, _ = run(operator)
    assert [op for _, op in calls].count("DescribeAlarmHistory") == 4  # 10 items, 3 a page
    assert "went into ALARM 5×" in findings[0]["summary"] and findings[0]["severity"] == "P4"
    assert world


class _StatesTI:
    """The task instance the status operator needs: task states of its run, the report's XCom."""

    def __init__(self, context, states, report):
        self.inner, self.states, self.report = context["ti"], states, report

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def get_task_states(self, dag_id, run_ids):
        return {run_ids[0]: self.states}

    def xcom_pull(self, task_ids, key="return_value"):
        return self.report if task_ids == "report" and key == "return_value" else self.inner.xcom_pull(task_ids, key)


def status_run(states, report, anchor, run_type="scheduled"):
    operator = MaintenanceStatusOperator(task_id="maintenance_status", environment=CONFIG.environment,
                                         status=CONFIG.maintenance_status, alerts=CONFIG.alerts,
                                         region_name=REGION)
    operator._check_tasks = lambda: ["ecs_services", "rds_health"]
    context = make_context(anchor=anchor, run_type=run_type, task_id="maintenance_status")
    context["ti"] = _StatesTI(context, states, report)
    operator.execute(context)
    findings = context["ti"].inner.pushed["findings"]
    return next(f for f in findings if f["check"] == "maintenance.status_published"), findings


def test_status_metrics_dashboard_and_dead_mans_alarm(world_with):
    world = world_with()
    cloudwatch = world._client("cloudwatch")
    live = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    report = {"totals": {"severity": {"P1": 0, "P2": 1, "P3": 2, "P4": 0}}}
    states = {"report": "success", "ecs_services": "failed", "rds_health": "success"}
    finding, findings = status_run(states, report, live)
    assert finding["details"]["dashboard_updated"] and finding["details"]["alarm_updated"]
    # The base config has no SNS topic: the alarm would tell nobody, and the run says so.
    assert problems(findings) == {("maintenance.heartbeat_alarm", finding["details"]["alarm"]): "P4"}
    assert "heartbeat" in finding["summary"]
    namespace = CONFIG.maintenance_status.namespace
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace=namespace)["Metrics"]}
    assert names == {"Findings", "FailedChecks", "ReportWritten", "Heartbeat"}
    dims = [{"Name": "Environment", "Value": CONFIG.environment}, {"Name": "DagId", "Value": "daily_maintenance"}]
    data = cloudwatch.get_metric_data(StartTime=live - timedelta(hours=1), EndTime=datetime.now(UTC) + timedelta(
        minutes=5), MetricDataQueries=[
        {"Id": "failed", "MetricStat": {"Metric": {"Namespace": namespace, "MetricName": "FailedChecks",
                                                   "Dimensions": dims}, "Period": 60, "Stat": "Sum"}},
        {"Id": "p3", "MetricStat": {"Metric": {"Namespace": namespace, "MetricName": "Findings",
                                               "Dimensions": [*dims, {"Name": "Severity", "Value": "P3"}]},
                                    "Period": 60, "Stat": "Sum"}}])["MetricDataResults"]
    assert {r["Id"]: sum(r["Values"]) for r in data} == {"failed": 1.0, "p3": 2.0}
    [alarm] = cloudwatch.describe_alarms(AlarmNames=[finding["details"]["alarm"]])["MetricAlarms"]
    assert alarm["TreatMissingData"] == "breaching" and alarm["MetricName"] == "Heartbeat"
    assert alarm["EvaluationPeriods"] * alarm["Period"] == CONFIG.maintenance_status.heartbeat_max_gap_hours * 3600
    dashboard = json.loads(cloudwatch.get_dashboard(
        DashboardName=f"{CONFIG.maintenance_status.dashboard_name}-{CONFIG.environment}")["DashboardBody"])
    assert len(dashboard["widgets"]) == 4
    again, _ = status_run(states, report, live)  # idempotent: nothing rewritten
    assert not again["details"]["dashboard_updated"] and not again["details"]["alarm_updated"]


def test_no_heartbeat_from_a_backfill_or_without_a_report(world_with):
    world = world_with()
    cloudwatch = world._client("cloudwatch")
    states = {"report": "success", "ecs_services": "success", "rds_health": "success"}
    backfill, _ = status_run(states, {"totals": {"severity": {}}}, ANCHOR, run_type="backfill")
    assert "no heartbeat: not a live run" in backfill["summary"]
    failed, _ = status_run({**states, "report": "failed"}, None, datetime.now(UTC).replace(microsecond=0))
    assert "no heartbeat: the report was not written" in failed["summary"]
    heartbeat = cloudwatch.list_metrics(Namespace=CONFIG.maintenance_status.namespace, MetricName="Heartbeat")
    assert all(m["MetricName"] != "Heartbeat" for m in heartbeat["Metrics"]) or world


def test_the_sandbox_removes_every_unused_resource_it_made(world_with):
    world_with("unused_resources")
    findings, _, measured = run(unused())
    assert measured["resources"] == 6
    world_with()
    findings, _, measured = run(unused())
    assert measured["resources"] == 0 and not problems(findings)


# -- every scheduled DAG's dead-man's alarm, at its own cadence -------------------------------------------
@pytest.mark.parametrize(("expression", "cadence_hours", "gap_hours", "metric", "period", "periods"), [
    ("*/15 * * * *", 0.25, 0.75, "Heartbeat", 300, 9),
    ("5 * * * *", 1, 2, "Heartbeat", 300, 24),
    ("0 2 * * *", 24, 26, "Heartbeat", 3600, 26),
    ("0 3 * * WED", 168, 170, "HeartbeatAgeHours", 86400, 2),
    ("0 6 3 * *", 31 * 24, 31 * 24 + 2, "HeartbeatAgeHours", 86400, 2),
])
def test_each_schedule_gets_an_alarm_at_its_own_cadence(expression, cadence_hours, gap_hours, metric, period,
                                                        periods):
    from airflow.sdk import DAG, CronTriggerTimetable

    from solemate_maintenance.operators.monitoring.cloudwatch_status import heartbeat_alarm_shape, schedule_cadence

    timetable = CronTriggerTimetable(expression, timezone="UTC")
    assert schedule_cadence(timetable) == timedelta(hours=cadence_hours)
    with DAG("cadence", schedule=timetable, start_date=ANCHOR):
        operator = MaintenanceStatusOperator(task_id="maintenance_status", environment=CONFIG.environment,
                                             status=CONFIG.maintenance_status, alerts=CONFIG.alerts)
    assert operator.gap_hours() == gap_hours
    shape = heartbeat_alarm_shape(gap_hours)
    assert (shape["MetricName"], shape["Period"], shape["EvaluationPeriods"]) == (metric, period, periods)
    # Within what CloudWatch evaluates: a day for periods under an hour, a week otherwise.
    assert shape["Period"] * shape["EvaluationPeriods"] <= (86400 if shape["Period"] < 3600 else 7 * 86400)


def test_each_dags_dashboard_row_stays_where_it_is(world_with):
    """Seven DAGs share the dashboard: a DAG's run must not move its row below the others' (it would
    rewrite the dashboard on every run and push the rows down for ever)."""
    world = world_with()
    cloudwatch = world._client("cloudwatch")
    name = f"{CONFIG.maintenance_status.dashboard_name}-{CONFIG.environment}"
    cloudwatch.delete_dashboards(DashboardNames=[name])
    operator = MaintenanceStatusOperator(task_id="maintenance_status", environment=CONFIG.environment,
                                         status=CONFIG.maintenance_status, alerts=CONFIG.alerts)
    assert operator._ensure_dashboard(cloudwatch, "daily_maintenance", 26)
    assert operator._ensure_dashboard(cloudwatch, "performance_watch", 0.75)
    assert not operator._ensure_dashboard(cloudwatch, "daily_maintenance", 26)
    assert not operator._ensure_dashboard(cloudwatch, "performance_watch", 0.75)
    widgets = json.loads(cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])["widgets"]
    rows = {w["properties"]["title"].rsplit("— ", 1)[1]: set() for w in widgets}
    for widget in widgets:
        rows[widget["properties"]["title"].rsplit("— ", 1)[1]].add(widget["y"])
    assert rows == {"daily_maintenance": {0, 6}, "performance_watch": {12, 18}}
    assert operator._ensure_dashboard(cloudwatch, "daily_maintenance", 30)  # a changed gap rewrites its row, in place
    widgets = json.loads(cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])["widgets"]
    assert {w["y"] for w in widgets if w["properties"]["title"].endswith("— daily_maintenance")} == {0, 6}


def test_a_weekly_dags_heartbeat_age_is_published_by_the_daily_run_and_overdue_is_found(world_with):
    world = world_with()
    cloudwatch = world._client("cloudwatch")
    s3 = world._client("s3")
    live = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    prefix = CONFIG.reports.prefix
    records = {"weekly_review": (live - timedelta(days=3), 170), "monthly_review": (live - timedelta(days=40), 746)}
    for dag_id, (last, gap) in records.items():
        s3.put_object(Bucket=CONFIG.reports.bucket, Key=f"{prefix}/{dag_id}/heartbeat.json",
                      Body=json.dumps({"dag_id": dag_id, "gap_hours": gap, "last_heartbeat": last.isoformat()}))
    s3.put_object(Bucket=CONFIG.reports.bucket, Key=f"{prefix}/broken_dag/heartbeat.json",
                  Body=json.dumps({"last_heartbeat": "last tuesday"}))
    operator = MaintenanceStatusOperator(task_id="maintenance_status", environment=CONFIG.environment,
                                         status=CONFIG.maintenance_status, alerts=CONFIG.alerts, region_name=REGION,
                                         bucket=CONFIG.reports.bucket, reports_prefix=prefix,
                                         publish_heartbeat_ages=True, heartbeat_max_gap_hours=26)
    operator._check_tasks = lambda: ["ecs_services"]
    context = make_context(anchor=live, task_id="maintenance_status")
    context["ti"] = _StatesTI(context, {"report": "success", "ecs_services": "success"},
                              {"totals": {"severity": {}}})
    try:
        operator.execute(context)
        findings = context["ti"].inner.pushed["findings"]
        assert {k: v for k, v in problems(findings).items() if k[0] == "maintenance.heartbeat_overdue"} == {
            ("maintenance.heartbeat_overdue", "monthly_review"): "P3",
            ("maintenance.heartbeat_overdue", "broken_dag"): "P3"}  # an unreadable record: said, not fatal
        assert "heartbeat" in next(f for f in findings if f["check"] == "maintenance.status_published")["summary"]
        overdue = next(f for f in findings if f["resource"] == "monthly_review")
        assert overdue["summary"].startswith("no successful monthly_review run for 40.0 days")
        ages = {}
        for dag_id in records:
            dims = [{"Name": "Environment", "Value": CONFIG.environment}, {"Name": "DagId", "Value": dag_id}]
            [result] = cloudwatch.get_metric_data(
                StartTime=datetime.now(UTC) - timedelta(hours=1), EndTime=datetime.now(UTC) + timedelta(minutes=5),
                MetricDataQueries=[{"Id": "age", "MetricStat": {"Metric": {
                    "Namespace": CONFIG.maintenance_status.namespace, "MetricName": "HeartbeatAgeHours",
                    "Dimensions": dims}, "Period": 3600, "Stat": "Maximum"}}])["MetricDataResults"]
            ages[dag_id] = max(result["Values"])
        assert 72 <= ages["weekly_review"] < 73 and 960 <= ages["monthly_review"] < 961
    finally:
        for dag_id in [*records, "broken_dag"]:
            s3.delete_object(Bucket=CONFIG.reports.bucket, Key=f"{prefix}/{dag_id}/heartbeat.json")


# -- the reports bucket's lifecycle ------------------------------------------------------------------

def reports_lifecycle(enforce=False):
    from solemate_maintenance.operators.housekeeping.reports_lifecycle import ReportsLifecycleOperator

    config = CONFIG.model_copy(update={"reports": CONFIG.reports.model_copy(update={
        "lifecycle": CONFIG.reports.lifecycle.model_copy(update={"enforce": enforce})})})
    return ReportsLifecycleOperator(task_id="reports_lifecycle", config=config, region_name=REGION)


def test_the_reports_bucket_ages_each_prefix_and_enforcement_keeps_other_rules(world):
    s3 = cached_clients(REGION)("s3")
    bucket = CONFIG.reports.bucket
    findings, error, measured = run(reports_lifecycle())
    assert error is None and problems(findings) == {} and measured["changes"] == 0
    resources = {f["resource"] for f in findings}
    prefix = CONFIG.reports.prefix
    assert {f"s3://{bucket}/{prefix}/daily_maintenance/", f"s3://{bucket}/{prefix}/morning_review/",
            f"s3://{bucket}/{prefix}/dr_failover/", f"s3://{bucket}/{prefix}/config-backups/",
            f"s3://{bucket}/{prefix}/cost-explorer-cache/", f"s3://{bucket}/{prefix}/incidents/"} <= resources
    assert not any("performance_watch" in r for r in resources)  # the watches file nothing under their name
    # Someone edits the bucket: the daily rule loses Glacier, the incident record's old versions are kept
    # forever, and a rule of theirs expires the whole bucket after 60 days.
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    saved = [dict(r) for r in rules]
    for rule in rules:
        if rule["ID"] == "solemate-reports-daily_maintenance":
            rule["Transitions"] = [t for t in rule["Transitions"] if t["StorageClass"] != "GLACIER"]
        if rule["ID"] == "solemate-reports-incidents":
            rule.pop("NoncurrentVersionExpiration")
    rules.append({"ID": "theirs", "Filter": {"Prefix": ""}, "Status": "Enabled", "Expiration": {"Days": 60}})
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    try:
        findings, error, measured = run(reports_lifecycle())
        found = problems(findings)
        assert found[("reports.lifecycle", f"s3://{bucket}/{prefix}/daily_maintenance/")] == "P3"
        [daily] = [f for f in by_check(findings, "reports.lifecycle")
                   if f["resource"].endswith("/daily_maintenance/") and f["status"] == "warning"]
        assert daily["summary"] == (
            "daily_maintenance reports (reports.lifecycle.reports) lifecycle differs from the policy: expected "
            "STANDARD_IA after 30 d, GLACIER after 90 d, never expire, actual STANDARD_IA after 30 d, never expire")
        assert found[("reports.lifecycle", f"s3://{bucket}/{prefix}/incidents/")] == "P3"
        conflicts = by_check(findings, "reports.lifecycle.conflict")
        assert conflicts and all("theirs" in f["summary"] for f in conflicts)
        assert measured["changes"] == 2 and s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == rules
        # Enforcing: our two rules put back, theirs left alone (only a person may narrow it); twice: nothing more.
        findings, error, measured = run(reports_lifecycle(enforce=True))
        assert measured["headline"] == "Reports bucket lifecycle: 2 rule change(s) applied"
        after = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
        assert after["theirs"]["Expiration"] == {"Days": 60}
        assert after["solemate-reports-incidents"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7}
        findings, error, measured = run(reports_lifecycle(enforce=True))
        assert measured["changes"] == 0 and set(problems(findings)) == {
            ("reports.lifecycle.conflict", f["resource"]) for f in conflicts}
    finally:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": saved})


def test_the_dashboard_says_which_reports_are_in_glacier(world):
    from solemate_maintenance.dashboard.data import collect
    from solemate_maintenance.report_store import ReportStore

    s3 = cached_clients(REGION)("s3")
    store = ReportStore(bucket=CONFIG.reports.bucket, prefix="glacier-test", aws_conn_id=None, region_name=REGION)
    old = ANCHOR - timedelta(days=120)
    s3.put_object(Bucket=CONFIG.reports.bucket, Key=store.date_key("weekly_backup_verification", old),
                  Body=b"{}", StorageClass="GLACIER")
    s3.put_object(Bucket=CONFIG.reports.bucket, Key=store.latest_key("monthly_review"), Body=b"{}",
                  StorageClass="GLACIER")
    board = collect(store, CONFIG.environment, ANCHOR)
    [monthly] = [d for d in board.dags if d.dag_id == "monthly_review"]
    assert monthly.state == "unreadable" and monthly.error.endswith("is in Glacier (restore it to read it)")
    [note] = [e for e in board.errors if "Glacier" in e]
    assert note.startswith("1 older report(s) are in Glacier and not in the trends: ") and old.strftime("%Y-%m-%d") \
        in note
