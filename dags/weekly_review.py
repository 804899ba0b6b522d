"""## Weekly review

Every Monday at 04:00 UTC, the operations guide's weekly list beyond backups (those are
`weekly_backup_verification`'s): nothing here changes the platform.

* `database_maintenance`: through the read-only `platform_db` connection: top statements by total
  time (pg_stat_statements; its absence is a finding with the fix), unused indexes with their size,
  dead tuples and last (auto)vacuum/analyze, transaction-ID wraparound age, long transactions,
  connections against `max_connections` and the guide's 100 per service. Recommendations in the report.
* `certificates`: ACM certificates in both regions (30 days left P2, 7 days P1, failed renewals) and a
  live TLS probe of the public endpoints (chain, host name, expiry): what users are really served.
* `image_vulnerabilities`: ECR scan findings of the images the ECS services run (critical P2, high P3),
  with the CVE ids and the image digest.
* `capacity_planning`: four weeks of daily peaks (ECS CPU/memory/tasks, RDS CPU/connections/free
  storage, Redis memory), their trend and the days until each limit (under 30 P3, under 7 P2), with a
  chart per metric next to the report.
* `stack_drift`: CloudFormation drift detection on `monitoring.drift.stacks` (deferred while AWS
  works), the drifted resources with each property expected and actual (P3).
* `report` / `run_verdict`: as in `daily_maintenance`. Windows end at the run's logical date, so a
  backfill measures its own weeks; certificates, scans and the database's statistics are live state.
* Configuration: `checks.database`, `checks.certificates`, `checks.vulnerabilities`, `checks.capacity`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from solemate_maintenance.config import load_config
from solemate_maintenance.dag_defaults import maintenance_defaults, maintenance_status
from solemate_maintenance.incidents import incident_key
from solemate_maintenance.operators.monitoring.drift import StackDriftOperator
from solemate_maintenance.operators.report import PublishReportOperator, RunVerdictOperator
from solemate_maintenance.operators.reviews.capacity import CapacityPlanningOperator
from solemate_maintenance.operators.reviews.certificates import CertificateExpiryOperator
from solemate_maintenance.operators.reviews.database import DatabaseMaintenanceOperator
from solemate_maintenance.operators.reviews.vulnerabilities import ImageVulnerabilityOperator
from solemate_maintenance.schedules import scheduled_dags

config = load_config()
DAG_ID = "weekly_review"
resources, checks = config.resources, config.checks
reporting = {"bucket": config.reports.bucket, "prefix": config.reports.prefix,
             "environment": config.environment, "alerts": config.alerts,
             "incident_key": incident_key(config)}


@dag(
    dag_id=DAG_ID,
    description="Weekly database maintenance review, certificates, image vulnerabilities and capacity planning",
    schedule=scheduled_dags(config)[DAG_ID].timetable(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["maintenance", "weekly", "review", config.environment],
    doc_md=__doc__,
    default_args=maintenance_defaults(config, DAG_ID),
)
def weekly_review():
    checks_done = [
        DatabaseMaintenanceOperator(
            task_id="database_maintenance",
            db_conn_id=resources.rds.db_conn_id,
            db_instance_identifier=resources.rds.instance_id,
            thresholds=checks.database,
        ),
        CertificateExpiryOperator(
            task_id="certificates",
            regions=[config.regions.primary, config.regions.dr],
            thresholds=checks.certificates,
        ),
        ImageVulnerabilityOperator(
            task_id="image_vulnerabilities",
            cluster=resources.ecs.cluster,
            services=resources.ecs.services,
            thresholds=checks.vulnerabilities,
        ),
        CapacityPlanningOperator(
            task_id="capacity_planning",
            cluster=resources.ecs.cluster,
            services=resources.ecs.services,
            db_instance_identifier=resources.rds.instance_id,
            cache_cluster_id=resources.elasticache.cluster_id,
            thresholds=checks.capacity,
            bucket=config.reports.bucket,
            reports_prefix=config.reports.prefix,
        ),
        StackDriftOperator(task_id="stack_drift", drift=config.monitoring.drift),
    ]
    report = PublishReportOperator(task_id="report",
                                   previous_report_wait_minutes=config.reports.previous_report_wait_minutes,
                                   **reporting)
    checks_done >> report
    [*checks_done, report] >> RunVerdictOperator(task_id="run_verdict", report_task_id="report", **reporting)
    report >> maintenance_status(config)


dag = weekly_review()

if __name__ == "__main__":
    dag.test()
