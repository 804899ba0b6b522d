"""The sandbox world: a moto server seeded with the SoleMate platform, plus the local servers.

Airflow reaches it only through standard mechanisms: ``AWS_ENDPOINT_URL`` (honoured by boto3 and
so by every provider hook) and ``AIRFLOW_CONN_*`` connections. Production code has no sandbox branch.

    with Sandbox() as sb:
        sb.seed(anchor, problems={"rds_high_cpu"})
        env = sb.env()          # for a subprocess, or os.environ.update(env)
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import tempfile
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import yaml
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer

from sandbox import metrics, moto_patches
from sandbox.postgres import EmbeddedPostgres
from sandbox.servers import HealthEndpoint, SlackSink, free_port
from solemate_maintenance.config import DEFAULT_CONFIG_PATH, PlatformConfig

# Problems the sandbox can inject. Metric problems show in the 3 hours before the run's anchor.
PROBLEMS = {
    "ecs_under_desired": "ECS service runs 1 task of 2 desired (P2)",
    "rds_high_cpu": "RDS CPU above 90 % (P2)",
    "slow_responses": "ALB P95/P99 response time 3x slower all day (P3)",
    "payment_failures": "payment success rate near 88 % (P1)",
    "endpoint_down": "health endpoint answers 503 (P1)",
    "unhealthy_target": "one ALB target unhealthy (P2)",
}
DEMO_PROBLEMS = frozenset({"ecs_under_desired", "rds_high_cpu", "slow_responses"})
SNS_TOPIC = "solemate-p1"


class Sandbox:
    """Start/stop the whole local world. Everything lives under one temp dir removed on stop."""

    def __init__(self, config_path: Path = DEFAULT_CONFIG_PATH, slack_critical: bool = False) -> None:
        self.base_config_path = config_path
        self.slack_critical = slack_critical
        self.workdir = Path(tempfile.mkdtemp(prefix="solemate-sandbox-"))
        self._started: list[Any] = []
        self.problems: frozenset[str] = frozenset()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Sandbox:
        try:
            moto_patches.apply()
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            self.moto_port = free_port()
            self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
            self.moto.start()
            self._started.append(self.moto)
            self.slack = SlackSink(self.workdir / "slack.jsonl").start()
            self._started.append(self.slack)
            self.health = HealthEndpoint().start()
            self._started.append(self.health)
            self.postgres = EmbeddedPostgres(self.workdir).start()
            self._started.append(self.postgres)
            self.slack_token = "T0SANDBOX/B0SANDBOX/" + secrets.token_hex(12)
            self.config_path = self._write_config()
            self.config = PlatformConfig.model_validate(yaml.safe_load(self.config_path.read_text()))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for component in reversed(self._started):
            try:
                component.stop()
            except Exception:  # keep stopping the rest; nothing may be left behind
                pass
        self._started.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- how Airflow reaches it ----------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def env(self) -> dict[str, str]:
        region = self.config.regions.primary
        slack = {"conn_type": "slackwebhook", "host": f"{self.slack.url}/services", "password": self.slack_token}
        env = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
            "MAINTENANCE_CONFIG": str(self.config_path),
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "extra": {"region_name": region}}),
            "AIRFLOW_CONN_PLATFORM_DB": json.dumps(self.postgres.connection),
            "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(slack),
        }
        if self.slack_critical:
            critical = {**slack, "host": f"{self.slack.url}/critical"}
            env["AIRFLOW_CONN_SLACK_CRITICAL"] = json.dumps(critical)
        return env

    def secrets(self) -> list[str]:
        """Values that must never appear in anything a run prints, sends or writes."""
        return [self.slack_token, self.slack_token.rsplit("/", 1)[1], self.postgres.password, self.db_master_password]

    def _write_config(self) -> Path:
        raw = yaml.safe_load(self.base_config_path.read_text())
        raw["resources"]["alb"]["health_endpoint"] = self.health.health_url
        raw["alerts"]["sns_topic_arn"] = f"arn:aws:sns:{raw['regions']['primary']}:{DEFAULT_ACCOUNT_ID}:{SNS_TOPIC}"
        path = self.workdir / "platform.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.config.regions.primary,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    # -- the platform --------------------------------------------------------------------------
    def seed(self, anchor: datetime, problems: frozenset[str] | set[str] = frozenset()) -> None:
        """Create the platform (once), then metrics for the 8 days up to `anchor`, with `problems`."""
        unknown = set(problems) - PROBLEMS.keys()
        if unknown:
            raise ValueError(f"unknown sandbox problems: {sorted(unknown)}; known: {sorted(PROBLEMS)}")
        if not hasattr(self, "alb_dimension"):
            self._create_platform()
        self.problems = frozenset(problems)
        self._apply_state_problems()
        self._write_metrics(anchor)

    def _create_platform(self) -> None:
        res = self.config.resources
        ec2, elb = self.client("ec2"), self.client("elbv2")
        vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s["VpcId"] == vpc][:2]
        image = ec2.describe_images()["Images"][0]["ImageId"]
        self.instances = [i["InstanceId"] for i in ec2.run_instances(
            ImageId=image, MinCount=2, MaxCount=2, InstanceType="t3.medium", SubnetId=subnets[0])["Instances"]]
        lb = elb.create_load_balancer(Name=res.alb.name, Subnets=subnets, Type="application")["LoadBalancers"][0]
        self.alb_dimension = lb["LoadBalancerArn"].split(":loadbalancer/", 1)[1]
        tg = elb.create_target_group(Name="solemate-backend", Protocol="HTTP", Port=8080, VpcId=vpc,
                                     TargetType="instance", HealthCheckPath="/health")["TargetGroups"][0]
        elb.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": i} for i in self.instances])
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])

        ecs = self.client("ecs")
        ecs.create_cluster(clusterName=res.ecs.cluster)
        ecs.register_task_definition(family="solemate-backend", containerDefinitions=[
            {"name": "backend", "image": "solemate/backend:1.0", "memory": 1024, "cpu": 512}])
        for service in res.ecs.services:
            ecs.create_service(cluster=res.ecs.cluster, serviceName=service.name, taskDefinition="solemate-backend",
                               desiredCount=service.min_tasks, launchType="FARGATE")

        self.db_master_password = secrets.token_urlsafe(16)
        self.client("rds").create_db_instance(
            DBInstanceIdentifier=res.rds.instance_id, Engine="postgres", EngineVersion="16.4",
            DBInstanceClass="db.r6g.large", AllocatedStorage=100, MasterUsername="solemate_admin",
            MasterUserPassword=self.db_master_password, BackupRetentionPeriod=7, MultiAZ=True,
            Tags=[{"Key": "environment", "Value": self.config.environment}])
        self.client("elasticache").create_cache_cluster(
            CacheClusterId=res.elasticache.cluster_id, Engine="redis", CacheNodeType="cache.r6g.large",
            NumCacheNodes=1)
        logs = self.client("logs")
        logs.create_log_group(logGroupName=res.logs.application_log_group)
        logs.put_retention_policy(logGroupName=res.logs.application_log_group,
                                  retentionInDays=self.config.log_retention.application_days)
        self.client("s3").create_bucket(Bucket=self.config.reports.bucket)
        self.client("sns").create_topic(Name=SNS_TOPIC)

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
        ec2 = self.client("ec2")
        if "unhealthy_target" in self.problems:
            ec2.stop_instances(InstanceIds=self.instances[:1])
        else:
            ec2.start_instances(InstanceIds=self.instances[:1])
        self.health.status = 503 if "endpoint_down" in self.problems else 200

    def _write_metrics(self, anchor: datetime) -> None:
        # Replace, not append: every seed describes the world as it is for this anchor.
        cloudwatch_backend = get_backend("cloudwatch")[DEFAULT_ACCOUNT_ID][self.config.regions.primary]
        cloudwatch_backend.metric_data = []
        names = metrics.Names(
            cluster=self.config.resources.ecs.cluster, service=self.config.resources.ecs.services[0].name,
            db_instance=self.config.resources.rds.instance_id,
            cache_cluster=self.config.resources.elasticache.cluster_id, alb_dimension=self.alb_dimension,
            business_namespace=self.config.resources.business_metrics_namespace)
        by_namespace: dict[str, list[dict]] = defaultdict(list)
        start = anchor - timedelta(days=8)
        for namespace, entry in metrics.generate(names, start, anchor + timedelta(minutes=5), self.problems, anchor):
            by_namespace[namespace].append(entry)
        # Straight into the backend: a week of 5-minute data over HTTP would take ~15 s per seed.
        for namespace, entries in by_namespace.items():
            cloudwatch_backend.put_metric_data(namespace, entries)


def sandbox_env_for_subprocess(sandbox: Sandbox, airflow_home: Path) -> dict[str, str]:
    """The full environment for an Airflow CLI process run against the sandbox."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, **sandbox.env()}
    env.update(airflow_env(airflow_home, repo))
    return env


def airflow_env(airflow_home: Path, repo: Path) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(repo / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join([str(repo / "plugins"), str(repo)]),
    }
