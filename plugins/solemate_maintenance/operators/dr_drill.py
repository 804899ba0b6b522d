"""The DR drill: measure, component by component, how fast and with how much data loss the platform
could come back in the DR region, without touching production.

Everything the drill creates in the DR region (a restored database, one application task) is
named after the run (:func:`drill_token`), tagged, and removed by a teardown; the scorecard checks
that nothing is left. Each component task pushes a measurement ``{"component", "rto_minutes",
"rpo_minutes", "can_fail_over"}``; :class:`DrDrillScorecardOperator` turns them into the guide's
table. Components not selected in the run's ``components`` param are reported as skipped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.timezone import utcnow

from solemate_maintenance import dr, restore
from solemate_maintenance.config import DR_COMPONENTS, AssetReplication, DrTarget
from solemate_maintenance.findings import Finding, Measurement, RunRefused, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.operators.restore import (
    RestoreCleanupOperator,
    RestoreRequestOperator,
    RestoreValidationOperator,
)
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.run_facts import format_instant as _stamp
from solemate_maintenance.window import run_end

REPO_ROOT = Path(__file__).resolve().parents[3]
TAG_TOKEN = "solemate:drill"
# Objects listed per asset bucket to find the newest (a listing is by key; a million-object bucket
# would take longer than the drill).
SCAN_LIMIT = 10_000


def drill_token(prefix: str, context: Any) -> str:
    """The name of everything one drill run creates: the restored instance and the task's startedBy."""
    return restore.instance_id(prefix, context["ti"].dag_id, run_end(context))


class DrDrillGateOperator(BaseOperator):
    """Step 0 of a drill: refuse, before any AWS call, a run whose conf has a key the DAG does not know
    (a misspelt ``components`` would otherwise start a full drill with a real restore) or a blank
    reason. A setup with no teardown: when it fails nothing downstream starts, not even the report."""

    ui_color = "#fbe3e3"

    def __init__(self, **kwargs: Any) -> None:
        kwargs["retries"] = 0
        super().__init__(**kwargs)

    def execute(self, context: Any) -> dict[str, Any]:
        params = context.get("params") or {}
        refusal = dr.drill_refusal(conf=getattr(context.get("dag_run"), "conf", None), known=params.keys(),
                                   reason=params.get("reason"))
        if refusal:
            raise RunRefused(refusal)
        return {"components": selected_components(context), "reason": trim(scrub(str(params["reason"]).strip()), 500)}


def selected_components(context: Any) -> list[str]:
    chosen = (context.get("params") or {}).get("components")
    return list(DR_COMPONENTS) if chosen is None else [c for c in chosen if c in DR_COMPONENTS]


def _minutes(seconds: float) -> float:
    return round(seconds / 60, 2)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _error(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    code = (response.get("Error") or {}).get("Code") if isinstance(response, dict) else None
    return trim(scrub(f"{code or type(exc).__name__}: {exc}"), 300)


class _DrClients:
    """What the DR tasks share; their region (``client()``'s default) is the templated ``region_name``."""

    def push_component(self, context: Any, component: str, **measured: Any) -> None:
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={"component": component, **measured})

    def not_selected(self, context: Any, component: str) -> Finding | None:
        if component in selected_components(context):
            return None
        return Finding(check=f"dr.{component}", resource=component, status=Status.SKIPPED,
                       summary="not selected for this drill (param 'components')")


class _DrCheck(_DrClients, MaintenanceCheckOperator):
    """A drill check: its targets and the region it measures (templated: ``{{ params.region }}``)."""

    component: str

    def __init__(self, *, target: DrTarget, primary_region: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.primary_region = primary_region

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        skipped = self.not_selected(context, self.component)
        if skipped is not None:
            yield skipped
            return
        yield from self.measure(context)

    def measure(self, context: Any) -> Iterable[Finding]:
        raise NotImplementedError

    def rpo_finding(self, check: str, resource: str, rpo: float, what: str) -> Finding:
        return rpo_finding(self.target, check, resource, rpo, what)


def rpo_finding(target: DrTarget, check: str, resource: str, rpo: float, what: str) -> Finding:
    limit = target.rpo_minutes
    metrics = {"rpo_minutes": Measurement(value=rpo, unit="min", critical=limit, bad_when="above")}
    if rpo > limit:
        return Finding(check=check, resource=resource, status=Status.CRITICAL, severity=Severity.P2,
                       summary=f"RPO {rpo:.1f} min ({what}), target {limit} min: a failover now would lose "
                               f"{rpo:.0f} min of data", metrics=metrics)
    return Finding(check=check, resource=resource, status=Status.OK,
                   summary=f"RPO {rpo:.1f} min ({what}), target {limit} min", metrics=metrics)


# -- database ----------------------------------------------------------------------------------------------
def newest_dr_source(rds: Any, source: str, region: str | None) -> tuple[str, str, datetime] | None:
    """(kind, ARN or snapshot id, newest restorable point) of the best copy of `source` that the region
    of client `rds` holds: its replicated automated backups, else the newest snapshot copy."""
    # No DBInstanceIdentifier filter: AWS wants it to name an instance of this region, and in the DR
    # region only the replicated backups exist.
    backups = [b for page in rds.get_paginator("describe_db_instance_automated_backups").paginate()
               for b in page.get("DBInstanceAutomatedBackups", [])]
    replicated = [b for b in backups if b.get("DBInstanceIdentifier") == source and b.get("Region")
                  and b["Region"] != region and (b.get("RestoreWindow") or {}).get("LatestTime")]
    if replicated:
        newest = max(replicated, key=lambda b: b["RestoreWindow"]["LatestTime"])
        return ("replicated automated backup", newest["DBInstanceAutomatedBackupsArn"],
                _utc(newest["RestoreWindow"]["LatestTime"]))
    snapshots = [s for page in rds.get_paginator("describe_db_snapshots").paginate(DBInstanceIdentifier=source)
                 for s in page["DBSnapshots"] if s.get("Status") == "available" and s.get("SnapshotCreateTime")]
    if snapshots:
        newest = max(snapshots, key=lambda s: s["SnapshotCreateTime"])
        return "snapshot copy", newest["DBSnapshotIdentifier"], _utc(newest["SnapshotCreateTime"])
    return None


class DrDatabaseRestoreRequestOperator(_DrClients, RestoreRequestOperator):
    """Measure the database's RPO in the DR region and request the drill's restore there (the setup).

    The source is the newest thing the DR region holds: the replicated automated backups (point in
    time, to their latest restorable time), else the newest snapshot copy. RPO = now minus that point.
    Nothing in the DR region at all: P1, the database cannot fail over.
    """

    def __init__(self, *, target: DrTarget, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        skipped = self.not_selected(context, "database")
        if skipped is not None:
            yield skipped
            return
        source = self._dr_source()
        if source is None:
            self.push_component(context, "database", can_fail_over=False)
            yield Finding(check="dr.database.source", resource=f"{self.source_db_instance_identifier} "
                          f"({self.region_name})", status=Status.CRITICAL, severity=Severity.P1,
                          summary=f"the database cannot fail over: no replicated automated backup and no snapshot "
                                  f"copy in {self.region_name}")
            return
        kind, _, point = source
        rpo = _minutes((utcnow() - point).total_seconds())
        self.push_component(context, "database", rpo_minutes=rpo, can_fail_over=True, source=kind,
                            restorable_to=_stamp(point))
        # Judged by the validation task: a setup that fails skips its teardown, and this one has
        # created something by the time it ends.
        yield Finding(check="dr.database.source", resource=f"{self.source_db_instance_identifier} "
                      f"({self.region_name})", status=Status.OK,
                      summary=f"{kind} restorable to {_stamp(point)} ({rpo:.1f} min ago)")
        yield from super().collect_findings(context)

    def _dr_source(self) -> tuple[str, str, datetime] | None:
        return newest_dr_source(self.rds, self.source_db_instance_identifier, self.region_name)

    def _restore_point(self, context: Any) -> tuple[datetime | None, str | None, Finding | None]:
        source = self._dr_source()
        if source is None:
            return None, None, Finding(check="restore.request", resource=self.source_db_instance_identifier,
                                       status=Status.CRITICAL, severity=Severity.P1,
                                       summary=f"nothing to restore in {self.region_name}")
        kind, identifier, point = source
        return point, (identifier if kind == "snapshot copy" else None), None

    def _submit(self, target: str, point: datetime | None, snapshot: str | None, common: dict[str, Any]) -> None:
        if snapshot:
            super()._submit(target, point, snapshot, common)
            return
        source = self._dr_source()
        self.rds.restore_db_instance_to_point_in_time(SourceDBInstanceAutomatedBackupsArn=source[1] if source else "",
                                                      TargetDBInstanceIdentifier=target, RestoreTime=point, **common)


class DrDatabaseValidationOperator(_DrClients, RestoreValidationOperator):
    """Wait (deferred) for the drill's restored copy, validate it with the restore test's SQL, measure RTO."""

    headline_label = "DR drill database restore"

    def __init__(self, *, target: DrTarget, **kwargs: Any) -> None:
        super().__init__(rto_target_minutes=target.rto_minutes, rpo_target_minutes=target.rpo_minutes, **kwargs)
        self.target = target

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        skipped = self.not_selected(context, "database")
        if skipped is not None:
            yield skipped
            return
        yield from self._rpo(context)
        yield from super().collect_findings(context)

    def _rpo(self, context: Any) -> Iterable[Finding]:
        measured = context["ti"].xcom_pull(task_ids=self.request_task_id, key=MEASUREMENTS_XCOM_KEY) or {}
        if measured.get("rpo_minutes") is not None:
            yield rpo_finding(self.target, "dr.database.rpo", f"{self.source_db_instance_identifier} "
                              f"({self.region_name})", measured["rpo_minutes"],
                              f"{measured.get('source')} restorable to {measured.get('restorable_to')}")


class DrDatabaseCleanupOperator(_DrClients, RestoreCleanupOperator):
    """Delete the drill's restored copy (the teardown), with the restore test's guard."""


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


# -- static assets -----------------------------------------------------------------------------------------
class DrStaticAssetsOperator(_DrCheck):
    """Replication configured and enabled on each asset bucket, and its lag: the newest objects of the
    source compared with the replica. RPO = the oldest unreplicated change (or the slowest copy)."""

    component = "static_assets"

    def __init__(self, *, buckets: list[AssetReplication], sample: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.buckets = buckets
        self.sample = sample

    def measure(self, context: Any) -> Iterable[Finding]:
        if not self.buckets:
            self.push_component(context, "static_assets", can_fail_over=False)
            yield Finding(check="dr.static_assets.replication", resource="disaster_recovery.asset_buckets",
                          status=Status.CRITICAL, severity=Severity.P1,
                          summary="no asset buckets configured: static assets have no DR copy to fail over to")
            return
        worst, can, serving = 0.0, True, 0.0
        for pair in self.buckets:
            findings, rpo, ok, seconds = self._bucket(pair)
            yield from findings
            can &= ok
            worst = max(worst, rpo or 0.0)
            serving = max(serving, seconds or 0.0)
        # The replica is live: recovering is pointing the CDN/DNS at it (counted in the complete system);
        # what the drill can measure is that the replica serves the newest object, and how fast.
        self.push_component(context, "static_assets", rpo_minutes=round(worst, 2), can_fail_over=can,
                            rto_minutes=_minutes(serving) if can else None)
        if can:
            yield self.rpo_finding("dr.static_assets.rpo", ", ".join(p.replica_bucket for p in self.buckets),
                                   round(worst, 2), f"the oldest change among the newest {self.sample} objects that "
                                                    "the replica lacks")

    def _newest_objects(self, s3: Any, bucket: str) -> tuple[list[dict[str, Any]], int]:
        """The newest `sample` objects among at most SCAN_LIMIT listed (S3 lists by key, not by time)."""
        scanned: list[dict[str, Any]] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            scanned += page.get("Contents", [])
            if len(scanned) >= SCAN_LIMIT:
                break
        newest = sorted(scanned, key=lambda o: o["LastModified"], reverse=True)[: self.sample]
        return newest, len(scanned)

    @staticmethod
    def _replica_holds(replica: Any, bucket: str, key: str, source: dict[str, Any]) -> str:
        """'current', 'stale' (the replica has the key but an older version: written while replication
        was off) or 'absent'. Replication keeps the source's version id and ETag; the same content written
        again (same ETag) is held too."""
        try:
            copy = replica.head_object(Bucket=bucket, Key=key)
        except replica.exceptions.ClientError:
            return "absent"
        same_version = source.get("VersionId") not in (None, "null") and copy.get("VersionId") == source["VersionId"]
        return "current" if same_version or copy.get("ETag") == source.get("ETag") else "stale"

    def _bucket(self, pair: AssetReplication) -> tuple[list[Finding], float | None, bool, float | None]:
        source = self.client("s3", self.primary_region)
        replica = self.client("s3")
        resource = f"{pair.source_bucket} -> {pair.replica_bucket}"
        findings: list[Finding] = []
        try:
            rules = source.get_bucket_replication(Bucket=pair.source_bucket)["ReplicationConfiguration"]["Rules"]
        except source.exceptions.ClientError as exc:
            rules = []
            if "ReplicationConfigurationNotFound" not in str(exc):
                raise
        replica_arn = f"arn:aws:s3:::{pair.replica_bucket}"
        to_replica = [r for r in rules if r.get("Destination", {}).get("Bucket") == replica_arn]
        if not to_replica:
            return [Finding(check="dr.static_assets.replication", resource=resource, status=Status.CRITICAL,
                            severity=Severity.P1, summary=f"no replication rule from {pair.source_bucket} to "
                                                          f"{pair.replica_bucket}: assets cannot fail over")], \
                None, False, None
        if not any(r.get("Status") == "Enabled" for r in to_replica):
            findings.append(Finding(check="dr.static_assets.replication", resource=resource, status=Status.CRITICAL,
                                    severity=Severity.P2, summary="replication rule is Disabled: new assets no longer "
                                                                  "reach the DR region"))
        else:
            findings.append(Finding(check="dr.static_assets.replication", resource=resource, status=Status.OK,
                                    summary="replication rule enabled"))
        newest, scanned = self._newest_objects(source, pair.source_bucket)
        lags: list[float] = []
        missing: list[str] = []
        stale: list[str] = []
        failed: list[str] = []
        now = utcnow()
        for obj in newest:
            # A replica keeps the source's LastModified, so the copy's time says nothing: S3's own
            # replication status does; an object without one (written while the rule was off) is
            # looked for in the replica.
            head = source.head_object(Bucket=pair.source_bucket, Key=obj["Key"])
            status = head.get("ReplicationStatus")
            if status == "COMPLETED":
                lags.append(0.0)
                continue
            held = self._replica_holds(replica, pair.replica_bucket, obj["Key"], head) if status is None else None
            if held == "current":
                lags.append(0.0)
                continue
            if held == "stale":
                stale.append(obj["Key"])
            (failed if status == "FAILED" else missing).append(obj["Key"])
            # The change the replica lacks is the source's current version: its age is the lag.
            lags.append(_minutes((now - _utc(obj["LastModified"])).total_seconds()))
        present = [o["Key"] for o in newest if o["Key"] not in missing and o["Key"] not in failed]
        seconds = None
        if present:
            began = time.monotonic()
            replica.get_object(Bucket=pair.replica_bucket, Key=present[0])["Body"].read()
            seconds = time.monotonic() - began
        sample = f"the newest {len(newest)} objects" + (f" of the first {scanned} listed" if scanned >= SCAN_LIMIT
                                                          else "")
        if failed:
            findings.append(Finding(check="dr.static_assets.failed", resource=resource, status=Status.CRITICAL,
                                    severity=Severity.P2,
                                    summary=f"replication FAILED for {len(failed)} of {sample} (e.g. {failed[0]}): "
                                            "check the replication role's permissions and the replica's KMS key",
                                    details={"failed": failed[:20]}))
        if missing:
            findings.append(Finding(check="dr.static_assets.missing", resource=resource, status=Status.WARNING,
                                    severity=Severity.P3,
                                    summary=f"{len(missing)} of {sample} are not in the replica yet "
                                            f"(e.g. {missing[0]})"
                                            + (f"; {len(stale)} of them only as an older version" if stale else ""),
                                    details={"missing": missing[:20], "older_version_in_replica": stale[:20]}))
        return findings, max(lags) if lags else 0.0, True, seconds


# -- complete system ---------------------------------------------------------------------------------------
class DrFailoverReadinessOperator(_DrCheck):
    """The pieces of a whole-region failover: Route 53 PRIMARY/SECONDARY records with a health check on
    the primary, and the DR CloudFormation template valid in the DR region. Records the DNS TTL."""

    component = "complete_system"

    def __init__(self, *, hosted_zone: str, record_name: str, dr_load_balancer: str, template_path: str,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hosted_zone = hosted_zone
        self.record_name = record_name
        self.dr_load_balancer = dr_load_balancer
        self.template_path = template_path

    def measure(self, context: Any) -> Iterable[Finding]:
        ready, ttl = True, None
        for finding, record_ttl in self._dns():
            ready &= finding.severity is not Severity.P1
            ttl = record_ttl if record_ttl is not None else ttl
            yield finding
        cloudformation = self.client("cloudformation")
        path = REPO_ROOT / self.template_path
        try:
            body = path.read_text()
            cloudformation.validate_template(TemplateBody=body)
        except (OSError, cloudformation.exceptions.ClientError) as exc:
            ready = False
            yield Finding(check="dr.cloudformation.template", resource=self.template_path, status=Status.CRITICAL,
                          severity=Severity.P1, summary=f"DR template does not validate in {self.region_name}: "
                                                        f"{_error(exc)}")
        else:
            yield Finding(check="dr.cloudformation.template", resource=self.template_path, status=Status.OK,
                          summary=f"DR template validates in {self.region_name}")
        self.push_component(context, "complete_system", can_fail_over=ready, dns_ttl_seconds=ttl)

    def _dns(self) -> Iterable[tuple[Finding, int | None]]:
        from solemate_maintenance.hooks import route53 as dns

        route53 = self.client("route53", self.primary_region)
        zone = dns.public_zone_id(route53, self.hosted_zone)
        if zone is None:
            yield Finding(check="dr.dns.records", resource=self.hosted_zone, status=Status.CRITICAL,
                          severity=Severity.P1, summary=f"public hosted zone {self.hosted_zone} not found: no DNS "
                                                        "failover"), None
            return
        roles = dns.failover_records(route53, zone, self.record_name)
        primary, secondary = roles.get("PRIMARY", []), roles.get("SECONDARY", [])
        if not primary or not secondary:
            yield Finding(check="dr.dns.records", resource=self.record_name, status=Status.CRITICAL,
                          severity=Severity.P1, summary=f"{self.record_name} lacks a "
                          f"{'PRIMARY' if not primary else 'SECONDARY'} failover record"), None
            return
        ttl = max(int(r.get("TTL") or 60) for r in primary + secondary)
        balancer = dns.load_balancer(self.client("elbv2"), self.dr_load_balancer)
        dr_target = balancer["DNSName"].rstrip(".") if balancer else None
        wrong = sorted({dns.target_of(r) for r in secondary} - {dr_target})
        if balancer is None or wrong:
            summary = (f"no load balancer {self.dr_load_balancer} in {self.region_name}" if balancer is None
                       else f"SECONDARY points at {', '.join(wrong)}, not the DR load balancer {dr_target}")
            yield Finding(check="dr.dns.secondary", resource=self.record_name, status=Status.CRITICAL,
                          severity=Severity.P1, summary=summary,
                          details={"secondary": [dns.target_of(r) for r in secondary]}), ttl
            return
        missing_checks = []
        for record in primary:
            try:
                route53.get_health_check(HealthCheckId=record.get("HealthCheckId") or "none")
            except route53.exceptions.NoSuchHealthCheck:
                missing_checks.append(f"{record['Type']} {record.get('SetIdentifier', '')}")
        if missing_checks:
            yield Finding(check="dr.dns.health_check", resource=self.record_name, status=Status.CRITICAL,
                          severity=Severity.P1, summary=f"PRIMARY record(s) {', '.join(missing_checks)} have no "
                          "(existing) health check: Route 53 would never fail over by itself"), ttl
            return
        yield Finding(check="dr.dns.records", resource=self.record_name, status=Status.OK,
                      summary=f"PRIMARY -> {', '.join(sorted({dns.target_of(r) for r in primary}))} with a health "
                              f"check, SECONDARY -> {dr_target}, TTL {ttl} s"), ttl


# -- the scorecard -----------------------------------------------------------------------------------------
class DrDrillScorecardOperator(_DrClients, MaintenanceCheckOperator):
    """The drill's evidence: the guide's table with target, measured and verdict per component, the
    trend against earlier drills, and what the drill created and deleted (live-checked: zero left)."""

    template_fields = (*MaintenanceCheckOperator.template_fields, "dr_cluster")

    def __init__(self, *, targets: dict[str, DrTarget], measured_by: dict[str, list[str]], cleanup_task_ids: list[str],
                 token_prefix: str, dr_cluster: str, reports: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.targets = targets
        self.measured_by = measured_by
        self.cleanup_task_ids = cleanup_task_ids
        self.token_prefix = token_prefix
        self.dr_cluster = dr_cluster
        self.reports = reports

    def _measured(self, context: Any) -> dict[str, dr.ComponentResult]:
        ti = context["ti"]
        results: dict[str, dr.ComponentResult] = {}
        extra: dict[str, dict[str, Any]] = {}
        for component, task_ids in self.measured_by.items():
            merged: dict[str, Any] = {}
            for task_id in task_ids:
                value = ti.xcom_pull(task_ids=task_id, key=MEASUREMENTS_XCOM_KEY) or {}
                for key, item in value.items():
                    if key == "can_fail_over":
                        merged[key] = merged.get(key, True) and item
                    elif item is not None and key not in merged:
                        merged[key] = item
            extra[component] = merged
            if component in selected_components(context) and merged:
                results[component] = dr.ComponentResult(
                    component, rto_minutes=merged.get("rto_minutes"),
                    rpo_minutes=merged.get("rpo_minutes", merged.get("data_rpo_minutes")),
                    can_fail_over=merged.get("can_fail_over"))
        if "complete_system" in selected_components(context):
            system = extra.get("complete_system", {})
            results["complete_system"] = dr.estimate_complete_system(
                results, system.get("dns_ttl_seconds"), system.get("can_fail_over"))
        return results

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        results = self._measured(context)
        rows = dr.scorecard_rows(results, self.targets)
        for row in rows:
            yield _verdict_finding(row)
        created, deleted = self._created_and_deleted(context)
        left = self._left_behind(context)
        if left:
            yield Finding(check="dr.cleanup.leftovers", resource=self.region_name or "DR region",
                          status=Status.CRITICAL, severity=Severity.P2,
                          summary=f"the drill left {len(left)} resource(s) behind: {', '.join(left)}; delete them "
                                  "(the restore janitor removes expired database copies on the next drill)")
        else:
            yield Finding(check="dr.cleanup.leftovers", resource=self.region_name or "DR region", status=Status.OK,
                          summary=f"created {len(created)}, deleted {len(deleted)}, left 0")
        earlier = self._earlier(context)
        met = sum(r["verdict"] == dr.MET for r in rows)
        measured = sum(r["verdict"] != dr.NOT_MEASURED for r in rows)
        headline = f"DR drill ({self.region_name}): {met}/{measured} components met the guide's targets; " + "; ".join(
            f"{r['component']} {r['verdict']}" for r in rows if r["verdict"] != dr.NOT_MEASURED)
        reason = (context.get("params") or {}).get("reason")
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": headline, "region": self.region_name, "reason": reason, "components": rows,
            "created": created, "deleted": deleted, "left": left,
            "tables": {
                "Components against the guide": _table(
                    ["component", "recovery method", "RTO target", "RTO measured", "RPO target", "RPO measured",
                     "verdict", "note"],
                    [[r["component"], r["recovery_method"], r["rto_target_minutes"], _num(r["rto_minutes"]),
                      r["rpo_target_minutes"], _num(r["rpo_minutes"]), r["verdict"], r["note"]] for r in rows]),
                "Created and deleted": _table(["resource", "deleted"],
                                              [[c, "yes" if c in deleted else "NO"] for c in created]),
                "Earlier drills": _table(["logical date", *[dr.LABELS[c] for c in DR_COMPONENTS]], [
                    [e["logical_date"], *[_verdict_cell(e, dr.LABELS[c]) for c in DR_COMPONENTS]] for e in earlier]),
            }})

    def _created_and_deleted(self, context: Any) -> tuple[list[str], list[str]]:
        created: list[str] = []
        deleted: list[str] = []
        for task_id in self.cleanup_task_ids:
            value = context["ti"].xcom_pull(task_ids=task_id, key=MEASUREMENTS_XCOM_KEY) or {}
            created += value.get("created", [])
            deleted += value.get("deleted", [])
        return created, deleted

    def _left_behind(self, context: Any) -> list[str]:
        token = drill_token(self.token_prefix, context)
        left = []
        rds = self.client("rds")
        try:
            rds.describe_db_instances(DBInstanceIdentifier=token)
            left.append(f"RDS instance {token}")
        except rds.exceptions.DBInstanceNotFoundFault:
            pass
        ecs = self.client("ecs")
        try:
            running = ecs.list_tasks(cluster=self.dr_cluster, startedBy=token, desiredStatus="RUNNING")["taskArns"]
        except ecs.exceptions.ClusterNotFoundException:
            running = []
        left += [f"ECS task {arn}" for arn in running]
        return left

    def _earlier(self, context: Any) -> list[dict[str, Any]]:
        from solemate_maintenance.report_store import ReportStore

        store = ReportStore(bucket=self.reports["bucket"], prefix=self.reports.get("prefix", "reports"),
                            aws_conn_id=self.aws_conn_id, region_name=None)
        try:
            reports = store.reports_before(context["ti"].dag_id, run_end(context), limit=6, log=self.log)
        except Exception as exc:  # the trend is context, not the drill
            self.log.warning("Earlier drills could not be read: %s", trim(scrub(str(exc)), 200))
            return []
        return [{"logical_date": r.logical_date, "components": r.measurements[self.task_id].get("components", [])}
                for r in reports if r.measurements.get(self.task_id)]


def _verdict_finding(row: dict[str, Any]) -> Finding:
    verdict = row["verdict"]
    summary = (f"{verdict}: RTO {_num(row['rto_minutes'])} min (target {row['rto_target_minutes']}), "
               f"RPO {_num(row['rpo_minutes'])} min (target {row['rpo_target_minutes']})"
               + (f"; {row['note']}" if row["note"] else ""))
    check = "dr.verdict." + row["component"].lower().replace(" ", "_")
    if verdict == dr.CANNOT:
        return Finding(check=check, resource=row["component"], status=Status.CRITICAL, severity=Severity.P1,
                       summary=summary)
    if verdict == dr.MISSED:
        return Finding(check=check, resource=row["component"], status=Status.CRITICAL, severity=Severity.P2,
                       summary=f"target missed: {summary}")
    if verdict == dr.NOT_MEASURED:
        return Finding(check=check, resource=row["component"], status=Status.SKIPPED, summary=summary)
    return Finding(check=check, resource=row["component"], status=Status.OK, summary=summary)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _verdict_cell(earlier: dict[str, Any], label: str) -> str:
    row = next((r for r in earlier["components"] if r.get("component") == label), None)
    if not row:
        return "—"
    return f"{row['verdict']} (RTO {_num(row.get('rto_minutes'))}, RPO {_num(row.get('rpo_minutes'))})"


def _table(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"columns": columns, "rows": rows}
