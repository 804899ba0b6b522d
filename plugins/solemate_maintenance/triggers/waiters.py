"""Deferrable waits the Amazon provider has no trigger for, built on its ``AwsBaseWaiterTrigger``.

Each waits on a boto waiter in the triggerer (no worker slot held) and ends with an event
``{"status": "success"}`` or, when the waiter reaches a failure state or runs out of attempts,
``{"status": "failure"/"error", "message": ...}`` for the operator to judge.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.cloud_formation import CloudFormationHook
from airflow.providers.amazon.aws.hooks.ecs import EcsHook
from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger

from solemate_maintenance.hooks.cloudformation import StackDriftHook


class EcsTaskRunningTrigger(AwsBaseWaiterTrigger):
    """Until the ECS task is RUNNING (fails at once if it stops: an image that cannot be pulled, say)."""

    aws_hook_class = EcsHook

    def __init__(self, *, cluster: str, task_arn: str, waiter_delay: int, waiter_max_attempts: int,
                 aws_conn_id: str | None, region_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(serialized_fields={"cluster": cluster, "task_arn": task_arn}, waiter_name="tasks_running",
                         waiter_args={"cluster": cluster, "tasks": [task_arn]},
                         failure_message="ECS task did not reach RUNNING", status_message="ECS task not running yet",
                         status_queries=["tasks[].lastStatus", "tasks[].stoppedReason"], return_key="task_arn",
                         return_value=task_arn, waiter_delay=waiter_delay, waiter_max_attempts=waiter_max_attempts,
                         aws_conn_id=aws_conn_id, region_name=region_name, **kwargs)


class EcsTaskStoppedTrigger(AwsBaseWaiterTrigger):
    """Until the ECS task is STOPPED."""

    aws_hook_class = EcsHook

    def __init__(self, *, cluster: str, task_arns: list[str], waiter_delay: int, waiter_max_attempts: int,
                 aws_conn_id: str | None, region_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(serialized_fields={"cluster": cluster, "task_arns": task_arns}, waiter_name="tasks_stopped",
                         waiter_args={"cluster": cluster, "tasks": task_arns},
                         failure_message="ECS tasks did not stop", status_message="ECS tasks still stopping",
                         status_queries=["tasks[].lastStatus"], return_key="task_arns", return_value=task_arns,
                         waiter_delay=waiter_delay, waiter_max_attempts=waiter_max_attempts,
                         aws_conn_id=aws_conn_id, region_name=region_name, **kwargs)


class EcsServiceStableTrigger(AwsBaseWaiterTrigger):
    """Until the ECS service's deployment is steady (running count = desired, one deployment)."""

    aws_hook_class = EcsHook

    def __init__(self, *, cluster: str, service: str, waiter_delay: int, waiter_max_attempts: int,
                 aws_conn_id: str | None, region_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(serialized_fields={"cluster": cluster, "service": service}, waiter_name="services_stable",
                         waiter_args={"cluster": cluster, "services": [service]},
                         failure_message="ECS service did not become stable", status_message="ECS service deploying",
                         status_queries=["services[].runningCount", "services[].desiredCount"], return_key="service",
                         return_value=service, waiter_delay=waiter_delay, waiter_max_attempts=waiter_max_attempts,
                         aws_conn_id=aws_conn_id, region_name=region_name, **kwargs)


class StackReadyTrigger(AwsBaseWaiterTrigger):
    """Until the CloudFormation stack is created or updated (``waiter_name``: ``stack_create_complete``
    or ``stack_update_complete``); fails on a rollback."""

    aws_hook_class = CloudFormationHook

    def __init__(self, *, stack_name: str, waiter_name: str, waiter_delay: int, waiter_max_attempts: int,
                 aws_conn_id: str | None, region_name: str | None = None, **kwargs: Any) -> None:
        if waiter_name not in ("stack_create_complete", "stack_update_complete"):
            raise ValueError(f"not a stack waiter: {waiter_name}")
        super().__init__(serialized_fields={"stack_name": stack_name, "waiter_name": waiter_name},
                         waiter_name=waiter_name, waiter_args={"StackName": stack_name},
                         failure_message="stack did not reach a complete state",
                         status_message="stack being created or updated", status_queries=["Stacks[].StackStatus"],
                         return_key="stack_name", return_value=stack_name, waiter_delay=waiter_delay,
                         waiter_max_attempts=waiter_max_attempts, aws_conn_id=aws_conn_id, region_name=region_name,
                         **kwargs)


class StackDriftDetectedTrigger(AwsBaseWaiterTrigger):
    """Until a stack drift detection has finished (complete or failed; the operator reads which)."""

    aws_hook_class = StackDriftHook

    def __init__(self, *, detection_id: str, waiter_delay: int, waiter_max_attempts: int,
                 aws_conn_id: str | None, region_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(serialized_fields={"detection_id": detection_id}, waiter_name="stack_drift_detection_complete",
                         waiter_args={"StackDriftDetectionId": detection_id},
                         failure_message="stack drift detection did not finish",
                         status_message="stack drift detection running", status_queries=["DetectionStatus"],
                         return_key="detection_id", return_value=detection_id, waiter_delay=waiter_delay,
                         waiter_max_attempts=waiter_max_attempts, aws_conn_id=aws_conn_id, region_name=region_name,
                         **kwargs)
