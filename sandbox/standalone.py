"""A real Airflow on the sandbox: `airflow standalone` (scheduler, dag-processor, triggerer, api-server,
LocalExecutor) with our DAGs and plugin, connections pointing at the sandbox, and its metadata database
on the sandbox's PostgreSQL server, as in production (on SQLite, Airflow refuses to create a backfill
while runs are writing: "database is locked").

`make airflow` (sandbox/airflow_ui.py) starts one for people; the end-to-end tests share one (the
``standalone`` session fixture in tests/e2e/conftest.py): starting it costs about a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sandbox import aws_calls
from sandbox.servers import free_port
from sandbox.world import Sandbox, sandbox_env_for_subprocess

# One DAG per file, named after it.
DAG_IDS = tuple(sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "dags").glob("*.py")))


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


class Standalone:
    def __init__(self, sandbox: Sandbox, home: Path, port: int | None = None, paused_at_creation: bool = False,
                 scheduled: bool = False, parallelism: int = 8, aws_call_log: Path | None = None):
        """``scheduled`` off: only what is triggered or backfilled runs (no run of today beside a
        test's); ``parallelism`` caps LocalExecutor's worker processes (it otherwise starts dozens);
        ``aws_call_log``: every Airflow process records its AWS calls there (sandbox/aws_calls.py)."""
        self.sandbox, self.home = sandbox, home
        port = port or free_port()
        self.port = port
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
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(paused_at_creation),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(scheduled),
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
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
        if aws_call_log is not None:
            # Airflow imports airflow_local_settings (AIRFLOW_HOME/config is on sys.path) in each of its processes.
            (home / "config").mkdir(exist_ok=True)
            (home / "config" / "airflow_local_settings.py").write_text(
                "from sandbox.aws_calls import install_from_environment\n\ninstall_from_environment()\n")
            self.env[aws_calls.ENV_VAR] = str(aws_call_log)

    def start(self) -> Standalone:
        self.airflow("db", "migrate")
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen([sys.executable, "-m", "airflow", "standalone"], env=self.env,
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_for(lambda: len(self.query("SELECT DISTINCT dag_id FROM serialized_dag")) >= len(DAG_IDS),
                      240, "the DAGs to be parsed")
        self.wait_for(self._api_up, 120, "the API server")
        return self

    def stop(self) -> None:
        """Stop every process standalone started: its process group, and the task runners Airflow puts
        in groups of their own (a task still running would otherwise outlive everything)."""
        if getattr(self, "process", None) is None:
            return
        import psutil

        try:
            started = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            started = []
        group = self.process.pid
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and _group_alive(group):
                self.process.poll()  # reap our own child, or it stays in the group as a zombie
                time.sleep(0.3)
            if not _group_alive(group):
                break
        self.process.wait(timeout=10)
        left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        for process in left:
            process.kill()
        psutil.wait_procs(left, timeout=10)
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

    @property
    def admin_password(self) -> str:
        """The admin user's password, which standalone generated into AIRFLOW_HOME."""
        return json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]

    @property
    def token(self) -> str:
        """A token of the admin user standalone created (its password is in AIRFLOW_HOME)."""
        import requests

        if not hasattr(self, "_token"):
            login = requests.post(f"{self.api_url}/auth/token",
                                  json={"username": "admin", "password": self.admin_password},
                                  timeout=30)
            assert login.status_code in (200, 201), login.text
            self._token = login.json()["access_token"]
        return self._token

    def client(self) -> Any:
        """The official REST client (apache-airflow-client), logged in as the admin user."""
        import airflow_client.client as client

        return client.ApiClient(client.Configuration(host=self.api_url, access_token=self.token))

    def api(self, method: str, path: str, body: dict) -> dict:
        """Call the REST API directly (what the UI does)."""
        import requests

        response = requests.request(method, f"{self.api_url}/api/v2{path}", json=body, timeout=60,
                                    headers={"Authorization": f"Bearer {self.token}"})
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

    def runs(self, dag_id: str = "daily_maintenance") -> dict[str, tuple]:
        rows = self.query("SELECT logical_date, run_id, state, run_type, start_date, end_date FROM dag_run "
                          "WHERE dag_id = %s AND logical_date IS NOT NULL", dag_id)
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
        raise TimeoutError(f"timed out waiting for {what}; runs: {self.runs()}\n--- standalone log tail ---\n{tail}")

    def report(self, run_id: str, dag_id: str = "daily_maintenance") -> dict:
        s3 = self.sandbox.client("s3")
        key = f"{self.sandbox.config.reports.prefix}/{dag_id}/{run_id}/report.json"
        return json.loads(s3.get_object(Bucket=self.sandbox.config.reports.bucket, Key=key)["Body"].read())
