"""The sandbox starts on free loopback ports and leaves no process or temp directory behind."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import psutil
import pytest
import requests

from sandbox.world import Sandbox


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_sandbox_lifecycle_leaves_nothing_behind():
    with Sandbox() as world:
        workdir = world.workdir
        ports = [world.moto_port, world.slack.port, world.health.port]
        postgres_pid = world.postgres.server.get_pid()
        assert all(port_open(p) for p in ports)
        assert psutil.pid_exists(postgres_pid)
        assert requests.get(world.health.health_url, timeout=5).status_code == 200
        env = world.env()
        assert env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{world.moto_port}"
        assert set(env) >= {"AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW_CONN_PLATFORM_DB", "AIRFLOW_CONN_SLACK_ALERTS",
                            "MAINTENANCE_CONFIG"}
    assert not workdir.exists()
    assert not any(port_open(p) for p in ports)
    assert not psutil.pid_exists(postgres_pid) or psutil.Process(postgres_pid).status() == psutil.STATUS_ZOMBIE


def test_unknown_problem_is_refused_before_anything_changes():
    with Sandbox() as world:
        with pytest.raises(ValueError, match="unknown sandbox problems: \\['typo'\\]"):
            world.seed(datetime(2026, 11, 20, 2, tzinfo=UTC), {"typo"})
