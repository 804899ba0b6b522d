"""`make airflow` as a person uses it: run the README's command, open the printed URL, log in with the
printed login, see the DAGs, trigger one; then Ctrl-C (SIGINT to the terminal's foreground process
group) while its tasks run stops every process it started and removes every file it wrote."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from sandbox.servers import free_port
from sandbox.standalone import DAG_IDS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]


def _command(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # gone, or a zombie
        return ""


def _alive(process: psutil.Process) -> bool:
    """Still running (the same process: psutil checks its start time, so a reused pid is not it)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_make_airflow_serves_the_ui_and_ctrl_c_leaves_nothing_behind():
    port = free_port()
    make = subprocess.Popen(["make", "-s", "airflow", f"AIRFLOW_PORT={port}"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(make.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while not any(line.startswith("Press Ctrl-C") for line in list(output)):
            assert make.poll() is None and time.monotonic() < deadline, "".join(output)[-5000:]
            time.sleep(1)
        text = "".join(output)
        url = re.search(r"Airflow is up in \d+ s: (\S+)", text).group(1)
        username, password = re.search(r"login: +(\S+) / (\S+)", text).groups()
        home = Path(re.search(r"Starting Airflow in (\S+) ", text).group(1))
        workdir = Path(re.search(r"sandbox: +(\S+)", text).group(1))
        assert url == f"http://127.0.0.1:{port}" and home.is_dir() and workdir.is_dir()

        # What the README promises: the printed login works and the DAGs are there, paused.
        assert requests.get(f"{url}/api/v2/monitor/health", timeout=10).status_code == 200
        login = requests.post(f"{url}/auth/token", json={"username": username, "password": password}, timeout=30)
        assert login.status_code in (200, 201), login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        dags = requests.get(f"{url}/api/v2/dags", headers=headers, timeout=30).json()["dags"]
        assert {d["dag_id"]: d["is_paused"] for d in dags} == dict.fromkeys(DAG_IDS, True)

        # Ctrl-C while tasks run: Airflow puts each task runner in a process group of its own.
        dag_run = f"{url}/api/v2/dags/daily_maintenance/dagRuns"
        assert requests.patch(f"{url}/api/v2/dags/daily_maintenance", json={"is_paused": False}, headers=headers,
                              timeout=30).status_code == 200
        run_id = requests.post(dag_run, json={"logical_date": None}, headers=headers, timeout=30).json()["dag_run_id"]

        def running() -> bool:
            instances = requests.get(f"{dag_run}/{run_id}/taskInstances", headers=headers, timeout=30).json()
            return any(ti["state"] == "running" for ti in instances["task_instances"])

        deadline = time.monotonic() + 120
        while not running():
            assert time.monotonic() < deadline, "no task of the triggered run started"
            time.sleep(1)
        # Every process below make, whatever its session or group, and PostgreSQL, which daemonises
        # (no descendant): it is found by the sandbox folder on its command line.
        started = psutil.Process(make.pid).children(recursive=True)
        commands = " ".join(_command(process) for process in started)
        assert "airflow scheduler" in commands and "airflow triggerer" in commands, commands
        servers = [process for process in psutil.process_iter() if str(workdir) in _command(process)]
        assert "postgres" in " ".join(_command(process) for process in servers)
        started += servers
    finally:
        # Ctrl-C in a terminal: SIGINT to the whole foreground process group.
        os.killpg(make.pid, signal.SIGINT)
        make.wait(timeout=120)
        reader.join(timeout=10)

    text = "".join(output)
    assert "Stopped; nothing is left running." in text, text[-3000:]
    left = [f"{process.pid} {_command(process)[:120]}" for process in started if _alive(process)]
    assert not left, f"still running after Ctrl-C: {left}"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/api/v2/monitor/health", timeout=5)
    assert not home.exists() and not workdir.exists()
