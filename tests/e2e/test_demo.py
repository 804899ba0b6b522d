"""`make demo` is an acceptance point: run it as a person would and read what it prints.

The three demos run at once (each its own sandbox on free ports and its own Airflow home): most of
a demo is waiting on its `airflow dags test` process, so together they take little more than one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
DEMOS = {"daily": ["--keep", "{keep}"],
         "backup": ["--dag", "weekly_backup_verification"],
         "drill": ["--dag", "dr_drill", "--problems", "replication_stopped"]}


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "MAINTENANCE"))}
    env["PYTHONPATH"] = f"{REPO / 'plugins'}{os.pathsep}{REPO}"
    started = {}
    for name, args in DEMOS.items():
        keep = tmp_path_factory.mktemp(f"demo-{name}")
        command = [sys.executable, "-m", "sandbox.demo", *(a.format(keep=keep) for a in args)]
        started[name] = (subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True), command, keep)
    finished = {}
    for name, (process, command, keep) in started.items():
        out, err = process.communicate(timeout=540)
        finished[name] = (subprocess.CompletedProcess(command, process.returncode, out, err), keep)
    return finished


def test_demo_prints_findings_alerts_and_report(demos):
    result, tmp_path = demos["daily"]
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


def test_demo_of_the_backup_verification_prints_measured_rto_and_rpo(demos):
    result, _ = demos["backup"]
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "Running: airflow dags test weekly_backup_verification" in out
    assert "backup.plan.rule" in out and "retention_days: expected 30, actual 7" in out  # the injected drift
    assert re.search(r"Measured by restore_validate: Restore test \(point-in-time to .+\): validation passed; "
                     r"RTO \d+\.\d min \(target 15\); data RPO \d+\.\d min \(target 5\)", out), out[-3000:]
    assert "Restore copies left in RDS after the run: 0" in out


def test_demo_of_the_dr_drill_prints_the_guides_table(demos):
    result, _ = demos["drill"]
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "Running: airflow dags test dr_drill" in out
    assert "The drill against the guide's table (minutes):" in out
    assert re.search(r"Database\s+15\s+\d+\.\d\s+5\s+\d+\.\d\s+met", out), out[-3000:]
    assert re.search(r"Static assets\s+5\s+\d+\.\d\s+1440\s+\d+\.\d\s+missed", out), out[-3000:]
    assert re.search(r"Created 2, deleted 2, left 0", out), out[-3000:]
