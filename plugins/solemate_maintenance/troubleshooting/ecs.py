"""ECS tasks failing to start or a service short of tasks (the guide's "ECS tasks failing to start").

Four calls at most: the service (its latest events and task definition), its stopped tasks (ECS keeps
them about an hour) with each container's exit code and reason, and the task definition's CPU and
memory; plus the tasks' peak memory in the window when a container was killed for memory.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from solemate_maintenance.troubleshooting import Notes, Session

STOPPED_TASKS = 5
EVENTS = 3

# The guide's solutions, by what ECS said. First match wins; checked against the stopped reason and
# every container's reason.
SOLUTIONS: list[tuple[tuple[str, ...], str]] = [
    # Before memory: a task that fails its ELB health check is killed too (exit 137, no OutOfMemory).
    (("ELB health checks", "failed container health checks", "Task failed ELB"),
     "Tasks start but fail the health check: check the health-check path and port against the container, and "
     "the security group rules between the ALB and the tasks."),
    (("CannotPullContainerError", "pull image", "manifest unknown", "not found: manifest"),
     "The image cannot be pulled: check that `{image}` exists in ECR (push it, or roll the service back to the "
     "last task definition whose image exists), that the task execution role may pull from ECR, and that the "
     "subnets reach ECR (NAT gateway or VPC endpoints)."),
    (("OutOfMemoryError", "OutOfMemory", "killed due to memory"),
     "Containers are killed for memory: raise the task definition's memory (now {memory}) or the container's "
     "limit, or find the leak (memory rises until the kill); roll back if a release started it."),
    (("ResourceInitializationError", "secrets", "ssm", "secretsmanager", "unable to retrieve"),
     "The task cannot fetch its secrets or environment: check that the secret or parameter exists and the task "
     "execution role may read it (secretsmanager:GetSecretValue, ssm:GetParameters, kms:Decrypt)."),
    (("unable to place", "insufficient", "no container instance", "capacity"),
     "ECS cannot place the tasks: check the subnets' free IP addresses and the Fargate capacity in the region; "
     "reduce the CPU/memory per task if it exceeds what the capacity provider offers."),
    (("Essential container in task exited",),
     "The application exits at start: read the container's log for the exit code {exit_code} (configuration, "
     "environment variables, database reachability from the task's security group)."),
]


MEMORY_WORDS = ("OutOfMemoryError", "OutOfMemory", "killed due to memory")


def _resource_parts(session: Session, resource: str) -> tuple[str, str]:
    cluster, _, service = resource.partition("/")
    return (cluster or session.config.resources.ecs.cluster), service


def _stamp(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%H:%M UTC")
    return "unknown time"


def service_tasks(session: Session, check: str, resource: str, notes: Notes) -> None:
    cluster, name = _resource_parts(session, resource)
    facts: dict[str, Any] = {}

    def service() -> None:
        described = session.call("ecs", "describe_services", cluster=cluster, services=[name])["services"]
        if not described:
            notes.add(f"service {name} not found in cluster {cluster}")
            return
        svc = described[0]
        facts["task_definition"] = svc.get("taskDefinition")
        notes.add(f"service {name}: {svc.get('runningCount', '?')} running, {svc.get('pendingCount', '?')} pending, "
                  f"{svc.get('desiredCount', '?')} desired")
        for event in svc.get("events", [])[:EVENTS]:
            notes.add(f"service event {_stamp(event.get('createdAt'))}: {event.get('message', '')}")
            facts.setdefault("texts", []).append(event.get("message", ""))

    def stopped() -> None:
        arns = session.call("ecs", "list_tasks", cluster=cluster, serviceName=name, desiredStatus="STOPPED",
                            maxResults=STOPPED_TASKS)["taskArns"]
        if not arns:
            notes.add("no stopped task to read (ECS keeps stopped tasks for about an hour)")
            return
        tasks = session.call("ecs", "describe_tasks", cluster=cluster, tasks=arns[:STOPPED_TASKS])["tasks"]
        tasks.sort(key=lambda t: t.get("stoppedAt") or t.get("createdAt") or datetime.min.replace(tzinfo=UTC),
                   reverse=True)
        for task in tasks[:3]:
            task_id = task["taskArn"].rsplit("/", 1)[-1][:8]
            reason = task.get("stoppedReason") or "no stopped reason"
            containers = []
            for container in task.get("containers", []):
                exit_code, why = container.get("exitCode"), container.get("reason") or ""
                text = container.get("name", "?") + (f" exit {exit_code}" if exit_code is not None else "")
                if why and why.split(":", 1)[0] != reason.split(":", 1)[0]:  # not the stopped reason again
                    text += f" ({why[:160]})"
                containers.append(text)
                facts.setdefault("texts", []).append(container.get("reason") or "")
                facts.setdefault("images", []).append(container.get("image") or "")
                if exit_code not in (None, 0):
                    facts.setdefault("exit_code", exit_code)
            facts.setdefault("texts", []).append(reason)
            # The stopped tasks' definition is the one being deployed (it may be newer than the service's).
            facts.setdefault("stopped_definition", task.get("taskDefinitionArn"))
            notes.add(f"task {task_id} stopped {_stamp(task.get('stoppedAt'))}: {reason}"
                      + (f"; {', '.join(containers)}" if containers else ""))

    def definition() -> None:
        arn = facts.get("stopped_definition") or facts.get("task_definition")
        if not arn:
            return
        td = session.call("ecs", "describe_task_definition", taskDefinition=arn)["taskDefinition"]
        containers = td.get("containerDefinitions", [])
        limits = [int(c["memory"]) for c in containers if c.get("memory")]
        facts["memory"] = (f"{td['memory']} MiB" if td.get("memory") else
                           f"{sum(limits)} MiB in container limits" if limits else "not set")
        images = [container.get("image", "") for container in containers]
        facts.setdefault("images", [])[:0] = images
        cpu = f"CPU {td['cpu']} units" if td.get("cpu") else "task CPU not set"
        notes.add(f"task definition {td.get('family')}:{td.get('revision')}: {cpu}, "
                  f"memory {facts['memory']}; image {', '.join(i for i in images if i) or 'unknown'}")

    notes.step("the service and its events (ecs:DescribeServices)", service)
    notes.step("the stopped tasks (ecs:ListTasks, ecs:DescribeTasks)", stopped)
    notes.step("the task definition (ecs:DescribeTaskDefinition)", definition)
    texts = " ".join(facts.get("texts", []))
    if any(word.lower() in texts.lower() for word in MEMORY_WORDS):
        notes.step("the tasks' memory in the window (cloudwatch:GetMetricData)",
                   lambda: _memory_used(session, cluster, name, notes))
    image = next((i for i in facts.get("images", []) if i), "the image")
    for words, solution in SOLUTIONS:
        if any(word.lower() in texts.lower() for word in words):
            notes.advise(solution.format(image=image, memory=facts.get("memory", "unknown"),
                                         exit_code=facts.get("exit_code", "?")))
            break


def _memory_used(session: Session, cluster: str, service: str, notes: Notes) -> None:
    window = session.window
    answer = session.call("cloudwatch", "get_metric_data", StartTime=max(window.start, window.end - timedelta(hours=3)),
                          EndTime=window.end, MetricDataQueries=[{"Id": "memory", "MetricStat": {
                              "Metric": {"Namespace": "AWS/ECS", "MetricName": "MemoryUtilization",
                                         "Dimensions": [{"Name": "ClusterName", "Value": cluster},
                                                        {"Name": "ServiceName", "Value": service}]},
                              "Period": 300, "Stat": "Maximum"}}])
    points = [(t, v) for r in answer.get("MetricDataResults", []) for t, v in zip(r.get("Timestamps", []),
                                                                                   r.get("Values", []), strict=False)]
    if points:
        peak_at, peak = max(points, key=lambda p: p[1])
        notes.add(f"memory used: peak {peak:.0f} % of the task's memory at {_stamp(peak_at)}")
    else:
        notes.add("memory used: no MemoryUtilization datapoints in the window")
