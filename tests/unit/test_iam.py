"""The shipped IAM policies (include/iam/) as documents: filled in from the config, every mutating
action scoped, and the evaluator the least-privilege test uses able to say no. Whether they allow
what the DAGs really call is tests/e2e/test_iam_policies.py."""

from __future__ import annotations

import json

import pytest

from solemate_maintenance import iam
from solemate_maintenance.config import load_config
from tests.iam_policy import allowed, is_read_only, resource_arns

# Not read verbs, but they change nothing that lasts: a report IAM builds, a query, a template check.
HARMLESS_WRITES = {"iam:GenerateCredentialReport", "logs:StartQuery", "logs:StopQuery", "cloudformation:ValidateTemplate",
                   "cloudformation:DetectStackDrift", "cloudformation:DetectStackResourceDrift"}
DAG_IDS = {"daily_maintenance", "performance_watch", "database_watch", "weekly_backup_verification", "weekly_review", "monthly_review", "dr_drill",
           "dr_failover", "morning_review", "evening_review", "airflow_housekeeping"}


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture(scope="module")
def policies(config):
    return {name: iam.render(name, config) for name in iam.policy_names()}


def test_every_placeholder_is_filled_and_every_dag_is_attached(policies):
    assert set(policies) == {"readonly", "dashboard", "restore-test", "dr-drill", "dr-failover", "log-retention",
                             "monitoring-enforcement", "reports-lifecycle"}
    for name, document in policies.items():
        text = json.dumps(document)
        assert "${" not in text, f"{name}: a placeholder is left: {text}"
        assert document["Version"] == "2012-10-17"
    attached = iam.attachments()
    assert set(attached) == DAG_IDS and all("readonly" in names for names in attached.values())
    used = {n for names in [*attached.values(), *iam.component_policies().values()] for n in names}
    assert used == set(policies)
    assert iam.component_policies()["api-server"] == ["dashboard"]  # the dashboard only reads


def test_every_mutating_action_is_scoped_by_resource_or_condition(policies):
    for name, document in policies.items():
        for statement in document["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not any("*" in action for action in actions), f"{name}: wildcard action in {statement['Sid']}"
            writes = [a for a in actions if not is_read_only(a)]
            if writes and statement["Effect"] == "Allow" and "*" in _resources(statement):
                assert statement.get("Condition") or set(writes) <= HARMLESS_WRITES, \
                    f"{name}: {writes} on every resource ({statement['Sid']})"


def _resources(statement: dict) -> list[str]:
    return statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]


def test_the_list_placeholders_name_the_configs_log_classes_and_asset_buckets(config, policies):
    retention = {s["Sid"]: s["Resource"] for s in policies["log-retention"]["Statement"]}
    assert "arn:aws:logs:*:*:log-group:/ecs/*/application" in retention["RetentionOfTheGuidesLogClasses"]
    assert sorted(retention["LifecycleOfTheArchiveBuckets"]) == sorted(
        f"arn:aws:s3:::{c.archive.bucket}" for c in config.log_lifecycle.classes.values() if c.archive)
def test_the_evaluator_refuses_what_the_policies_do_not_name(config, policies):
    """The check can fail: production's instance, another bucket, another namespace, an untagged restore."""
    readonly, restore = policies["readonly"], policies["restore-test"]

    def call(signing_name: str, operation: str, **params) -> dict:
        return {"service": signing_name, "signing_name": signing_name, "operation": operation,
                "region": config.regions.primary, "params": params}

    assert not allowed(call("rds", "DeleteDBInstance", DBInstanceIdentifier=config.resources.rds.instance_id),
                       [readonly, restore], {})[0]
    assert not allowed(call("s3", "PutObject", Bucket="someone-elses-bucket", Key="x"), [readonly])[0]
    assert allowed(call("s3", "PutObject", Bucket=config.reports.bucket, Key=f"{config.reports.prefix}/x"),
                   [readonly])[0]
    assert not allowed(call("monitoring", "PutMetricData", Namespace="AWS/EC2"), [readonly])[0]
    assert not allowed(call("secretsmanager", "GetSecretValue", SecretId="production/db"), [readonly])[0]
    prefix = config.restore_test.instance_prefix
    untagged = call("rds", "RestoreDBInstanceToPointInTime", TargetDBInstanceIdentifier=f"{prefix}-x",
                    DBInstanceIdentifier=f"{prefix}-x", Tags=[])
    assert not allowed(untagged, [restore])[0]
    assert resource_arns(untagged) == [f"arn:aws:rds:{config.regions.primary}:*:db:{prefix}-x",
                                       f"arn:aws:rds:{config.regions.primary}:*:subgrp:default"]
    retention = policies["log-retention"]
    assert allowed(call("logs", "PutRetentionPolicy", logGroupName="/ecs/production/application"), [retention])[0]
    assert not allowed(call("logs", "PutRetentionPolicy", logGroupName="/aws/lambda/payments"), [retention])[0]
    # The reports bucket's lifecycle: that bucket only.
    reports = policies["reports-lifecycle"]
    assert allowed(call("s3", "PutBucketLifecycleConfiguration", Bucket=config.reports.bucket), [reports])[0]
    assert not allowed(call("s3", "PutBucketLifecycleConfiguration", Bucket="solemate-logs-access"), [reports])[0]
    # Alarm enforcement: the guide's alarms (per-service names through their wildcard), nobody else's, no delete.
    enforcement = policies["monitoring-enforcement"]
    service = config.resources.ecs.services[0].name
    assert allowed(call("monitoring", "PutMetricAlarm", AlarmName=f"solemate-production-{service}-cpu-high"),
                   [enforcement])[0]
    assert allowed(call("monitoring", "PutMetricAlarm", AlarmName="solemate-production-error-rate-high"),
                   [enforcement])[0]
    assert not allowed(call("monitoring", "PutMetricAlarm", AlarmName="payments-team-latency"), [enforcement])[0]
    assert not allowed(call("monitoring", "DeleteAlarms", AlarmNames=["solemate-production-error-rate-high"]),
                       [enforcement, readonly])[0]
    # The drill may start tasks only in the DR cluster, and switch only the public record.
    task = call("ecs", "RunTask", cluster=config.disaster_recovery.cluster, tags=[{"key": "solemate:purpose",
                                                                                 "value": "dr-drill"}])
    task["region"] = config.regions.dr
    assert allowed(task, [policies["dr-drill"]])[0]
    assert not allowed({**task, "params": {**task["params"], "cluster": "production-cluster"}}, [policies["dr-drill"]])[0]
    switch = call("route53", "ChangeResourceRecordSets", HostedZoneId="/hostedzone/Z1",
                  ChangeBatch={"Actions": ["UPSERT"], "Names": [config.disaster_recovery.record_name]})
    assert allowed(switch, [policies["dr-failover"]])[0]
    other = {**switch, "params": {**switch["params"], "ChangeBatch": {"Actions": ["UPSERT"], "Names": ["mail.solemate.example."]}}}
    assert not allowed(other, [policies["dr-failover"]])[0]
    deleting = {**switch, "params": {**switch["params"], "ChangeBatch": {"Actions": ["DELETE"], "Names": [config.disaster_recovery.record_name]}}}
    assert not allowed(deleting, [policies["dr-failover"]])[0]
    drill_copy = call("rds", "DeleteDBInstance", DBInstanceIdentifier=f"{config.disaster_recovery.drill.instance_prefix}-1")
    drill_copy["region"] = config.regions.dr
    assert allowed(drill_copy, [policies["dr-drill"]], {"solemate:purpose": "restore-test"})[0]
    assert not allowed(drill_copy, [policies["dr-drill"]], {"solemate:purpose": "production"})[0]
