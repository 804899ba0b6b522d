"""`airflow dags test` (what the README suggests running against production) prints no secret.

Airflow configures `dags test` logging without its secrets masker; the project's secret registration
puts masking back. This runs the real CLI in its own process on a fixture DAG that logs a webhook
token the ways libraries do: in a URL through a provider hook's logger, URL-encoded, base64, alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.world import airflow_env
from solemate_maintenance.notifiers.delivery import secret_forms

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
TOKEN = "T0MASKTEST/B0MASKTEST/" + "Zq9+Xw/8" + "k3y" * 5


def test_dags_test_output_carries_no_form_of_the_webhook_token(tmp_path):
    env = {**os.environ, **airflow_env(tmp_path / "home", REPO)}
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "tests" / "fixtures" / "dags")
    env["AIRFLOW_CONN_SLACK_ALERTS"] = json.dumps(
        {"conn_type": "slackwebhook", "host": "http://127.0.0.1:9/services", "password": TOKEN})
    migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True,
                             text=True, timeout=240)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    run = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "secret_logging", "2026-11-20"],
                         env=env, capture_output=True, text=True, timeout=240)
    printed = run.stdout + run.stderr
    assert "Going to retry the same request: POST http://hooks.example/services/***" in printed
    assert "auth header ***" in printed and "the token alone: ***" in printed
    assert "state=success" in printed or "success" in printed.lower(), printed[-2000:]
    for form in secret_forms(TOKEN):
        assert form not in printed, f"printed a form of the token: {form[:6]}…"
