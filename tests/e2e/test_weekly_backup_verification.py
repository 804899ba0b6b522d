"""weekly_backup_verification end to end: real Airflow (dag.test) against the sandbox.

The restore test really restores: the sandbox's RDS takes seconds to make the copy available, its
endpoint is a real PostgreSQL database holding the data as of the restore point, and deletion takes
time too. Every scenario ends with zero restore copies left (instances and databases), the report
written, and at most one final-failure alert.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from sandbox.world import Sandbox
from solemate_maintenance import restore
from solemate_maintenance.notifiers.delivery import secret_forms
from solemate_maintenance.notifiers.status import STATUS_MARK
from tests.e2e.conftest import parsed_dag, sandbox_as_environment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

DAG_ID = "weekly_backup_verification"
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def live(hours_ago: int) -> datetime:
    """Logical dates close to now, oldest first in the scenarios, each inside the restore window."""
    return (NOW - timedelta(hours=hours_ago)).replace(minute=0)


@pytest.fixture(scope="module")
def sandbox(airflow_db):
    with sandbox_as_environment() as world:
        yield world


@pytest.fixture(scope="module")
def dag():
    return parsed_dag(DAG_ID)


def ephemeral_instances(sandbox: Sandbox) -> list[str]:
    """Restore copies that still exist in any state (deleting included), found by their tags."""
    rds = sandbox.client("rds")
    return [i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]
            if {t["Key"]: t["Value"] for t in i.get("TagList", [])}.get(restore.TAG_PURPOSE) == restore.PURPOSE]


class Outcome:
    def __init__(self, sandbox: Sandbox, dag_run, requests_before: int):
        self.state = str(dag_run.state)
        self.run_id = dag_run.run_id
        self.task_states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        self.messages = sandbox.slack.messages()
        self.requests = sandbox.restores.requests[requests_before:]
        s3 = sandbox.client("s3")
        key = f"{sandbox.config.reports.prefix}/{DAG_ID}/{dag_run.run_id}/report.json"
        try:
            self.report = json.loads(s3.get_object(Bucket=sandbox.config.reports.bucket, Key=key)["Body"].read())
            self.markdown = s3.get_object(Bucket=sandbox.config.reports.bucket,
                                          Key=key.replace(".json", ".md"))["Body"].read().decode()
        except s3.exceptions.NoSuchKey:  # a partial run (the restore request alone) writes none
            self.report, self.markdown = {"findings": [], "measurements": {}}, ""
        self.left_instances = ephemeral_instances(sandbox)
        self.left_databases = sandbox.postgres.restored_databases()

    def findings(self, check: str) -> list[dict]:
        return [f for f in self.report["findings"] if f["check"] == check]

    def problems(self) -> dict[str, str]:
        return {f"{f['check']}|{f['resource']}": f["severity"] for f in self.report["findings"]
                if f["status"] in ("warning", "critical")}

    def failure_alerts(self) -> list[dict]:
        return [m for m in self.messages if re.search(rf"{DAG_ID}\.\w+ failed", m["payload"]["text"])]

    def status_updates(self) -> list[str]:
        return [m["payload"]["text"] for m in self.messages if m["payload"]["text"].startswith(STATUS_MARK)]

    def digests(self) -> list[dict]:
        return [m for m in self.messages if m not in self.failure_alerts()
                and not m["payload"]["text"].startswith(STATUS_MARK)]

    @property
    def measured(self) -> dict:
        return self.report["measurements"].get("restore_validate", {})

    def assert_clean(self) -> None:
        assert self.left_instances == [], f"restore copies left behind: {self.left_instances}"
        assert self.left_databases == [], f"restored databases left behind: {self.left_databases}"


def restore_request_only():
    """A run of the restore request alone, as when the worker died right after it: no teardown ran."""
    from airflow.sdk import DAG

    from solemate_maintenance.config import load_config
    from solemate_maintenance.operators.backups.restore import RestoreRequestOperator

    config = load_config()
    with DAG(dag_id=DAG_ID, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC)) as interrupted:
        RestoreRequestOperator(task_id="restore_request", source_db_instance_identifier=config.resources.rds.instance_id,
                               settings=config.restore_test, environment=config.environment,
                               region_name=config.regions.primary)
    return interrupted


def run(sandbox: Sandbox, dag, capfd, logical_date: datetime, problems=frozenset(), only: bool = False
        ) -> Outcome:
    capfd.readouterr()
    sandbox.seed_days({logical_date: problems})
    sandbox.slack.clear()
    before = len(sandbox.restores.requests)
    dag_run = (restore_request_only() if only else dag).test(logical_date=logical_date)
    outcome = Outcome(sandbox, dag_run, before)
    out, err = capfd.readouterr()
    outcome.printed = out + err
    return outcome


@pytest.fixture(scope="module")
def history():
    return {}


def test_healthy_week_restores_validates_measures_and_cleans_up(sandbox, dag, history, capfd):
    outcome = history["healthy"] = run(sandbox, dag, capfd, live(30))
    assert outcome.state == "success", (outcome.task_states, outcome.problems())
    assert set(outcome.task_states.values()) == {"success"}
    assert outcome.problems() == {}
    [request] = outcome.requests
    assert request["restore_type"] == "point_in_time" and request["as_of"] == live(30)  # the checked date itself
    measured = outcome.measured
    assert measured["validation"] == "passed"
    assert 0 < measured["rto_minutes"] < 15 and measured["available_after_minutes"] >= 3 / 60
    # Orders arrive every 2 minutes: the newest row restored is at most 2 minutes before the restore point.
    assert 0 <= measured["data_rpo_minutes"] <= 2
    assert measured["row_counts"]["orders"] > 500
    assert [f["status"] for f in outcome.findings("restore.amcheck")] == ["skipped"]  # not in the embedded server
    [digest] = outcome.digests()
    text = json.dumps(digest["payload"])
    assert "Restore test (point-in-time to" in text and "validation passed" in text
    assert re.search(r"RTO \d+\.\d min \(target 15\); data RPO \d+\.\d min \(target 5\)", text)
    assert "## Measured by restore_validate" in outcome.markdown
    assert outcome.failure_alerts() == []
    # The channel saw the restore test start (what, why, how long), progress and end.
    updates = outcome.status_updates()
    assert sorted(u.split(" — ", 1)[1].split(" (", 1)[0] for u in updates) == [
        "finished", "restored copy available and validated", "started: restore requested"]
    assert "deleted" in json.dumps([m["payload"] for m in outcome.messages if "— finished" in m["payload"]["text"]])
    start = json.dumps([m["payload"] for m in outcome.messages if "— started" in m["payload"]["text"]])
    assert "15-min RTO" in start and "Expected to take about 15 min" in start
    outcome.assert_clean()


def test_backup_policy_drift_and_failed_jobs_show_expected_and_actual(sandbox, dag, history, capfd):
    outcome = history["drift"] = run(sandbox, dag, capfd, live(28), {"plan_drift", "backup_job_failed"})
    assert outcome.state == "failed"
    assert outcome.task_states["aws_backup"] == "failed"
    assert outcome.task_states["restore_validate"] == "success"  # the restore itself still works
    problems = outcome.problems()
    assert problems["backup.plan.rule|solemate-production-db/daily"] == "P3"
    assert problems["backup.backup_jobs|production-postgres"] == "P2"
    assert problems["backup.recovery_point|solemate-production/daily"] == "P2"
    [daily] = [f for f in outcome.findings("backup.plan.rule") if f["resource"].endswith("/daily")]
    assert "retention_days: expected 30, actual 7" in daily["summary"]
    [weekly] = [f for f in outcome.findings("backup.plan.rule") if f["resource"].endswith("/weekly")]
    assert "copy_to_dr: expected arn:aws:backup:us-west-2:" in weekly["summary"] and "actual no copy" in weekly["summary"]
    [alert] = outcome.failure_alerts()
    assert "weekly_backup_verification.aws_backup failed" in alert["payload"]["text"]
    outcome.assert_clean()


def test_restore_request_refused_by_aws(sandbox, dag, history, capfd):
    outcome = history["refused"] = run(sandbox, dag, capfd, live(26), {"restore_refused"})
    assert outcome.state == "failed"
    assert outcome.task_states["restore_request"] == "failed"
    assert outcome.task_states["restore_validate"] == "upstream_failed"
    assert outcome.requests == []
    [finding] = outcome.findings("restore.request")
    assert "AWS refused the restore: InsufficientDBInstanceCapacity" in finding["summary"]
    [alert] = outcome.failure_alerts()
    assert "restore_request failed" in alert["payload"]["text"]
    assert "try another restore_test.instance_class" in json.dumps(alert["payload"])  # what to do
    outcome.assert_clean()


def test_corrupt_backup_fails_validation_and_still_cleans_up(sandbox, dag, history, capfd):
    outcome = history["corrupt"] = run(sandbox, dag, capfd, live(24), {"corrupt_backup"})
    assert outcome.state == "failed"
    assert outcome.task_states["restore_validate"] == "failed"
    assert outcome.task_states["restore_cleanup"] == "success"
    problems = outcome.problems()
    assert any(k.startswith("restore.foreign_keys|") for k in problems)
    # 3 of 4 payments lost: the count collapses against the previous (healthy) restore test.
    [payments] = [f for f in outcome.findings("restore.row_count") if f["resource"].endswith("/payments")]
    assert payments["status"] == "critical" and "fewer than the previous restore test" in payments["summary"]
    assert outcome.measured["validation"] == "failed" and outcome.measured["rto_minutes"] is None
    assert [f["status"] for f in outcome.findings("restore.rto")] == ["skipped"]
    [alert] = outcome.failure_alerts()
    assert "restore_validate failed" in alert["payload"]["text"]
    assert "RTO not achieved" in json.dumps(outcome.digests()[0]["payload"])
    outcome.assert_clean()


def test_restored_instance_never_available_times_out(sandbox, dag, history, capfd):
    outcome = history["timeout"] = run(sandbox, dag, capfd, live(22), {"restore_never_available"})
    assert outcome.state == "failed"
    assert outcome.task_states["restore_validate"] == "failed"
    assert outcome.task_states["restore_cleanup"] == "success"
    [finding] = outcome.findings("restore.available")
    assert "not available" in finding["summary"] and "'creating'" in finding["summary"]
    assert len(outcome.requests) == 1
    [alert] = outcome.failure_alerts()
    assert "restore_validate failed" in alert["payload"]["text"]
    outcome.assert_clean()


def test_run_interrupted_mid_restore_then_rerun_reuses_the_copy(sandbox, dag, history, capfd):
    date = live(20)
    first = run(sandbox, dag, capfd, date, only=True)  # the worker died after the restore request
    assert len(first.requests) == 1 and len(first.left_instances) == 1
    [copy] = first.left_instances
    [instance] = sandbox.client("rds").describe_db_instances(DBInstanceIdentifier=copy)["DBInstances"]
    requested_at = restore.tags_of(instance)[restore.TAG_REQUESTED]
    again = history["rerun"] = run(sandbox, dag, capfd, date)  # the same date again (a re-triggered run)
    assert again.state == "success", again.task_states
    assert again.requests == [], "a second restore was requested"
    [finding] = again.findings("restore.request")
    assert finding["resource"] == copy and "reusing the copy" in finding["summary"]
    # RTO counts from the original request, interruption included.
    assert datetime.fromisoformat(again.measured["requested_at"]) == datetime.fromisoformat(requested_at)
    again.assert_clean()


def test_copy_leaked_by_an_earlier_run_is_deleted_by_the_janitor(sandbox, dag, history, capfd):
    rds = sandbox.client("rds")
    leaked = "restore-test-20261101-0300-abcdef"
    long_ago = NOW - timedelta(days=30)
    rds.restore_db_instance_to_point_in_time(
        SourceDBInstanceIdentifier=sandbox.config.resources.rds.instance_id, TargetDBInstanceIdentifier=leaked,
        UseLatestRestorableTime=True, Tags=restore.creation_tags(
            source=sandbox.config.resources.rds.instance_id, dag_id=DAG_ID, run_id="scheduled__2026-11-01T03:00:00",
            requested_at=long_ago, expires_at=long_ago + timedelta(hours=6), restore_point=long_ago,
            restore_type="point_in_time", environment="production"))
    outcome = history["leak"] = run(sandbox, dag, capfd, live(18))
    assert outcome.task_states["restore_janitor"] == "success"
    [janitor] = [f for f in outcome.findings("restore.janitor") if f["resource"] == leaked]
    assert janitor["severity"] == "P3" and "left behind by run scheduled__2026-11-01T03:00:00" in janitor["summary"]
    assert outcome.state == "success"  # a cleaned-up leak is worth a warning in the report, not a failed run
    outcome.assert_clean()


def test_no_secret_in_anything_the_runs_printed_sent_or_wrote(sandbox, history):
    s3 = sandbox.client("s3")
    bucket = sandbox.config.reports.bucket
    written = "".join(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode()
                      for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    # What was sent is the payloads; the request path *is* the webhook address, Slack's side of it.
    sent = json.dumps([m["payload"] for o in history.values() for m in o.messages])
    printed = "".join(o.printed for o in history.values())
    assert written and printed and len(history) == 7
    for secret in sandbox.secrets():
        for form in secret_forms(secret):
            assert form not in written and form not in sent and form not in printed
