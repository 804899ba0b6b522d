"""## DR drill (test mode, non-destructive)

Measures, component by component, how the platform would come back in the DR region, against the
operations guide's table (`disaster_recovery.targets`). Runs on the 1st of every month at 04:00 UTC
and whenever on-call triggers it: **Trigger ▸ the form** — pick the components, the DR region and
say why.

* **Database**: restores the replicated backups (else the newest snapshot copy) into a throw-away
  instance, validates the data with the restore test's SQL, deletes it. RPO: now minus the newest
  restorable point; RTO: request to validated data.
* **Application**: cluster, service, task definition and image (production's digest) exist there;
  starts one task, waits for RUNNING, stops it. RPO: how far the DR image lags; RTO: request to running.
* **Static assets**: the replication rule is enabled; the newest objects are compared with the
  replica. RPO: replication lag; RTO: the replica serves the newest object.
* **Complete system**: Route 53 PRIMARY/SECONDARY records with a health check; the DR CloudFormation
  template validates. RTO: database + application + DNS TTL; RPO: the worst of the parts.

Nothing in production changes. Everything created is named `dr-drill-<date>-<digest>`, tagged, and
deleted by teardown tasks that run even when a measurement fails; `dr_scorecard` checks nothing is
left and writes the table. A missed target is P2; a component that cannot fail over at all is P1.
Expect about RTO-of-a-restore minutes (waits are deferred: no worker slot is held).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, TriggerRule, dag

from solemate_maintenance.config import DR_COMPONENTS, known_regions, load_config
from solemate_maintenance.dag_defaults import maintenance_defaults, maintenance_status
from solemate_maintenance.notifiers.status import status_updates
from solemate_maintenance.operators.backups.restore import RestoreJanitorOperator
from solemate_maintenance.operators.dr.drill import DrDrillGateOperator
from solemate_maintenance.operators.dr.drill_application import (
    DrApplicationReadinessOperator,
    DrApplicationTaskCleanupOperator,
    DrApplicationTaskOperator,
    DrApplicationTaskStartOperator,
)
from solemate_maintenance.operators.dr.drill_assets import DrStaticAssetsOperator
from solemate_maintenance.operators.dr.drill_database import (
    DrDatabaseCleanupOperator,
    DrDatabaseRestoreRequestOperator,
    DrDatabaseValidationOperator,
)
from solemate_maintenance.operators.dr.drill_scorecard import DrDrillScorecardOperator
from solemate_maintenance.operators.dr.drill_system import DrFailoverReadinessOperator
from solemate_maintenance.operators.report import PublishReportOperator, RunVerdictOperator
from solemate_maintenance.schedules import scheduled_dags

config = load_config()
DAG_ID = "dr_drill"
recovery = config.disaster_recovery
drill = recovery.drill
reporting = {"bucket": config.reports.bucket, "prefix": config.reports.prefix,
             "environment": config.environment, "alerts": config.alerts}
in_dr = {"region_name": "{{ params.region }}", "primary_region": config.regions.primary}
restore_args = {"source_db_instance_identifier": config.resources.rds.instance_id,
                "settings": config.drill_restore_settings(), "environment": config.environment,
                "region_name": "{{ params.region }}"}
task_args = {"dr_cluster": recovery.cluster, "service": config.resources.ecs.services[0].name,
             "token_prefix": drill.instance_prefix, "timeout_minutes": drill.task_timeout_minutes,
             "poll_seconds": drill.poll_seconds, "target": recovery.targets["application"], **in_dr}
regions = sorted(set(known_regions()) - {config.regions.primary}) or None


@dag(
    dag_id=DAG_ID,
    description="Non-destructive DR drill: measures each component's RTO/RPO in the DR region against the guide",
    schedule=scheduled_dags(config)[DAG_ID].timetable(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["maintenance", "monthly", "disaster-recovery", config.environment],
    doc_md=__doc__,
    # The restore and the task start wait deferred; the timeout bounds the validation queries.
    default_args=maintenance_defaults(config, DAG_ID, execution_timeout=timedelta(minutes=30)),
    params={
        "components": Param(list(DR_COMPONENTS), type="array", minItems=1, uniqueItems=True,
                            items={"type": "string", "enum": list(DR_COMPONENTS)}, title="Components",
                            description="Which parts of the guide's DR table to drill (all by default)."),
        "region": Param(config.regions.dr, type="string", title="DR region",
                        description="Where to measure recovery; the configured DR region by default (never the "
                                    "primary region: recovering where the outage is proves nothing).",
                        **({"enum": regions} if regions else {"pattern": r"^[a-z]{2}(-[a-z]+)+-\d$",
                                                              "not": {"const": config.regions.primary}})),
        "reason": Param("scheduled monthly drill", type="string", minLength=1, maxLength=500, pattern=r"\S",
                        title="Reason",
                        description="Why this drill runs (shown in the report, e.g. 'after the VPC change')."),
    },
)
def dr_drill():
    # Refuses a misspelt key or a blank reason before anything starts (a setup: on a refusal nothing
    # downstream runs, the scorecard and the report included).
    update = status_updates(config.alerts, config.environment, "DR drill")
    gate = DrDrillGateOperator(task_id="dr_drill_gate", on_success_callback=update(
        "started", expected_minutes=max(t.rto_minutes for t in recovery.targets.values()),
        why="Measuring recovery in the DR region against the guide's DR targets (database, application, static "
            "assets, complete system). Production is not changed; every copy is tagged and deleted.")).as_setup()
    janitor = RestoreJanitorOperator(task_id="dr_drill_janitor", **restore_args)
    db_request = DrDatabaseRestoreRequestOperator(task_id="dr_database_request",
                                                  target=recovery.targets["database"], **restore_args)
    db_validate = DrDatabaseValidationOperator(
        task_id="dr_database_validate", request_task_id=db_request.task_id, policy=config.backups,
        target=recovery.targets["database"], reports=reporting, **restore_args,
        on_success_callback=update("database restored in the DR region and validated"))
    db_cleanup = DrDatabaseCleanupOperator(task_id="dr_database_cleanup", **restore_args)
    db_request >> db_validate >> db_cleanup.as_teardown(setups=db_request)

    app_ready = DrApplicationReadinessOperator(
        task_id="dr_application_readiness", cluster=config.resources.ecs.cluster,
        services=[s.name for s in config.resources.ecs.services], dr_cluster=recovery.cluster,
        target=recovery.targets["application"], **in_dr)
    app_start = DrApplicationTaskStartOperator(task_id="dr_application_start", subnets=drill.task_subnets,
                                               security_groups=drill.task_security_groups, **task_args)
    app_task = DrApplicationTaskOperator(task_id="dr_application_rto", **task_args,
                                         on_success_callback=update("application task running in the DR region"))
    app_cleanup = DrApplicationTaskCleanupOperator(
        task_id="dr_application_cleanup", dr_cluster=recovery.cluster, token_prefix=drill.instance_prefix,
        timeout_minutes=drill.task_timeout_minutes, poll_seconds=drill.poll_seconds, expiry_hours=drill.expiry_hours,
        region_name="{{ params.region }}")
    app_start >> app_task >> app_cleanup.as_teardown(setups=app_start)

    assets = DrStaticAssetsOperator(task_id="dr_static_assets", buckets=recovery.asset_buckets,
                                    sample=drill.replication_sample, target=recovery.targets["static_assets"],
                                    **in_dr, on_success_callback=update("static assets replicated"))
    system = DrFailoverReadinessOperator(task_id="dr_failover_readiness", hosted_zone=recovery.hosted_zone,
                                         record_name=recovery.record_name,
                                         dr_load_balancer=recovery.dr_load_balancer,
                                         template_path=recovery.cloudformation_template,
                                         target=recovery.targets["complete_system"], **in_dr,
                                         on_success_callback=update("failover readiness checked"))
    scorecard = DrDrillScorecardOperator(
        task_id="dr_scorecard", targets=recovery.targets, trigger_rule=TriggerRule.ALL_DONE,
        measured_by={"database": [db_request.task_id, db_validate.task_id],
                     "application": [app_ready.task_id, app_start.task_id, app_task.task_id],
                     "static_assets": [assets.task_id], "complete_system": [system.task_id]},
        cleanup_task_ids=[db_cleanup.task_id, app_cleanup.task_id], token_prefix=drill.instance_prefix,
        dr_cluster=recovery.cluster, reports=reporting, region_name="{{ params.region }}",
        on_success_callback=update("finished: the scorecard is in the report"))
    measured = [janitor, db_validate, db_cleanup, app_ready, app_task, app_cleanup, assets, system]
    gate >> [janitor, db_request, app_ready, app_start, assets, system]
    measured >> scorecard
    # The report reads the setups' findings without being their direct downstream (see also_collect).
    setups = [gate.task_id, db_request.task_id, app_start.task_id]
    checks = [*measured, scorecard]
    report = PublishReportOperator(task_id="report", previous_report_wait_minutes=0, also_collect=setups,
                                   **reporting)
    checks >> report
    [*checks, report] >> RunVerdictOperator(task_id="run_verdict", report_task_id="report", also_collect=setups,
                                            **reporting)
    report >> maintenance_status(config)


dag = dr_drill()

if __name__ == "__main__":
    dag.test()
