"""A real Airflow on the sandbox, with our DAGs and plugin, connections pointing at the sandbox, and
its metadata database on the sandbox's PostgreSQL server, as in production (on SQLite, Airflow
refuses to create a backfill while runs are writing: "database is locked").

Two ways to run it:
- ``airflow standalone`` (scheduler, dag-processor, triggerer, api-server; LocalExecutor): what
  `make airflow` (sandbox/airflow_ui.py) starts for people;
- as the deployment runs it (docker-compose.yaml, helm-values.yaml): CeleryExecutor with Redis as the
  broker and results in PostgreSQL, api-server, scheduler, dag-processor and triggerer as processes of
  their own, and Celery workers, each consuming its queues. The end-to-end tests share one (the
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

from sandbox import aws_calls, worker_name
from sandbox.servers import RedisBroker, free_port
from sandbox.world import Sandbox, sandbox_env_for_subprocess

# One DAG per file, named after it.
DAG_IDS = tuple(sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "dags").glob("*.py")))
# CeleryExecutor's components besides the workers, as docker-compose.yaml starts them.
CELERY_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_groups(processes: list[subprocess.Popen], grace: float = 30) -> None:
    """SIGTERM process groups (each started with its own session) together, then SIGKILL what is left
    after `grace`: stopping them one after the other would add up their shutdowns."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        alive = [p for p in processes if _group_alive(p.pid)]
        for process in alive:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_group_alive(p.pid) for p in alive):
            for process in alive:
                process.poll()  # reap our own child, or it stays in the group as a zombie
            time.sleep(0.3)
    for process in processes:
        process.wait(timeout=10)


class Standalone:
    def __init__(self, sandbox: Sandbox, home: Path, port: int | None = None, paused_at_creation: bool = False,
                 scheduled: bool = False, parallelism: int = 8, aws_call_log: Path | None = None,
                 celery_workers: dict[str, tuple[str, int]] | None = None):
        """``scheduled`` off: only what is triggered or backfilled runs (no run of today beside a
        test's); ``parallelism`` caps the tasks running at once (LocalExecutor otherwise starts dozens
        of processes); ``aws_call_log``: every Airflow process records its AWS calls there
        (sandbox/aws_calls.py); ``celery_workers``: run on CeleryExecutor with these workers (name ->
        the comma-separated queues it consumes and its concurrency), else `airflow standalone`."""
        self.sandbox, self.home = sandbox, home
        port = port or free_port()
        self.port = port
        self.api_url = f"http://127.0.0.1:{port}"
        self.celery_workers = celery_workers
        self.env = sandbox_env_for_subprocess(sandbox, home)
        # The metadata database in the sandbox's PostgreSQL server (its own database, local socket).
        sandbox.postgres.server.psql("CREATE DATABASE airflow_metadata;")
        self.db_dsn = {"host": str(sandbox.postgres.socket_dir), "dbname": "airflow_metadata", "user": "postgres"}
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            self.env.pop(name, None)
        metadata = f"postgresql+psycopg2://postgres@/airflow_metadata?host={sandbox.postgres.socket_dir}"
        self.env.update({
            # Airflow starts its components as `airflow ...` from PATH: this interpreter's.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), self.env.get("PATH", "")]),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
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
        if celery_workers is not None:
            self.broker = RedisBroker(home)
            self.env.update({
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata}",
                # Sending a task to Redis on a busy 2-core machine can take longer than the default second.
                "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",
            })
        self.components: dict[str, subprocess.Popen] = {}
        self.worker_specs: dict[str, tuple[str, int]] = {}
        self.stopped: set[str] = set()  # components stopped on purpose (a worker's warm shutdown)
        # The scheduler's output (standalone's, which holds it, on LocalExecutor); every component's
        # output is in a file of its own in AIRFLOW_HOME.
        self.log_path = home / ("scheduler.log" if celery_workers is not None else "standalone.log")
        if aws_call_log is not None:
            # Airflow imports airflow_local_settings (AIRFLOW_HOME/config is on sys.path) in each of its processes.
            (home / "config").mkdir(exist_ok=True)
            (home / "config" / "airflow_local_settings.py").write_text(
                "from sandbox.aws_calls import install_from_environment\n\ninstall_from_environment()\n")
            self.env[aws_calls.ENV_VAR] = str(aws_call_log)

    def start(self) -> Standalone:
        self.airflow("db", "migrate")
        if self.celery_workers is None:
            self._launch("standalone", ["standalone"], self.env)
        else:
            self.broker.start()
            self.env["AIRFLOW__CELERY__BROKER_URL"] = self.broker.url
            for component in CELERY_COMPONENTS:
                self._launch(component, [component], self.env)
            for name, (queues, concurrency) in self.celery_workers.items():
                self.start_worker(name, queues, concurrency, wait=False)
        self.wait_for(lambda: len(self.query("SELECT DISTINCT dag_id FROM serialized_dag")) >= len(DAG_IDS),
                      240, "the DAGs to be parsed")
        self.wait_for(self._api_up, 120, "the API server")
        for name in self.celery_workers or {}:
            self.wait_for(lambda name=name: self.worker_ready(name), 120, f"the Celery worker {name}")
        return self

    def _launch(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.home / f"{name}.log").open("a")
        try:
            self.components[name] = subprocess.Popen([sys.executable, "-m", "airflow", *args], env=env, stdout=log,
                                                     stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()  # the child has its own copy

    # -- Celery workers ----------------------------------------------------------------------------
    def start_worker(self, name: str, queues: str, concurrency: int, wait: bool = True) -> None:
        """A Celery worker consuming `queues`; its tasks record `name` as their host (sandbox/worker_name.py)."""
        self.worker_specs[name] = (queues, concurrency)
        env = {**self.env, worker_name.ENV_VAR: name,
               "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{worker_name.__name__}.hostname"}
        # No log server per worker (both would want port 8793): the API server reads the task logs
        # from AIRFLOW_HOME/logs, which every process here shares.
        self._launch(name, ["celery", "worker", "--celery-hostname", f"{name}@sandbox", "--queues", queues,
                            "--concurrency", str(concurrency), "--skip-serve-logs", "--without-mingle",
                            "--without-gossip"], env)
        if wait:
            self.wait_for(lambda: self.worker_ready(name), 120, f"the Celery worker {name}")

    def worker_ready(self, name: str) -> bool:
        log = self.home / f"{name}.log"
        return log.exists() and f"{name}@sandbox ready." in log.read_text(errors="replace")

    def warm_stop_worker(self, name: str) -> subprocess.Popen:
        """SIGTERM to the worker's main process only, as `docker stop` and Kubernetes do: Celery's warm
        shutdown takes no new task and finishes the ones it runs before it exits."""
        self.stopped.add(name)
        process = self.components[name]
        process.send_signal(signal.SIGTERM)
        return process

    def replace_worker(self, name: str) -> tuple[subprocess.Popen, str]:
        """A rolling update of one worker: warm-stop it and start its successor on the same queues
        (``readonly-1`` -> ``readonly-2``) at once. Returns the stopping process and the successor's name."""
        role, _, number = name.rpartition("-")
        successor = f"{role}-{int(number) + 1}"
        stopping = self.warm_stop_worker(name)
        self.start_worker(successor, *self.worker_specs[name], wait=False)
        return stopping, successor

    # -- lifecycle ---------------------------------------------------------------------------------
    def running(self) -> bool:
        """Whether every component not stopped on purpose still runs."""
        return all(p.poll() is None for name, p in self.components.items() if name not in self.stopped)

    def stop(self) -> None:
        """Stop every process this started: the components' process groups (workers first, so no task
        is half done when the API server goes), the task runners Airflow puts in groups of their own
        (a task still running would otherwise outlive everything), and the broker."""
        import psutil

        started = []
        for process in self.components.values():
            try:
                started += psutil.Process(process.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        workers = [p for name, p in self.components.items() if name not in CELERY_COMPONENTS]
        _stop_groups(workers)
        _stop_groups([p for p in self.components.values() if p not in workers])
        left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        for process in left:
            process.kill()
        psutil.wait_procs(left, timeout=10)
        self.components.clear()
        if self.celery_workers is not None:
            self.broker.stop()

    def log_tail(self, chars: int = 6000) -> str:
        """The end of each component's output, for a failure message."""
        tails = []
        for name in self.components:
            text = (self.home / f"{name}.log").read_text(errors="replace")
            tails.append(f"--- {name} ---\n{text[-chars // max(len(self.components), 1):]}")
        return "\n".join(tails)

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
            if not self.running():
                raise RuntimeError(f"an Airflow component stopped while waiting for {what}\n{self.log_tail()}")
            if condition():
                return
            time.sleep(2)
        raise TimeoutError(f"timed out waiting for {what}; runs: {self.runs()}\n{self.log_tail()}")

    def report(self, run_id: str, dag_id: str = "daily_maintenance") -> dict:
        s3 = self.sandbox.client("s3")
        key = f"{self.sandbox.config.reports.prefix}/{dag_id}/{run_id}/report.json"
        return json.loads(s3.get_object(Bucket=self.sandbox.config.reports.bucket, Key=key)["Body"].read())
