"""`make demo` is an acceptance point: run it as a person would and read what it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]


def test_demo_prints_findings_alerts_and_report(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "MAINTENANCE"))}
    env["PYTHONPATH"] = f"{REPO / 'plugins'}{os.pathsep}{REPO}"
    result = subprocess.run([sys.executable, "-m", "sandbox.demo", "--keep", str(tmp_path)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=540)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "Running: airflow dags test daily_maintenance" in out
    assert "P2   critical  new    ecs.task_count" in out
    assert "P2   critical  new    rds.cpu_utilization" in out
    assert "[P2] production: daily_maintenance.rds_health failed" in out
    assert ":large_orange_circle: production: daily_maintenance failed" in out
    assert "E-mail to platform-ops@solemate.example: production: daily_maintenance failed" in out
    assert "DAG run state: failed" in out
    assert "Report: s3://solemate-maintenance-reports/reports/daily_maintenance/" in out
    assert (tmp_path / "report.md").read_text().startswith("# daily_maintenance — production")
    finished = [line for line in (tmp_path / "airflow.log").read_text().splitlines() if "DagRun Finished" in line]
    assert len(finished) == 1 and "state=failed," in finished[0]  # the run itself ended failed


def test_demo_of_the_backup_verification_prints_measured_rto_and_rpo():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "MAINTENANCE"))}
    env["PYTHONPATH"] = f"{REPO / 'plugins'}{os.pathsep}{REPO}"
    result = subprocess.run([sys.executable, "-m", "sandbox.demo", "--dag", "weekly_backup_verification"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=540)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "Running: airflow dags test weekly_backup_verification" in out
    assert "backup.plan.rule" in out and "retention_days: expected 30, actual 7" in out  # the injected drift
    assert re.search(r"Measured by restore_validate: Restore test \(point-in-time to .+\): validation passed; "
                     r"RTO \d+\.\d min \(target 15\); data RPO \d+\.\d min \(target 5\)", out), out[-3000:]
    assert "Restore copies left in RDS after the run: 0" in out


def test_demo_of_the_dr_drill_prints_the_guides_table():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "MAINTENANCE"))}
    env["PYTHONPATH"] = f"{REPO / 'plugins'}{os.pathsep}{REPO}"
    result = subprocess.run([sys.executable, "-m", "sandbox.demo", "--dag", "dr_drill", "--problems",
                             "replication_stopped"], cwd=REPO, env=env, capture_output=True, text=True, timeout=540)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "Running: airflow dags test dr_drill" in out
    assert "The drill against the guide's table (minutes):" in out
    assert re.search(r"Database\s+15\s+\d+\.\d\s+5\s+\d+\.\d\s+met", out), out[-3000:]
    assert re.search(r"Static assets\s+5\s+\d+\.\d\s+1440\s+\d+\.\d\s+missed", out), out[-3000:]
    assert re.search(r"Created 2, deleted 2, left 0", out), out[-3000:]
