"""## DR failover (the activation runbook, gated)

Moves production to the DR region, following the operations guide's 8 steps. **Changes production.**
Trigger it only when the incident lead has decided to fail over: **Trigger ▸ the form**:

* `confirm`: type the environment name (e.g. `production`), exactly;
* `reason`: the incident and who decided (it goes to Slack, SNS, e-mail and the report).

It also runs only when `disaster_recovery.allow_failover` is `true` in the platform config (a reviewed
change). Otherwise `failover_gate` fails with one line saying what is missing, and nothing is
touched.

1. `failover_assessment`: primary health, a database copy and the services in the DR region, DNS
   before (for failback). Read-only.
2. `notify_start`: Slack critical channel, SNS, e-mail.
3. `failover_infrastructure`: creates the DR CloudFormation stack (once).
4. `failover_database`: restores the latest restorable point into `failover_instance_id`
   (deletion protection on).
5. `failover_application`: scales the DR services to production's task counts.
* The gate: `notify_gate`, then `approve_dns_switch` waits for **a human** (Browse > Required
  Actions, or the task's page). Reject stops here: DNS is not touched.
6. `failover_dns`: points the PRIMARY failover record at the DR load balancer.
7. `failover_validation`: database, services, DNS and the DR health endpoint.
8. `failover_monitoring`: CloudWatch alarms in the DR region.
* `notify_end` and `report`: the outcome to every channel; the report is the incident log.

Every step checks AWS first and changes only what is not done yet: after a failure, fix the cause and
**clear the failed task**; the run resumes from there and repeats nothing. Waits are deferred.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param, TriggerRule, dag

from solemate_maintenance.config import load_config
from solemate_maintenance.dag_defaults import maintenance_defaults
from solemate_maintenance.notifiers.status import status_updates
from solemate_maintenance.operators.dr.failover import (
    FailoverAssessmentOperator,
    FailoverGateOperator,
    FailoverNotifyOperator,
)
from solemate_maintenance.operators.dr.failover_steps import (
    FailoverApplicationOperator,
    FailoverDatabaseOperator,
    FailoverDnsSwitchOperator,
    FailoverInfrastructureOperator,
    FailoverMonitoringOperator,
    FailoverValidationOperator,
)
from solemate_maintenance.operators.report import PublishReportOperator, RunVerdictOperator

config = load_config()
DAG_ID = "dr_failover"
recovery = config.disaster_recovery
services = [s.name for s in config.resources.ecs.services]
reporting = {"bucket": config.reports.bucket, "prefix": config.reports.prefix,
             "environment": config.environment, "alerts": config.alerts}
step = {"recovery": recovery, "primary_region": config.regions.primary, "region_name": config.regions.dr}
notify = {"alerts": config.alerts, "environment": config.environment, **step}
# Each step's update in the critical channel: with the start, gate and end messages, the incident log.
update = status_updates(config.alerts, config.environment, "DR failover", critical=True)


@dag(
    dag_id=DAG_ID,
    description="Gated DR failover runbook: DR stack, database restore, app scale-up, approval, DNS switch",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["maintenance", "disaster-recovery", "destructive", config.environment],
    doc_md=__doc__,
    default_args=maintenance_defaults(config, DAG_ID, execution_timeout=timedelta(minutes=30)),
    params={
        "confirm": Param("", type="string", maxLength=64, title="Confirm: type the environment name",
                         description=f"Exactly '{config.environment}'. Anything else stops the run before it "
                                     "changes anything."),
        "reason": Param("", type="string", maxLength=500, title="Reason",
                        description="The incident and who decided to fail over (sent to every channel)."),
    },
)
def dr_failover():
    gate = FailoverGateOperator(task_id="failover_gate", environment=config.environment,
                                allowed=recovery.allow_failover)
    assessment = FailoverAssessmentOperator(
        task_id="failover_assessment", database=config.resources.rds.instance_id, services=services,
        health_endpoint=str(config.resources.alb.health_endpoint), **step)
    start = FailoverNotifyOperator(task_id="notify_start", stage="start", **notify)
    infrastructure = FailoverInfrastructureOperator(task_id="failover_infrastructure", environment=config.environment,
                                                    **step, on_success_callback=update("1/6 DR infrastructure ready"))
    database = FailoverDatabaseOperator(task_id="failover_database", database=config.resources.rds.instance_id, **step,
                                        on_success_callback=update("2/6 database restored in the DR region"))
    application = FailoverApplicationOperator(task_id="failover_application", cluster=config.resources.ecs.cluster,
                                              services={s.name: s.min_tasks for s in config.resources.ecs.services},
                                              **step,
                                              on_success_callback=update("3/6 application running in the DR region"))
    at_gate = FailoverNotifyOperator(task_id="notify_gate", stage="gate", **notify)
    approve_dns_switch = ApprovalOperator(
        task_id="approve_dns_switch", subject=f"Switch {recovery.record_name} to {config.regions.dr}?",
        body=("The DR region is ready: database restored, services scaled (see the run's report and "
              f"notify_gate). Approve to point {recovery.record_name} at the load balancer "
              f"{recovery.dr_load_balancer} in {config.regions.dr}. "
              "Reject to stop here with DNS unchanged.\n\nReason given: {{ params.reason }}"),
        response_timeout=timedelta(hours=4), retries=0)
    dns = FailoverDnsSwitchOperator(task_id="failover_dns", **step, on_success_callback=update("4/6 DNS switched"))
    validation = FailoverValidationOperator(task_id="failover_validation", services=services, **step,
                                            on_success_callback=update("5/6 DR region validated"))
    monitoring = FailoverMonitoringOperator(task_id="failover_monitoring", services=services,
                                            environment=config.environment, **step,
                                            on_success_callback=update("6/6 monitoring in place"))
    # The end message, the report and the verdict run whatever happened, unless the gate refused the
    # run: the gate is a setup (with no teardown), and Airflow does not start anything downstream of a
    # setup that failed, ALL_DONE tasks included. So a refused run touches nothing, not even S3.
    end = FailoverNotifyOperator(task_id="notify_end", stage="end", trigger_rule=TriggerRule.ALL_DONE, **notify)
    gate.as_setup()
    (gate >> assessment >> start >> infrastructure >> database >> application >> at_gate >> approve_dns_switch >> dns
     >> validation >> monitoring >> end)
    steps = [assessment, start, infrastructure, database, application, at_gate, dns, validation, monitoring, end]
    # The gate and the approval are read through also_collect: a setup's direct downstream must be
    # ALL_SUCCESS, and the approval's direct downstream is skipped on a rejection.
    collected = [gate.task_id, approve_dns_switch.task_id]
    report = PublishReportOperator(task_id="report", previous_report_wait_minutes=0, also_collect=collected,
                                   **reporting)
    steps >> report
    [*steps, report] >> RunVerdictOperator(task_id="run_verdict", report_task_id="report", also_collect=collected,
                                           **reporting)


dag = dr_failover()

if __name__ == "__main__":
    dag.test()
