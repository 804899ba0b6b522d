"""The DR region of the sandbox (regions.dr): what dr_drill measures and dr_failover activates.

* RDS: the production database's automated backups replicated into the DR region (see
  ``moto_rds.replicate_automated_backups``), besides the daily snapshot copies ``backups.py`` writes;
* ECR: the application image pushed in the primary region and replicated (same digest) to the DR one;
* ECS: the DR cluster with the task definition registered and the service at 0 tasks (pilot light);
* S3: asset buckets replicated to their DR replicas; moto does not replicate, so the objects are
  copied here with the status S3 reports (``moto_s3``);
* ELBv2 + Route 53: the DR load balancer, and the public record as PRIMARY (production ALB, with a
  health check) / SECONDARY (DR ALB).

Problems change what a drill measures: replication stopped (stale replica), the image missing in
the DR region, a stale cross-region database backup.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from sandbox import moto_rds
from solemate_maintenance.config import PlatformConfig

DR_PROBLEMS = {
    "replication_stopped": "S3 replication of the asset bucket disabled 2 days ago: the replica is stale (P2)",
    "image_missing_in_dr": "the running image was never replicated to the DR region's ECR (P1: cannot fail over)",
    "stale_dr_backup": "the database's replicated backups stopped 3 hours ago (database RPO missed, P2)",
}
DATABASE_REPLICATION_LAG = timedelta(minutes=1)
ASSET_OBJECTS = 24
IMAGE_TAG = "1.0"
HEALTH_CHECK_REFERENCE = "solemate-primary-health"


def image_uri(region: str, repository: str, tag: str = IMAGE_TAG) -> str:
    return f"{DEFAULT_ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com/{repository}:{tag}"


def _manifest(tag: str) -> str:
    layer = hashlib.sha256(f"solemate-backend-{tag}".encode()).hexdigest()
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1470,
                                  "digest": f"sha256:{layer}"},
                       "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2811478,
                                   "digest": f"sha256:{hashlib.sha256(layer.encode()).hexdigest()}"}]})


class DrRegion:
    def __init__(self, config: PlatformConfig, client: Callable[..., Any], primary_alb_dns: str) -> None:
        self.config = config
        self.dr = config.disaster_recovery
        self.primary, self.region = config.regions.primary, config.regions.dr
        self._client = client
        self.primary_alb_dns = primary_alb_dns

    def client(self, service: str, region: str | None = None) -> Any:
        return self._client(service, region or self.region)

    # -- created once -----------------------------------------------------------------------------
    def create(self, production_task_family: str) -> None:
        for region in (self.primary, self.region):
            self.client("ecr", region).create_repository(repositoryName=self.dr.ecr_repository)
        ecs = self.client("ecs")
        ecs.create_cluster(clusterName=self.dr.cluster)
        ecs.register_task_definition(family=production_task_family, containerDefinitions=[
            {"name": "backend", "image": image_uri(self.region, self.dr.ecr_repository), "memory": 1024, "cpu": 512}])
        for service in self.config.resources.ecs.services:
            ecs.create_service(cluster=self.dr.cluster, serviceName=service.name, taskDefinition=production_task_family,
                               desiredCount=0, launchType="FARGATE")
        for pair in self.dr.asset_buckets:
            source, replica = self.client("s3", self.primary), self.client("s3", self.region)
            source.create_bucket(Bucket=pair.source_bucket)
            replica.create_bucket(Bucket=pair.replica_bucket,
                                  CreateBucketConfiguration={"LocationConstraint": self.region})
            for s3, bucket in ((source, pair.source_bucket), (replica, pair.replica_bucket)):
                s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        ec2, elb = self.client("ec2"), self.client("elbv2")
        vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s["VpcId"] == vpc][:2]
        self.dr_alb_dns = elb.create_load_balancer(Name=self.dr.dr_load_balancer, Subnets=subnets,
                                                   Type="application")["LoadBalancers"][0]["DNSName"]
        route53 = self.client("route53", self.primary)
        zone = route53.create_hosted_zone(Name=self.dr.hosted_zone, CallerReference="solemate-zone")["HostedZone"]
        self.zone_id = zone["Id"].rsplit("/", 1)[-1]
        check = route53.create_health_check(CallerReference=HEALTH_CHECK_REFERENCE, HealthCheckConfig={
            "Type": "HTTP", "FullyQualifiedDomainName": self.primary_alb_dns, "Port": 80, "ResourcePath": "/health",
            "RequestInterval": 30, "FailureThreshold": 3})["HealthCheck"]
        self.health_check_id = check["Id"]

    # -- per seed: the state a problem describes --------------------------------------------------
    def apply(self, anchor: datetime, problems: frozenset[str]) -> None:
        now = datetime.now(UTC)
        self._images("image_missing_in_dr" in problems, now)
        self._assets("replication_stopped" in problems, now)
        self._records()
        rds = get_backend("rds")[DEFAULT_ACCOUNT_ID]
        source = rds[self.primary].databases[self.config.resources.rds.instance_id]
        lag = timedelta(hours=3) if "stale_dr_backup" in problems else DATABASE_REPLICATION_LAG
        moto_rds.replicate_automated_backups(source, rds[self.region],
                                             None if "no_dr_copies" in problems else lag)

    def _images(self, missing_in_dr: bool, now: datetime) -> None:
        pushed = now - timedelta(days=2)
        for region in (self.primary, self.region):
            ecr = get_backend("ecr")[DEFAULT_ACCOUNT_ID][region]
            repository = ecr.repositories[self.dr.ecr_repository]
            repository.images.clear()
            if region == self.region and missing_in_dr:
                # What replication last brought over: the previous release, a week older.
                ecr.put_image(self.dr.ecr_repository, _manifest("0.9"), "0.9")
                repository.images[-1].image_pushed_at = int((pushed - timedelta(days=7)).timestamp())
                continue
            ecr.put_image(self.dr.ecr_repository, _manifest(IMAGE_TAG), IMAGE_TAG)
            replicated = timedelta(minutes=2) if region == self.region else timedelta(0)
            repository.images[-1].image_pushed_at = int((pushed + replicated).timestamp())

    def _assets(self, stopped: bool, now: datetime) -> None:
        s3 = get_backend("s3")[DEFAULT_ACCOUNT_ID]["aws"]
        for pair in self.dr.asset_buckets:
            self.client("s3", self.primary).put_bucket_replication(Bucket=pair.source_bucket, ReplicationConfiguration={
                "Role": f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/solemate-s3-replication",
                "Rules": [{"ID": "assets-to-dr", "Priority": 1, "Status": "Disabled" if stopped else "Enabled",
                           "Filter": {"Prefix": ""}, "DeleteMarkerReplication": {"Status": "Disabled"},
                           "Destination": {"Bucket": f"arn:aws:s3:::{pair.replica_bucket}"}}]})
            for bucket in (pair.source_bucket, pair.replica_bucket):
                s3.buckets[bucket].keys.clear()
            stopped_at = now - timedelta(days=2)
            for i in range(ASSET_OBJECTS):
                key = f"images/products/{i:04d}.webp"
                written = now - timedelta(hours=6 * i + 1)
                replicated = not stopped or written < stopped_at
                # Written while the rule was disabled: not eligible, so no status and no copy.
                self._put(pair.source_bucket, key, written, "COMPLETED" if replicated else None)
                if replicated:
                    self._put(pair.replica_bucket, key, written, "REPLICA")  # a copy keeps LastModified

    @staticmethod
    def _put(bucket: str, key: str, modified: datetime, replication_status: str | None) -> None:
        s3 = get_backend("s3")[DEFAULT_ACCOUNT_ID]["aws"]
        stored = s3.put_object(bucket, key, f"asset {key}".encode())
        stored.last_modified = modified.replace(tzinfo=None)
        stored._sandbox_replication_status = replication_status

    def _records(self) -> None:
        route53 = self.client("route53", self.primary)
        name = self.dr.record_name
        route53.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={"Changes": [
            {"Action": "UPSERT", "ResourceRecordSet": {
                "Name": name, "Type": "CNAME", "SetIdentifier": "primary", "Failover": "PRIMARY", "TTL": 60,
                "HealthCheckId": self.health_check_id, "ResourceRecords": [{"Value": self.primary_alb_dns}]}},
            {"Action": "UPSERT", "ResourceRecordSet": {
                "Name": name, "Type": "CNAME", "SetIdentifier": "secondary", "Failover": "SECONDARY", "TTL": 60,
                "ResourceRecords": [{"Value": self.dr_alb_dns}]}}]})

    def failover_records(self) -> dict[str, str]:
        """{'PRIMARY': target, 'SECONDARY': target}: what the test asserts about the DNS switch."""
        route53 = self.client("route53", self.primary)
        records = route53.list_resource_record_sets(HostedZoneId=self.zone_id)["ResourceRecordSets"]
        return {r["Failover"]: r["ResourceRecords"][0]["Value"] for r in records
                if r.get("Failover") and r["Name"] == self.dr.record_name}
