"""Backup checks and the restore test's guard rails, against moto (mock_aws) with the sandbox's patches."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from solemate_maintenance import restore
from solemate_maintenance.backup_schedule import previous_fire, to_croniter
from solemate_maintenance.config import ConfigError, load_config, parse_config
from solemate_maintenance.operators.backups.policy import RdsBackupOperator
from solemate_maintenance.operators.backups.restore import (
    RestoreCleanupOperator,
    RestoreJanitorOperator,
    RestoreRequestOperator,
)
from tests.helpers import ANCHOR, findings_of, make_context

SOURCE = "production-postgres"


def test_aws_cron_weekdays_count_from_sunday_as_one():
    assert to_croniter("cron(0 3 ? * 1 *)") == "0 3 * * 0"
    assert to_croniter("cron(0 3 ? * 2-6 *)") == "0 3 * * 1-5"
    assert previous_fire("cron(0 3 ? * SUN *)", datetime(2026, 11, 25, tzinfo=UTC)) == datetime(2026, 11, 22, 3,
                                                                                                  tzinfo=UTC)
    with pytest.raises(ValueError, match="years"):
        to_croniter("cron(0 3 * * ? 2027)")


def test_a_bad_backup_schedule_names_file_key_and_reason(tmp_path):
    text = load_config_text().replace('schedule: "cron(0 2 * * ? *)"', 'schedule: "0 2 * * *"')
    with pytest.raises(ConfigError) as error:
        parse_config(text, "platform.yaml")
    assert "platform.yaml: backups.rules.[0].schedule" in str(error.value).replace("rules[0]", "rules.[0]")
    assert "AWS cron expression" in str(error.value)
    floors = load_config_text().replace("min_rows: {users: 100", "min_rows: {userz: 100")
    with pytest.raises(ConfigError, match="restore_test: .*min_rows names tables not in required_tables: userz"):
        parse_config(floors, "platform.yaml")


def load_config_text() -> str:
    from solemate_maintenance.config import DEFAULT_CONFIG_PATH

    return DEFAULT_CONFIG_PATH.read_text()


def test_instance_id_is_derived_from_dag_and_date_never_the_clock():
    first = restore.instance_id("restore-test", "weekly_backup_verification", ANCHOR)
    assert first == restore.instance_id("restore-test", "weekly_backup_verification", ANCHOR)
    assert first != restore.instance_id("restore-test", "weekly_backup_verification", ANCHOR + timedelta(days=7))
    assert first != restore.instance_id("restore-test", "other_dag", ANCHOR)
    assert re.fullmatch(r"restore-test-20261120-0200-[0-9a-f]{6}", first) and len(first) <= 63


def _tagged(identifier: str, run_id: str = "run-1", **overrides) -> dict:
    now = datetime.now(UTC)
    tags = restore.creation_tags(source=SOURCE, dag_id="d", run_id=run_id, requested_at=now,
                                 expires_at=now + timedelta(hours=1), restore_point=now, restore_type="point_in_time",
                                 environment="production")
    instance = {"DBInstanceIdentifier": identifier, "TagList": tags, "DeletionProtection": False}
    instance.update(overrides)
    return instance


@pytest.mark.parametrize(("instance", "reason"), [
    (_tagged(SOURCE), "it is the source (production) database"),
    (_tagged("prod-copy"), "does not start with 'restore-test'-"),
    (_tagged("restore-test-x", TagList=[]), "tag solemate:purpose is None"),
    (_tagged("restore-test-x", DeletionProtection=True), "deletion protection is on"),
    (_tagged("restore-test-x", run_id="someone-else"), "belongs to run 'someone-else', not this run"),
])
def test_the_delete_guard_refuses_anything_not_provably_this_runs_copy(instance, reason):
    reasons = restore.why_not_ephemeral(instance, prefix="restore-test", source=SOURCE, run_id="run-1")
    assert any(reason in r for r in reasons), reasons
    assert restore.why_not_ephemeral(_tagged("restore-test-x"), prefix="restore-test", source=SOURCE,
                                     run_id="run-1") == []


def _restore_args(config) -> dict:
    return {"source_db_instance_identifier": SOURCE, "settings": config.restore_test, "environment": "production",
            "region_name": config.regions.primary}


def test_cleanup_refuses_an_untagged_instance_under_its_name_and_deletes_nothing(platform, config):
    context = make_context(dag_id="weekly_backup_verification", task_id="restore_cleanup")
    target = restore.instance_id(config.restore_test.instance_prefix, "weekly_backup_verification", ANCHOR)
    rds = boto3.client("rds", region_name=config.regions.primary)
    rds.create_db_instance(DBInstanceIdentifier=target, Engine="postgres", DBInstanceClass="db.t3.micro",
                           AllocatedStorage=20, MasterUsername="admin", MasterUserPassword="password123")
    from solemate_maintenance.findings import ChecksFailedError, Finding
    from solemate_maintenance.notifiers.messages import next_step

    operator = RestoreCleanupOperator(task_id="restore_cleanup", **_restore_args(config))
    with pytest.raises(ChecksFailedError, match="tag solemate:purpose is None"):  # fails at once, never retried
        operator.execute(context)
    [refused] = context["ti"].pushed["findings"]
    assert refused["check"] == "restore.cleanup.refused" and refused["severity"] == "P2"
    assert refused["summary"].endswith("Nothing was deleted")
    assert next_step([Finding(**refused)]).startswith("Do NOT delete it blindly")
    statuses = {i["DBInstanceIdentifier"]: i["DBInstanceStatus"] for i in rds.describe_db_instances()["DBInstances"]}
    assert statuses == {SOURCE: "available", target: "available"}


def test_janitor_leaves_lookalikes_and_unexpired_copies_alone(platform, config):
    rds = boto3.client("rds", region_name=config.regions.primary)
    rds.create_db_instance(DBInstanceIdentifier="restore-test-handmade", Engine="postgres",
                           DBInstanceClass="db.t3.micro", AllocatedStorage=20, MasterUsername="admin",
                           MasterUserPassword="password123")
    fresh = _tagged("restore-test-20991231-0000-aaaaaa")
    rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier=SOURCE,
                                             TargetDBInstanceIdentifier=fresh["DBInstanceIdentifier"],
                                             UseLatestRestorableTime=True, Tags=fresh["TagList"])
    context = make_context(dag_id="weekly_backup_verification", task_id="restore_janitor")
    RestoreJanitorOperator(task_id="restore_janitor", **_restore_args(config)).execute(context)
    found = {f["resource"]: f for f in context["ti"].pushed["findings"]}
    assert found["restore-test-handmade"]["severity"] == "P3"
    assert "not provably one, left alone" in found["restore-test-handmade"]["summary"]
    assert "not expired yet" in found["restore-test-20991231-0000-aaaaaa"]["summary"]
    assert {i["DBInstanceStatus"] for i in rds.describe_db_instances()["DBInstances"]} <= {"available", "creating"}


def test_restore_to_a_date_before_the_restore_window_is_skipped_not_attempted(platform, config):
    # ANCHOR is a week ago; with 7 days of retention its point in time is no longer restorable.
    context = make_context(dag_id="weekly_backup_verification", task_id="restore_request")
    RestoreRequestOperator(task_id="restore_request", **_restore_args(config)).execute(context)
    [finding] = context["ti"].pushed["findings"]
    assert finding["status"] == "skipped" and "before the restore window" in finding["summary"]
    rds = boto3.client("rds", region_name=config.regions.primary)
    assert [i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]] == [SOURCE]


def test_rds_backups_at_the_checked_date(platform, config):
    context = make_context()
    RdsBackupOperator(task_id="rds_backups", db_instance_identifier=SOURCE, policy=config.backups,
                      dr_region=config.regions.dr, region_name=config.regions.primary).execute(context)
    found = findings_of(context)
    # ANCHOR is past the 7-day restore window: its PITR lag is not judged (the test below covers both sides).
    assert {check: f["status"] for check, f in found.items()} == {
        "backup.rds.automated_backups": "ok", "backup.rds.encryption": "ok", "backup.rds.pitr_lag": "skipped",
        "backup.rds.latest_snapshot": "ok", "backup.rds.dr_copy": "ok"}
    assert found["backup.rds.latest_snapshot"]["metrics"]["snapshot_age_hours"]["value"] < 26


def test_stale_snapshots_and_missing_dr_copies_fail(platform, config):
    from solemate_maintenance.findings import ChecksFailedError

    platform.seed(ANCHOR, {"stale_snapshots", "no_dr_copies"})
    context = make_context()
    with pytest.raises(ChecksFailedError):
        RdsBackupOperator(task_id="rds_backups", db_instance_identifier=SOURCE, policy=config.backups,
                          dr_region=config.regions.dr, region_name=config.regions.primary).execute(context)
    found = findings_of(context)
    assert found["backup.rds.latest_snapshot"]["severity"] == "P2"
    assert "no copy of the database in the DR region us-west-2" in found["backup.rds.dr_copy"]["summary"]


def test_a_snapshot_taken_after_the_checked_date_does_not_count_for_it(platform, config):
    # Snapshots are seeded daily at 05:00 up to ANCHOR; at 04:00 on Nov 16 the newest that counts is
    # Nov 15 05:00 (23 h old), not Nov 16 05:00 one hour later.
    context = make_context(anchor=datetime(2026, 11, 16, 4, tzinfo=UTC))
    RdsBackupOperator(task_id="rds_backups", db_instance_identifier=SOURCE, policy=config.backups,
                      dr_region=config.regions.dr, region_name=config.regions.primary).execute(context)
    latest = findings_of(context)["backup.rds.latest_snapshot"]
    assert latest["status"] == "ok" and latest["metrics"]["snapshot_age_hours"]["value"] == 23.0
    assert "(2026-11-15 05:00 UTC)" in latest["summary"]


def test_a_day_older_than_the_snapshot_retention_is_not_judged_on_missing_evidence(platform, config):
    # Backfilling a month back: AWS has deleted that month's automated snapshots (7-day retention), so
    # "no snapshot before that day" proves nothing; a P2 would be a false alarm.
    context = make_context(anchor=ANCHOR - timedelta(days=30))
    RdsBackupOperator(task_id="rds_backups", db_instance_identifier=SOURCE, policy=config.backups,
                      dr_region=config.regions.dr, region_name=config.regions.primary).execute(context)
    latest = findings_of(context)["backup.rds.latest_snapshot"]
    assert latest["status"] == "skipped"
    assert latest["summary"] == ("cannot be judged for 2026-10-21 02:00 UTC: automated snapshots are kept 7 days, "
                                 "the oldest left is from 2026-11-13 05:00 UTC")


def test_config_defaults_match_the_operations_guide():
    config = load_config()
    assert [(r.name, r.schedule, r.delete_after_days, r.copy_to_dr) for r in config.backups.rules] == [
        ("daily", "cron(0 2 * * ? *)", 30, True), ("weekly", "cron(0 3 ? * SUN *)", 90, True),
        ("monthly", "cron(0 4 1 * ? *)", 365, True)]
    assert (config.backups.database_rto_minutes, config.backups.database_rpo_minutes) == (15, 5)
    assert config.regions.dr == "us-west-2"


def test_latest_snapshot_method_restores_the_newest_snapshot_before_the_checked_date(platform, config):
    from sandbox import moto_rds

    settings = config.restore_test.model_copy(update={"method": "latest_snapshot"})
    context = make_context(dag_id="weekly_backup_verification", task_id="restore_request")
    before = len(moto_rds.BEHAVIOUR.requests)
    RestoreRequestOperator(task_id="restore_request", source_db_instance_identifier=SOURCE, settings=settings,
                           environment="production", region_name=config.regions.primary).execute(context)
    [request] = moto_rds.BEHAVIOUR.requests[before:]
    assert request["restore_type"] == "snapshot"
    assert request["as_of"] == datetime(2026, 11, 19, 5, tzinfo=UTC)  # the newest taken before ANCHOR
    pushed = context["ti"].pushed["restore"]
    assert pushed["snapshot"] == "rds:production-postgres-2026-11-19-05-00" and pushed["reused"] is False
    [instance] = [i for i in boto3.client("rds", region_name=config.regions.primary).describe_db_instances()[
        "DBInstances"] if i["DBInstanceIdentifier"] == pushed["instance"]]
    tags = restore.tags_of(instance)
    assert tags[restore.TAG_PURPOSE] == "restore-test" and tags[restore.TAG_RESTORE_TYPE] == "snapshot"
    assert instance["DBInstanceClass"] == config.restore_test.instance_class


def test_pitr_lag_of_a_past_date_agrees_with_the_restore_test_about_the_restore_window(platform, config):
    from solemate_maintenance.findings import ChecksFailedError

    def pitr_lag(anchor):
        context = make_context(anchor=anchor)
        with contextlib.suppress(ChecksFailedError):  # snapshots are seeded up to ANCHOR only: stale later
            RdsBackupOperator(task_id="rds_backups", db_instance_identifier=SOURCE, policy=config.backups,
                              dr_region=config.regions.dr, region_name=config.regions.primary).execute(context)
        return findings_of(context)["backup.rds.pitr_lag"]

    # ANCHOR is a week and a morning ago: before the 7-day window, as the restore test also says (above).
    outside = pitr_lag(ANCHOR)
    assert outside["status"] == "skipped", outside
    assert outside["summary"].startswith("cannot be judged for 2026-11-20 02:00 UTC: it is before the restore "
                                         "window (earliest 2026-11-20 ")
    within = pitr_lag(ANCHOR + timedelta(days=3))
    assert within["status"] == "ok" and "the checked time is restorable (window 2026-11-20 " in within["summary"]
    assert "live state" not in within["summary"] and within["details"]["earliest_restorable_time"]


def test_each_restore_failure_says_what_to_do_first():
    from solemate_maintenance.findings import Finding, Severity, Status
    from solemate_maintenance.notifiers.messages import next_step

    def step(check: str) -> str:
        return next_step([Finding(check=check, resource="r", status=Status.CRITICAL, severity=Severity.P2,
                                  summary="s")])

    assert "restore_test_db connection" in step("restore.validation")  # cannot query: not a bad backup
    assert step("restore.foreign_keys").startswith("Treat the backup as suspect")
    assert "left-behind restore copy" in step("restore.janitor")
    assert "try another restore_test.instance_class" in step("restore.request")


def test_a_rule_whose_recovery_points_expired_by_design_is_not_judged_for_an_old_date(platform, config):
    from solemate_maintenance.operators.backups.policy import AwsBackupOperator

    # 40 days back: the daily rule keeps 30 days, so that day's daily recovery point is gone by design;
    # the weekly (90 days) and monthly (365 days) rules still show theirs.
    context = make_context(anchor=ANCHOR - timedelta(days=40))
    AwsBackupOperator(task_id="aws_backup", db_instance_identifier=SOURCE, policy=config.backups,
                      dr_region=config.regions.dr, region_name=config.regions.primary).execute(context)
    points = {f["resource"]: f for f in context["ti"].pushed["findings"] if f["check"] == "backup.recovery_point"}
    assert points["solemate-production/daily"]["status"] == "skipped"
    assert "this rule keeps recovery points 30 days" in points["solemate-production/daily"]["summary"]
    assert points["solemate-production/weekly"]["status"] == "ok"
    assert points["solemate-production/monthly"]["status"] == "ok"


def test_a_restored_copy_missing_a_table_says_so_and_the_other_checks_still_run(postgres, config, monkeypatch):
    import json

    from solemate_maintenance.operators.backups.restore_validation import RestoreValidationOperator

    monkeypatch.setenv("AIRFLOW_CONN_RESTORE_TEST_DB", json.dumps(postgres.restore_connection))
    where = postgres.create_restored("restored_missing_table", datetime.now(UTC), corrupt=False)
    try:
        # The copy lacks `payments`; it holds a table of the operator's own schema that the config requires.
        postgres.execute("DROP TABLE payments CASCADE; CREATE TABLE invoices (id int PRIMARY KEY);"
                         "INSERT INTO invoices SELECT generate_series(1, 3);"
                         "GRANT SELECT ON invoices TO PUBLIC;"
                         # One table the validation user sees but may not read: its count fails alone.
                         "CREATE TABLE refunds (id int PRIMARY KEY); GRANT INSERT ON refunds TO PUBLIC;",
                         database="restored_missing_table")
        settings = config.restore_test.model_copy(update={
            "required_tables": ["users", "orders", "payments", "invoices", "refunds"], "min_rows": {"invoices": 5}})
        operator = RestoreValidationOperator(task_id="restore_validate", source_db_instance_identifier=SOURCE,
                                             settings=settings, policy=config.backups)
        instance = {"DBInstanceIdentifier": "restore-test-x", "DBName": where["db_name"],
                    "Endpoint": {"Address": where["address"], "Port": where["port"]}}
        results, counts, newest, unmeasured = operator._check_copy("restore-test-x", instance, [])
    finally:
        postgres.drop_restored("restored_missing_table")
    found = {(f.check, f.resource): f for f in results}
    assert found[("restore.tables", "restore-test-x")].summary == "required tables missing: payments"
    [unreadable] = [f.summary for f in results if f.check == "restore.validation"]
    assert unreadable.startswith("validation failed while counting the rows of refunds: InsufficientPrivilege")
    assert set(counts) == {"invoices", "orders", "users"} and counts["invoices"] == 3, counts
    assert found[("restore.row_count", "restore-test-x/invoices")].summary == "invoices: 3 rows, below the floor of 5"
    assert found[("restore.foreign_keys", "restore-test-x")].status.value == "ok"  # still checked
    assert found[("restore.indexes", "restore-test-x")].status.value == "ok"
    assert newest is None and unmeasured.startswith("the newest-business-row query failed (UndefinedTable")


@pytest.mark.parametrize("hour", [4, 20])  # inside the 3 completion hours after 02:00, and well after
def test_a_failed_daily_backup_job_leaves_the_daily_rule_stale_at_any_hour(platform, config, hour):
    """The sandbox's "backup_job_failed" must be a P2 whatever the time of day of the run: it failed only
    the newest job, which the check does not expect yet within its 3 completion hours (a run between
    02:20 and 05:00 then saw yesterday's point as fresh, and the end-to-end test failed on some mornings)."""
    from solemate_maintenance.findings import ChecksFailedError
    from solemate_maintenance.operators.backups.policy import AwsBackupOperator

    anchor = ANCHOR.replace(hour=hour)
    platform.seed(anchor, {"backup_job_failed"})
    context = make_context(anchor=anchor)
    with pytest.raises(ChecksFailedError):
        AwsBackupOperator(task_id="aws_backup", db_instance_identifier=SOURCE, policy=config.backups,
                          dr_region=config.regions.dr, region_name=config.regions.primary).execute(context)
    points = {f["resource"]: f for f in context["ti"].pushed["findings"] if f["check"] == "backup.recovery_point"}
    assert points["solemate-production/daily"]["severity"] == "P2", points["solemate-production/daily"]["summary"]
