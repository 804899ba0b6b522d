"""The shared end-to-end Airflow runs as the deployment does: CeleryExecutor, Redis, api-server,
scheduler, dag-processor and triggerer as processes of their own, and two Celery workers, the DAGs
that change AWS on a queue of their own (``workers.mutating_queue``), as the README advises.

Here: a worker stopped mid-task (SIGTERM, as `docker stop` and a rolling update send) finishes the
task before it exits, and its successor takes the rest of the run; after every run, each task ran on
the worker of its queue, and both workers worked. (A deferred restore resuming on another worker
than the one that started it is in test_standalone_backfill.py, in the weekly backfill.)
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from solemate_maintenance import iam
from tests.e2e.conftest import BACKFILL_FIRST_DAY, MUTATING_QUEUE, READ_ONLY_WORKER

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# A healthy past day between the backfilled days and the REST-triggered one (which stays the latest).
DAY = BACKFILL_FIRST_DAY + timedelta(days=4)
FINAL = {"success", "failed"}


def task_rows(standalone, dag_id: str, run_id: str) -> dict[str, tuple]:
    """task id -> (state, hostname, try number, queue) of one run."""
    return {row[0]: row[1:] for row in standalone.query(
        "SELECT task_id, state, hostname, try_number, queue FROM task_instance WHERE dag_id = %s AND run_id = %s",
        dag_id, run_id)}


def test_a_worker_stopped_mid_task_finishes_it_before_it_exits_and_its_successor_takes_the_rest(standalone):
    sandbox = standalone.sandbox
    sandbox.seed_days({DAY: set()})
    sandbox.slack.clear()
    # The report's digest takes 8 s to be answered (under the 10 s Slack timeout): the task is mid-call
    # when the worker is told to stop.
    sandbox.slack.mode, sandbox.slack.slow_seconds = "slow", 8
    try:
        run = standalone.api("POST", "/dags/daily_maintenance/dagRuns",
                             {"logical_date": DAY.isoformat(), "conf": {}})
        run_id = run["dag_run_id"]
        standalone.wait_for(lambda: sandbox.slack.attempts >= 1, 420, "the report to post its digest")
        mid_task = task_rows(standalone, "daily_maintenance", run_id)["report"]
        assert mid_task[:2] == ("running", READ_ONLY_WORKER), mid_task
        stopping, successor = standalone.replace_worker(READ_ONLY_WORKER)
        time.sleep(3)
        assert stopping.poll() is None, "the worker exited with its task still running (a cold shutdown)"
        standalone.wait_for(lambda: stopping.poll() is not None, 60, f"{READ_ONLY_WORKER} to finish and exit")
    finally:
        sandbox.slack.mode = "ok"
    assert stopping.returncode == 0
    stopped_log = (standalone.home / f"{READ_ONLY_WORKER}.log").read_text(errors="replace")
    assert "warm shutdown" in stopped_log.lower(), stopped_log[-2000:]
    # Finished on the stopping worker, in its first try: no retry, no second digest.
    rows = task_rows(standalone, "daily_maintenance", run_id)
    assert rows["report"][:3] == ("success", READ_ONLY_WORKER, 1), rows["report"]
    digests = [m for m in sandbox.slack.messages() if "daily_maintenance" in m["payload"].get("text", "")]
    assert len(digests) == 1 and sandbox.slack.attempts == 1, sandbox.slack.messages()

    def finished() -> bool:
        return standalone.query("SELECT state FROM dag_run WHERE run_id = %s", run_id)[0][0] in FINAL

    standalone.wait_for(finished, 300, f"daily_maintenance {run_id}")
    rows = task_rows(standalone, "daily_maintenance", run_id)
    assert {task: row[0] for task, row in rows.items()} == dict.fromkeys(rows, "success")
    # What came after the report ran on the successor.
    assert {rows[task][1] for task in ("maintenance_status", "run_verdict")} == {successor}


@pytest.mark.after_the_runs
def test_every_task_ran_on_its_queue_s_worker_and_both_workers_worked(standalone):
    """After every run of the session: the DAGs that change AWS (policies beyond read-only in
    attachments.json) only on the mutating queue's workers, the others only on the read-only ones."""
    ran = standalone.query("SELECT dag_id, task_id, queue, hostname FROM task_instance WHERE hostname <> ''")
    by_worker: dict[str, set[str]] = {}
    misplaced = []
    for dag_id, task_id, queue, hostname in ran:
        mutating = iam.changes_aws(dag_id, standalone.sandbox.config)
        expected = (MUTATING_QUEUE, "changes-") if mutating else ("default", "readonly-")
        if queue != expected[0] or not hostname.startswith(expected[1]):
            misplaced.append(f"{dag_id}.{task_id}: queue {queue}, worker {hostname}")
        by_worker.setdefault(hostname.rpartition("-")[0], set()).add(dag_id)
    assert misplaced == []
    assert by_worker.keys() == {"readonly", "changes"}, by_worker
    assert {"weekly_backup_verification", "dr_drill", "dr_failover"} <= by_worker["changes"]
    assert {"daily_maintenance", "monthly_review"} <= by_worker["readonly"]
