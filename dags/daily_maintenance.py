"""## Daily maintenance

Health checks of the SoleMate platform, every day at 02:00 UTC: application endpoint and ALB
targets, ECS services, RDS, ElastiCache, business metrics and service KPIs; then the housekeeping:
security events and world-open ports, log lifecycle, unused resources and their cost, a backup of
the configuration (never a secret value), the alarms that fired overnight; and the monitoring itself:
the guide's alarms and their SNS subscriptions, the overview dashboard, ECS auto scaling, pending
updates with deadlines, the log pipeline's delivery and the day's application errors.

* Each check records its findings; a **P1/P2** finding fails its task and alerts Slack.
* Metric windows end at the run's logical date (cron *trigger* timetable, zero-length data
  interval) and reach back the look-back configured per check, so backfills measure their own day.
* `report` always runs: it writes `report.json` / `report.md` to the reports bucket (also under the
  checked date), marks findings new / ongoing / resolved against the previous date (waiting for it
  during a concurrent backfill) and posts one digest to Slack. Every message names the date checked.
* `run_verdict` fails the run when a check or the report failed, and rebuilds the report after
  "clear only failed tasks" so it always describes the final state.
* `maintenance_status` (after the report, always) publishes findings, failed checks and a heartbeat to
  CloudWatch (`SoleMate/Maintenance`), keeps its dashboard, and the alarm that fires when the
  heartbeat stops (the dead-man's switch for a night Airflow is down).
* Configuration: `include/config/platform.yaml` (or the file named by `MAINTENANCE_CONFIG`).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import TriggerRule, dag

from solemate_maintenance.config import load_config
from solemate_maintenance.dag_defaults import maintenance_defaults, maintenance_status
from solemate_maintenance.incidents import incident_key
from solemate_maintenance.operators.health.application import ApplicationHealthOperator
from solemate_maintenance.operators.health.business import BusinessMetricsOperator
from solemate_maintenance.operators.health.ecs import EcsServiceHealthOperator
from solemate_maintenance.operators.health.elasticache import ElastiCacheHealthOperator
from solemate_maintenance.operators.health.kpi import KpiOperator
from solemate_maintenance.operators.health.rds import RdsHealthOperator
from solemate_maintenance.operators.housekeeping.config_backup import ConfigBackupOperator
from solemate_maintenance.operators.housekeeping.logs import LogLifecycleOperator
from solemate_maintenance.operators.housekeeping.reports_lifecycle import ReportsLifecycleOperator
from solemate_maintenance.operators.housekeeping.security import OpenSecurityGroupsOperator, SecurityEventsOperator
from solemate_maintenance.operators.housekeeping.unused import UnusedResourcesOperator
from solemate_maintenance.operators.monitoring.alarms import (
    CloudWatchAlarmsOperator,
    NotificationPathsOperator,
    OverviewDashboardOperator,
)
from solemate_maintenance.operators.monitoring.cloudwatch_status import OvernightAlarmsOperator
from solemate_maintenance.operators.monitoring.log_pipeline import ApplicationErrorsOperator, LogPipelineOperator
from solemate_maintenance.operators.monitoring.scaling import EcsScalingPolicyOperator
from solemate_maintenance.operators.monitoring.updates import PendingUpdatesOperator
from solemate_maintenance.operators.report import PublishReportOperator, RunVerdictOperator
from solemate_maintenance.schedules import scheduled_dags

config = load_config()
DAG_ID = "daily_maintenance"
resources, checks, monitoring = config.resources, config.checks, config.monitoring


@dag(
    dag_id=DAG_ID,
    description="Daily health, performance and business checks of the SoleMate platform, with report and alerts",
    schedule=scheduled_dags(config)[DAG_ID].timetable(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["maintenance", "daily", config.environment],
    doc_md=__doc__,
    default_args=maintenance_defaults(config, DAG_ID),
)
def daily_maintenance():
    health_checks = [
        ApplicationHealthOperator(
            task_id="application_health",
            endpoint=str(resources.alb.health_endpoint),
            load_balancer_name=resources.alb.name,
            timeout_seconds=checks.application.timeout_seconds,
            latency_ms=checks.application.latency_ms,
            lookback_minutes=checks.application.lookback_minutes,
            period_seconds=checks.application.period_seconds,
            troubleshoot=config,
        ),
        EcsServiceHealthOperator(
            task_id="ecs_services",
            cluster=resources.ecs.cluster,
            services=resources.ecs.services,
            thresholds=checks.ecs,
            troubleshoot=config,
        ),
        RdsHealthOperator(
            task_id="rds_health",
            db_instance_identifier=resources.rds.instance_id,
            db_conn_id=resources.rds.db_conn_id,
            thresholds=checks.rds,
            troubleshoot=config,
        ),
        ElastiCacheHealthOperator(
            task_id="elasticache_health",
            cache_cluster_id=resources.elasticache.cluster_id,
            thresholds=checks.elasticache,
            troubleshoot=config,
        ),
        BusinessMetricsOperator(
            task_id="business_metrics",
            namespace=resources.business_metrics_namespace,
            thresholds=checks.business,
        ),
        KpiOperator(
            task_id="performance_kpis",
            load_balancer_name=resources.alb.name,
            kpis=config.kpis,
            thresholds=checks.kpis,
            troubleshoot=config,
        ),
    ]
    housekeeping = [
        SecurityEventsOperator(
            task_id="security_events",
            log_group=resources.logs.application_log_group,
            thresholds=checks.security,
        ),
        OpenSecurityGroupsOperator(task_id="open_security_groups", allowed=checks.security.open_ingress_allowed),
        log_lifecycle := LogLifecycleOperator(task_id="log_lifecycle", lifecycle=config.log_lifecycle),
        reports_lifecycle := ReportsLifecycleOperator(task_id="reports_lifecycle", config=config,
                                                      trigger_rule=TriggerRule.ALL_DONE),
        UnusedResourcesOperator(
            task_id="unused_resources",
            thresholds=checks.unused_resources,
            excluded_snapshot_prefixes=[config.restore_test.instance_prefix,
                                        config.disaster_recovery.drill.instance_prefix],
        ),
        ConfigBackupOperator(
            task_id="config_backup",
            cluster=resources.ecs.cluster,
            services=resources.ecs.services,
            bucket=config.reports.bucket,
            reports_prefix=config.reports.prefix,
            settings=config.config_backup,
        ),
        OvernightAlarmsOperator(task_id="overnight_alarms"),
    ]
    # Monitoring the monitoring: the guide's alarms, their topics, the dashboard, scaling, pending
    # updates and the log pipeline, against monitoring.* (alarms change only with monitoring.enforce).
    monitoring_checks = [
        CloudWatchAlarmsOperator(task_id="alarms", monitoring=monitoring, platform=resources,
                                 environment=config.environment),
        NotificationPathsOperator(task_id="notification_paths", monitoring=monitoring),
        OverviewDashboardOperator(task_id="overview_dashboard", monitoring=monitoring),
        EcsScalingPolicyOperator(task_id="auto_scaling", ecs=resources.ecs, policy=monitoring.scaling),
        PendingUpdatesOperator(task_id="pending_updates", platform=resources, updates=monitoring.updates),
        LogPipelineOperator(task_id="log_pipeline", pipeline=monitoring.log_pipeline),
        ApplicationErrorsOperator(task_id="application_errors", log_group=resources.logs.application_log_group,
                                  pipeline=monitoring.log_pipeline, bucket=config.reports.bucket,
                                  reports_prefix=config.reports.prefix,
                                  query_timeout_seconds=checks.security.query_timeout_seconds,
                                  poll_seconds=checks.security.poll_seconds),
    ]
    reporting = {"bucket": config.reports.bucket, "prefix": config.reports.prefix,
                 "environment": config.environment, "alerts": config.alerts,
             "incident_key": incident_key(config)}
    report = PublishReportOperator(
        task_id="report",
        previous_report_wait_minutes=config.reports.previous_report_wait_minutes,
        **reporting,
    )
    checks_done = [*health_checks, *housekeeping, *monitoring_checks]
    # One after the other: when the log archives live in the reports bucket, both rewrite its lifecycle.
    log_lifecycle >> reports_lifecycle
    checks_done >> report
    [*checks_done, report] >> RunVerdictOperator(task_id="run_verdict", report_task_id="report", **reporting)
    # The daily run also publishes how old the weekly and monthly DAGs' heartbeats are (their alarms
    # watch that age: CloudWatch cannot look back a week or a month for a missing heartbeat).
    report >> maintenance_status(config, heartbeat_max_gap_hours=config.maintenance_status.heartbeat_max_gap_hours,
                                 publish_heartbeat_ages=True)


dag = daily_maintenance()

if __name__ == "__main__":
    dag.test()
