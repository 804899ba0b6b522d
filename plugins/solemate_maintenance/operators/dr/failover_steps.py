"""The failover's changing steps, in the runbook's order: the DR stack, the database restored in
the DR region, the services scaled up, the DNS switch, then validation and monitoring. Each is
idempotent: it looks at what AWS holds first and changes only what is not yet as wanted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airflow.sdk.timezone import utcnow

from solemate_maintenance import restore
from solemate_maintenance.config import REPO_ROOT
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.backups.restore import FAILED_INSTANCE_STATES
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY
from solemate_maintenance.operators.dr.drill import _error
from solemate_maintenance.operators.dr.drill_database import newest_dr_source
from solemate_maintenance.operators.dr.failover import (
    ALARM_PREFIX,
    FAILOVER_PURPOSE,
    STACK_IN_PLACE,
    USABLE_INSTANCE_STATES,
    _FailoverStep,
)
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.run_facts import format_instant as _stamp


class FailoverInfrastructureOperator(_FailoverStep):
    """Step 3: create the DR stack from the CloudFormation template (once), and wait for it (deferred)."""

    def __init__(self, *, environment: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.environment = environment

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        cloudformation = self.client("cloudformation")
        name = self.recovery.stack_name
        stack = self._stack(cloudformation, name)
        status = stack["StackStatus"] if stack else None
        if stack is None:
            body = (REPO_ROOT / self.recovery.cloudformation_template).read_text()
            cloudformation.create_stack(
                StackName=name, TemplateBody=body, OnFailure="DO_NOTHING",
                Parameters=[{"ParameterKey": "Environment", "ParameterValue": self.environment},
                            {"ParameterKey": "ActivatedBy", "ParameterValue": restore.tag_value(context["ti"].run_id)}],
                Tags=[{"Key": "solemate:purpose", "Value": FAILOVER_PURPOSE},
                      {"Key": restore.TAG_RUN, "Value": restore.tag_value(context["ti"].run_id)}])
            self.log.info("Creating stack %s in %s", name, self.region_name)
            waiter = "stack_create_complete"
        elif status in STACK_IN_PLACE:
            yield from self._done(context, stack, created=False)
            return
        elif status in ("CREATE_IN_PROGRESS",) or (status.startswith("UPDATE_") and status.endswith("IN_PROGRESS")):
            waiter = "stack_create_complete" if status == "CREATE_IN_PROGRESS" else "stack_update_complete"
        else:
            yield self._broken(stack)
            return
        from solemate_maintenance.triggers.waiters import StackReadyTrigger

        poll = self.recovery.drill.poll_seconds
        self.defer(trigger=StackReadyTrigger(stack_name=name, waiter_name=waiter, waiter_delay=poll,
                                             waiter_max_attempts=self.wait_attempts(30, poll),
                                             aws_conn_id=self.aws_conn_id, region_name=self.region_name),
                   method_name="resume_when_created")

    def resume_when_created(self, context: Any, event: dict[str, Any] | None = None) -> dict:
        return self.record_findings(context, self._after(context))

    def _after(self, context: Any) -> Iterable[Finding]:
        stack = self._stack(self.client("cloudformation"), self.recovery.stack_name)
        if stack is None or stack["StackStatus"] not in STACK_IN_PLACE:
            yield self._broken(stack or {"StackName": self.recovery.stack_name, "StackStatus": "gone"})
            return
        yield from self._done(context, stack, created=True)

    @staticmethod
    def _stack(cloudformation: Any, name: str) -> dict[str, Any] | None:
        try:
            return cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        except cloudformation.exceptions.ClientError as exc:
            if "does not exist" in str(exc):
                return None
            raise

    def _done(self, context: Any, stack: dict[str, Any], created: bool) -> Iterable[Finding]:
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        self.record(context, stack=stack["StackName"], status=stack["StackStatus"], created=created, outputs=outputs)
        yield Finding(check="failover.infrastructure", resource=f"{stack['StackName']} ({self.region_name})",
                      status=Status.OK, summary=("stack created" if created else "stack already in place (no change)")
                      + f": {stack['StackStatus']}")

    def _broken(self, stack: dict[str, Any]) -> Finding:
        status = stack["StackStatus"]
        action = ("delete the stack (it never finished, so it holds nothing), then clear this task"
                  if status in ("ROLLBACK_COMPLETE", "CREATE_FAILED", "ROLLBACK_FAILED")
                  else "wait for it to settle or fix it, then clear this task")
        return Finding(check="failover.infrastructure", resource=f"{stack['StackName']} ({self.region_name})",
                       status=Status.CRITICAL, severity=Severity.P1,
                       summary=f"DR stack is {status}: read its events in the CloudFormation console "
                               f"({self.region_name}); {action}")


class FailoverDatabaseOperator(_FailoverStep):
    """Step 4: restore the database in the DR region from the latest restorable point, and wait (deferred).

    The instance is ``failover_instance_id``, tagged as this failover's (not ephemeral: it becomes
    production, with deletion protection). A retry or a cleared task finds it and waits for it.
    """

    def __init__(self, *, database: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.database = database

    @property
    def target(self) -> str:
        return self.recovery.failover_instance_id

    def _describe(self) -> dict[str, Any] | None:
        rds = self.client("rds")
        try:
            return rds.describe_db_instances(DBInstanceIdentifier=self.target)["DBInstances"][0]
        except rds.exceptions.DBInstanceNotFoundFault:
            return None

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        instance = self._describe()
        if instance is not None:
            tags = restore.tags_of(instance)
            if tags.get(restore.TAG_PURPOSE) != FAILOVER_PURPOSE or tags.get(restore.TAG_SOURCE) != self.database:
                yield Finding(check="failover.database", resource=f"{self.target} ({self.region_name})",
                              status=Status.CRITICAL, severity=Severity.P1,
                              summary=f"an instance named {self.target} exists that this runbook did not create "
                                      f"(tags {tags.get(restore.TAG_PURPOSE)!r}/{tags.get(restore.TAG_SOURCE)!r}): "
                                      "check what it is; set disaster_recovery.failover_instance_id to a free name")
                return
            if tags.get(restore.TAG_RUN) != restore.tag_value(context["ti"].run_id):
                # An earlier failover's copy holds that day's data: switching users to it would lose
                # everything since. Only this run's own copy is reused (a retry, a cleared task).
                yield Finding(check="failover.database", resource=f"{self.target} ({self.region_name})",
                              status=Status.CRITICAL, severity=Severity.P1,
                              summary=f"{self.target} was restored by an earlier failover "
                                      f"({tags.get(restore.TAG_RUN)}, data as of "
                                      f"{tags.get(restore.TAG_RESTORE_POINT)}): too old to fail over to. "
                                      "Rename or delete it (it has deletion protection), or set "
                                      "disaster_recovery.failover_instance_id to a free name, then clear this task")
                return
            if instance.get("DBInstanceStatus") in FAILED_INSTANCE_STATES:
                yield self._unusable(instance)
                return
        else:
            rds = self.client("rds")
            source = newest_dr_source(rds, self.database, self.region_name)
            if source is None:
                yield Finding(check="failover.database", resource=f"{self.database} ({self.region_name})",
                              status=Status.CRITICAL, severity=Severity.P1,
                              summary=f"nothing to restore in {self.region_name}")
                return
            kind, identifier, point = source
            now = utcnow()
            network: dict[str, Any] = {}
            if self.recovery.failover_db_subnet_group:
                network["DBSubnetGroupName"] = self.recovery.failover_db_subnet_group
            if self.recovery.failover_security_group_ids:
                network["VpcSecurityGroupIds"] = list(self.recovery.failover_security_group_ids)
            common = {"DBInstanceClass": self.recovery.failover_instance_class, "MultiAZ": True, **network,
                      "PubliclyAccessible": False, "DeletionProtection": True, "CopyTagsToSnapshot": True,
                      "Tags": [{"Key": restore.TAG_PURPOSE, "Value": FAILOVER_PURPOSE},
                               {"Key": restore.TAG_SOURCE, "Value": self.database},
                               {"Key": restore.TAG_RUN, "Value": restore.tag_value(context["ti"].run_id)},
                               {"Key": restore.TAG_REQUESTED, "Value": now.isoformat(timespec="seconds")},
                               {"Key": restore.TAG_RESTORE_POINT, "Value": point.isoformat(timespec="seconds")}]}
            if kind == "snapshot copy":
                rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=self.target,
                                                         DBSnapshotIdentifier=identifier, **common)
            else:
                rds.restore_db_instance_to_point_in_time(SourceDBInstanceAutomatedBackupsArn=identifier,
                                                         TargetDBInstanceIdentifier=self.target,
                                                         RestoreTime=point, **common)
            self.log.info("Restoring %s (%s, to %s) into %s", self.database, kind, _stamp(point), self.target)
            instance = self._describe() or {"DBInstanceStatus": "creating"}
        if instance.get("DBInstanceStatus") in USABLE_INSTANCE_STATES:
            yield from self._done(context, instance)
            return
        from airflow.providers.amazon.aws.triggers.rds import RdsDbAvailableTrigger

        poll = self.recovery.drill.poll_seconds
        self.defer(trigger=RdsDbAvailableTrigger(
            db_identifier=self.target, waiter_delay=poll,
            waiter_max_attempts=self.wait_attempts(self.recovery.failover_timeout_minutes, poll),
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, response={}, db_type="instance"),
            method_name="resume_when_available")

    def resume_when_available(self, context: Any, event: dict[str, Any] | None = None) -> dict:
        return self.record_findings(context, self._after(context, event))

    def _unusable(self, instance: dict[str, Any]) -> Finding:
        return Finding(check="failover.database", resource=f"{self.target} ({self.region_name})",
                       status=Status.CRITICAL, severity=Severity.P1,
                       summary=f"the restored database is {instance.get('DBInstanceStatus')!r} and will not recover "
                               f"by waiting: read its events in the RDS console ({self.region_name}), delete it "
                               "(turn deletion protection off first), then clear this task to restore again")

    def _after(self, context: Any, event: dict[str, Any] | None) -> Iterable[Finding]:
        instance = self._describe()
        if instance is not None and instance.get("DBInstanceStatus") in FAILED_INSTANCE_STATES:
            yield self._unusable(instance)
            return
        if instance is None or instance.get("DBInstanceStatus") not in USABLE_INSTANCE_STATES:
            yield Finding(check="failover.database", resource=f"{self.target} ({self.region_name})",
                          status=Status.CRITICAL, severity=Severity.P1,
                          summary=f"restored database not available within {self.recovery.failover_timeout_minutes:g} "
                                  f"min (status {(instance or {}).get('DBInstanceStatus', 'gone')!r}); check the RDS "
                                  f"console in {self.region_name}, then clear this task to wait again",
                          details={"trigger": trim(scrub(str((event or {}).get("message", ""))), 300)})
            return
        yield from self._done(context, instance)

    def _done(self, context: Any, instance: dict[str, Any]) -> Iterable[Finding]:
        tags = restore.tags_of(instance)
        point = restore.parse_time(tags.get(restore.TAG_RESTORE_POINT))
        requested = restore.parse_time(tags.get(restore.TAG_REQUESTED))
        endpoint = instance.get("Endpoint") or {}
        rpo = round((requested - point).total_seconds() / 60, 2) if point and requested else None
        rto = round((utcnow() - requested).total_seconds() / 60, 2) if requested else None
        self.record(context, instance=self.target, restore_point=_stamp(point), rpo_minutes=rpo,
                    restore_minutes=rto, endpoint=f"{endpoint.get('Address')}:{endpoint.get('Port')}")
        yield Finding(check="failover.database", resource=f"{self.target} ({self.region_name})", status=Status.OK,
                      summary=f"available at {endpoint.get('Address')}:{endpoint.get('Port')}, restored to "
                              f"{_stamp(point)} ({_num(rpo)} min of data lost, {_num(rto)} min since the request). "
                              "Point the application's database secret at it")


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


class FailoverApplicationOperator(_FailoverStep):
    """Step 5: scale the DR services to production's task counts and wait (deferred) until stable."""

    def __init__(self, *, cluster: str, services: dict[str, int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster
        self.services = services

    def _wanted(self) -> dict[str, int]:
        """Production's desired counts when the primary answers, else the configured minimums."""
        wanted = dict(self.services)
        try:
            ecs = self.client("ecs", self.primary_region)
            for service in ecs.describe_services(cluster=self.cluster, services=list(self.services))["services"]:
                wanted[service["serviceName"]] = max(wanted[service["serviceName"]], service["desiredCount"])
        except Exception as exc:  # the primary region is what is failing: its minimums will do
            self.log.warning("Production's task counts unavailable (%s); using the configured minimums",
                             _error(exc) if hasattr(exc, "response") else type(exc).__name__)
        return wanted

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        ecs = self.client("ecs")
        wanted = self._wanted()
        changed = []
        for service in ecs.describe_services(cluster=self.recovery.cluster, services=list(wanted))["services"]:
            name = service["serviceName"]
            # Only up: a DR service that autoscaled past production's count is serving users already.
            if service["desiredCount"] < wanted[name]:
                ecs.update_service(cluster=self.recovery.cluster, service=name, desiredCount=wanted[name])
                changed.append(f"{name}: {service['desiredCount']} -> {wanted[name]}")
        context["ti"].xcom_push(key="changes", value=changed)
        unsteady = self._unsteady()
        if unsteady:
            self._wait(unsteady)
        yield from self._after(context)

    def _unsteady(self) -> str | None:
        """The first service whose running count has not reached its desired count, if any."""
        services = self.client("ecs").describe_services(cluster=self.recovery.cluster,
                                                        services=list(self.services))["services"]
        return next((s["serviceName"] for s in services if s["runningCount"] != s["desiredCount"]
                     or len(s.get("deployments", [])) > 1), None)

    def _wait(self, service: str) -> None:
        from solemate_maintenance.triggers.waiters import EcsServiceStableTrigger

        poll = self.recovery.drill.poll_seconds
        self.defer(trigger=EcsServiceStableTrigger(
            cluster=self.recovery.cluster, service=service, waiter_delay=poll,
            waiter_max_attempts=self.wait_attempts(self.recovery.drill.task_timeout_minutes, poll),
            aws_conn_id=self.aws_conn_id, region_name=self.region_name), method_name="resume_when_stable")

    def resume_when_stable(self, context: Any, event: dict[str, Any] | None = None) -> dict:
        # What is still deploying is read from AWS again, not carried in the deferral's kwargs; a
        # service that keeps flapping gets one wait per service and two more, then is reported.
        ti = context["ti"]
        waits = (ti.xcom_pull(task_ids=self.task_id, key="stability_waits") or 0) + 1
        ti.xcom_push(key="stability_waits", value=waits)
        unsteady = self._unsteady()
        if unsteady and (event or {}).get("status") == "success" and waits <= len(self.services) + 2:
            self._wait(unsteady)
        return self.record_findings(context, self._after(context))

    def _after(self, context: Any) -> Iterable[Finding]:
        ecs = self.client("ecs")
        services = ecs.describe_services(cluster=self.recovery.cluster, services=list(self.services))["services"]
        short = [f"{s['serviceName']} {s['runningCount']}/{s['desiredCount']}" for s in services
                 if s["runningCount"] < s["desiredCount"] or s["desiredCount"] == 0]
        counts = {s["serviceName"]: s["runningCount"] for s in services}
        changes = context["ti"].xcom_pull(task_ids=self.task_id, key="changes") or []
        self.record(context, services=", ".join(f"{k} x{v}" for k, v in counts.items()), changes=changes)
        if short:
            yield Finding(check="failover.application", resource=f"{self.recovery.cluster} ({self.region_name})",
                          status=Status.CRITICAL, severity=Severity.P1,
                          summary=f"not running as wanted: {', '.join(short)}; see the service events in the ECS "
                                  "console, then clear this task")
            return
        yield Finding(check="failover.application", resource=f"{self.recovery.cluster} ({self.region_name})",
                      status=Status.OK, summary=f"running: {', '.join(f'{k} x{v}' for k, v in counts.items())}"
                                                + (f" (changed {'; '.join(changes)})" if changes else " (no change)"))


class FailoverDnsSwitchOperator(_FailoverStep):
    """Step 6 (after the human approval): point the PRIMARY failover record(s) at the DR load balancer.

    Only the target changes (an alias stays an alias, to the balancer's zone; set identifier, TTL and
    health check stay), only where it does not point there yet; waits until Route 53 reports INSYNC.
    The old target is in the report (from the assessment) for failback.
    """

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        from solemate_maintenance.hooks import route53 as dns

        route53 = self.client("route53", self.primary_region)
        zone = dns.public_zone_id(route53, self.recovery.hosted_zone)
        primary = dns.failover_records(route53, zone, self.recovery.record_name).get("PRIMARY", []) if zone else []
        if not primary:
            yield Finding(check="failover.dns", resource=self.recovery.record_name, status=Status.CRITICAL,
                          severity=Severity.P1, summary=f"no PRIMARY failover record {self.recovery.record_name} in "
                                                        f"the public zone {self.recovery.hosted_zone}: switch DNS by "
                                                        "hand in the Route 53 console")
            return
        balancer = dns.load_balancer(self.client("elbv2"), self.recovery.dr_load_balancer)
        if balancer is None:
            yield Finding(check="failover.dns", resource=self.recovery.dr_load_balancer, status=Status.CRITICAL,
                          severity=Severity.P1, summary=f"no load balancer {self.recovery.dr_load_balancer} in "
                                                        f"{self.region_name}: DNS not switched")
            return
        target = balancer["DNSName"].rstrip(".")
        assessed = context["ti"].xcom_pull(task_ids="failover_assessment", key=MEASUREMENTS_XCOM_KEY) or {}
        before = (assessed.get("dns_before") or {}).get("PRIMARY") or ", ".join(dns.target_of(r) for r in primary)
        changes = [dns.pointed_at(r, balancer) for r in primary if dns.target_of(r) != target]
        if not changes:
            self.record(context, before=before, now=target, changed=False)
            yield Finding(check="failover.dns", resource=self.recovery.record_name, status=Status.OK,
                          summary=f"already points at {target} (no change)")
            return
        change = route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={
            "Comment": trim(f"DR failover by {context['ti'].run_id}", 256),
            "Changes": [{"Action": "UPSERT", "ResourceRecordSet": record} for record in changes]})["ChangeInfo"]
        route53.get_waiter("resource_record_sets_changed").wait(Id=change["Id"],
                                                                 WaiterConfig={"Delay": 10, "MaxAttempts": 30})
        self.record(context, before=before, now=target, changed=True, change_id=change["Id"],
                    records=[f"{r['Type']} {r.get('SetIdentifier', '')}" for r in changes])
        ttl = max((r.get("TTL", 60) for r in primary), default=60)
        yield Finding(check="failover.dns", resource=self.recovery.record_name, status=Status.OK,
                      summary=f"PRIMARY now -> {target} (was {before}); clients follow within the TTL ({ttl} s). "
                              f"Failback: point it at {before} again")


class FailoverValidationOperator(_FailoverStep):
    """Step 7: the health checks against the DR region: database, services, DNS and the health endpoint."""

    def __init__(self, *, services: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.services = services

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        rds = self.client("rds")
        target = self.recovery.failover_instance_id
        try:
            status = rds.describe_db_instances(DBInstanceIdentifier=target)["DBInstances"][0]["DBInstanceStatus"]
        except rds.exceptions.DBInstanceNotFoundFault:
            status = "missing"
        yield _check("failover.validation.database", f"{target} ({self.region_name})", status == "available",
                     f"database {status}")
        ecs = self.client("ecs")
        described = ecs.describe_services(cluster=self.recovery.cluster, services=self.services)
        for service in described["services"]:
            ok = service["runningCount"] >= max(1, service["desiredCount"]) and service.get("status") == "ACTIVE"
            yield _check("failover.validation.service", f"{self.recovery.cluster}/{service['serviceName']}", ok,
                         f"{service['runningCount']}/{service['desiredCount']} tasks running")
        for failure in described.get("failures", []):
            yield _check("failover.validation.service", f"{self.recovery.cluster}/{failure.get('arn', '?')}", False,
                         f"service {failure.get('reason', 'missing').lower()}")
        from solemate_maintenance.hooks import route53 as dns

        route53 = self.client("route53", self.primary_region)
        zone = dns.public_zone_id(route53, self.recovery.hosted_zone)
        primary = (dns.failover_records(route53, zone, self.recovery.record_name) if zone else {}).get("PRIMARY", [])
        balancer = dns.load_balancer(self.client("elbv2"), self.recovery.dr_load_balancer) or {}
        targets = sorted({dns.target_of(r) for r in primary})
        pointed = bool(primary) and targets == [balancer.get("DNSName", "").rstrip(".")]
        yield _check("failover.validation.dns", self.recovery.record_name, pointed,
                     f"PRIMARY -> {', '.join(targets) or 'missing'}")
        if self.recovery.dr_health_endpoint:
            import requests

            url = str(self.recovery.dr_health_endpoint)
            try:
                code = requests.get(url, timeout=10).status_code
                state = f"HTTP {code}"
            except requests.RequestException as exc:
                code, state = None, f"unreachable ({type(exc).__name__})"
            yield _check("failover.validation.health", url, code == 200, f"DR health endpoint answers {state}")
        else:
            yield Finding(check="failover.validation.health", resource="disaster_recovery.dr_health_endpoint",
                          status=Status.SKIPPED, summary="no DR health endpoint configured: check the site by hand")


def _check(check: str, resource: str, ok: bool, summary: str) -> Finding:
    if ok:
        return Finding(check=check, resource=resource, status=Status.OK, summary=summary)
    return Finding(check=check, resource=resource, status=Status.CRITICAL, severity=Severity.P1,
                   summary=f"{summary}: the DR region is not serving correctly")


class FailoverMonitoringOperator(_FailoverStep):
    """Step 8: enhanced monitoring in the DR region: alarms on the restored database and the services
    (idempotent: an alarm is written by name), notifying the DR stack's alarm topic."""

    def __init__(self, *, services: list[str], environment: str,
                 infrastructure_task_id: str = "failover_infrastructure", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.services = services
        self.environment = environment
        self.infrastructure_task_id = infrastructure_task_id

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        stack = context["ti"].xcom_pull(task_ids=self.infrastructure_task_id, key=MEASUREMENTS_XCOM_KEY) or {}
        topic = (stack.get("outputs") or {}).get("AlarmTopicArn")
        actions = {"AlarmActions": [topic], "OKActions": [topic]} if topic else {}
        alarms = [
            (f"{ALARM_PREFIX}{self.environment}-db-cpu", "AWS/RDS", "CPUUtilization",
             [{"Name": "DBInstanceIdentifier", "Value": self.recovery.failover_instance_id}], 80.0),
            (f"{ALARM_PREFIX}{self.environment}-db-connections", "AWS/RDS", "DatabaseConnections",
             [{"Name": "DBInstanceIdentifier", "Value": self.recovery.failover_instance_id}], 400.0),
            *[(f"{ALARM_PREFIX}{self.environment}-{service}-cpu", "AWS/ECS", "CPUUtilization",
               [{"Name": "ClusterName", "Value": self.recovery.cluster},
                {"Name": "ServiceName", "Value": service}], 80.0) for service in self.services],
        ]
        cloudwatch = self.client("cloudwatch")
        for name, namespace, metric, dimensions, threshold in alarms:
            cloudwatch.put_metric_alarm(
                AlarmName=name,
                AlarmDescription=f"DR failover ({context['ti'].run_id}): {metric} in {self.region_name}",
                Namespace=namespace, MetricName=metric, Dimensions=dimensions, Statistic="Average", Period=60,
                EvaluationPeriods=3, Threshold=threshold, ComparisonOperator="GreaterThanOrEqualToThreshold",
                TreatMissingData="missing",
                **actions)
        names = [a[0] for a in alarms]
        self.record(context, alarms=names, topic=topic)
        yield Finding(check="failover.monitoring", resource=self.region_name or "DR region", status=Status.OK,
                      summary=f"{len(names)} alarms in place ({', '.join(names)})"
                              + (f", notifying {topic}" if topic else
                                 ", with no notification topic (the stack output AlarmTopicArn is missing)"))
