"""The failover runbook (the guide's 8 steps), one operator per step.

Every step is idempotent: it looks at what AWS holds first and changes only what is not yet as the
runbook wants it, so clearing a task (or the whole run) and running it again changes nothing twice.
:class:`FailoverGateOperator` runs first and refuses, before any AWS call, a run the config or its
params do not allow. Each step pushes what it did (``measurements``) so the run report is the
incident log.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.timezone import utcnow

from solemate_maintenance import dr
from solemate_maintenance.config import Alerts, DisasterRecovery
from solemate_maintenance.findings import Finding, RunRefused, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.operators.dr.drill import _DrClients
from solemate_maintenance.operators.dr.drill_database import newest_dr_source
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.run_facts import format_instant as _stamp

FAILOVER_PURPOSE = "dr-failover"
# States in which a restored instance serves queries (maintenance work running on it aside).
# A stack in one of these states has its resources in place (an update that rolled back included).
STACK_IN_PLACE = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
                            "IMPORT_ROLLBACK_COMPLETE"})
USABLE_INSTANCE_STATES = frozenset({"available", "backing-up", "storage-optimization", "modifying",
                                    "configuring-enhanced-monitoring", "configuring-log-exports"})
ALARM_PREFIX = "solemate-dr-"


class FailoverGateOperator(BaseOperator):
    """Step 0: refuse the run unless the config allows failover and the run's params confirm it.

    Makes no AWS call. A refusal fails this task (no retry) with one line saying what to fix; every
    other task then stays not run.
    """

    ui_color = "#fbe3e3"

    def __init__(self, *, environment: str, allowed: bool, **kwargs: Any) -> None:
        kwargs["retries"] = 0
        super().__init__(**kwargs)
        self.environment = environment
        self.allowed = allowed

    def execute(self, context: Any) -> dict[str, Any]:
        params = context.get("params") or {}
        conf = getattr(context.get("dag_run"), "conf", None)
        refusal = dr.failover_refusal(confirm=params.get("confirm"), reason=params.get("reason"),
                                      environment=self.environment, allowed=self.allowed,
                                      unknown=dr.unknown_params(conf, dr.declared_params(self, context)))
        if refusal:
            raise RunRefused(refusal)
        request = {"environment": self.environment, "reason": trim(scrub(str(params["reason"]).strip()), 500),
                   "run_id": context["ti"].run_id}
        self.log.info("Failover of %s confirmed: %s", self.environment, request["reason"])
        return request


class _FailoverStep(_DrClients, MaintenanceCheckOperator):
    """A runbook step in the DR region (``region_name``), with the DR settings of the config."""

    def __init__(self, *, recovery: DisasterRecovery, primary_region: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recovery = recovery
        self.primary_region = primary_region

    def record(self, context: Any, **done: Any) -> None:
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value=done)

    def wait_attempts(self, minutes: float, poll: int) -> int:
        return max(1, math.ceil(minutes * 60 / poll))


class FailoverAssessmentOperator(_FailoverStep):
    """Step 1: what is broken in the primary region, and can the DR region take over? Read-only.

    The primary being unhealthy is why this runs: it is reported, not failed on. The DR region lacking
    a database copy or the service is P1 and stops the runbook before anything is created.
    """

    def __init__(self, *, database: str, services: list[str], health_endpoint: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.database = database
        self.services = services
        self.health_endpoint = health_endpoint

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        yield self._primary_health()
        source = newest_dr_source(self.client("rds"), self.database, self.region_name)
        if source is None:
            yield Finding(check="failover.assessment.database", resource=f"{self.database} ({self.region_name})",
                          status=Status.CRITICAL, severity=Severity.P1,
                          summary=f"no replicated backup and no snapshot copy in {self.region_name}: the database "
                                  "cannot be restored there; do not fail over, escalate")
        else:
            kind, _, point = source
            lag = (utcnow() - point).total_seconds() / 60
            yield Finding(check="failover.assessment.database", resource=f"{self.database} ({self.region_name})",
                          status=Status.OK, summary=f"{kind} restorable to {_stamp(point)} ({lag:.1f} min of data "
                                                    "would be lost)")
        ecs = self.client("ecs")
        try:
            found = ecs.describe_services(cluster=self.recovery.cluster, services=self.services).get("services", [])
        except ecs.exceptions.ClusterNotFoundException:
            found = []
        active = {s["serviceName"] for s in found if s.get("status") == "ACTIVE"}
        missing = [s for s in self.services if s not in active]
        if missing:
            yield Finding(check="failover.assessment.application", resource=f"{self.recovery.cluster} "
                          f"({self.region_name})", status=Status.CRITICAL, severity=Severity.P1,
                          summary=f"services not defined in the DR cluster: {', '.join(missing)}")
        else:
            yield Finding(check="failover.assessment.application", resource=self.recovery.cluster, status=Status.OK,
                          summary=f"{len(active)} service(s) defined in the DR cluster")
        before = self._records()
        self.record(context, dns_before=before, dr_source=source[0] if source else None)
        yield Finding(check="failover.assessment.dns", resource=self.recovery.record_name, status=Status.OK,
                      summary="DNS before the failover (for failback): "
                              + (", ".join(f"{k} -> {v}" for k, v in sorted(before.items())) or "no failover records"))

    def _primary_health(self) -> Finding:
        import requests

        try:
            response = requests.get(self.health_endpoint, timeout=10)
            state = f"HTTP {response.status_code}"
            healthy = response.status_code == 200
        except requests.RequestException as exc:
            state, healthy = f"unreachable ({type(exc).__name__})", False
        return Finding(check="failover.assessment.primary", resource=self.health_endpoint,
                       status=Status.OK if healthy else Status.WARNING, severity=None if healthy else Severity.P3,
                       summary=f"primary health endpoint answers {state}"
                               + ("" if not healthy else ": the primary looks healthy, be sure failover is needed"))

    def _records(self) -> dict[str, str]:
        from solemate_maintenance.hooks import route53 as dns

        route53 = self.client("route53", self.primary_region)
        zone = dns.public_zone_id(route53, self.recovery.hosted_zone)
        if zone is None:
            return {}
        return {role: ", ".join(dns.target_of(r) for r in records)
                for role, records in dns.failover_records(route53, zone, self.recovery.record_name).items()}


class FailoverNotifyOperator(_FailoverStep):
    """Steps 2 and the gate/end messages: tell Slack (critical channel), SNS and e-mail.

    A channel that fails is a P3 finding (the runbook goes on; the report lists every delivery).
    """

    def __init__(self, *, stage: str, alerts: Alerts, environment: str, approval_task_id: str = "approve_dns_switch",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage = stage
        self.alerts = alerts
        self.environment = environment
        self.approval_task_id = approval_task_id

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        from solemate_maintenance.notifiers.delivery import (
            DeliveryBudget,
            send_email,
            send_slack,
            send_sns,
            slack_channel_for,
        )
        from solemate_maintenance.notifiers.failure import ALERT_DELIVERIES_XCOM_KEY

        title, lines = self.message(context)
        text = "\n".join(lines)
        budget = DeliveryBudget.for_run(self.alerts.delivery_budget_seconds, f"{context['ti'].run_id}-{self.stage}",
                                        floor=self.alerts.slack_timeout_seconds)
        deliveries = [send_slack(kind=f"failover-{self.stage}", conn_id=slack_channel_for(Severity.P1, self.alerts),
                                 text=title, attachments=[{"color": self.alerts.severities["P1"].color,
                                                           "text": text}],
                                 alerts=self.alerts, context=context, budget=budget)]
        if self.alerts.sns_topic_arn:
            deliveries.append(send_sns(kind=f"failover-{self.stage}", topic_arn=self.alerts.sns_topic_arn,
                                       subject=title, message=f"{title}\n{text}", aws_conn_id=self.aws_conn_id,
                                       context=context, budget=budget))
        if self.alerts.digest_email:
            html = "<p><b>{}</b></p><ul>{}</ul>".format(_html(title), "".join(f"<li>{_html(line)}</li>"
                                                                              for line in lines))
            deliveries.append(send_email(kind=f"failover-{self.stage}", to=list(self.alerts.digest_email),
                                         subject=title, html=html, alerts=self.alerts, context=context,
                                         budget=budget))
        ti = context["ti"]
        ti.xcom_push(key=ALERT_DELIVERIES_XCOM_KEY,
                     value=[d.model_copy(update={"task_id": ti.task_id}).model_dump() for d in deliveries])
        self.record(context, message=title, **({"headline": title} if self.stage == "end" else {}))
        if self.stage == "end":
            yield self._decision(context)
        failed = [d.channel for d in deliveries if not d.arrived]
        if failed:
            yield Finding(check=f"failover.communication.{self.stage}", resource=", ".join(failed),
                          status=Status.WARNING, severity=Severity.P3,
                          summary=f"'{title}' not delivered to {', '.join(failed)}: tell them by phone")
        else:
            yield Finding(check=f"failover.communication.{self.stage}", resource=self.stage, status=Status.OK,
                          summary=f"sent to {', '.join(d.channel for d in deliveries)}: {title}")

    def _decision(self, context: Any) -> Finding:
        """The human decision at the DNS gate, for the incident log."""
        ti = context["ti"]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        approval = ti.xcom_pull(task_ids=self.approval_task_id) or {}
        if states.get(self.approval_task_id) != "success":
            return Finding(check="failover.approval", resource=self.approval_task_id, status=Status.SKIPPED,
                           summary=f"the DNS gate was not passed (approval task "
                                   f"{states.get(self.approval_task_id) or 'not run'})")
        decision = "rejected" if failover_outcome(states, self.approval_task_id) == "rejected" else "approved"
        return Finding(check="failover.approval", resource=self.approval_task_id, status=Status.OK,
                       summary=f"{decision}{_by(approval)}", details={"decision": decision})

    def message(self, context: Any) -> tuple[str, list[str]]:
        ti = context["ti"]
        params = context.get("params") or {}
        reason = trim(scrub(str(params.get("reason") or "")), 300)
        where = f"{self.environment} -> {self.region_name}"
        run = f"Run {ti.run_id}: {ti.log_url.split('/tasks/')[0] if getattr(ti, 'log_url', None) else ''}"
        if self.stage == "start":
            return (f":rotating_light: DR FAILOVER STARTED: {where}",
                    [f"Reason: {reason}", "Now: DR infrastructure, database restore from the latest point in time, "
                     "application scale-up in the DR region. DNS is NOT switched before a human approves.", run])
        if self.stage == "gate":
            database = ti.xcom_pull(task_ids="failover_database", key=MEASUREMENTS_XCOM_KEY) or {}
            application = ti.xcom_pull(task_ids="failover_application", key=MEASUREMENTS_XCOM_KEY) or {}
            return (f":raised_hand: DR FAILOVER awaiting approval to switch DNS: {where}",
                    [f"Database {database.get('instance', '?')} available at {database.get('endpoint', '?')}, "
                     f"restored to {database.get('restore_point', '?')} (data lost: "
                     f"{database.get('rpo_minutes', '?')} min)",
                     "Before approving: point the DR application's database secret at that endpoint (the "
                     "services were scaled with the secret as it is)",
                     f"Application: {application.get('services', '?')} running in {self.region_name}",
                     f"Approve or reject in Airflow: Browse > Required Actions, task {self.approval_task_id}", run])
        return self._end(context, where, reason, run)

    def _end(self, context: Any, where: str, reason: str, run: str) -> tuple[str, list[str]]:
        ti = context["ti"]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        approval = ti.xcom_pull(task_ids=self.approval_task_id) or {}
        switched = ti.xcom_pull(task_ids="failover_dns", key=MEASUREMENTS_XCOM_KEY) or {}
        outcome = failover_outcome(states, self.approval_task_id)
        if outcome == "stopped":
            failed = sorted(t for t, s in states.items() if s == "failed" and t != ti.task_id)
            not_reached = sorted(t for t, s in states.items() if s == "upstream_failed")
            why = [f"{f.get('check')}: {f.get('summary')}" for task_id in failed
                   for f in ti.xcom_pull(task_ids=task_id, key="findings") or []
                   if f.get("severity") in ("P1", "P2")][:3]
            return (f":x: DR FAILOVER STOPPED at {', '.join(failed) or 'an unknown step'}: {where}",
                    [*(why or ["(no finding: the task log says why)"]),
                     f"Not run: {', '.join(not_reached) or 'none'}. What was done before the stop is still in place "
                     "(see the run report); fix the cause and clear the failed task to resume.", f"Reason: {reason}",
                     run])
        if outcome == "rejected":
            return (f":no_entry: DR FAILOVER REJECTED at the DNS gate: {where}",
                    [f"Rejected{_by(approval)}: DNS unchanged, traffic still goes to the primary.",
                     f"Still in the DR region: the restored database {self.recovery.failover_instance_id} (delete "
                     "it: a later failover refuses its stale data), the scaled services and the DR stack (they can "
                     "stay as a warm standby).", run])
        return (f":white_check_mark: DR FAILOVER COMPLETE: {where}",
                [f"{self.recovery.record_name} -> {switched.get('now', '?')} (was {switched.get('before', '?')})",
                 f"Approved{_by(approval)}. Validation and DR alarms in place; see the report.",
                 f"Reason: {reason}", run])


def failover_outcome(states: dict[str, str | None], approval_task_id: str) -> str:
    """completed, rejected (the gate answered Reject: its downstream was skipped) or stopped."""
    if states.get(approval_task_id) == "success" and states.get("failover_dns") == "skipped":
        return "rejected"
    if all(states.get(t) == "success" for t in ("failover_dns", "failover_validation", "failover_monitoring")):
        return "completed"
    return "stopped"


def _by(approval: dict[str, Any]) -> str:
    who = _who(approval)
    return f" by {who}" if who != "?" else " (who answered: the task's Required Actions history)"


def _who(approval: dict[str, Any]) -> str:
    user = approval.get("responded_by_user") or approval.get("responded_by") or {}
    if isinstance(user, dict):
        return str(user.get("name") or user.get("id") or "?")
    return str(user or "?")


def _html(text: str) -> str:
    import html

    return html.escape(text)
