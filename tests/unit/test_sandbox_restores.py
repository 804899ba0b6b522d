"""The sandbox's RDS restore and AWS Backup patches, each checked through boto3 against moto.

moto alone restores instantly, ignores the restore time, has no RestoreWindow and no database
behind an instance, and answers 404/500 to four AWS Backup listings. These tests fail without the
patches in sandbox/moto_rds.py and sandbox/moto_backup.py.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import boto3
import psycopg2
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.server import ThreadedMotoServer

from sandbox import moto_backup, moto_rds
from sandbox.servers import free_port


@pytest.fixture
def behaviour():
    moto_rds.BEHAVIOUR.reset()
    moto_rds.BEHAVIOUR.restore_seconds, moto_rds.BEHAVIOUR.delete_seconds = 1.0, 0.5
    yield moto_rds.BEHAVIOUR
    moto_rds.BEHAVIOUR.reset()
    moto_rds.BEHAVIOUR.data = None


@pytest.fixture
def rds(behaviour):
    with mock_aws():
        client = boto3.client("rds", region_name="us-east-1")
        client.create_db_instance(DBInstanceIdentifier="prod", Engine="postgres", DBInstanceClass="db.t3.micro",
                                  AllocatedStorage=20, MasterUsername="admin", MasterUserPassword="password123",
                                  BackupRetentionPeriod=7, DBName="solemate")
        from moto.backends import get_backend
        from moto.core import DEFAULT_ACCOUNT_ID

        prod = get_backend("rds")[DEFAULT_ACCOUNT_ID]["us-east-1"].databases["prod"]
        prod.created = datetime.now(UTC) - timedelta(days=30)
        yield client


def status(rds, identifier: str) -> str:
    return rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]["DBInstanceStatus"]


def test_automated_backups_carry_a_restore_window_bounded_by_retention_and_lag(rds, behaviour):
    behaviour.restorable_lag_seconds = 300
    [backup] = rds.describe_db_instance_automated_backups(DBInstanceIdentifier="prod")["DBInstanceAutomatedBackups"]
    window = backup["RestoreWindow"]
    now = datetime.now(UTC)
    assert timedelta(days=6, hours=23) < now - window["EarliestTime"] <= timedelta(days=7, seconds=5)
    assert timedelta(minutes=4) < now - window["LatestTime"] <= timedelta(minutes=5, seconds=5)
    latest = rds.describe_db_instances(DBInstanceIdentifier="prod")["DBInstances"][0]["LatestRestorableTime"]
    assert abs((latest - window["LatestTime"]).total_seconds()) < 5


def test_point_in_time_restore_outside_the_window_is_refused_as_aws_does(rds):
    with pytest.raises(ClientError) as refused:
        rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier="prod", TargetDBInstanceIdentifier="old",
                                                 RestoreTime=datetime(2020, 1, 1, tzinfo=UTC))
    assert refused.value.response["Error"]["Code"] == "InvalidRestoreFault"
    assert "outside the restore window" in refused.value.response["Error"]["Message"]
    with pytest.raises(ClientError):  # later than the latest restorable time
        rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier="prod", TargetDBInstanceIdentifier="new",
                                                 RestoreTime=datetime.now(UTC) + timedelta(hours=1))
    assert [i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]] == ["prod"]


def test_restore_takes_time_and_deletion_too(rds, behaviour):
    point = datetime.now(UTC) - timedelta(hours=2)
    rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier="prod", TargetDBInstanceIdentifier="copy",
                                             RestoreTime=point)
    assert status(rds, "copy") == "creating"
    time.sleep(1.1)
    assert status(rds, "copy") == "available"
    assert behaviour.requests[-1]["as_of"] == point and behaviour.requests[-1]["restore_type"] == "point_in_time"
    rds.delete_db_instance(DBInstanceIdentifier="copy", SkipFinalSnapshot=True)
    assert status(rds, "copy") == "deleting"
    with pytest.raises(ClientError):  # deleting twice is refused, as in AWS
        rds.delete_db_instance(DBInstanceIdentifier="copy", SkipFinalSnapshot=True)
    time.sleep(0.6)
    with pytest.raises(ClientError) as gone:
        rds.describe_db_instances(DBInstanceIdentifier="copy")
    assert gone.value.response["Error"]["Code"] == "DBInstanceNotFound"


def test_a_held_restore_stays_creating_past_its_time_until_released(rds, behaviour):
    behaviour.held = True
    rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier="prod", TargetDBInstanceIdentifier="held",
                                             UseLatestRestorableTime=True)
    time.sleep(1.1)
    assert status(rds, "held") == "creating"
    behaviour.held = False
    assert status(rds, "held") == "available"


def test_faults_refused_request_and_never_available(rds, behaviour):
    behaviour.refuse_next_restore = "InsufficientDBInstanceCapacity"
    with pytest.raises(ClientError) as refused:
        rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier="prod", TargetDBInstanceIdentifier="a",
                                                 UseLatestRestorableTime=True)
    assert refused.value.response["Error"]["Code"] == "InsufficientDBInstanceCapacity"
    behaviour.never_available = True
    rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier="prod", TargetDBInstanceIdentifier="a",
                                             UseLatestRestorableTime=True)  # the refusal was for one request
    time.sleep(1.1)
    assert status(rds, "a") == "creating"


def test_restored_endpoint_is_a_real_database_as_of_the_restore_point(rds, behaviour, postgres):
    behaviour.data = postgres
    now = datetime.now(UTC)
    postgres.seed_activity(now - timedelta(days=2), now)
    point = now - timedelta(hours=5)
    rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier="prod", TargetDBInstanceIdentifier="asof",
                                             RestoreTime=point)
    behaviour.corrupt_sources = {"prod"}
    rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier="prod", TargetDBInstanceIdentifier="broken",
                                             RestoreTime=point)
    try:
        results = {}
        for name in ("asof", "broken"):
            instance = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
            login = postgres.restore_connection
            with psycopg2.connect(host=instance["Endpoint"]["Address"], port=instance["Endpoint"]["Port"],
                                  dbname=instance["DBName"], user=login["login"], password=login["password"]) as conn:
                with conn.cursor() as cur:
                    cur.execute("SELECT max(created_at), (SELECT count(*) FROM orders o WHERE NOT EXISTS "
                                "(SELECT 1 FROM users u WHERE u.id = o.user_id)) FROM orders")
                    results[name] = cur.fetchone()
            conn.close()
        newest, orphans = results["asof"]
        assert point - timedelta(minutes=2) <= newest <= point and orphans == 0
        assert results["broken"][1] > 0  # the corrupt source restores with orphaned rows
    finally:
        for name in ("asof", "broken"):
            rds.delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True)
        time.sleep(0.6)
        rds.describe_db_instances()  # advances the deletions, which drop the databases
        assert postgres.restored_databases() == []


@pytest.fixture(scope="module")
def backup_server():
    from sandbox import moto_patches

    moto_patches.apply()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client("backup", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{port}",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    yield client
    import requests

    requests.post(f"http://127.0.0.1:{port}/moto-api/reset", timeout=10)
    server.stop()


def test_backup_selections_are_created_listed_and_read(backup_server):
    client = backup_server
    plan = client.create_backup_plan(BackupPlan={"BackupPlanName": "p1", "Rules": [
        {"RuleName": "daily", "TargetBackupVaultName": "v", "ScheduleExpression": "cron(0 2 * * ? *)"}]})
    client.create_backup_selection(BackupPlanId=plan["BackupPlanId"], BackupSelection={
        "SelectionName": "db", "IamRoleArn": "arn:aws:iam::123456789012:role/r", "Resources": ["arn:aws:rds:x"]})
    [listed] = client.list_backup_selections(BackupPlanId=plan["BackupPlanId"])["BackupSelectionsList"]
    assert listed["SelectionName"] == "db"
    selection = client.get_backup_selection(BackupPlanId=plan["BackupPlanId"], SelectionId=listed["SelectionId"])
    assert selection["BackupSelection"]["Resources"] == ["arn:aws:rds:x"]
    with pytest.raises(ClientError):
        client.list_backup_selections(BackupPlanId="no-such-plan")


def test_recovery_points_and_jobs_are_listed_with_aws_filters(backup_server):
    client = backup_server
    client.create_backup_vault(BackupVaultName="vault")
    backend = moto_backup.backend("123456789012", "us-east-1")
    now = datetime.now(UTC)
    moto_backup.seed_recovery_point(backend, "vault", "arn:db1", now - timedelta(hours=30), plan_id="p")
    moto_backup.seed_recovery_point(backend, "vault", "arn:db1", now - timedelta(hours=6), plan_id="p")
    moto_backup.seed_recovery_point(backend, "vault", "arn:db2", now - timedelta(hours=6), plan_id="p")
    moto_backup.seed_backup_job(backend, "vault", "arn:db1", now - timedelta(hours=6), "FAILED", message="denied")
    moto_backup.seed_backup_job(backend, "vault", "arn:db1", now - timedelta(hours=30), "COMPLETED")
    moto_backup.seed_copy_job(backend, "arn:src", "arn:dst", "arn:db1", now - timedelta(hours=5), "COMPLETED")
    points = client.list_recovery_points_by_backup_vault(BackupVaultName="vault", ByResourceArn="arn:db1",
                                                         ByCreatedAfter=now - timedelta(days=1))["RecoveryPoints"]
    assert len(points) == 1 and points[0]["ResourceArn"] == "arn:db1"
    assert len(client.list_recovery_points_by_backup_vault(BackupVaultName="vault")["RecoveryPoints"]) == 3
    [failed] = client.list_backup_jobs(ByResourceArn="arn:db1", ByState="FAILED")["BackupJobs"]
    assert failed["StatusMessage"] == "denied"
    assert len(client.list_backup_jobs(ByCreatedBefore=now - timedelta(days=1))["BackupJobs"]) == 1
    [copy] = client.list_copy_jobs(ByDestinationVaultArn="arn:dst")["CopyJobs"]
    assert copy["State"] == "COMPLETED" and client.list_copy_jobs(ByState="FAILED")["CopyJobs"] == []
    with pytest.raises(ClientError) as missing:
        client.list_recovery_points_by_backup_vault(BackupVaultName="no-such-vault")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
