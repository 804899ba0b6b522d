"""The rest of the SoleMate estate the daily housekeeping checks look at, in moto.

Security groups, the log classes (groups, archive buckets with their lifecycle, the Firehose
stream), the application's authentication events, secrets and parameters, an alarm, and, on demand,
the problems those checks exist to find. Ages (snapshots, stopped instances, silent log groups)
are set relative to the run's anchor, so a backfilled day sees the same world as a live one.
"""

from __future__ import annotations

import json
import random
import secrets as secrets_module
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from solemate_maintenance.config import PlatformConfig

ESTATE_PROBLEMS = {
    "brute_force_logins": "150 failed logins from one IP across 30 users in the night (P2)",
    "open_database_port": "PostgreSQL 5432 open to 0.0.0.0/0 on the database security group (P2)",
    "log_retention_drift": "application logs never expire, security logs kept 30 days, access archive without "
                           "its lifecycle rule (P3)",
    "unused_resources": "an unattached volume, a free Elastic IP, an old manual snapshot, an idle load balancer, "
                        "a long-stopped instance, a silent log group (P4, with costs)",
    "rotation_overdue": "a secret whose rotation is 30 days overdue (P3)",
    "firehose_down": "the log delivery stream is not ACTIVE (P2)",
    "overnight_alarm": "a CloudWatch alarm went into ALARM at 23:40 and is still there (P3)",
}
ALB_SG, APP_SG, DB_SG = "production-alb-sg", "production-app-sg", "production-db-sg"
ACCESS_LOG_GROUP, SECURITY_LOG_GROUP = "/alb/production-alb", "/security/audit"
SILENT_LOG_GROUP = "/ecs/legacy/application"
AUTH_STREAM = "backend/auth"
OVERNIGHT_ALARM = "solemate-backend-5xx-errors"
ATTACKER_IP = "203.0.113.66"


class Estate:
    def __init__(self, config: PlatformConfig, client: Callable[..., Any]) -> None:
        self.config = config
        self._client = client
        self.region = config.regions.primary
        self._unused: dict[str, Any] = {}

    def _backend(self, service: str) -> Any:
        return get_backend(service)[DEFAULT_ACCOUNT_ID][self.region]

    # -- the healthy estate -----------------------------------------------------------------------------
    def create(self, vpc: str) -> None:
        ec2 = self._client("ec2")
        alb = ec2.create_security_group(GroupName=ALB_SG, Description="public load balancer", VpcId=vpc)["GroupId"]
        app = ec2.create_security_group(GroupName=APP_SG, Description="ECS tasks", VpcId=vpc)["GroupId"]
        self.db_sg = ec2.create_security_group(GroupName=DB_SG, Description="RDS", VpcId=vpc)["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=alb, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
             "Ipv6Ranges": [{"CidrIpv6": "::/0"}]} for port in (80, 443)])
        ec2.authorize_security_group_ingress(GroupId=app, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "UserIdGroupPairs": [{"GroupId": alb}]}])
        ec2.authorize_security_group_ingress(GroupId=self.db_sg, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": app}]}])
        subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
        ec2.create_network_interface(SubnetId=subnet, Groups=[self.db_sg], Description="RDSNetworkInterface")

        lifecycle = self.config.log_lifecycle
        logs, s3 = self._client("logs"), self._client("s3")
        app_class = lifecycle.classes.get("application")
        logs.put_retention_policy(logGroupName=self.config.resources.logs.application_log_group,
                                  retentionInDays=app_class.cloudwatch_days if app_class else 30)
        for name, days in ((ACCESS_LOG_GROUP, "access"), (SECURITY_LOG_GROUP, "security")):
            logs.create_log_group(logGroupName=name)
            if days in lifecycle.classes:
                logs.put_retention_policy(logGroupName=name, retentionInDays=lifecycle.classes[days].cloudwatch_days)
        logs.create_log_stream(logGroupName=self.config.resources.logs.application_log_group, logStreamName=AUTH_STREAM)
        from solemate_maintenance.operators.housekeeping.logs import expected_rule

        for class_name, log_class in lifecycle.classes.items():
            if log_class.archive is None:
                continue
            s3.create_bucket(Bucket=log_class.archive.bucket)
            s3.put_bucket_lifecycle_configuration(Bucket=log_class.archive.bucket, LifecycleConfiguration={
                "Rules": [expected_rule(class_name, log_class.archive)]})
        firehose = self._client("firehose")
        first_archive = next((c.archive for c in lifecycle.classes.values() if c.archive), None)
        for stream in lifecycle.firehose_streams:
            firehose.create_delivery_stream(DeliveryStreamName=stream.name, ExtendedS3DestinationConfiguration={
                "RoleARN": f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/solemate-firehose",
                "BucketARN": f"arn:aws:s3:::{first_archive.bucket if first_archive else 'solemate-logs'}"})

        # Values the configuration backup must never read: the secret-scan tests look for them everywhere.
        self.secret_values = [secrets_module.token_urlsafe(24) for _ in range(3)]
        secrets = self._client("secretsmanager")
        for name, value in zip(("production/db-password", "production/stripe-api-key"), self.secret_values,
                               strict=False):
            secrets.create_secret(Name=name, SecretString=value,
                                  Description=f"{name.split('/')[-1]} of the SoleMate platform")
        ssm = self._client("ssm")
        ssm.put_parameter(Name="/solemate/production/feature-flags", Type="String", Value='{"checkout_v2": true}')
        ssm.put_parameter(Name="/solemate/production/db-url", Type="SecureString",
                          Value=f"postgresql://solemate:{self.secret_values[2]}@db.internal:5432/solemate")
        ecr = self._client("ecr")
        ecr.put_lifecycle_policy(repositoryName=self.config.disaster_recovery.ecr_repository,
                                 lifecyclePolicyText=json.dumps({"rules": [{
                                     "rulePriority": 1, "selection": {"tagStatus": "untagged", "countType":
                                                                      "sinceImagePushed", "countUnit": "days",
                                                                      "countNumber": 14},
                                     "action": {"type": "expire"}}]}))
        self._client("cloudwatch").put_metric_alarm(
            AlarmName=OVERNIGHT_ALARM, Namespace="AWS/ApplicationELB", MetricName="HTTPCode_Target_5XX_Count",
            Statistic="Sum", Period=300, EvaluationPeriods=1, Threshold=50, ComparisonOperator="GreaterThanThreshold")

    def log_groups_with_traffic(self) -> list[str]:
        groups = self._backend("logs").groups
        return sorted(name for name in groups if name != SILENT_LOG_GROUP)

    # -- each seed: the world at the anchors --------------------------------------------------------------
    def apply(self, days: dict[datetime, frozenset[str]], latest: datetime) -> None:
        problems = days[latest]
        self._auth_events(days)
        self._security_groups("open_database_port" in problems)
        self._log_retention("log_retention_drift" in problems)
        self._unused_resources(latest, "unused_resources" in problems)
        self._rotation(latest, "rotation_overdue" in problems)
        for stream in self._backend("firehose").delivery_streams.values():
            stream.delivery_stream_status = "CREATING_FAILED" if "firehose_down" in problems else "ACTIVE"
        self._overnight_alarm(latest, "overnight_alarm" in problems)

    def _auth_events(self, days: dict[datetime, frozenset[str]]) -> None:
        # Rewritten on every seed, like the metrics: the events describe the seeded days only.
        group = self._backend("logs").groups[self.config.resources.logs.application_log_group]
        stream = group.streams[AUTH_STREAM]
        stream.events.clear()
        stream.stored_bytes = 0
        events = []
        for anchor, problems in sorted(days.items()):
            rng = random.Random(anchor.isoformat())
            for i in range(12):  # everyday noise: forgotten passwords, a few rate-limited clients
                at = anchor - timedelta(minutes=rng.randint(10, 1400))
                events.append((at, {"event_type": "AUTH_FAILED", "client_ip": f"198.51.100.{i % 6 + 1}",
                                    "user_id": f"u-{rng.randint(1000, 9999)}", "level": "SECURITY"}))
            for i in range(5):
                events.append((anchor - timedelta(minutes=rng.randint(10, 1400)),
                               {"event_type": "RATE_LIMITED", "client_ip": f"192.0.2.{i + 1}", "path": "/api/search"}))
            if "brute_force_logins" in problems:
                for i in range(150):
                    events.append((anchor - timedelta(hours=3) + timedelta(seconds=20 * i),
                                   {"event_type": "AUTH_FAILED", "client_ip": ATTACKER_IP,
                                    "user_id": f"u-{5000 + i % 30}", "level": "SECURITY"}))
        events.sort(key=lambda e: e[0])
        stream.put_log_events([{"timestamp": int(at.timestamp() * 1000), "message": json.dumps(body)}
                               for at, body in events])

    def _security_groups(self, open_db: bool) -> None:
        ec2 = self._client("ec2")
        rule = [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
        groups = ec2.describe_security_groups(GroupIds=[self.db_sg])["SecurityGroups"][0]
        is_open = any(r.get("FromPort") == 5432 and any(ip["CidrIp"] == "0.0.0.0/0" for ip in r.get("IpRanges", []))
                      for r in groups["IpPermissions"])
        if open_db and not is_open:
            ec2.authorize_security_group_ingress(GroupId=self.db_sg, IpPermissions=rule)
        elif is_open and not open_db:
            ec2.revoke_security_group_ingress(GroupId=self.db_sg, IpPermissions=rule)

    def _log_retention(self, drift: bool) -> None:
        logs, s3 = self._client("logs"), self._client("s3")
        classes = self.config.log_lifecycle.classes
        app_group = self.config.resources.logs.application_log_group
        if drift:
            logs.delete_retention_policy(logGroupName=app_group)
            logs.put_retention_policy(logGroupName=SECURITY_LOG_GROUP, retentionInDays=30)
            if "access" in classes and classes["access"].archive:
                s3.delete_bucket_lifecycle(Bucket=classes["access"].archive.bucket)
            return
        from solemate_maintenance.operators.housekeeping.logs import expected_rule

        for name, class_name in ((app_group, "application"), (ACCESS_LOG_GROUP, "access"),
                                 (SECURITY_LOG_GROUP, "security")):
            if class_name in classes:
                logs.put_retention_policy(logGroupName=name, retentionInDays=classes[class_name].cloudwatch_days)
        for class_name, log_class in classes.items():
            if log_class.archive:
                s3.put_bucket_lifecycle_configuration(Bucket=log_class.archive.bucket, LifecycleConfiguration={
                    "Rules": [expected_rule(class_name, log_class.archive)]})

    def _unused_resources(self, anchor: datetime, present: bool) -> None:
        ec2, rds, elb, logs = (self._client(s) for s in ("ec2", "rds", "elbv2", "logs"))
        if not present:
            self._remove_unused(ec2, rds, elb, logs)
            return
        if not self._unused:
            zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
            vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
            subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
                "Subnets"]][:2]
            self._unused["volume"] = ec2.create_volume(AvailabilityZone=zone, Size=100, VolumeType="gp2")["VolumeId"]
            self._unused["address"] = ec2.allocate_address(Domain="vpc")["AllocationId"]
            self._unused["db_snapshot"] = "production-postgres-before-migration"
            self._unused["lb"] = elb.create_load_balancer(Name="solemate-old-campaign", Subnets=subnets,
                                                          Type="application")["LoadBalancers"][0]["LoadBalancerArn"]
            self._unused["instance"] = ec2.run_instances(
                ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.large", SubnetId=subnets[0],
                TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "bastion-old"}]}],
                BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 50, "VolumeType": "gp3",
                                                                         "DeleteOnTermination": True}}],
            )["Instances"][0]["InstanceId"]
            ec2.stop_instances(InstanceIds=[self._unused["instance"]])
            logs.create_log_group(logGroupName=SILENT_LOG_GROUP)
            logs.put_retention_policy(logGroupName=SILENT_LOG_GROUP, retentionInDays=30)
        # Ages relative to the anchor, so a backfilled day judges the same world.
        old = anchor - timedelta(days=60)
        rds_backend = get_backend("rds")[DEFAULT_ACCOUNT_ID][self.region]
        if self._unused["db_snapshot"] not in rds_backend.database_snapshots:  # the backup history rewrites them
            rds.create_db_snapshot(DBSnapshotIdentifier=self._unused["db_snapshot"],
                                   DBInstanceIdentifier=self.config.resources.rds.instance_id)
        snapshot = rds_backend.database_snapshots[self._unused["db_snapshot"]]
        snapshot.created = snapshot.original_snapshot_create_time = old
        self._backend("elbv2").load_balancers[self._unused["lb"]].created_time = old.strftime(
            "%Y-%m-%dT%H:%M:%S.000Z")
        ec2_backend = self._backend("ec2")
        instance = ec2_backend.get_instance(self._unused["instance"])
        instance._reason = f"User initiated ({anchor - timedelta(days=20):%Y-%m-%d %H:%M:%S} GMT)"
        self._backend("logs").groups[SILENT_LOG_GROUP].creation_time = old.replace(tzinfo=None)

    def _remove_unused(self, ec2: Any, rds: Any, elb: Any, logs: Any) -> None:
        if not self._unused:
            return
        ec2.delete_volume(VolumeId=self._unused["volume"])
        ec2.release_address(AllocationId=self._unused["address"])
        if self._unused["db_snapshot"] in get_backend("rds")[DEFAULT_ACCOUNT_ID][self.region].database_snapshots:
            rds.delete_db_snapshot(DBSnapshotIdentifier=self._unused["db_snapshot"])
        elb.delete_load_balancer(LoadBalancerArn=self._unused["lb"])
        volumes = [v["VolumeId"] for v in ec2.describe_volumes(Filters=[
            {"Name": "attachment.instance-id", "Values": [self._unused["instance"]]}])["Volumes"]]
        ec2.terminate_instances(InstanceIds=[self._unused["instance"]])
        for volume in ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": volumes}])["Volumes"]:
            if volume.get("Attachments"):
                ec2.detach_volume(VolumeId=volume["VolumeId"], Force=True)
            ec2.delete_volume(VolumeId=volume["VolumeId"])
        logs.delete_log_group(logGroupName=SILENT_LOG_GROUP)
        self._unused = {}

    def _rotation(self, anchor: datetime, overdue: bool) -> None:
        backend = self._backend("secretsmanager")
        for name, secret in backend.secrets.items():
            secret.rotation_requested = secret.rotation_enabled = True
            secret.rotation_lambda_arn = f"arn:aws:lambda:{self.region}:{DEFAULT_ACCOUNT_ID}:function:rotate-secret"
            secret.auto_rotate_after_days = 30
            rotated = anchor - timedelta(days=60 if overdue and name.endswith("db-password") else 5)
            secret.last_rotation_date = int(rotated.timestamp())
            secret.next_rotation_date = int((rotated + timedelta(days=30)).timestamp())

    def _overnight_alarm(self, anchor: datetime, fired: bool) -> None:
        from sandbox.moto_patches import record_state_change

        alarm = self._backend("cloudwatch").alarms[OVERNIGHT_ALARM]
        alarm.state_history = []
        if fired:
            record_state_change(alarm, "OK", "ALARM", "Threshold Crossed: 1 datapoint [212.0] was greater than 50.0",
                                anchor - timedelta(hours=2, minutes=20))
        alarm.state_value = "ALARM" if fired else "OK"
        alarm.state_reason = "Threshold Crossed" if fired else "Threshold not crossed"

    def metric_entries(self, start: datetime, end: datetime) -> list[tuple[str, dict[str, Any]]]:
        """AWS/Logs IncomingBytes, one point a day for every log group that receives events."""
        entries = []
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        while day < end:
            for name in self.log_groups_with_traffic():
                entries.append(("AWS/Logs", {"MetricName": "IncomingBytes", "Value": 5_000_000.0, "Unit": "Bytes",
                                             "Timestamp": day.astimezone(UTC),
                                             "Dimensions": [{"Name": "LogGroupName", "Value": name}]}))
            day += timedelta(days=1)
        return entries
