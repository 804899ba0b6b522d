"""ECS tasks as AWS runs them, for the DR drill's application test.

moto 5.2.5 starts a Fargate task ``RUNNING`` at once and then moves it one state further on every
describe (RUNNING -> DEACTIVATING -> ... -> STOPPED), so a task that was never stopped stops by itself,
and it starts tasks whose image does not exist. The sandbox needs the real contract:

* a task carries its ``createdAt``, is ``PENDING`` for ``start_seconds``, then ``RUNNING`` (with its
  ``startedAt``) until it is stopped;
* a task whose image is an ECR image missing from that region's repository stops instead, with
  ``CannotPullContainerError`` as its stopped reason (what ECS reports when the pull fails);
* a service whose desired count changes reaches it ``start_seconds`` later (moto never runs the
  tasks of a service, so its ``services_stable`` waiter would wait forever);
* ``ListTasks(serviceName=…)`` lists that service's tasks only (moto ignores the filter): a service's
  tasks are those in the group ``service:<name>``, as ECS names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.backends import get_backend
from moto.ecs.models import EC2ContainerServiceBackend, Task

_ORIGINAL: dict[str, Any] = {}


@dataclass
class TaskBehaviour:
    start_seconds: float = 2.0

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


BEHAVIOUR = TaskBehaviour()


def _missing_image(backend: EC2ContainerServiceBackend, task: Task) -> str | None:
    """The first container image that is in ECR but not in this region's repository, if any."""
    registry = f"{backend.account_id}.dkr.ecr."
    definition = backend.describe_task_definition(task.task_definition_arn)
    for container in definition.container_definitions:
        image = container.get("image", "")
        if not image.startswith(registry):
            continue
        host, _, reference = image.partition("/")
        region = host.split(".")[3]
        repository, tag = (reference.split("@", 1) if "@" in reference else reference.rsplit(":", 1))
        ecr = get_backend("ecr")[backend.account_id][region]
        repo = ecr.repositories.get(repository)
        if repo is None or not any(tag in (i.image_tag, i.image_digest) or tag in getattr(i, "image_tags", [])
                                   for i in repo.images):
            return image
    return None


def run_task(self: EC2ContainerServiceBackend, *args: Any, **kwargs: Any) -> list[Task]:
    tasks = _ORIGINAL["run_task"](self, *args, **kwargs)
    for task in tasks:
        task.created_at = datetime.now(UTC)  # moto 5.2.5 reports no createdAt, which AWS always does
        task._sandbox_running_at = task.created_at + timedelta(seconds=BEHAVIOUR.start_seconds)
        task._sandbox_pull_error = _missing_image(self, task)
        task.status = "PENDING"
    return tasks


def update_service(self: EC2ContainerServiceBackend, service_properties: dict[str, Any]) -> Any:
    cluster = self._get_cluster(service_properties.get("cluster", "default"))
    existing = self.services.get(f"{cluster.name}:{service_properties.get('service', '').split('/')[-1]}")
    running = existing.running_count if existing is not None else 0
    service = _ORIGINAL["update_service"](self, service_properties)
    # moto jumps to the new count at once; ECS takes the time its tasks need to start.
    service.running_count, service.pending_count = running, max(0, service.desired_count - running)
    service._sandbox_steady_at = datetime.now(UTC) + timedelta(seconds=BEHAVIOUR.start_seconds)
    return service


def describe_services(self: EC2ContainerServiceBackend, *args: Any, **kwargs: Any) -> Any:
    services, failures = _ORIGINAL["describe_services"](self, *args, **kwargs)
    for service in services:
        steady_at = getattr(service, "_sandbox_steady_at", None)
        if steady_at is not None and datetime.now(UTC) >= steady_at:
            service.running_count, service.pending_count = service.desired_count, 0
            for deployment in service.deployments:
                deployment.update(runningCount=service.desired_count, pendingCount=0,
                                  desiredCount=service.desired_count, rolloutState="COMPLETED")
            service.deployments[1:] = []
    return services, failures


def list_tasks(self: EC2ContainerServiceBackend, *args: Any, **kwargs: Any) -> list[Task]:
    tasks = _ORIGINAL["list_tasks"](self, *args, **kwargs)
    service = kwargs.get("service_name") or (args[4] if len(args) > 4 else None)
    if service:
        tasks = [t for t in tasks if getattr(t, "group", None) == f"service:{service.split('/')[-1]}"]
    return tasks


def _last_status(self: Task) -> str:
    running_at = getattr(self, "_sandbox_running_at", None)
    if running_at is None:  # a task not started through run_task: moto's own behaviour
        return self.status  # type: ignore[return-value]
    if self.__dict__.get("desired_status") == "STOPPED" or self.status == "STOPPED":
        return "STOPPED"
    if datetime.now(UTC) < running_at:
        return "PENDING"
    if self._sandbox_pull_error:
        self.desired_status = "STOPPED"
        self.stopping_at = self.stopped_at = running_at
        self.stopped_reason = (f"CannotPullContainerError: pull image manifest has been retried 5 time(s): "
                               f"{self._sandbox_pull_error}: not found")
        return "STOPPED"
    self.started_at = running_at
    return "RUNNING"


def _set_last_status(self: Task, value: str) -> None:
    self.status = value


def apply() -> None:
    """Install the ECS patches (idempotent)."""
    if _ORIGINAL:
        return
    for name in ("run_task", "update_service", "describe_services", "list_tasks"):
        _ORIGINAL[name] = getattr(EC2ContainerServiceBackend, name)
    EC2ContainerServiceBackend.run_task = run_task  # type: ignore[method-assign]
    EC2ContainerServiceBackend.update_service = update_service  # type: ignore[method-assign]
    EC2ContainerServiceBackend.describe_services = describe_services  # type: ignore[method-assign]
    EC2ContainerServiceBackend.list_tasks = list_tasks  # type: ignore[method-assign]
    Task.last_status = property(_last_status, _set_last_status)  # type: ignore[assignment]
