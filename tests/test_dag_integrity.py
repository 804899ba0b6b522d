"""Every DAG imports cleanly, follows the house rules, and does no network work at import."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "daily_maintenance" in dagbag.dags


REPORTING_DAG_IDS = ["daily_maintenance", "weekly_backup_verification", "weekly_review", "monthly_review",
                     "dr_drill", "dr_failover", "airflow_housekeeping"]
# The watches announce incidents themselves (no report task, no run verdict).
WATCH_DAG_IDS = ["performance_watch", "database_watch"]
# The operator's day: one message per checklist, built from the reports (no report of their own).
REVIEW_DAG_IDS = ["morning_review", "evening_review"]
DAG_IDS = REPORTING_DAG_IDS + WATCH_DAG_IDS + REVIEW_DAG_IDS


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_dag_follows_conventions(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags and "maintenance" in dag.tags
    assert dag.doc_md and dag.doc_md.lstrip().startswith("## ")
    assert dag.catchup is False
    assert dag.description and len(dag.description) < 200  # the UI's DAG list and Details panel
    assert dag.max_active_runs == 1
    if dag_id in WATCH_DAG_IDS:  # a watch that overruns its interval gives way to the next one
        assert dag.dagrun_timeout is not None and dag.dagrun_timeout <= timedelta(minutes=60)
    assert dag.start_date.tzinfo is not None and dag.start_date.year == 2026
    for task in dag.tasks:
        assert task.owner == "platform-ops", task.task_id
        assert task.execution_timeout is not None and task.execution_timeout <= timedelta(hours=2), task.task_id
        if task.task_id != "run_verdict":  # the verdict must not retry or alert
            # A refused failover and a human's answer are decisions: retrying them would change nothing.
            assert task.retries >= 2 or task.task_id in ("failover_gate", "dr_drill_gate", "approve_dns_switch"), \
                task.task_id
            assert task.on_failure_callback, task.task_id
        # Retries stay quiet: Airflow calls on_failure_callback only after the last try.
        assert not task.on_retry_callback, task.task_id


def test_all_dags_in_the_folder_are_checked(dagbag):
    parametrized = set(DAG_IDS)
    assert set(dagbag.dag_ids) == parametrized, "add new DAGs to test_dag_follows_conventions"


@pytest.mark.parametrize("dag_id", REPORTING_DAG_IDS)
def test_report_and_watcher_wiring(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    # Tasks after the report (the daily maintenance_status) publish what it found; they run whatever
    # happened and are not themselves reported on.
    after_report = {t.task_id for t in dag.tasks if "report" in t.upstream_task_ids} - {"run_verdict"}
    assert all(dag.get_task(t).trigger_rule == "all_done" for t in after_report)
    checks = {t.task_id for t in dag.tasks} - {"report", "run_verdict"} - after_report
    report = dag.get_task("report")
    # Every task is reported on: directly upstream, or (a setup task) named in also_collect.
    assert set(report.check_task_ids()) == checks
    assert report.trigger_rule == "all_done"
    verdict = dag.get_task("run_verdict")
    assert set(verdict.check_task_ids()) == checks and "report" in verdict.upstream_task_ids
    # all_done: it must also run after "clear only failed tasks" re-ran checks, to refresh the report.
    assert verdict.trigger_rule == "all_done" and verdict.retries == 0 and not verdict.on_failure_callback


def test_restore_cleanup_is_the_teardown_of_the_restore_request(dagbag):
    dag = dagbag.dags["weekly_backup_verification"]
    request, cleanup = dag.get_task("restore_request"), dag.get_task("restore_cleanup")
    assert request.is_setup and cleanup.is_teardown
    assert "restore_request" in cleanup.upstream_task_ids and "restore_validate" in cleanup.upstream_task_ids
    # The report waits for the teardown: a run is reported only once its copy is gone.
    assert "restore_cleanup" in dag.get_task("report").upstream_task_ids


_NO_NETWORK = """
import socket, sys, runpy
class Blocked(Exception): pass
def refuse(*args, **kwargs):
    raise Blocked(f"network access at DAG import: {args!r}")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
import airflow.sdk
for path in sys.argv[1:]:
    before = set(sys.modules)
    runpy.run_path(path, run_name="dag_import_check")
    heavy = sorted(m for m in set(sys.modules) - before
                   if m.split(".")[0] in {"boto3", "botocore", "slack_sdk", "aiohttp", "requests", "psycopg2"}
                   or m.startswith(("airflow.providers.amazon", "airflow.providers.slack", "airflow.providers.smtp")))
    print("DAG-FILE", path.rsplit("/", 1)[-1], ",".join(heavy[:10]))
"""


def test_every_dag_file_imports_without_network_or_provider_and_sdk_modules():
    """One interpreter (as a DAG processor's) imports every file in turn with sockets refused, and notes
    what each one loaded beyond airflow.sdk. A file that loaded a heavy module would be named (one
    loaded before it by another file would already have failed that one). Parse cost: make bench."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'plugins'}{os.pathsep}{REPO}"}
    result = subprocess.run([sys.executable, "-c", _NO_NETWORK, *map(str, DAG_FILES)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    checked = [line.split(" ", 2) for line in result.stdout.splitlines() if line.startswith("DAG-FILE ")]
    assert [name for _, name, _ in checked] == [p.name for p in DAG_FILES], result.stdout[-2000:]
    assert [(name, heavy) for _, name, heavy in checked if heavy] == []


def test_network_guard_really_blocks():
    """The guard above would catch a DAG that connects at import."""
    script = _NO_NETWORK.replace("runpy.run_path(path, run_name=\"dag_import_check\")",
                                 "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9')")
    assert script != _NO_NETWORK
    result = subprocess.run([sys.executable, "-c", script, str(DAG_FILES[0])], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and "network access at DAG import" in result.stderr


def test_airflow_cli_lists_the_dag_without_import_errors(airflow_db):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'plugins'}{os.pathsep}{REPO}"}

    def airflow(*args):
        return subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True,
                              timeout=300)

    assert airflow("dags", "reserialize").returncode == 0
    listed = airflow("dags", "list")
    assert all(dag_id in listed.stdout for dag_id in DAG_IDS)
    errors = airflow("dags", "list-import-errors")
    assert errors.returncode == 0 and "No data found" in errors.stdout + errors.stderr


def test_dr_drill_form_and_teardowns(dagbag):
    dag = dagbag.dags["dr_drill"]
    assert set(dag.params["components"]) == {"database", "application", "static_assets", "complete_system"}
    assert dag.params["region"] == "us-west-2" and dag.params["reason"]
    # Everything the drill creates has a teardown that runs even when the measurement fails.
    for setup, teardown in (("dr_database_request", "dr_database_cleanup"), ("dr_application_start",
                                                                           "dr_application_cleanup")):
        assert dag.get_task(setup).is_setup and dag.get_task(teardown).is_teardown
        assert setup in dag.get_task(teardown).upstream_task_ids
    assert dag.get_task("dr_scorecard").trigger_rule == "all_done"
    assert {"dr_database_cleanup", "dr_application_cleanup"} <= dag.get_task("dr_scorecard").upstream_task_ids
    # The gate refuses a misspelt conf key or a blank reason first: a setup, so nothing runs after a refusal.
    gate = dag.get_task("dr_drill_gate")
    assert gate.is_setup and gate.retries == 0 and not gate.upstream_task_ids
    assert {t.task_id for t in dag.tasks if not t.upstream_task_ids} == {"dr_drill_gate"}
    assert dag.params.get_param("reason").schema["pattern"] == r"\S"  # a blank reason never starts a run


def test_dr_failover_is_gated_in_the_guides_order(dagbag):
    dag = dagbag.dags["dr_failover"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # manual only: no schedule ever fails over
    order = ["failover_gate", "failover_assessment", "notify_start", "failover_infrastructure", "failover_database",
             "failover_application", "notify_gate", "approve_dns_switch", "failover_dns", "failover_validation",
             "failover_monitoring", "notify_end"]
    for before, after in zip(order, order[1:], strict=False):
        assert dag.get_task(before).downstream_task_ids & {after}, (before, after)
    assert dag.get_task("failover_gate").is_setup  # nothing downstream runs, ALL_DONE included, if it refuses
    assert type(dag.get_task("approve_dns_switch")).__name__ == "ApprovalOperator"
    assert dag.params["confirm"] == "" and dag.params["reason"] == ""


@pytest.mark.parametrize("enforce_retention", [False, True], ids=["reading-retention", "enforcing-retention"])
def test_the_dags_that_change_aws_run_on_the_mutating_queue_the_others_on_the_default(
        tmp_path, monkeypatch, enforce_retention):
    """What the README advises for Celery: the DAGs with a policy beyond read-only (attachments.json)
    on a queue of their own, so that only that queue's workers carry those policies."""
    import yaml
    from airflow.dag_processing.dagbag import DagBag

    from solemate_maintenance.config import DEFAULT_CONFIG_PATH

    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["workers"] = {"mutating_queue": "aws-changes"}
    raw["log_lifecycle"]["enforce"] = enforce_retention
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MAINTENANCE_CONFIG", str(tmp_path / "platform.yaml"))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    mutating = {"weekly_backup_verification", "dr_drill", "dr_failover"} | (
        {"daily_maintenance"} if enforce_retention else set())
    queues = {dag_id: {task.queue for task in dag.tasks} for dag_id, dag in bag.dags.items()}
    assert queues == {dag_id: {"aws-changes" if dag_id in mutating else "default"} for dag_id in DAG_IDS}


def test_without_a_mutating_queue_every_task_is_on_the_default_queue(dagbag):
    assert {task.queue for dag in dagbag.dags.values() for task in dag.tasks} == {"default"}
