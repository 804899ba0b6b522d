"""Fleet scale of the daily housekeeping checks: AWS calls and wall time for 10, 100 and 1000
resources of each kind, against moto (in-process, with the sandbox's patches).

"Minimum pages" is what AWS needs at its largest page size for each listing the check makes
(ceil(resources / max page)), plus its fixed calls; the ratio calls / minimum shows whether calls
grow with pages or with resources. The sandbox's moto pages some listings smaller than AWS (log
groups: 50), which the ratio exposes too. The one listing that cannot be batched is ECR's lifecycle
policy (no batch read exists): it is shown separately and excluded from the ratio target.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

# Largest page AWS serves per listing (its documented MaxResults/MaxRecords maxima).
AWS_MAX_PAGE = {"DescribeSecurityGroups": 1000, "DescribeNetworkInterfaces": 1000, "DescribeVolumes": 500,
                "DescribeSnapshots": 1000, "DescribeDBSnapshots": 100, "DescribeLoadBalancers": 400,
                "DescribeTargetGroups": 400, "DescribeInstances": 1000, "DescribeRepositories": 1000,
                "DescribeLogGroups": 50, "ListSecrets": 100, "DescribeParameters": 50, "GetMetricData": 500}
PER_RESOURCE = {"GetLifecyclePolicy"}
SIZES = (10, 100, 1000)
RATIO_TARGET = 1.5


def _seed(n: int, anchor: datetime) -> None:
    import boto3
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    region = "us-east-1"
    ec2, logs, rds = (boto3.client(s, region_name=region) for s in ("ec2", "logs", "rds"))
    ecr, secrets, ssm = (boto3.client(s, region_name=region) for s in ("ecr", "secretsmanager", "ssm"))
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
    for i in range(n):
        group = ec2.create_security_group(GroupName=f"fleet-{i}", Description="bench", VpcId=vpc)["GroupId"]
        if i % 10 == 0:
            ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        ec2.create_volume(AvailabilityZone=zone, Size=10, VolumeType="gp3")
        logs.create_log_group(logGroupName=f"/ecs/fleet-{i}/application")
        ecr.create_repository(repositoryName=f"fleet/app-{i}")
        secrets.create_secret(Name=f"production/fleet-{i}", SecretString="x")
        ssm.put_parameter(Name=f"/solemate/fleet/{i}", Type="String", Value="x")
    rds.create_db_instance(DBInstanceIdentifier="fleet-db", Engine="postgres", DBInstanceClass="db.t3.micro",
                           AllocatedStorage=20, MasterUsername="u", MasterUserPassword="benchbench1")
    for i in range(min(n, 100)):  # RDS's default quota of manual snapshots (moto enforces it too)
        rds.create_db_snapshot(DBSnapshotIdentifier=f"fleet-{i}", DBInstanceIdentifier="fleet-db")
    backend = get_backend("rds")[DEFAULT_ACCOUNT_ID][region]
    for snapshot in backend.database_snapshots.values():
        snapshot.created = anchor - timedelta(days=90)
    ec2.run_instances(ImageId="ami-12c6146b", MinCount=n, MaxCount=n, InstanceType="t3.micro")


def _operators(config: Any) -> list[Any]:
    from solemate_maintenance.operators.housekeeping.config_backup import ConfigBackupOperator
    from solemate_maintenance.operators.housekeeping.logs import LogLifecycleOperator
    from solemate_maintenance.operators.housekeeping.security import OpenSecurityGroupsOperator
    from solemate_maintenance.operators.housekeeping.unused import UnusedResourcesOperator

    lifecycle = config.log_lifecycle.model_copy(update={"firehose_streams": []})
    return [
        OpenSecurityGroupsOperator(task_id="open_security_groups", allowed=[]),
        LogLifecycleOperator(task_id="log_lifecycle", lifecycle=lifecycle),
        UnusedResourcesOperator(task_id="unused_resources", thresholds=config.checks.unused_resources),
        ConfigBackupOperator(task_id="config_backup", cluster="none", services=config.resources.ecs.services,
                             bucket="bench-reports", reports_prefix="reports", settings=config.config_backup),
    ]


# moto answers in-process; nothing from the caller's shell may point the clients elsewhere.
FLEET_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
             "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws", "extra": {"region_name": "us-east-1"}}'}
FLEET_UNSET = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "MAINTENANCE_CONFIG")


def fleet() -> dict[str, float]:
    saved = dict(os.environ)
    os.environ.update(FLEET_ENV)
    for name in FLEET_UNSET:
        os.environ.pop(name, None)
    try:
        return _fleet()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _fleet() -> dict[str, float]:
    import boto3
    from botocore.client import BaseClient
    from moto import mock_aws

    from sandbox import moto_patches
    from solemate_maintenance.config import load_config
    from solemate_maintenance.findings import ChecksFailedError
    from tests.helpers import make_context

    moto_patches.apply()
    config = load_config()
    anchor = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    worst = 0.0
    original = BaseClient._make_api_call
    print(f"  {'check':<22}{'resources':>10}{'calls':>7}{'min pages':>10}{'ratio':>7}{'per-resource':>13}"
          f"{'wall s':>8}")
    for n in SIZES:
        with mock_aws():
            _seed(n, anchor)
            boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bench-reports")
            for operator in _operators(config):
                calls: Counter[str] = Counter()

                def recording(self: Any, name: str, params: Any, calls: Counter[str] = calls) -> Any:
                    calls[name] += 1
                    return original(self, name, params)

                BaseClient._make_api_call = recording  # type: ignore[method-assign]
                started = time.perf_counter()
                try:
                    operator.execute(make_context(anchor=anchor, task_id=operator.task_id))
                except ChecksFailedError:
                    pass  # the fleet has world-open SSH on purpose
                finally:
                    BaseClient._make_api_call = original  # type: ignore[method-assign]
                wall = time.perf_counter() - started
                if os.environ.get("FLEET_DEBUG"):
                    print(dict(calls))
                per_resource = sum(calls[op] for op in PER_RESOURCE)
                batched = {op: c for op, c in calls.items() if op not in PER_RESOURCE}
                minimum = sum(math.ceil((min(n, 100) if op == "DescribeDBSnapshots" else n) / AWS_MAX_PAGE[op])
                              if op in AWS_MAX_PAGE else c
                              for op, c in batched.items())
                ratio = sum(batched.values()) / max(minimum, 1)
                worst = max(worst, ratio)
                print(f"  {operator.task_id:<22}{n:>10}{sum(batched.values()):>7}{minimum:>10}{ratio:>7.2f}"
                      f"{per_resource:>13}{wall:>8.2f}")
    return {"fleet_calls_per_min_page": worst}
