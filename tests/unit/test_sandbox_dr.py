"""The sandbox's DR region and the moto patches it needs (one test per patched behaviour)."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from sandbox import moto_ecs
from sandbox.request_log import RequestLog
from tests.helpers import ANCHOR

DR = "us-west-2"


def replicated(platform) -> list[dict]:
    rds = platform._client("rds", DR)
    return [b for b in rds.describe_db_instance_automated_backups(DBInstanceIdentifier="production-postgres")[
        "DBInstanceAutomatedBackups"] if b.get("Status") == "replicating"]


def test_automated_backups_are_replicated_to_the_dr_region_with_a_lag(platform):
    [backup] = replicated(platform)
    assert backup["Region"] == "us-east-1" and backup["DBInstanceAutomatedBackupsArn"].startswith(
        "arn:aws:rds:us-west-2:")
    lag = datetime.now(UTC) - backup["RestoreWindow"]["LatestTime"]
    assert timedelta(minutes=2) < lag < timedelta(minutes=4)  # LatestRestorableTime (2 min) + replication (1 min)
    by_resource = platform._client("rds", DR).describe_db_instance_automated_backups(
        DbiResourceId=backup["DbiResourceId"])["DBInstanceAutomatedBackups"]
    assert [b["DBInstanceAutomatedBackupsArn"] for b in by_resource] == [backup["DBInstanceAutomatedBackupsArn"]]
    assert platform._client("rds").describe_db_instance_automated_backups(
        DbiResourceId="db-NOSUCHRESOURCE")["DBInstanceAutomatedBackups"] == []


def test_stale_or_stopped_replication(platform):
    platform.seed(ANCHOR, {"stale_dr_backup"})
    [backup] = replicated(platform)
    assert datetime.now(UTC) - backup["RestoreWindow"]["LatestTime"] > timedelta(hours=3)
    platform.seed(ANCHOR, {"no_dr_copies"})
    assert replicated(platform) == []


def test_point_in_time_restore_from_a_replicated_backup_lands_in_the_dr_region(platform, monkeypatch):
    from sandbox import moto_rds

    monkeypatch.setattr(moto_rds.BEHAVIOUR, "restore_seconds", 0.5)
    [backup] = replicated(platform)
    rds = platform._client("rds", DR)
    too_new = backup["RestoreWindow"]["LatestTime"] + timedelta(minutes=1)
    with pytest.raises(ClientError, match="InvalidRestoreFault"):
        rds.restore_db_instance_to_point_in_time(SourceDBInstanceAutomatedBackupsArn=backup[
            "DBInstanceAutomatedBackupsArn"], TargetDBInstanceIdentifier="dr-copy", RestoreTime=too_new)
    created = rds.restore_db_instance_to_point_in_time(
        SourceDBInstanceAutomatedBackupsArn=backup["DBInstanceAutomatedBackupsArn"],
        TargetDBInstanceIdentifier="dr-copy", UseLatestRestorableTime=True, DBInstanceClass="db.t3.medium",
        Tags=[{"Key": "k", "Value": "v"}])["DBInstance"]
    assert created["DBInstanceStatus"] == "creating" and created["DBInstanceArn"].startswith("arn:aws:rds:us-west-2:")
    assert created["DBInstanceClass"] == "db.t3.medium"
    time.sleep(0.6)
    [instance] = rds.describe_db_instances(DBInstanceIdentifier="dr-copy")["DBInstances"]
    assert instance["DBInstanceStatus"] == "available"
    assert [i["DBInstanceIdentifier"] for i in platform._client("rds").describe_db_instances()["DBInstances"]] == [
        "production-postgres"]  # nothing appeared in the primary region
    assert moto_rds.BEHAVIOUR.requests[-1]["source"] == "production-postgres"


def _run_task(platform) -> tuple[object, str]:
    ecs = platform._client("ecs", DR)
    task = ecs.run_task(cluster="production-cluster-dr", taskDefinition="solemate-backend", launchType="FARGATE",
                        startedBy="dr-drill-test")["tasks"][0]
    return ecs, task["taskArn"]


def test_a_task_is_pending_then_running_until_stopped(platform, monkeypatch):
    monkeypatch.setattr(moto_ecs.BEHAVIOUR, "start_seconds", 0.5)
    ecs, arn = _run_task(platform)

    def status() -> dict:
        return ecs.describe_tasks(cluster="production-cluster-dr", tasks=[arn])["tasks"][0]

    first = status()
    assert first["lastStatus"] == "PENDING" and first["createdAt"] and "startedAt" not in first
    time.sleep(0.6)
    assert status()["startedAt"] - first["createdAt"] == pytest.approx(timedelta(seconds=0.5), abs=timedelta(
        milliseconds=5))
    # moto alone would move it one state further on every describe, until it stopped by itself.
    assert [status()["lastStatus"] for _ in range(5)] == ["RUNNING"] * 5
    ecs.stop_task(cluster="production-cluster-dr", task=arn, reason="test")
    assert status()["lastStatus"] == "STOPPED"


def test_a_task_whose_image_is_not_in_the_regions_ecr_stops_with_a_pull_error(platform, monkeypatch):
    monkeypatch.setattr(moto_ecs.BEHAVIOUR, "start_seconds", 0.2)
    platform.seed(ANCHOR, {"image_missing_in_dr"})
    ecs, arn = _run_task(platform)
    time.sleep(0.3)
    task = ecs.describe_tasks(cluster="production-cluster-dr", tasks=[arn])["tasks"][0]
    assert task["lastStatus"] == "STOPPED" and task["stoppedReason"].startswith("CannotPullContainerError")


def test_a_scaled_service_reaches_its_desired_count(platform, monkeypatch):
    monkeypatch.setattr(moto_ecs.BEHAVIOUR, "start_seconds", 0.3)
    ecs = platform._client("ecs", DR)
    ecs.update_service(cluster="production-cluster-dr", service="solemate-backend", desiredCount=2)

    def counts() -> tuple[int, int]:
        service = ecs.describe_services(cluster="production-cluster-dr", services=["solemate-backend"])["services"][0]
        return service["runningCount"], service["desiredCount"]

    assert counts() == (0, 2)
    time.sleep(0.4)
    assert counts() == (2, 2)
    ecs.get_waiter("services_stable").wait(cluster="production-cluster-dr", services=["solemate-backend"],
                                           WaiterConfig={"Delay": 1, "MaxAttempts": 3})


def test_asset_replication_and_the_stopped_problem(platform):
    s3, replica = platform._client("s3"), platform._client("s3", DR)
    source_keys = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket="solemate-static-assets")["Contents"]}
    copies = {o["Key"]: o["LastModified"] for o in replica.list_objects_v2(Bucket="solemate-static-assets-dr")[
        "Contents"]}
    assert copies == source_keys  # as in S3, a replica keeps its source's LastModified
    newest = max(source_keys, key=source_keys.get)
    assert s3.head_object(Bucket="solemate-static-assets", Key=newest)["ReplicationStatus"] == "COMPLETED"
    assert replica.head_object(Bucket="solemate-static-assets-dr", Key=newest)["ReplicationStatus"] == "REPLICA"
    platform.seed(ANCHOR, {"replication_stopped"})
    rules = s3.get_bucket_replication(Bucket="solemate-static-assets")["ReplicationConfiguration"]["Rules"]
    assert [r["Status"] for r in rules] == ["Disabled"]
    assert "ReplicationStatus" not in s3.head_object(Bucket="solemate-static-assets", Key=newest)
    with pytest.raises(ClientError):
        replica.head_object(Bucket="solemate-static-assets-dr", Key=newest)


def test_failover_records_and_image_replication(platform):
    assert platform.dr.failover_records() == {"PRIMARY": platform.dr.primary_alb_dns,
                                              "SECONDARY": platform.dr.dr_alb_dns}
    primary = platform._client("ecr").describe_images(repositoryName="solemate/backend")["imageDetails"]
    dr = platform._client("ecr", DR).describe_images(repositoryName="solemate/backend")["imageDetails"]
    assert [i["imageDigest"] for i in primary] == [i["imageDigest"] for i in dr]
    assert dr[0]["imagePushedAt"] - primary[0]["imagePushedAt"] == timedelta(minutes=2)


def test_request_log_names_operations_and_what_can_change_something():
    def app(environ, start_response):
        return [environ["wsgi.input"].read()]

    log = RequestLog(app)
    scope = "AWS4-HMAC-SHA256 Credential=AKIA/20261127/us-west-2/{}/aws4_request, SignedHeaders=host"
    body = b"Action=DescribeDBInstances&Version=2014-10-31"
    echoed = log({"REQUEST_METHOD": "POST", "PATH_INFO": "/", "CONTENT_TYPE": "application/x-www-form-urlencoded",
                  "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
                  "HTTP_AUTHORIZATION": scope.format("rds")}, None)
    assert echoed == [body]  # the body still reaches moto
    log({"REQUEST_METHOD": "POST", "PATH_INFO": "/", "HTTP_X_AMZ_TARGET": "AmazonEC2ContainerServiceV20141113.RunTask",
         "wsgi.input": io.BytesIO(b"{}"), "HTTP_AUTHORIZATION": scope.format("ecs")}, None)
    log({"REQUEST_METHOD": "PUT", "PATH_INFO": "/bucket/key", "wsgi.input": io.BytesIO(b""),
         "HTTP_AUTHORIZATION": scope.format("s3")}, None)
    log({"REQUEST_METHOD": "POST", "PATH_INFO": "/moto-api/reset", "wsgi.input": io.BytesIO(b"")}, None)
    assert [(r.service, r.region, r.operation, r.mutating) for r in log.since(0)] == [
        ("rds", DR, "DescribeDBInstances", False), ("ecs", DR, "RunTask", True), ("s3", DR, "PUT /bucket/key", True)]
