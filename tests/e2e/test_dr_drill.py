"""dr_drill end to end: real Airflow (dag.test) against the sandbox's DR region.

The drill really restores the replicated backups into the DR region (a real PostgreSQL copy,
validated with SQL), really starts and stops an ECS task there, compares the asset replicas and the
Route 53 records. Every scenario ends with nothing left behind: no drill instance (in any state),
no restored database, no running drill task.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sandbox.world import Sandbox
from solemate_maintenance.notifiers.delivery import secret_forms
from solemate_maintenance.notifiers.status import STATUS_MARK
from tests.e2e.conftest import parsed_dag, sandbox_as_environment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

DAG_ID = "dr_drill"
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def live(minutes_ago: int) -> datetime:
    return NOW - timedelta(minutes=minutes_ago)


@pytest.fixture(scope="module")
def sandbox(airflow_db):
    with sandbox_as_environment() as world:
        yield world


@pytest.fixture(scope="module")
def dag():
    return parsed_dag(DAG_ID)


class Drill:
    def __init__(self, sandbox: Sandbox, dag_run, requests_before: int):
        self.state = str(dag_run.state)
        self.task_states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        self.messages = sandbox.slack.messages()
        self.requests = sandbox.restores.requests[requests_before:]
        s3 = sandbox.client("s3")
        key = f"{sandbox.config.reports.prefix}/{DAG_ID}/{dag_run.run_id}/report.json"
        self.report = json.loads(s3.get_object(Bucket=sandbox.config.reports.bucket, Key=key)["Body"].read())
        self.markdown = s3.get_object(Bucket=sandbox.config.reports.bucket,
                                      Key=key.replace(".json", ".md"))["Body"].read().decode()
        dr = sandbox.config.regions.dr
        self.left_instances = [i["DBInstanceIdentifier"] for region in (sandbox.config.regions.primary, dr)
                               for i in sandbox.client("rds", region).describe_db_instances()["DBInstances"]
                               if i["DBInstanceIdentifier"].startswith("dr-drill-")]
        self.left_databases = sandbox.postgres.restored_databases()
        ecs = sandbox.client("ecs", dr)
        self.running_tasks = ecs.list_tasks(cluster=sandbox.config.disaster_recovery.cluster,
                                            desiredStatus="RUNNING")["taskArns"]

    @property
    def scorecard(self) -> dict:
        return self.report["measurements"]["dr_scorecard"]

    def verdicts(self) -> dict[str, str]:
        return {row["component"]: row["verdict"] for row in self.scorecard["components"]}

    def row(self, component: str) -> dict:
        return next(r for r in self.scorecard["components"] if r["component"] == component)

    def problems(self) -> dict[str, str]:
        return {f"{f['check']}|{f['resource']}": f["severity"] for f in self.report["findings"]
                if f["status"] in ("warning", "critical")}

    def explain(self) -> str:
        failed = {t: s for t, s in self.task_states.items() if s != "success"}
        return f"{failed}: " + "; ".join(f"{f['severity']} {f['check']}: {f['summary']}" for f in self.report["findings"]
                                         if f["status"] in ("warning", "critical"))

    def assert_clean(self) -> None:
        assert self.left_instances == [], f"drill instances left behind: {self.left_instances}"
        assert self.left_databases == [], f"restored databases left behind: {self.left_databases}"
        assert self.running_tasks == [], f"drill tasks still running: {self.running_tasks}"
        assert self.scorecard["left"] == []


def drill(sandbox: Sandbox, dag, capfd, logical_date: datetime, problems=frozenset(), conf=None) -> Drill:
    capfd.readouterr()
    sandbox.seed_days({logical_date: problems})
    sandbox.slack.clear()
    before = len(sandbox.restores.requests)
    dag_run = dag.test(logical_date=logical_date, run_conf=conf)
    outcome = Drill(sandbox, dag_run, before)
    out, err = capfd.readouterr()
    outcome.printed = out + err
    return outcome


@pytest.fixture(scope="module")
def history():
    return {}


def test_healthy_drill_measures_every_component_and_leaves_nothing(sandbox, dag, history, capfd):
    outcome = history["healthy"] = drill(sandbox, dag, capfd, live(50))
    assert outcome.state == "success", outcome.explain()
    assert set(outcome.task_states.values()) == {"success"}
    assert outcome.verdicts() == {"Database": "met", "Application": "met", "Static assets": "met",
                                  "Complete system": "met"}
    database = outcome.row("Database")
    # The replicated backups trail production by ~3 minutes in the sandbox (lag + LatestRestorableTime).
    assert 2 < database["rpo_minutes"] < 5 and 0 < database["rto_minutes"] < 15
    [request] = outcome.requests
    assert request["instance"].startswith("dr-drill-") and request["restore_type"] == "point_in_time"
    application = outcome.row("Application")
    assert application["rpo_minutes"] == 2.0  # the DR image was replicated 2 minutes after the push
    assert 0 < application["rto_minutes"] < 10  # PENDING for 2 s in the sandbox, then RUNNING
    assets = outcome.row("Static assets")
    assert assets["rpo_minutes"] == 0.0  # every one of the newest objects replicated (S3 says COMPLETED)
    system = outcome.row("Complete system")
    assert system["rto_minutes"] == pytest.approx(database["rto_minutes"] + application["rto_minutes"] + 1, abs=0.02)
    # The evidence: the guide's table, what was created and deleted, in the report and the digest.
    assert "Components against the guide:" in outcome.markdown
    assert "| Database | point-in-time recovery | 15 |" in outcome.markdown
    assert outcome.scorecard["created"] and sorted(outcome.scorecard["created"]) == sorted(outcome.scorecard["deleted"])
    assert len(outcome.scorecard["created"]) == 2  # the restored instance and the task
    updates = [m["payload"]["text"] for m in outcome.messages if m["payload"]["text"].startswith(STATUS_MARK)]
    [digest] = [m for m in outcome.messages if not m["payload"]["text"].startswith(STATUS_MARK)]
    assert "DR drill (us-west-2): 4/4 components met the guide's targets" in json.dumps(digest["payload"])
    # Start, each component as it is measured, and the end: what the channel sees during the drill.
    steps = {u.split(" — ", 1)[1].split(" (", 1)[0] for u in updates}
    assert steps == {"started", "database restored in the DR region and validated",
                     "application task running in the DR region", "static assets replicated",
                     "failover readiness checked", "finished: the scorecard is in the report"}, updates
    outcome.assert_clean()


def test_the_same_drill_run_again_measures_again_and_leaves_nothing(sandbox, dag, history, capfd):
    """A cleared or re-triggered drill for the same date: the task the first run measured and stopped
    is still listed by ECS (as STOPPED): it must not be mistaken for a task that failed to start."""
    again = drill(sandbox, dag, capfd, live(50))
    assert again.state == "success", again.explain()
    assert set(again.verdicts().values()) == {"met"}
    assert len(again.requests) == 1  # the first run's copy was deleted: a new restore, same name
    again.assert_clean()


def test_replication_stopped_misses_the_assets_rpo(sandbox, dag, history, capfd):
    outcome = history["replication"] = drill(sandbox, dag, capfd, live(45), {"replication_stopped"})
    assert outcome.state == "failed"
    assert outcome.task_states["dr_static_assets"] == "failed"
    assert outcome.verdicts()["Static assets"] == "missed"
    assert outcome.row("Static assets")["rpo_minutes"] > 24 * 60
    problems = outcome.problems()
    assert problems["dr.static_assets.replication|solemate-static-assets -> solemate-static-assets-dr"] == "P2"
    assert problems["dr.verdict.static_assets|Static assets"] == "P2"
    assert outcome.verdicts()["Database"] == "met"  # the rest of the drill still ran
    outcome.assert_clean()


def test_image_missing_in_dr_means_the_application_cannot_fail_over(sandbox, dag, history, capfd):
    outcome = history["image"] = drill(sandbox, dag, capfd, live(40), {"image_missing_in_dr"})
    assert outcome.state == "failed"
    assert outcome.verdicts()["Application"] == "cannot fail over"
    assert outcome.verdicts()["Complete system"] == "cannot fail over"
    problems = outcome.problems()
    assert problems["dr.verdict.application|Application"] == "P1"
    [image] = [f for f in outcome.report["findings"] if f["check"] == "dr.application.image"]
    assert image["severity"] == "P1" and "is not in us-west-2's ECR" in image["summary"]
    # The started task could not pull its image: ECS stopped it, and the drill says why.
    [rto] = [f for f in outcome.report["findings"] if f["check"] == "dr.application.rto"]
    assert rto["severity"] == "P1" and "CannotPullContainerError" in rto["summary"]
    assert " s after it was created" in rto["summary"] and "min at most" not in rto["summary"]  # ECS's times
    pages = [d for d in outcome.report["alert_deliveries"] if d["channel"] == "sns"]
    assert [d["outcome"] for d in pages].count("delivered") <= 1  # one cause, at most one page per run
    assert outcome.task_states["dr_application_cleanup"] == "success"
    outcome.assert_clean()


def test_stale_cross_region_backup_misses_the_database_rpo(sandbox, dag, history, capfd):
    outcome = history["stale"] = drill(sandbox, dag, capfd, live(35), {"stale_dr_backup"})
    assert outcome.state == "failed", outcome.explain()
    assert outcome.verdicts()["Database"] == "missed"
    assert outcome.row("Database")["rpo_minutes"] > 180
    problems = outcome.problems()
    assert problems.get("dr.database.rpo|production-postgres (us-west-2)") == "P2", outcome.explain()
    assert outcome.verdicts()["Complete system"] == "missed"  # the system loses what the database loses
    outcome.assert_clean()


def test_selected_components_only_and_trend_against_earlier_drills(sandbox, dag, history, capfd):
    outcome = history["selected"] = drill(sandbox, dag, capfd, live(30),
                                          conf={"components": ["static_assets"], "reason": "after S3 change"})
    assert outcome.state == "success", outcome.task_states
    assert outcome.verdicts() == {"Database": "not measured", "Application": "not measured",
                                  "Static assets": "met", "Complete system": "not measured"}
    assert outcome.requests == [] and outcome.scorecard["created"] == []
    assert outcome.scorecard["reason"] == "after S3 change"
    trend = outcome.scorecard["tables"]["Earlier drills"]["rows"]
    assert len(trend) == 4  # the four drills above, newest first
    assert "missed" in trend[0][1]  # the stale-backup drill's database
    outcome.assert_clean()


def test_invalid_conf_is_rejected_before_any_run_exists(sandbox, dag):
    from airflow.sdk.definitions.param import ParamValidationError

    for conf in ({"components": ["database", "mainframe"]}, {"components": []}, {"region": "us-wset-2"},
                 {"region": "us-east-1"}, {"reason": ""}, {"reason": "   "}):  # us-east-1: the primary region itself
        with pytest.raises(ParamValidationError):
            dag.test(logical_date=live(25), run_conf=conf)


def test_a_misspelt_key_is_refused_before_anything_starts(sandbox, dag):
    """{"component": [...]} would otherwise be ignored and the defaults start a full drill with a restore."""
    before = len(sandbox.restores.requests)
    sandbox.slack.clear()
    dag_run = dag.test(logical_date=live(26), run_conf={"component": ["static_assets"]})
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "failed" and states.pop("dr_drill_gate") == "failed"
    assert set(states.values()) <= {"upstream_failed", "None"}, states  # nothing ran, not even the report
    assert sandbox.restores.requests[before:] == []
    [alert] = [m["payload"] for m in sandbox.slack.messages()]
    assert alert["text"].startswith("[Refused] production: dr_drill did not start")
    assert "unknown param 'component'" in json.dumps(alert) and "P2" not in json.dumps(alert)
    s3 = sandbox.client("s3")
    listed = s3.list_objects_v2(Bucket=sandbox.config.reports.bucket,
                                Prefix=f"{sandbox.config.reports.prefix}/{DAG_ID}/{dag_run.run_id}/")
    assert listed.get("KeyCount", 0) == 0  # a refused run writes no report


def test_no_secret_in_anything_the_drills_printed_sent_or_wrote(sandbox, history):
    s3 = sandbox.client("s3")
    bucket = sandbox.config.reports.bucket
    written = "".join(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode()
                      for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    sent = json.dumps([m["payload"] for o in history.values() for m in o.messages])
    printed = "".join(o.printed for o in history.values())
    assert written and printed and len(history) == 5
    for secret in sandbox.secrets():
        for form in secret_forms(secret):
            assert form not in written and form not in sent and form not in printed
