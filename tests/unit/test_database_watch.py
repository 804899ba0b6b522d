"""database_watch against a real PostgreSQL: a statement that slowed down since the previous hour, a
session waiting on a lock and the transaction blocking it, each announced once with what to do, and
resolved once; without pg_stat_statements the rest still runs."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import boto3
import psycopg2
import pytest
from moto import mock_aws

from sandbox.servers import SlackSink
from solemate_maintenance.config import Upper, load_config
from solemate_maintenance.operators.watch.database import DatabaseWatchOperator
from tests.helpers import UNIT_NOW, make_context

HOUR = UNIT_NOW.replace(minute=5)


@pytest.fixture
def world(postgres, tmp_path, monkeypatch):
    slack = SlackSink(tmp_path / "slack.jsonl").start()
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps(
        {"conn_type": "slackwebhook", "host": f"{slack.url}/services", "password": "T0/B0/dbwatchtoken1"}))
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_DB", json.dumps(postgres.connection))
    base = load_config()
    config = base.model_copy(update={
        "checks": base.checks.model_copy(update={"database": base.checks.database.model_copy(
            update={"long_transaction_minutes": Upper(warning=0.01, critical=60)})}),
        "watch": base.watch.model_copy(update={"database": base.watch.database.model_copy(
            update={"lock_wait_seconds": Upper(warning=0.5, critical=600)})})})
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=config.reports.bucket)
        yield config, slack
    slack.stop()
    postgres.drop_pg_stat_statements()


def watch(config, moment):
    operator = DatabaseWatchOperator(task_id="watch", config=config, interval_minutes=60, max_window_minutes=240)
    return operator.execute(make_context(moment, dag_id="database_watch", task_id="watch",
                                         run_id=f"scheduled__{moment.isoformat()}"))


class HeldLock:
    """A transaction holding a lock on orders, and a second session waiting for it."""

    def __init__(self, postgres):
        dsn = dict(host=str(postgres.socket_dir), dbname="solemate", user="postgres")
        self.holder = psycopg2.connect(**dsn, application_name="checkout-batch")
        self.waiter = psycopg2.connect(**dsn, application_name="solemate-backend")
        with self.holder.cursor() as cur:
            cur.execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        self.thread = threading.Thread(target=self._wait)
        self.thread.start()
        time.sleep(1.5)  # past the test's 0.5 s lock-wait threshold

    def _wait(self):
        with self.waiter.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders")

    def release(self):
        self.holder.rollback()
        self.thread.join(timeout=30)
        self.holder.close()
        self.waiter.close()


def test_statement_regressions_lock_waits_and_long_transactions_are_announced_once(world, postgres):
    config, slack = world
    postgres.stand_in_pg_stat_statements([(11, "SELECT * FROM orders WHERE user_id = $1", 1000, 100.0),
                                          (22, "SELECT 1", 500, 1.0)])
    lock = HeldLock(postgres)
    try:
        first = watch(config, HOUR)
        again = watch(config, HOUR + timedelta(minutes=30))  # a manual re-check: the same incidents
    finally:
        lock.release()
    # The next hour: statement 11 ran 100 more times at 400 ms each (it was 100 ms); 22 as before.
    postgres.stand_in_pg_stat_statements([(11, "SELECT * FROM orders WHERE user_id = $1", 1100, (100_000 + 40_000)
                                           / 1100), (22, "SELECT 1", 600, 1.0)])
    second = watch(config, HOUR + timedelta(hours=1))
    texts = [m["payload"]["text"] for m in slack.messages()]
    blocks = [json.dumps(m["payload"]["attachments"]) for m in slack.messages()]

    opened = {p["key"].split("|")[0] for p in first["problems"]}
    assert {"db.lock_wait", "db.long_transaction"} <= opened and "db.statement_regression" not in opened
    assert again["claimed"] == []  # still there: nothing announced twice
    [waiting] = [t for t in texts if "waits" in t and "since" in t]
    assert "solemate-backend" in waiting and "checkout-batch" in waiting and "LOCK TABLE orders" in waiting
    assert any("pg_terminate_backend" in b for b in blocks)
    [regression] = [t for t in texts if "statement 11" in t]
    assert "400 ms on average this hour, was 100 ms (+300 %, 100 calls)" in regression
    assert any("EXPLAIN (ANALYZE, BUFFERS)" in b for b in blocks)
    assert "statement 22" not in " ".join(texts)
    resolved = [t for t in texts if "resolved after" in t]
    assert any("lock wait" in t for t in resolved) and any("long transaction" in t for t in resolved)
    assert second["claimed"] and all(c.split(":")[0] in ("opened", "resolved") for c in second["claimed"])


def test_without_pg_stat_statements_the_rest_runs_and_says_how_to_enable_it(world, postgres):
    config, _ = world
    postgres.drop_pg_stat_statements()
    result = watch(config, HOUR)
    [missing] = [p for p in result["problems"] if p["key"].startswith("db.statements|")]
    assert missing["severity"] == "P4" and "shared_preload_libraries" in missing["summary"]
    assert result["observed"] >= 2  # connections were still read
