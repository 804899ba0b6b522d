from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox import aws_calls
from sandbox.standalone import Standalone
from sandbox.world import Sandbox


@pytest.fixture(scope="session", autouse=True)
def aws_call_log(tmp_path_factory) -> Path:
    """Every AWS operation the end-to-end runs make, in this process (dag.test) and in the real
    Airflow's processes, for the least-privilege test that runs after them (test_iam_policies.py)."""
    path = tmp_path_factory.getbasetemp() / "aws-calls.jsonl"
    aws_calls.install(path, tasks_only=True)
    return path


# The shared Airflow's Celery workers, as the README advises a deployment: the DAGs that change AWS on
# a queue of their own, whose worker alone would carry the mutating IAM policies. Name -> (queues,
# concurrency); a replaced worker's successor is named by its number (tests/e2e/test_standalone_celery.py).
MUTATING_QUEUE = "aws-changes"
READ_ONLY_WORKER, MUTATING_WORKER = "readonly-1", "changes-1"
CELERY_WORKERS = {READ_ONLY_WORKER: ("default", 6), MUTATING_WORKER: (MUTATING_QUEUE, 3)}


@pytest.fixture(scope="session")
def standalone(tmp_path_factory, aws_call_log):
    """One real Airflow on one sandbox for every module that drives it through the REST API, run as the
    deployment runs it: CeleryExecutor, Redis, two workers, each component a process of its own. The
    sandbox allows failover (dr_failover's approval scenarios); each test seeds the world it needs."""
    with Sandbox(allow_failover=True, mutating_queue=MUTATING_QUEUE) as sandbox:
        airflow = Standalone(sandbox, tmp_path_factory.mktemp("standalone"), aws_call_log=aws_call_log,
                             celery_workers=CELERY_WORKERS).start()
        try:
            yield airflow
        finally:
            airflow.stop()


REPO = Path(__file__).resolve().parents[2]
# The shared Airflow's past days, derived from today so the suite holds on any date: the three-day
# backfill starts two weeks back, the REST-triggered run is a later past day (its report is the daily
# DAG's latest, which the dashboard test shows).
BACKFILL_FIRST_DAY = (datetime.now(UTC) - timedelta(days=14)).replace(hour=2, minute=0, second=0, microsecond=0)
TRIGGERED_DAY = BACKFILL_FIRST_DAY + timedelta(days=6)


@contextmanager
def sandbox_as_environment(**options: Any) -> Iterator[Sandbox]:
    """A sandbox whose connections and endpoint are this process's environment (as `dag.test()` reads
    them), put back as it was afterwards. Only the aws_default connection's keys count for AWS."""
    saved = dict(os.environ)
    with Sandbox(**options) as world:
        os.environ.update(world.env())
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.pop(name, None)
        try:
            yield world
        finally:
            os.environ.clear()
            os.environ.update(saved)


def parsed_dag(dag_id: str) -> Any:
    """The DAG as the DAG processor parses it from dags/ (no import error anywhere)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags[dag_id]
