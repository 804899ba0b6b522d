"""The guide's troubleshooting cases, staged in the sandbox as AWS would show them.

Each trouble sets the AWS state a diagnosis reads (stopped tasks and their containers, target health,
security groups) beside the metric episode that makes a check fail (``metrics.EPISODES``):

* ``image_missing``: the service's new tasks stop with ``CannotPullContainerError`` (a task
  definition whose image tag is not in ECR);
* ``out_of_memory``: tasks killed for memory (``OutOfMemoryError``, exit code 137) after memory
  climbed to 99 %;
* ``targets_failing``: the health check gets HTTP 500 (``Target.ResponseCodeMismatch``);
* ``security_group_blocked``: the tasks' security group lets nothing in on the container port from
  the ALB's security group, so the health check times out (``Target.Timeout``).

The CPU-heavy statement lives in the database (``EmbeddedPostgres.stand_in_pg_stat_statements``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from sandbox import moto_elbv2
from sandbox.dr import image_uri

if TYPE_CHECKING:
    from sandbox.platform import Platform

TROUBLES = {
    "image_missing": "new tasks cannot pull their image (CannotPullContainerError)",
    "out_of_memory": "tasks killed for memory (OutOfMemoryError, exit code 137)",
    "targets_failing": "the health check gets HTTP 500 from every target",
    "security_group_blocked": "the tasks' security group does not let the ALB in on the container port",
}
CONTAINER_PORT = 8080
MISSING_TAG = "release-2026.12-rc1"


def stage(platform: Platform, trouble: str, at: datetime) -> None:
    if trouble not in TROUBLES:
        raise ValueError(f"unknown trouble {trouble!r}; known: {sorted(TROUBLES)}")
    {"image_missing": _image_missing, "out_of_memory": _out_of_memory, "targets_failing": _targets_failing,
     "security_group_blocked": _security_group_blocked}[trouble](platform, at)


def clear(platform: Platform) -> None:
    """Back to health: no staged target health, no stopped tasks, the service's own task definition."""
    moto_elbv2.HEALTH.clear()
    backend = _ecs(platform)
    cluster = platform.config.resources.ecs.cluster
    backend.tasks.get(cluster, {}).clear()
    service = platform._ecs_service(_service_name(platform))
    service.events = []


def _ecs(platform: Platform) -> Any:
    return get_backend("ecs")[DEFAULT_ACCOUNT_ID][platform.config.regions.primary]


def _service_name(platform: Platform) -> str:
    return platform.config.resources.ecs.services[0].name


def _stopped_task(platform: Platform, at: datetime, task_definition: str, reason: str, exit_code: int | None,
                  container_reason: str) -> str:
    """A task of the service that ECS stopped at `at`, as DescribeTasks reports it afterwards."""
    ecs = platform._client("ecs")
    cluster, service = platform.config.resources.ecs.cluster, _service_name(platform)
    arn = ecs.run_task(cluster=cluster, taskDefinition=task_definition, launchType="FARGATE",
                       group=f"service:{service}", startedBy="ecs-svc/1234567890")["tasks"][0]["taskArn"]
    task = next(t for t in _ecs(platform).tasks[cluster].values() if t.task_arn == arn)
    task.desired_status = "STOPPED"
    task.status = "STOPPED"
    task._sandbox_running_at = at - timedelta(minutes=2)
    task._sandbox_pull_error = None
    task.created_at, task.stopping_at, task.stopped_at = at - timedelta(minutes=3), at, at
    task.stopped_reason = reason
    container = task.containers[0]
    container.last_status, container.exitCode, container.reason = "STOPPED", exit_code, container_reason
    return arn


def _event(platform: Platform, at: datetime, message: str) -> None:
    service = platform._ecs_service(_service_name(platform))
    service.events = [{"id": f"sandbox-{at.timestamp():.0f}", "createdAt": at,
                       "message": f"(service {_service_name(platform)}) {message}"}, *service.events]


def _image_missing(platform: Platform, at: datetime) -> None:
    repository = platform.config.disaster_recovery.ecr_repository
    image = image_uri(platform.config.regions.primary, repository, MISSING_TAG)
    definition = platform._client("ecs").register_task_definition(family="solemate-backend", containerDefinitions=[
        {"name": "backend", "image": image, "memory": 1024, "cpu": 512}])["taskDefinition"]["taskDefinitionArn"]
    reason = (f"CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref "
              f"{image}: not found")
    for minutes in (0, 4):
        _stopped_task(platform, at + timedelta(minutes=minutes), definition,
                      f"CannotPullContainerError: {image}: not found", None, reason)
    _event(platform, at, "was unable to place a task because the task failed to start: CannotPullContainerError.")


def _out_of_memory(platform: Platform, at: datetime) -> None:
    reason = "OutOfMemoryError: Container killed due to memory usage"
    definition = platform._ecs_service(_service_name(platform)).task_definition
    for minutes in (0, 3):
        _stopped_task(platform, at + timedelta(minutes=minutes), definition,
                      "Essential container in task exited", 137, reason)
    res = platform.config.resources.ecs
    platform._client("cloudwatch").put_metric_data(Namespace="AWS/ECS", MetricData=[{
        "MetricName": "MemoryUtilization", "Timestamp": at - timedelta(minutes=1), "Value": 99.2, "Unit": "Percent",
        "Dimensions": [{"Name": "ClusterName", "Value": res.cluster},
                       {"Name": "ServiceName", "Value": res.services[0].name}]}])


def _targets_failing(platform: Platform, at: datetime) -> None:
    for instance in platform.instances:
        moto_elbv2.HEALTH[instance] = ("unhealthy", "Target.ResponseCodeMismatch",
                                       "Health checks failed with these codes: [500]")


def _security_group_blocked(platform: Platform, at: datetime) -> None:
    ec2, elb = platform._client("ec2"), platform._client("elbv2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    alb_group = ec2.create_security_group(GroupName=f"alb-{at:%H%M}", Description="ALB", VpcId=vpc)["GroupId"]
    tasks_group = ec2.create_security_group(GroupName=f"tasks-{at:%H%M}", Description="tasks", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=alb_group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    # A rule for another port only: someone "tightened" the group and forgot the ALB.
    ec2.authorize_security_group_ingress(GroupId=tasks_group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 9090, "ToPort": 9090, "UserIdGroupPairs": [{"GroupId": alb_group}]}])
    elb.set_security_groups(LoadBalancerArn=platform.load_balancer_arn, SecurityGroups=[alb_group])
    group_arn = elb.describe_target_groups(LoadBalancerArn=platform.load_balancer_arn)["TargetGroups"][0][
        "TargetGroupArn"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s["VpcId"] == vpc][:2]
    service = platform._ecs_service(_service_name(platform))
    service.load_balancers = [{"targetGroupArn": group_arn, "containerName": "backend",
                               "containerPort": CONTAINER_PORT}]
    service.network_configuration = {"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [tasks_group]}}
    for instance in platform.instances:
        moto_elbv2.HEALTH[instance] = ("unhealthy", "Target.Timeout", "Request timed out")
