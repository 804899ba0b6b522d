"""## Monthly review

On the 3rd of each month at 06:00 UTC, for the month just ended: Cost Explorer has the month's last
days by then. The run *for* November has the data interval November 3 – December 3 and reviews the
calendar month November, so a backfill of past months reviews each of them:

* `security_audit`: IAM users without MFA, access keys over 90 days old or unused for 45, root keys,
  root without MFA or used recently (credential report); S3 buckets public by ACL or policy or
  without a public access block, unencrypted S3/RDS/EBS; a multi-region CloudTrail trail logging.
  Prowler's semantics, its check id in each finding. Plus `open_security_groups`, the daily check.
* `performance_report`: the month's P95/P99 latency, error rate and availability against the KPI
  targets, the days that missed, right-sizing hints for ECS and RDS, two charts.
* `cost_review`: Cost Explorer, the month by service against the previous one, the biggest movers,
  anomalies, the forecast of the month in progress (live runs), the optional budget; a chart.
  Answers are cached in the reports bucket: a re-run of a month makes no Cost Explorer call.
* `thresholds_review`: the guide's "review monitoring thresholds": per CloudWatch alarm and per daily
  check threshold, how often it fired, time in ALARM, flapping, never fired, the month's p99 against
  the threshold, and a suggestion (P4). Nothing is changed.
* `backup_strategy`: the guide's "review backup strategy": the month's restore tests against RTO/RPO,
  failed AWS Backup jobs, the newest recovery point's worst age, storage by vault.
* `stakeholder_summary` (after those): incidents by severity from the month's daily reports, MTTA
  and MTTR per severity from the incident record, KPI attainment, backups, restore tests and the
  backup strategy, the thresholds review, the DR drill, cost and the audit, as Markdown and HTML in
  the reports bucket, e-mailed once to `monthly_summary.recipients`.
* `report` / `run_verdict`: as in `daily_maintenance`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import TriggerRule, dag

from solemate_maintenance.config import load_config
from solemate_maintenance.dag_defaults import maintenance_defaults, maintenance_status
from solemate_maintenance.incidents import incident_key
from solemate_maintenance.operators.housekeeping.security import OpenSecurityGroupsOperator
from solemate_maintenance.operators.report import PublishReportOperator, RunVerdictOperator
from solemate_maintenance.operators.reviews.audit import SecurityAuditOperator
from solemate_maintenance.operators.reviews.backup_strategy import BackupStrategyOperator
from solemate_maintenance.operators.reviews.cost import CostReviewOperator
from solemate_maintenance.operators.reviews.performance import PerformanceReportOperator
from solemate_maintenance.operators.reviews.summary import StakeholderSummaryOperator
from solemate_maintenance.operators.reviews.thresholds import ThresholdReviewOperator
from solemate_maintenance.schedules import scheduled_dags

config = load_config()
DAG_ID = "monthly_review"
resources = config.resources
reporting = {"bucket": config.reports.bucket, "prefix": config.reports.prefix,
             "environment": config.environment, "alerts": config.alerts,
             "incident_key": incident_key(config)}


@dag(
    dag_id=DAG_ID,
    description="Monthly security audit, performance report, cached cost review and stakeholder summary",
    schedule=scheduled_dags(config)[DAG_ID].timetable(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["maintenance", "monthly", "review", config.environment],
    doc_md=__doc__,
    default_args=maintenance_defaults(config, DAG_ID),
)
def monthly_review():
    audit = SecurityAuditOperator(task_id="security_audit", regions=[config.regions.primary, config.regions.dr])
    open_ports = OpenSecurityGroupsOperator(task_id="open_security_groups",
                                            allowed=config.checks.security.open_ingress_allowed)
    performance = PerformanceReportOperator(
        task_id="performance_report",
        load_balancer_name=resources.alb.name,
        kpis=config.kpis,
        cluster=resources.ecs.cluster,
        services=resources.ecs.services,
        db_instance_identifier=resources.rds.instance_id,
        right_sizing=config.right_sizing,
        bucket=config.reports.bucket,
        reports_prefix=config.reports.prefix,
    )
    cost = CostReviewOperator(task_id="cost_review", settings=config.cost, bucket=config.reports.bucket,
                              reports_prefix=config.reports.prefix)
    thresholds = ThresholdReviewOperator(task_id="thresholds_review", bucket=config.reports.bucket,
                                         reports_prefix=config.reports.prefix)
    backups = BackupStrategyOperator(task_id="backup_strategy", policy=config.backups, dr_region=config.regions.dr,
                                     bucket=config.reports.bucket, reports_prefix=config.reports.prefix)
    summary = StakeholderSummaryOperator(
        task_id="stakeholder_summary",
        summary=config.monthly_summary,
        alerts=config.alerts,
        environment=config.environment,
        bucket=config.reports.bucket,
        reports_prefix=config.reports.prefix,
        review_tasks={"performance": "performance_report", "cost": "cost_review", "audit": "security_audit",
                      "backups": "backup_strategy", "thresholds": "thresholds_review"},
        incident_key=incident_key(config),
        trigger_rule=TriggerRule.ALL_DONE,  # a failed audit is part of the month's story, not a reason to skip it
    )
    reviews = [audit, open_ports, performance, cost, thresholds, backups]
    [audit, performance, cost, thresholds, backups] >> summary
    checks_done = [*reviews, summary]
    report = PublishReportOperator(task_id="report",
                                   previous_report_wait_minutes=config.reports.previous_report_wait_minutes,
                                   **reporting)
    checks_done >> report
    [*checks_done, report] >> RunVerdictOperator(task_id="run_verdict", report_task_id="report", **reporting)
    report >> maintenance_status(config)


dag = monthly_review()

if __name__ == "__main__":
    dag.test()
