"""A real scheduler: `airflow standalone` (scheduler, dag-processor, triggerer, api-server, LocalExecutor)
with its metadata database on PostgreSQL, as in production (Airflow refuses concurrent backfill
creation on SQLite: "Database is locked").

A user backfills three past days, each with its own problem, through the REST API (what the UI's
backfill dialog calls): the runs go concurrently, and each day's report must still compare with the
day before (the report waits, deferred, for the previous date's report). Then the UI's usual
recovery, "clear only failed tasks" (the same API call), after the problem is fixed: the run turns
green and its report says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sandbox.servers import free_port
from sandbox.world import Sandbox, sandbox_env_for_subprocess
from solemate_maintenance.notifiers.delivery import secret_forms

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

DAYS = {datetime(2026, 11, 20, 2, tzinfo=UTC): {"payment_failures"},
        datetime(2026, 11, 21, 2, tzinfo=UTC): set(),
        datetime(2026, 11, 22, 2, tzinfo=UTC): {"rds_high_cpu"}}
FINAL = {"success", "failed"}


class Standalone:
    def __init__(self, sandbox: Sandbox, home: Path):
        self.sandbox, self.home = sandbox, home
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.env = sandbox_env_for_subprocess(sandbox, home)
        # The metadata database in the sandbox's PostgreSQL server (its own database, local socket).
        sandbox.postgres.server.psql("CREATE DATABASE airflow_metadata;")
        self.db_dsn = {"host": str(sandbox.postgres.socket_dir), "dbname": "airflow_metadata", "user": "postgres"}
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            self.env.pop(name, None)
        self.env.update({
            # standalone starts its components as `airflow ...` from PATH: this interpreter's.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), self.env.get("PATH", "")]),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
                f"postgresql+psycopg2://postgres@/airflow_metadata?host={sandbox.postgres.socket_dir}",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # Only the backfill's runs: no scheduled run of today beside them.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        })
        self.log_path = home / "standalone.log"

    def start(self) -> Standalone:
        self.airflow("db", "migrate")
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen([sys.executable, "-m", "airflow", "standalone"], env=self.env,
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_for(lambda: self.query("SELECT 1 FROM serialized_dag WHERE dag_id = 'daily_maintenance'"),
                      240, "the DAG to be parsed")
        self.wait_for(self._api_up, 120, "the API server")
        return self

    def stop(self) -> None:
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=grace)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        self.log.close()

    def _api_up(self) -> bool:
        import requests

        try:
            return requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def airflow(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, f"airflow {' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    def api(self, method: str, path: str, body: dict) -> dict:
        """Call the REST API as the admin user standalone created (its password is in AIRFLOW_HOME)."""
        import requests

        if not hasattr(self, "_token"):
            password = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
            login = requests.post(f"{self.api_url}/auth/token", json={"username": "admin", "password": password},
                                  timeout=30)
            assert login.status_code in (200, 201), login.text
            self._token = login.json()["access_token"]
        response = requests.request(method, f"{self.api_url}/api/v2{path}", json=body, timeout=60,
                                    headers={"Authorization": f"Bearer {self._token}"})
        assert response.status_code in (200, 201), f"{method} {path}: {response.status_code} {response.text[:2000]}"
        return response.json()

    def query(self, sql: str, *params) -> list[tuple]:
        import psycopg2

        try:
            with psycopg2.connect(**self.db_dsn) as db, db.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        except psycopg2.Error:  # tables not there yet
            return []

    def runs(self) -> dict[str, tuple]:
        rows = self.query("SELECT logical_date, run_id, state, run_type, start_date, end_date FROM dag_run "
                          "WHERE dag_id = 'daily_maintenance'")
        return {row[0].date().isoformat(): row[1:] for row in rows}

    def wait_for(self, condition, seconds: int, what: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if condition():
                return
            time.sleep(2)
        tail = self.log_path.read_text(errors="replace")[-6000:]
        pytest.fail(f"timed out waiting for {what}; runs: {self.runs()}\n--- standalone log tail ---\n{tail}")

    def report(self, run_id: str) -> dict:
        s3 = self.sandbox.client("s3")
        key = f"{self.sandbox.config.reports.prefix}/daily_maintenance/{run_id}/report.json"
        return json.loads(s3.get_object(Bucket=self.sandbox.config.reports.bucket, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    with Sandbox() as sandbox:
        standalone = Standalone(sandbox, tmp_path_factory.mktemp("standalone")).start()
        try:
            yield standalone
        finally:
            standalone.stop()


def test_concurrent_backfill_compares_each_day_with_the_day_before(airflow):
    airflow.sandbox.seed_days(DAYS)
    backfill = airflow.api("POST", "/backfills", {
        "dag_id": "daily_maintenance", "from_date": "2026-11-20T00:00:00Z", "to_date": "2026-11-22T02:00:00Z",
        "max_active_runs": 3, "reprocess_behavior": "none"})
    assert backfill["dag_id"] == "daily_maintenance"
    airflow.wait_for(lambda: len(airflow.runs()) == 3 and all(r[1] in FINAL for r in airflow.runs().values()),
                     600, "the backfill to finish")
    runs = airflow.runs()
    assert {day: (r[1], r[2]) for day, r in runs.items()} == {
        "2026-11-20": ("failed", "backfill"), "2026-11-21": ("success", "backfill"),
        "2026-11-22": ("failed", "backfill")}
    spans = sorted((r[3], r[4]) for r in runs.values())
    assert any(later_start < earlier_end for (_, earlier_end), (later_start, _) in zip(spans, spans[1:], strict=False)), \
        f"the backfill runs did not overlap, so concurrency was not tested: {spans}"

    first, second, third = (airflow.report(runs[d][0]) for d in ("2026-11-20", "2026-11-21", "2026-11-22"))
    problems = {r["logical_date"][:10]: {f["check"]: f["lifecycle"] for f in r["findings"]
                                          if f["status"] in ("warning", "critical")}
                for r in (first, second, third)}
    assert problems == {"2026-11-20": {"business.payment_success_rate": "new"}, "2026-11-21": {},
                        "2026-11-22": {"rds.cpu_utilization": "new"}}
    assert first["comparison"] == {"status": "first_run"}
    assert second["comparison"] == {"status": "compared", "previous_run_id": runs["2026-11-20"][0]}
    assert [f["check"] for f in second["resolved"]] == ["business.payment_success_rate"]
    assert third["comparison"] == {"status": "compared", "previous_run_id": runs["2026-11-21"][0]}

    messages = [m["payload"]["text"] for m in airflow.sandbox.slack.messages()]
    p1 = [t for t in messages if t.startswith("[P1]")]
    assert p1 == ["[P1] production: daily_maintenance.business_metrics failed — 2026-11-20 02:00 UTC "
                  "[BACKFILL of a past date]"]
    assert all("[BACKFILL of a past date]" in t for t in messages), messages
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    topics = get_backend("sns")[DEFAULT_ACCOUNT_ID][airflow.sandbox.config.regions.primary].topics
    assert topics[airflow.sandbox.config.alerts.sns_topic_arn].sent_notifications == []  # backfills never page


def test_clear_only_failed_after_a_fix_leaves_a_green_run_and_a_report_that_says_so(airflow):
    day = "2026-11-22"
    run_id = airflow.runs()[day][0]
    airflow.sandbox.seed_days({**DAYS, datetime(2026, 11, 22, 2, tzinfo=UTC): set()})  # the fix
    airflow.sandbox.slack.clear()
    cleared = airflow.api("POST", "/dags/daily_maintenance/clearTaskInstances", {
        "dag_run_id": run_id, "only_failed": True, "dry_run": False})
    assert {ti["task_id"] for ti in cleared["task_instances"]} == {"rds_health", "run_verdict"}
    airflow.wait_for(lambda: airflow.runs()[day][1] == "success", 300, "the cleared run to turn green")
    states = dict(airflow.query("SELECT task_id, state FROM task_instance WHERE run_id = %s", run_id))
    assert states["rds_health"] == "success" and states["run_verdict"] == "success"
    report = airflow.report(run_id)
    assert report["refreshed_after_rerun"] is True
    assert report["failed_tasks"] == [] and report["clear_number"] >= 1
    assert not [f for f in report["findings"] if f["status"] in ("warning", "critical")]
    [digest] = [m["payload"]["text"] for m in airflow.sandbox.slack.messages()]
    assert "passed (updated after a re-run) — 2026-11-22 02:00 UTC" in digest


def _wednesdays_before(moment: datetime) -> tuple[datetime, datetime]:
    """The last two weekly_backup_verification dates (Wednesdays 03:00 UTC) at or before `moment`."""
    from solemate_maintenance.backup_schedule import previous_fire

    last = previous_fire("cron(0 3 ? * WED *)", moment)
    return previous_fire("cron(0 3 ? * WED *)", last - timedelta(seconds=1)), last


def test_weekly_backfill_defers_in_the_triggerer_and_skips_a_date_beyond_retention(airflow):
    """Two weeks backfilled concurrently: last week is restored for real (the wait runs in the
    triggerer, the task shows `deferred`), the week before is older than the 7-day restore window
    and its expired snapshots: skipped with the reason, not a false alarm."""
    from solemate_maintenance import restore

    older, newer = _wednesdays_before(datetime.now(UTC))
    airflow.sandbox.seed_days({newer: set()})
    airflow.sandbox.restores.restore_seconds = 12  # long enough to see the task wait deferred
    requests_before = len(airflow.sandbox.restores.requests)
    airflow.sandbox.slack.clear()
    airflow.api("POST", "/backfills", {
        "dag_id": "weekly_backup_verification", "from_date": (older - timedelta(hours=1)).isoformat(),
        "to_date": (newer + timedelta(hours=1)).isoformat(), "max_active_runs": 2, "reprocess_behavior": "none"})

    def weekly_runs() -> dict[str, tuple]:
        return {row[0]: row[1:] for row in airflow.query(
            "SELECT run_id, state, logical_date FROM dag_run WHERE dag_id = 'weekly_backup_verification'")}

    deferred: set[str] = set()

    def finished() -> bool:
        deferred.update(row[0] for row in airflow.query(
            "SELECT task_id FROM task_instance WHERE dag_id = 'weekly_backup_verification' AND state = 'deferred'"))
        runs = weekly_runs()
        return len(runs) == 2 and all(state in FINAL for state, _ in runs.values())

    airflow.wait_for(finished, 600, "the weekly backfill to finish")
    runs = {logical.astimezone(UTC): (run_id, state) for run_id, (state, logical) in weekly_runs().items()}
    assert {moment: state for moment, (_, state) in runs.items()} == {older: "success", newer: "success"}
    assert {"restore_validate", "restore_cleanup"} <= deferred  # the waits freed the worker slot

    s3 = airflow.sandbox.client("s3")

    def report(moment: datetime) -> dict:
        key = f"{airflow.sandbox.config.reports.prefix}/weekly_backup_verification/{runs[moment][0]}/report.json"
        return json.loads(s3.get_object(Bucket=airflow.sandbox.config.reports.bucket, Key=key)["Body"].read())

    old_findings = {f["check"]: f for f in report(older)["findings"]}
    assert old_findings["restore.request"]["status"] == "skipped"
    assert "before the restore window" in old_findings["restore.request"]["summary"]
    assert old_findings["backup.rds.latest_snapshot"]["status"] == "skipped"
    assert "automated snapshots are kept 7 days" in old_findings["backup.rds.latest_snapshot"]["summary"]
    measured = report(newer)["measurements"]["restore_validate"]
    assert measured["validation"] == "passed" and measured["available_after_minutes"] >= 12 / 60
    [request] = airflow.sandbox.restores.requests[requests_before:]  # one restore, for the newer date only
    assert request["as_of"] == newer
    tagged = [i for i in airflow.sandbox.client("rds").describe_db_instances()["DBInstances"]
              if restore.tags_of(i).get(restore.TAG_PURPOSE) == restore.PURPOSE]
    assert tagged == [] and airflow.sandbox.postgres.restored_databases() == []
    digests = sorted(m["payload"]["text"] for m in airflow.sandbox.slack.messages())
    assert digests == sorted(f":white_check_mark: production: weekly_backup_verification passed — "
                             f"{moment:%Y-%m-%d %H:%M} UTC [BACKFILL of a past date]" for moment in (older, newer))


def test_task_logs_written_by_the_scheduler_hold_no_secret(airflow):
    logs = "".join(p.read_text(errors="replace") for p in (airflow.home / "logs").rglob("*") if p.is_file())
    assert "business_metrics" in logs and "restore_validate" in logs  # the task logs are there to scan
    for secret in airflow.sandbox.secrets():
        for form in secret_forms(secret):
            assert form not in logs, f"a form of a secret is in the task logs: {form[:4]}…"
