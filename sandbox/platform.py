"""The SoleMate platform as AWS resources and metrics, built in moto (server or ``mock_aws``).

Used by the sandbox and by the unit tests, so both look at the same world.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_api._internal import mock_random

from sandbox import metrics
from sandbox.backups import (
    BACKUP_PROBLEMS,
    RESTORE_PROBLEMS,
    BackupHistory,
    apply_restore_problems,
    backdate_instance,
)
from sandbox.dr import DR_PROBLEMS, DrRegion, image_uri
from sandbox.estate import ESTATE_PROBLEMS, Estate
from sandbox.monitoring import MONITORING_PROBLEMS, STATE_MONITORING_PROBLEMS, MonitoringEstate
from sandbox.monthly import MONTHLY_PROBLEMS, MONTHLY_STATE_PROBLEMS, MonthlyEstate
from sandbox.review import REVIEW_PROBLEMS, REVIEW_STATE_PROBLEMS, ReviewEstate
from sandbox.servers import HealthEndpoint
from sandbox.tls import PrivateCa, TlsEndpoint
from solemate_maintenance.config import PlatformConfig

# Problems the sandbox can inject. Metric problems show in the 3 hours before the run's anchor.
PROBLEMS = {
    "ecs_under_desired": "ECS service runs 1 task of 2 desired (P2)",
    "rds_high_cpu": "RDS CPU above 90 % (P2)",
    "slow_responses": "ALB P95/P99 response time 3x slower all day (P3)",
    "payment_failures": "payment success rate near 88 % (P1)",
    "endpoint_down": "health endpoint answers 503 (P1)",
    "unhealthy_target": "one ALB target unhealthy (P2)",
    **BACKUP_PROBLEMS,
    **RESTORE_PROBLEMS,
    **DR_PROBLEMS,
    **ESTATE_PROBLEMS,
    **REVIEW_PROBLEMS,
    **MONTHLY_PROBLEMS,
    **MONITORING_PROBLEMS,
}
DEMO_PROBLEMS = frozenset({"ecs_under_desired", "rds_high_cpu", "slow_responses", "open_database_port",
                           "unused_resources"})
# Problems of the platform's live state (describe calls answer for now, not for a past date), as
# opposed to metric problems, which CloudWatch keeps per timestamp.
STATE_PROBLEMS = frozenset({"ecs_under_desired", "endpoint_down", "unhealthy_target", *BACKUP_PROBLEMS,
                            *RESTORE_PROBLEMS, *DR_PROBLEMS, *(set(ESTATE_PROBLEMS) - {"brute_force_logins"}),
                            *REVIEW_STATE_PROBLEMS, *MONTHLY_STATE_PROBLEMS, *STATE_MONITORING_PROBLEMS})
SNS_TOPIC = "solemate-p1"
# A week of 5-minute metrics is ~45,000 datapoints (seconds to build); worlds seeded alike share them.
_SEEDED_METRICS: dict[tuple, list] = {}


class Platform:
    """Creates the resources once, then re-describes the world for each run anchor."""

    def __init__(self, config: PlatformConfig, client: Callable[..., Any],
                 health: HealthEndpoint | None = None, tls: TlsEndpoint | None = None,
                 ca: PrivateCa | None = None, history_days: int = 36) -> None:
        self.config = config
        self.tls, self.ca = tls, ca
        # How far back the hourly metrics reach: capacity planning's four weeks by default; a monthly
        # review of past months needs more (seeding more costs seconds per seed).
        self.history_days = history_days
        self._client = client
        self.health = health
        self.problems: frozenset[str] = frozenset()

    def seed(self, anchor: datetime, problems: frozenset[str] | set[str] = frozenset()) -> None:
        """Describe the world as it is at `anchor`: metrics for the 8 days before it, with `problems`."""
        self.seed_days({anchor: problems})

    def seed_days(self, days: dict[datetime, frozenset[str] | set[str]], history_days: int | None = None) -> None:
        """Describe several days at once, each anchor with its own problems (for multi-day backfills).

        Metric problems show before their own anchor only. State problems (ECS task counts, the health
        endpoint, target health) describe the platform now, so only the latest day may have them.
        """
        if not days:
            raise ValueError("seed_days needs at least one day")
        if history_days is not None:
            self.history_days = history_days
        for problems in days.values():
            unknown = set(problems) - PROBLEMS.keys()
            if unknown:
                raise ValueError(f"unknown sandbox problems: {sorted(unknown)}; known: {sorted(PROBLEMS)}")
        latest = max(days)
        misplaced = {a.isoformat(): sorted(set(p) & STATE_PROBLEMS) for a, p in days.items()
                     if a != latest and set(p) & STATE_PROBLEMS}
        if misplaced:
            raise ValueError("state problems describe the live platform, give them on the latest day only: "
                             f"{misplaced}")
        self.problems = frozenset(days[latest])
        self._apply_state_problems()
        BackupHistory(self.config).write(latest, self.problems)
        apply_restore_problems(self.config, self.problems)  # after the history: corrupts its snapshots too
        self.dr.apply(latest, self.problems)
        self.review.apply(self.problems, self.load_balancer_arn)  # after dr: it re-pushes the scanned image
        self.estate.apply({a: frozenset(p) for a, p in days.items()}, latest)
        self.monthly.apply({a: frozenset(p) for a, p in days.items()}, latest)  # after estate: its volumes
        self.monitoring.apply({a: frozenset(p) for a, p in days.items()}, latest)
        self._write_metrics(sorted((anchor, frozenset(problems)) for anchor, problems in days.items()))

    def create(self) -> None:
        """Create every resource the checks look at."""
        res = self.config.resources
        ec2, elb = self._client("ec2"), self._client("elbv2")
        vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s["VpcId"] == vpc][:2]
        # Any AMI id will do for moto; listing its catalogue would cost seconds in every test.
        image = "ami-12c6146b"
        self.instances = [i["InstanceId"] for i in ec2.run_instances(
            ImageId=image, MinCount=2, MaxCount=2, InstanceType="t3.medium", SubnetId=subnets[0])["Instances"]]
        # The same ALB id in every world, so a world's week of metrics (keyed by the ALB's dimension)
        # can be reused by the next world instead of generated again; moto's RNG is put back after.
        state = mock_random.getstate()
        mock_random.seed(res.alb.name)
        try:
            lb = elb.create_load_balancer(Name=res.alb.name, Subnets=subnets, Type="application")["LoadBalancers"][0]
            tg = elb.create_target_group(Name="solemate-backend", Protocol="HTTP", Port=8080, VpcId=vpc,
                                         TargetType="instance", HealthCheckPath="/health")["TargetGroups"][0]
        finally:
            mock_random.setstate(state)
        self.load_balancer_arn = lb["LoadBalancerArn"]
        self.alb_dimension = lb["LoadBalancerArn"].split(":loadbalancer/", 1)[1]
        self.target_group_dimension = tg["TargetGroupArn"].split(":", 5)[5]
        elb.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": i} for i in self.instances])
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])

        ecs = self._client("ecs")
        ecs.create_cluster(clusterName=res.ecs.cluster)
        self.dr = DrRegion(self.config, self._client, primary_alb_dns=lb["DNSName"])
        self.dr.create(production_task_family="solemate-backend")
        self.db_master_password = secrets.token_urlsafe(16)
        # A credential in a plain environment variable, as real task definitions have: the
        # configuration backup must not copy it.
        database_url = (f"postgresql://solemate_admin:{self.db_master_password}@"
                        f"{res.rds.instance_id}.internal:5432/solemate")
        ecs.register_task_definition(family="solemate-backend", containerDefinitions=[
            {"name": "backend", "image": image_uri(self.config.regions.primary,
                                                   self.config.disaster_recovery.ecr_repository),
             "memory": 1024, "cpu": 512, "environment": [{"name": "DATABASE_URL", "value": database_url},
                                                         {"name": "LOG_LEVEL", "value": "info"}]}])
        for service in res.ecs.services:
            ecs.create_service(cluster=res.ecs.cluster, serviceName=service.name, taskDefinition="solemate-backend",
                               desiredCount=service.min_tasks, launchType="FARGATE")

        self._client("rds").create_db_instance(
            DBInstanceIdentifier=res.rds.instance_id, Engine="postgres", EngineVersion="16.4",
            DBInstanceClass="db.r6g.large", AllocatedStorage=100, MasterUsername="solemate_admin",
            MasterUserPassword=self.db_master_password, BackupRetentionPeriod=self.config.backups.rds_retention_days,
            MultiAZ=True, StorageEncrypted=True, DBName="solemate",
            Tags=[{"Key": "environment", "Value": self.config.environment}])
        backdate_instance(self.config)
        self._client("elasticache").create_cache_cluster(
            CacheClusterId=res.elasticache.cluster_id, Engine="redis", CacheNodeType="cache.r6g.large",
            NumCacheNodes=1)
        logs = self._client("logs")
        logs.create_log_group(logGroupName=res.logs.application_log_group)
        logs.create_log_stream(logGroupName=res.logs.application_log_group, logStreamName="backend/1")
        logs.put_log_events(logGroupName=res.logs.application_log_group, logStreamName="backend/1", logEvents=[
            {"timestamp": int(datetime.now(UTC).timestamp() * 1000) + i, "message": message}
            for i, message in enumerate([
                '{"level": "info", "msg": "GET /health 200", "latency_ms": 4}',
                '{"level": "info", "msg": "POST /api/orders 201", "latency_ms": 87}',
                '{"level": "warning", "msg": "login failed", "user": "customer17@example.com"}',
                '{"level": "error", "msg": "payment provider timeout", "order_id": 4411}',
            ])])
        self._client("s3").create_bucket(Bucket=self.config.reports.bucket)
        from solemate_maintenance.operators.housekeeping.reports_lifecycle import wanted_rules

        # The reports bucket as the README's set-up leaves it: its lifecycle per prefix.
        self._client("s3").put_bucket_lifecycle_configuration(
            Bucket=self.config.reports.bucket,
            LifecycleConfiguration={"Rules": [rule.as_rule() for rule in wanted_rules(self.config)]})
        self._client("sns").create_topic(Name=SNS_TOPIC)
        self.estate = Estate(self.config, self._client)
        self.estate.create(vpc)
        self.review = ReviewEstate(self.config, self._client, ca=self.ca, tls=self.tls)
        self.monthly = MonthlyEstate(self.config, self._client)
        self.monthly.create()
        self.monitoring = MonitoringEstate(self.config, self._client, self.load_balancer_arn)
        self.monitoring.create()

    def _ecs_service(self, name: str) -> Any:
        backend = get_backend("ecs")[DEFAULT_ACCOUNT_ID][self.config.regions.primary]
        return backend.services[f"{self.config.resources.ecs.cluster}:{name}"]

    def _apply_state_problems(self) -> None:
        """Set resource states moto cannot reach by itself (it runs no tasks and fails no health check)."""
        for spec in self.config.resources.ecs.services:
            service = self._ecs_service(spec.name)
            running = service.desired_count - 1 if "ecs_under_desired" in self.problems else service.desired_count
            service.running_count, service.pending_count = running, 0
            for deployment in service.deployments:
                deployment.update(runningCount=running, pendingCount=0, rolloutState="COMPLETED")
        ec2 = self._client("ec2")
        if "unhealthy_target" in self.problems:
            ec2.stop_instances(InstanceIds=self.instances[:1])
        else:
            ec2.start_instances(InstanceIds=self.instances[:1])
        if self.health is not None:
            self.health.status = 503 if "endpoint_down" in self.problems else 200

    def stage(self, episodes: list[metrics.Episode]) -> None:
        """Timed problems on top of the seeded metrics, at any time of day (see metrics.EPISODES)."""
        metrics.overlay(get_backend("cloudwatch")[DEFAULT_ACCOUNT_ID][self.config.regions.primary],
                        self._names(), episodes)

    def _names(self) -> metrics.Names:
        return metrics.Names(
            cluster=self.config.resources.ecs.cluster, service=self.config.resources.ecs.services[0].name,
            db_instance=self.config.resources.rds.instance_id,
            cache_cluster=self.config.resources.elasticache.cluster_id, alb_dimension=self.alb_dimension,
            business_namespace=self.config.resources.business_metrics_namespace,
            target_group_dimension=self.target_group_dimension)

    def _write_metrics(self, incidents: list[tuple[datetime, frozenset[str]]]) -> None:
        # Replace, not append: every seed describes the world as it is for this anchor.
        cloudwatch_backend = get_backend("cloudwatch")[DEFAULT_ACCOUNT_ID][self.config.regions.primary]
        cloudwatch_backend.metric_data = []
        names = self._names()
        by_namespace: dict[str, list[dict]] = defaultdict(list)
        end = incidents[-1][0] + timedelta(minutes=5)
        # 5-minute data for the 8 days before each anchor (consecutive days merge into one span); the
        # hourly history fills everything else, as CloudWatch keeps only hourly data after 15 days.
        spans: list[tuple[datetime, datetime]] = []
        for anchor, _ in incidents:
            span = (anchor - timedelta(days=8), anchor + timedelta(minutes=5))
            if spans and span[0] <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], span[1]))
            else:
                spans.append(span)
        start = spans[0][0]
        key = (names, tuple(spans), tuple(incidents), tuple(self.estate.log_groups_with_traffic()),
               self.history_days)
        if key in _SEEDED_METRICS:
            # The same datapoint objects, in a list of this world's own: ~100,000 copies would cost a
            # second per seed. A test that changes a value replaces that datapoint (never in place).
            cloudwatch_backend.metric_data = list(_SEEDED_METRICS[key])
            return
        for namespace, entry in [*(entry for span_start, span_end in spans
                                   for entry in metrics.generate(names, span_start, span_end, incidents, origin=start)),
                                 *metrics.history(names, spans, end, incidents, timedelta(days=self.history_days)),
                                 *self.estate.metric_entries(start, end),
                                 *self.monitoring.metric_entries(incidents)]:
            by_namespace[namespace].append(entry)
        # Straight into the backend: a week of 5-minute data over HTTP would take ~15 s per seed.
        for namespace, entries in by_namespace.items():
            cloudwatch_backend.put_metric_data(namespace, entries)
        if len(_SEEDED_METRICS) > 16:
            _SEEDED_METRICS.clear()
        _SEEDED_METRICS[key] = list(cloudwatch_backend.metric_data)
