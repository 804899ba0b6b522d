"""The drill's application component: what the DR region needs to run the service (cluster, service,
task definition, production's image in its ECR), and one task started there until RUNNING (its RTO)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk.timezone import utcnow

from solemate_maintenance import restore
from solemate_maintenance.findings import Finding, Measurement, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.operators.dr.drill import TAG_TOKEN, _DrCheck, _DrClients, _minutes, _utc, drill_token
from solemate_maintenance.operators.dr.drill_scorecard import _num
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.run_facts import format_instant as _stamp


# -- application -------------------------------------------------------------------------------------------
class DrApplicationReadinessOperator(_DrCheck):
    """Can the DR region run the service? Cluster, service and task definition there, and the image.

    The image must be in the DR region's ECR with the digest production runs. RPO: how far the DR
    image lags behind production's (0 when the same digest is there, the replication delay aside).
    """

    component = "application"
    template_fields = (*MaintenanceCheckOperator.template_fields, "dr_cluster")

    def __init__(self, *, cluster: str, services: list[str], dr_cluster: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster
        self.services = services
        self.dr_cluster = dr_cluster

    def measure(self, context: Any) -> Iterable[Finding]:
        ecs_dr = self.client("ecs")
        clusters = ecs_dr.describe_clusters(clusters=[self.dr_cluster]).get("clusters", [])
        resource = f"{self.dr_cluster} ({self.region_name})"
        if not clusters or clusters[0].get("status") != "ACTIVE":
            self.push_component(context, "application", can_fail_over=False)
            yield Finding(check="dr.application.cluster", resource=resource, status=Status.CRITICAL,
                          severity=Severity.P1, summary=f"the application cannot fail over: no active ECS cluster "
                                                        f"{self.dr_cluster} in {self.region_name}")
            return
        yield Finding(check="dr.application.cluster", resource=resource, status=Status.OK, summary="cluster active")
        worst_rpo, blocked = 0.0, False
        for service in self.services:
            findings, rpo, can = self._service(service)
            yield from findings
            blocked |= not can
            worst_rpo = max(worst_rpo, rpo if rpo is not None else 0.0)
        self.push_component(context, "application", rpo_minutes=round(worst_rpo, 2), can_fail_over=not blocked)
        if not blocked:
            yield self.rpo_finding("dr.application.rpo", resource, round(worst_rpo, 2),
                                   "DR image behind production's")

    def _service(self, service: str) -> tuple[list[Finding], float | None, bool]:
        resource = f"{self.dr_cluster}/{service} ({self.region_name})"
        production = self._production_images(service)
        ecs_dr = self.client("ecs")
        found = ecs_dr.describe_services(cluster=self.dr_cluster, services=[service]).get("services", [])
        if not found or found[0].get("status") != "ACTIVE":
            return [Finding(check="dr.application.service", resource=resource, status=Status.CRITICAL,
                            severity=Severity.P1, summary=f"service {service} is not defined in the DR cluster")], \
                None, False
        definition = ecs_dr.describe_task_definition(taskDefinition=found[0]["taskDefinition"])["taskDefinition"]
        findings = [Finding(check="dr.application.task_definition", resource=resource, status=Status.OK,
                            summary=f"task definition {definition['family']}:{definition['revision']} registered")]
        worst, can = 0.0, True
        for container in definition.get("containerDefinitions", []):
            finding, rpo = self._container(resource, container["name"], container["image"],
                                           production.get(container["name"]))
            findings.append(finding)
            can &= finding.severity is not Severity.P1
            worst = max(worst, rpo or 0.0)
        return findings, worst, can

    def _container(self, resource: str, name: str, image: str, production: dict[str, Any] | None
                   ) -> tuple[Finding, float | None]:
        """One container of the DR task definition against the same-named container of production."""
        parsed = parse_ecr_image(image)
        check = "dr.application.image"
        if parsed is None:  # pulled from outside ECR (a public sidecar): not ours to replicate
            return Finding(check=check, resource=f"{resource}/{name}", status=Status.OK,
                           summary=f"{image} is not an ECR image: not compared"), None
        region = parsed[0]
        if region != self.region_name:
            return Finding(check=check, resource=f"{resource}/{name}", status=Status.CRITICAL, severity=Severity.P1,
                           summary=f"the DR task definition pulls {image} from {region}'s ECR: it cannot start "
                                   f"while {region} is down; point it at {self.region_name}'s repository"), None
        dr_image = self._ecr_image(image, self.region_name)
        if dr_image is None:
            newest = self._newest_in_repository(image)
            gap = (_minutes((production["pushed"] - newest["imagePushedAt"]).total_seconds())
                   if production and newest else None)
            return Finding(
                check=check, resource=f"{resource}/{name}", status=Status.CRITICAL, severity=Severity.P1,
                summary=f"the application cannot fail over: image {image} is not in {self.region_name}'s ECR"
                        + (f"; the newest image there is {gap / 60:.1f} h older than production's" if gap else "")
                        + " (check ECR replication)",
                details={"image": image, "production_digest": (production or {}).get("digest")}), gap
        if production is None:
            return Finding(check=check, resource=f"{resource}/{name}", status=Status.WARNING, severity=Severity.P3,
                           summary=f"image {image} present ({dr_image['imageDigest'][:19]}), but production's "
                                   "image could not be read: not compared"), None
        if production["digest"] != dr_image["imageDigest"]:
            gap = _minutes((production["pushed"] - dr_image["imagePushedAt"]).total_seconds())
            return Finding(
                check=check, resource=f"{resource}/{name}", status=Status.CRITICAL, severity=Severity.P2,
                summary=f"DR image {image} is {dr_image['imageDigest'][:19]}, production runs "
                        f"{production['digest'][:19]}: a failover would run older code ({gap:.0f} min behind)",
                details={"dr_digest": dr_image["imageDigest"], "production_digest": production["digest"]}), gap
        lag = max(0.0, _minutes((dr_image["imagePushedAt"] - production["pushed"]).total_seconds()))
        return Finding(check=check, resource=f"{resource}/{name}", status=Status.OK,
                       summary=f"image {image} present with production's digest {dr_image['imageDigest'][:19]} "
                               f"(replicated {lag:.0f} min after the push)"), lag

    def _production_images(self, service: str) -> dict[str, dict[str, Any]]:
        """Per container name: digest and push time of the image production runs (its running task's
        digest when there is one, else its task definition's image)."""
        ecs = self.client("ecs", self.primary_region)
        services = ecs.describe_services(cluster=self.cluster, services=[service]).get("services", [])
        if not services:
            return {}
        definition = ecs.describe_task_definition(taskDefinition=services[0]["taskDefinition"])["taskDefinition"]
        running = ecs.list_tasks(cluster=self.cluster, serviceName=service, desiredStatus="RUNNING").get("taskArns", [])
        digests: dict[str, str] = {}
        for task in ecs.describe_tasks(cluster=self.cluster, tasks=running[:1]).get("tasks", []) if running else []:
            digests = {c["name"]: c["imageDigest"] for c in task.get("containers", []) if c.get("imageDigest")}
        images = {}
        for container in definition.get("containerDefinitions", []):
            parsed = parse_ecr_image(container["image"])
            if parsed is None:
                continue
            details = self._ecr_image(container["image"], parsed[0], digests.get(container["name"]))
            if details is not None:
                images[container["name"]] = {"image": container["image"], "digest": details["imageDigest"],
                                             "pushed": _utc(details["imagePushedAt"])}
        return images

    def _ecr_image(self, image: str, region: str | None, digest: str | None = None) -> dict[str, Any] | None:
        parsed = parse_ecr_image(image)
        if parsed is None:
            return None
        _, repository, image_id = parsed
        ecr = self.client("ecr", region)
        try:
            details = ecr.describe_images(repositoryName=repository,
                                          imageIds=[{"imageDigest": digest} if digest else image_id])["imageDetails"]
        except (ecr.exceptions.ImageNotFoundException, ecr.exceptions.RepositoryNotFoundException):
            return None
        if not details:
            return None
        found = dict(details[0])
        found["imagePushedAt"] = _utc(found["imagePushedAt"])
        return found

    def _newest_in_repository(self, image: str) -> dict[str, Any] | None:
        parsed = parse_ecr_image(image)
        if parsed is None:
            return None
        ecr = self.client("ecr")
        try:
            details = [d for page in ecr.get_paginator("describe_images").paginate(repositoryName=parsed[1])
                       for d in page["imageDetails"]]
        except ecr.exceptions.RepositoryNotFoundException:
            return None
        if not details:
            return None
        newest = max(details, key=lambda d: d["imagePushedAt"])
        return {**newest, "imagePushedAt": _utc(newest["imagePushedAt"])}


def parse_ecr_image(image: str) -> tuple[str, str, dict[str, str]] | None:
    """(region, repository, image id) of an ECR image URI; None for an image outside ECR.

    ``123456789012.dkr.ecr.us-west-2.amazonaws.com/team/app:1.4`` -> tag ``1.4``;
    ``…/team/app@sha256:…`` and ``…/team/app:1.4@sha256:…`` -> the digest (it wins over a tag).
    """
    host, _, reference = image.partition("/")
    labels = host.split(".")
    if len(labels) < 6 or labels[1:3] != ["dkr", "ecr"] or not reference:
        return None
    region = labels[3]
    if "@" in reference:
        named, digest = reference.split("@", 1)
        return region, named.split(":", 1)[0], {"imageDigest": digest}
    repository, _, tag = reference.rpartition(":") if ":" in reference else (reference, "", "latest")
    return region, repository, {"imageTag": tag or "latest"}


class _DrTaskWork(_DrCheck):
    component = "application"
    template_fields = (*MaintenanceCheckOperator.template_fields, "dr_cluster")

    def __init__(self, *, dr_cluster: str, service: str, token_prefix: str, timeout_minutes: float,
                 poll_seconds: int, subnets: list[str] | None = None, security_groups: list[str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dr_cluster = dr_cluster
        self.service = service
        self.token_prefix = token_prefix
        self.timeout_minutes = timeout_minutes
        self.poll_seconds = poll_seconds
        self.subnets = subnets or []
        self.security_groups = security_groups or []

    @property
    def resource(self) -> str:
        return f"{self.dr_cluster}/{self.service} ({self.region_name})"

    def started_tasks(self, context: Any, *, running_only: bool = False) -> list[str]:
        """Tasks this run started (its drill token as ``startedBy``), running ones first."""
        ecs = self.client("ecs")
        token = drill_token(self.token_prefix, context)
        statuses = ("RUNNING",) if running_only else ("RUNNING", "STOPPED")
        return [arn for status in statuses for arn in ecs.list_tasks(
            cluster=self.dr_cluster, startedBy=token, desiredStatus=status).get("taskArns", [])]


class DrApplicationTaskStartOperator(_DrTaskWork):
    """Start one task of the service in the DR cluster (the setup of the application's RTO test).

    The task's ``startedBy`` is the run's drill token, so a retry finds it instead of starting another.
    """

    def measure(self, context: Any) -> Iterable[Finding]:
        ecs = self.client("ecs")
        # Only a running task is reused: one this drill already measured and stopped (ECS lists stopped
        # tasks for about an hour) means the drill is being run again, so it starts a new one.
        existing = self.started_tasks(context, running_only=True)
        if existing:
            yield Finding(check="dr.application.task_start", resource=self.resource, status=Status.OK,
                          summary=f"reusing the task an earlier attempt started ({existing[0].rsplit('/', 1)[-1]})")
            return
        services = []
        try:
            services = ecs.describe_services(cluster=self.dr_cluster, services=[self.service]).get("services", [])
        except ecs.exceptions.ClusterNotFoundException:
            pass
        if not services or services[0].get("status") != "ACTIVE":
            yield Finding(check="dr.application.task_start", resource=self.resource, status=Status.SKIPPED,
                          summary="no service definition in the DR cluster to start a task from "
                                  "(see dr_application_readiness)")
            return
        token = drill_token(self.token_prefix, context)
        request: dict[str, Any] = {
            "cluster": self.dr_cluster, "taskDefinition": services[0]["taskDefinition"], "count": 1,
            "launchType": "FARGATE", "startedBy": token,
            "tags": [{"key": restore.TAG_PURPOSE, "value": "dr-drill"}, {"key": restore.TAG_EPHEMERAL, "value": "true"},
                     {"key": restore.TAG_RUN, "value": restore.tag_value(context["ti"].run_id)},
                     {"key": TAG_TOKEN, "value": token}]}
        if self.subnets:
            request["networkConfiguration"] = {"awsvpcConfiguration": {
                "subnets": self.subnets, "securityGroups": self.security_groups, "assignPublicIp": "DISABLED"}}
        elif services[0].get("networkConfiguration"):  # Fargate needs one: the service's own
            request["networkConfiguration"] = services[0]["networkConfiguration"]
        started = ecs.run_task(**request)
        if not started.get("tasks"):
            failures = "; ".join(f"{f.get('arn', '')} {f.get('reason', '')}" for f in started.get("failures", []))
            self.push_component(context, "application", can_fail_over=False)
            yield Finding(check="dr.application.task_start", resource=self.resource, status=Status.CRITICAL,
                          severity=Severity.P1,
                          summary=f"ECS refused to start a task in the DR cluster: {trim(scrub(failures), 200)}")
            return
        yield Finding(check="dr.application.task_start", resource=self.resource, status=Status.OK,
                      summary=f"test task started ({started['tasks'][0]['taskArn'].rsplit('/', 1)[-1]})")


class DrApplicationTaskOperator(_DrTaskWork):
    """Measure the application's RTO: wait (deferred) until the started task runs, then stop it.

    RTO runs from the task's creation to RUNNING as observed; the deadline counts from the creation
    too, so a retry never extends it. A task that stops instead (an image that cannot be pulled) is P1.
    """

    def measure(self, context: Any) -> Iterable[Finding]:
        tasks = self.started_tasks(context)
        if not tasks:
            yield Finding(check="dr.application.rto", resource=self.resource, status=Status.SKIPPED,
                          summary="no test task was started (see dr_application_start)")
            return
        task = self._describe(tasks[0])
        if task.get("lastStatus") == "STOPPED" and task.get("stoppedReason", "").startswith("DR drill"):
            yield Finding(check="dr.application.rto", resource=self.resource, status=Status.SKIPPED,
                          summary="the test task was already measured and stopped by an earlier attempt; clear "
                                  "dr_application_start too to measure again")
            return
        if task.get("lastStatus") in ("RUNNING", "STOPPED"):
            yield from self._judge(context, task, None)
            return
        from solemate_maintenance.triggers.waiters import EcsTaskRunningTrigger

        created = _utc(task["createdAt"]) if task.get("createdAt") else utcnow()
        remaining = self.timeout_minutes * 60 - (utcnow() - created).total_seconds()
        self.defer(trigger=EcsTaskRunningTrigger(
            cluster=self.dr_cluster, task_arn=tasks[0], waiter_delay=self.poll_seconds,
            waiter_max_attempts=max(1, math.ceil(remaining / self.poll_seconds)),
            aws_conn_id=self.aws_conn_id, region_name=self.region_name), method_name="resume_when_running")

    def _describe(self, task_arn: str) -> dict[str, Any]:
        return (self.client("ecs").describe_tasks(cluster=self.dr_cluster, tasks=[task_arn]).get("tasks") or [{}])[0]

    def resume_when_running(self, context: Any, event: dict[str, Any] | None = None) -> dict:
        # The task is found again by its startedBy, not carried in the deferral's kwargs: `dag.test`
        # replaces those with the event, and AWS is the record of what this run started anyway.
        tasks = self.started_tasks(context)
        task = self._describe(tasks[0]) if tasks else {}
        return self.record_findings(context, self._judge(context, task, event))

    def _when_it_ended(self, task: dict[str, Any], created: datetime | None) -> str:
        """How long the task lived, as ECS recorded it; the timeout only for a task that never stopped."""
        stopped = task.get("stoppedAt") or task.get("stoppingAt")
        if task.get("lastStatus") == "STOPPED" and stopped and created:
            seconds = max(0.0, (_utc(stopped) - created).total_seconds())
            return f"{seconds:.0f} s after it was created" if seconds < 120 else f"{seconds / 60:.1f} min after it " \
                                                                                 "was created"
        return f"after waiting {self.timeout_minutes:g} min for it to run"

    def _judge(self, context: Any, task: dict[str, Any], event: dict[str, Any] | None) -> Iterable[Finding]:
        task_arn = task.get("taskArn", "")
        created = _utc(task["createdAt"]) if task.get("createdAt") else None
        if task.get("lastStatus") != "RUNNING":
            reason = task.get("stoppedReason") or (event or {}).get("message") or "unknown"
            self.push_component(context, "application", can_fail_over=False)
            yield Finding(check="dr.application.rto", resource=self.resource, status=Status.CRITICAL,
                          severity=Severity.P1,
                          summary=f"the service cannot start in the DR region: the test task is "
                                  f"{task.get('lastStatus', 'gone')} {self._when_it_ended(task, created)} "
                                  f"({trim(scrub(str(reason)), 200)})", details={"task": task_arn})
            return
        # From creation to started as ECS records it (a retry or a slow poll must not inflate it).
        started = _utc(task["startedAt"]) if task.get("startedAt") else utcnow()
        rto = _minutes((started - created).total_seconds()) if created else None
        self.client("ecs").stop_task(cluster=self.dr_cluster, task=task_arn, reason="DR drill: RTO measured")
        self.push_component(context, "application", rto_minutes=rto, can_fail_over=True)
        limit = self.target.rto_minutes
        metrics = {"rto_minutes": Measurement(value=rto, unit="min", critical=limit, bad_when="above")}
        if rto is None or rto > limit:
            yield Finding(check="dr.application.rto", resource=self.resource, status=Status.CRITICAL,
                          severity=Severity.P2, summary=f"RTO {_num(rto)} min from request to a running task, "
                                                        f"target {limit} min", metrics=metrics)
        else:
            yield Finding(check="dr.application.rto", resource=self.resource, status=Status.OK,
                          summary=f"RTO {rto:.1f} min from request to a running task (target {limit} min); "
                                  "task stopped", metrics=metrics)


class DrApplicationTaskCleanupOperator(_DrClients, MaintenanceCheckOperator):
    """Stop every task this drill run started in the DR cluster (the teardown), then wait (deferred).

    Only tasks whose ``startedBy`` is this run's drill token are touched.
    """

    template_fields = (*MaintenanceCheckOperator.template_fields, "dr_cluster")

    def __init__(self, *, dr_cluster: str, token_prefix: str, timeout_minutes: float, poll_seconds: int,
                 expiry_hours: float = 6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dr_cluster = dr_cluster
        self.token_prefix = token_prefix
        self.timeout_minutes = timeout_minutes
        self.poll_seconds = poll_seconds
        self.expiry_hours = expiry_hours

    def _stop_leaked(self, context: Any) -> list[Finding]:
        """Stop test tasks that earlier drills left running past their expiry (a killed run)."""
        ecs = self.client("ecs")
        own = drill_token(self.token_prefix, context)
        try:
            running = [arn for page in ecs.get_paginator("list_tasks").paginate(
                cluster=self.dr_cluster, desiredStatus="RUNNING") for arn in page["taskArns"]]
        except ecs.exceptions.ClusterNotFoundException:
            return []
        oldest = utcnow() - timedelta(hours=self.expiry_hours)
        findings = []
        for batch in range(0, len(running), 100):
            for task in ecs.describe_tasks(cluster=self.dr_cluster, tasks=running[batch:batch + 100])["tasks"]:
                started_by = task.get("startedBy", "")
                if not started_by.startswith(self.token_prefix + "-") or started_by == own:
                    continue
                if task.get("createdAt") and _utc(task["createdAt"]) > oldest:
                    continue  # another drill's, still within its time
                ecs.stop_task(cluster=self.dr_cluster, task=task["taskArn"], reason="DR drill janitor: expired")
                findings.append(Finding(check="dr.application.janitor", resource=task["taskArn"],
                                        status=Status.WARNING, severity=Severity.P3,
                                        summary=f"stopped a drill task left running by {started_by} "
                                                f"(created {_stamp(task.get('createdAt'))})"))
        return findings

    def _started(self, context: Any) -> tuple[list[str], list[str]]:
        """(every task this run started, those still running)."""
        ecs = self.client("ecs")
        token = drill_token(self.token_prefix, context)
        try:
            running = ecs.list_tasks(cluster=self.dr_cluster, startedBy=token, desiredStatus="RUNNING")["taskArns"]
            stopped = ecs.list_tasks(cluster=self.dr_cluster, startedBy=token, desiredStatus="STOPPED")["taskArns"]
        except ecs.exceptions.ClusterNotFoundException:
            return [], []
        return sorted({*running, *stopped}), running

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        yield from self._stop_leaked(context)  # kept across the deferral below by the base class
        started, running = self._started(context)
        ecs = self.client("ecs")
        for task_arn in running:
            ecs.stop_task(cluster=self.dr_cluster, task=task_arn, reason="DR drill teardown")
        if started:
            from solemate_maintenance.triggers.waiters import EcsTaskStoppedTrigger

            self.defer(trigger=EcsTaskStoppedTrigger(
                cluster=self.dr_cluster, task_arns=started, waiter_delay=self.poll_seconds,
                waiter_max_attempts=max(1, math.ceil(self.timeout_minutes * 60 / self.poll_seconds)),
                aws_conn_id=self.aws_conn_id, region_name=self.region_name), method_name="resume_when_stopped")
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={"created": [], "deleted": []})
        yield Finding(check="dr.application.cleanup", resource=self.dr_cluster, status=Status.OK,
                      summary="nothing to stop: this drill started no task")

    def resume_when_stopped(self, context: Any, event: dict[str, Any] | None = None) -> dict:
        return self.record_findings(context, self._after_stop(context))

    def _after_stop(self, context: Any) -> Iterable[Finding]:
        started, running = self._started(context)
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "created": started, "deleted": [t for t in started if t not in running]})
        if running:
            yield Finding(check="dr.application.cleanup", resource=self.dr_cluster, status=Status.CRITICAL,
                          severity=Severity.P2, summary=f"{len(running)} drill task(s) still running after the stop "
                                                        f"request: stop them in the ECS console ({', '.join(running)})")
            return
        yield Finding(check="dr.application.cleanup", resource=self.dr_cluster, status=Status.OK,
                      summary=f"stopped the {len(started)} task(s) this drill started")
