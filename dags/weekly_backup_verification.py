"""## Weekly backup verification

Every Wednesday at 03:00 UTC: the database's backups against the operations guide's policy, and a
real **restore test**.

* `rds_backups` / `aws_backup`: automated backups, retention, encryption, the newest snapshot, the
  point-in-time restore lag against the RPO, copies in the DR region; the AWS Backup plan's rules,
  selection, failed jobs and the freshness of each rule. Ages are measured at the logical date, so
  a backfill checks its own week. A mismatch shows the expected and the actual value.
* `restore_request` (setup) → `restore_validate` → `restore_cleanup` (teardown): restore into a
  tagged, private, throw-away instance, wait for it **deferred** (no worker slot held), validate the
  data with the SQL in `include/sql/restore_validation`, measure RTO and data RPO against the
  targets, then always delete the copy. Clearing or retrying reuses the same copy.
* `restore_janitor` deletes copies earlier runs left behind once past their expiry tag.
* `report` / `run_verdict`: as in `daily_maintenance`; the digest carries the RTO/RPO headline.
* Configuration: `backups` and `restore_test` in `include/config/platform.yaml`; connection
  `restore_test_db` (user and password for the validation queries).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag

from solemate_maintenance.config import load_config
from solemate_maintenance.dag_defaults import maintenance_defaults, maintenance_status
from solemate_maintenance.notifiers.status import status_updates
from solemate_maintenance.operators.backups.policy import AwsBackupOperator, RdsBackupOperator
from solemate_maintenance.operators.backups.restore import (
    RestoreCleanupOperator,
    RestoreJanitorOperator,
    RestoreRequestOperator,
)
from solemate_maintenance.operators.backups.restore_validation import RestoreValidationOperator
from solemate_maintenance.operators.report import PublishReportOperator, RunVerdictOperator
from solemate_maintenance.schedules import scheduled_dags

config = load_config()
DAG_ID = "weekly_backup_verification"
database = config.resources.rds.instance_id
reporting = {"bucket": config.reports.bucket, "prefix": config.reports.prefix,
             "environment": config.environment, "alerts": config.alerts}
restore_args = {"source_db_instance_identifier": database, "settings": config.restore_test,
                "environment": config.environment}


@dag(
    dag_id=DAG_ID,
    description="Weekly check of the database backups against the policy, and a real restore test with RTO/RPO",
    schedule=scheduled_dags(config)[DAG_ID].timetable(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["maintenance", "weekly", "backups", config.environment],
    doc_md=__doc__,
    # A restore waits deferred, so a long timeout costs no worker; it bounds the validation queries.
    default_args=maintenance_defaults(config, DAG_ID, execution_timeout=timedelta(minutes=30)),
)
def weekly_backup_verification():
    policy = config.backups
    checks = [
        RdsBackupOperator(task_id="rds_backups", db_instance_identifier=database, policy=policy,
                          dr_region=config.regions.dr),
        AwsBackupOperator(task_id="aws_backup", db_instance_identifier=database, policy=policy,
                          dr_region=config.regions.dr),
    ]
    if config.restore_test.enabled:
        update = status_updates(config.alerts, config.environment, "Restore test")
        janitor = RestoreJanitorOperator(task_id="restore_janitor", **restore_args)
        request = RestoreRequestOperator(
            task_id="restore_request", **restore_args, on_success_callback=update(
                "started: restore requested", expected_minutes=policy.database_rto_minutes,
                why=f"Restoring {database} into a temporary, tagged instance to prove the backups restore within "
                    f"the guide's {policy.database_rto_minutes}-min RTO and lose at most "
                    f"{policy.database_rpo_minutes} min of data. Production is not touched."))
        validate = RestoreValidationOperator(task_id="restore_validate", policy=policy, reports=reporting,
                                             **restore_args,
                                             on_success_callback=update("restored copy available and validated"))
        cleanup = RestoreCleanupOperator(task_id="restore_cleanup", **restore_args,
                                         on_success_callback=update("finished"))
        request >> validate >> cleanup.as_teardown(setups=request)
        # The report reads the setup's findings without being its direct downstream (see also_collect).
        checks += [janitor, validate, cleanup]
        setups = [request.task_id]
    else:
        setups = []
    report = PublishReportOperator(task_id="report",
                                   previous_report_wait_minutes=config.reports.previous_report_wait_minutes,
                                   also_collect=setups, **reporting)
    checks >> report
    [*checks, report] >> RunVerdictOperator(task_id="run_verdict", report_task_id="report", also_collect=setups,
                                            **reporting)
    report >> maintenance_status(config)


dag = weekly_backup_verification()

if __name__ == "__main__":
    dag.test()
