"""The operator's day: what a review costs, and the metadata rows a year of the schedules writes.

Run by bench/run.py in a fresh process: ``python -m bench.operators_day`` prints one JSON line.

* Reviews: a week of daily reports (the shape the daily run writes) and an incident record in the
  sandbox; the morning and the evening review run through ``dag.test()``. Per review: the AWS calls
  (from the sandbox's request log), the review task's CPU (``execute``) and the DAG file's parse.
* Metadata rows a year: what each run leaves in Airflow's database (dag_run, task_instance, XCom,
  log, job...) is measured on those two runs, per task; a year is every scheduled
  DAG's runs in 2026 (its cron) times its tasks. With the weekly `airflow db clean`, a table keeps
  its retention's worth (airflow_housekeeping.retention_days) plus the week between cleanups.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The tables a run writes rows into, and the column db clean counts their age by.
# (dag_version is written when a DAG changes, not per run.)
COUNTED = ("dag_run", "task_instance", "task_instance_history", "xcom", "log", "job", "task_reschedule", "trigger")


def main() -> dict:
    home = Path(tempfile.mkdtemp(prefix="solemate-bench-day-"))
    try:
        return measure(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _rows() -> dict[str, int]:
    from airflow import settings
    from sqlalchemy import inspect, text

    names = set(inspect(settings.engine).get_table_names())
    with settings.engine.connect() as conn:
        return {t: conn.execute(text(f'SELECT COUNT(*) FROM "{t}"')).scalar() for t in COUNTED if t in names}


def _parse_seconds(dag_file: Path) -> float:
    script = ("import time, runpy, airflow.sdk; t = time.process_time(); "
              f"runpy.run_path({str(dag_file)!r}); print(time.process_time() - t)")
    times = []
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return min(times)


def _seed_week(sandbox, friday_evening: datetime) -> None:
    """Eight daily reports before the evening and an incident record, as the DAGs write them."""
    from solemate_maintenance.findings import Measurement, Severity, Status
    from solemate_maintenance.incidents import Incident, IncidentRecord, IncidentStore
    from solemate_maintenance.report import ReportedFinding, RunReport
    from solemate_maintenance.report_store import ReportStore

    config = sandbox.config
    store = ReportStore(bucket=config.reports.bucket, prefix=config.reports.prefix, aws_conn_id="aws_default",
                        region_name=config.regions.primary)
    for n in range(8):
        day = (friday_evening - timedelta(days=n)).replace(hour=2, minute=0)
        findings = [ReportedFinding(task_id="performance_kpis", check=f"kpi.{name}", resource="production-alb",
                                    status=Status.OK, summary=name, metrics={name: Measurement(
                                        value=400 + 10 * n, unit="ms", warning=500)})
                    for name in ("response_time_p95_ms", "response_time_p99_ms")]
        findings.append(ReportedFinding(task_id="alarms", check="monitoring.alarm", resource="x", severity=Severity.P3,
                                        status=Status.WARNING, summary="an alarm without action"))
        report = RunReport(dag_id="daily_maintenance", run_id=f"scheduled__{day.isoformat()}", run_type="scheduled",
                           logical_date=day.isoformat(), data_interval_start=day.isoformat(),
                           data_interval_end=day.isoformat(), environment=config.environment, task_states={},
                           findings=findings, checked_label=f"{day:%Y-%m-%d %H:%M} UTC")
        store.write(store.date_key("daily_maintenance", day), report.model_dump_json())
    record = IncidentRecord(environment=config.environment, watched_until={
        "performance_watch": friday_evening, "database_watch": friday_evening})
    start = friday_evening - timedelta(hours=5)
    record.incidents["i1"] = Incident(id="i1", key="kpi.error_rate|alb", check="kpi.error_rate", resource="alb",
                                      severity=Severity.P2, summary="5xx", started_at=start, last_bad_at=start,
                                      opened_at=start, opened_by="w", last_announced_at=start,
                                      resolved_at=start + timedelta(minutes=40))
    from solemate_maintenance.incidents import incident_key

    IncidentStore(s3_client=sandbox.client("s3"), bucket=config.reports.bucket, key=incident_key(config),
                  environment=config.environment).write(record, None)


def measure(home: Path) -> dict:
    from sandbox.world import airflow_env

    os.environ.update(airflow_env(home, REPO))
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)

    from sandbox.world import Sandbox
    from solemate_maintenance.operators.reviews.day import DayReviewOperator

    busy: list[float] = []
    original = DayReviewOperator.execute

    def timed(self, context):
        started = time.process_time()
        try:
            return original(self, context)
        finally:
            busy.append(time.process_time() - started)

    DayReviewOperator.execute = timed
    saved = dict(os.environ)
    with Sandbox() as sandbox:
        os.environ.update(sandbox.env())
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.pop(name, None)
        try:
            today = datetime.now(UTC).date()
            friday = today - timedelta(days=(today.weekday() - 4) % 7 or 7)
            evening = datetime(friday.year, friday.month, friday.day, 18, tzinfo=UTC)
            sandbox.seed(evening - timedelta(hours=9))
            _seed_week(sandbox, evening)
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(dag_folder=str(REPO / "dags"))
            reviews = {}
            before = _rows()
            tasks_run = 0
            for dag_id, moment in (("morning_review", evening - timedelta(hours=9)), ("evening_review", evening)):
                mark = sandbox.aws_requests.mark()
                run = bag.dags[dag_id].test(logical_date=moment)
                if str(run.state) != "success":
                    raise SystemExit(f"{dag_id} ended {run.state}")
                tasks_run += len(bag.dags[dag_id].tasks)
                calls = Counter(f"{r.service}:{r.operation}" for r in sandbox.aws_requests.since(mark))
                parse = _parse_seconds(REPO / "dags" / f"{dag_id}.py")
                reviews[dag_id] = {"task_cpu_s": round(busy[-1], 2), "parse_s": round(parse, 2),
                                   "worker_s": round(parse + busy[-1], 2), "calls": dict(calls),
                                   "aws_calls": sum(calls.values())}
            after = _rows()
        finally:
            os.environ.clear()
            os.environ.update(saved)
    runs = 2
    per_run = {t: (after.get(t, 0) - before.get(t, 0)) / runs for t in COUNTED}
    per_task = {t: (after.get(t, 0) - before.get(t, 0)) / tasks_run for t in COUNTED}
    return {"reviews": reviews, "rows_per_run": per_run, "rows_per_task": per_task, **year_of_rows(bag, per_task)}


def year_of_rows(bag, per_task: dict[str, float]) -> dict:
    """The rows a year of the schedules leaves, and what a weekly cleanup keeps of them."""
    from solemate_maintenance.config import load_config
    from solemate_maintenance.schedules import scheduled_dags

    config = load_config()
    settings = config.airflow_housekeeping
    year = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    without, kept, by_dag = 0.0, 0.0, {}
    for dag_id, schedule in scheduled_dags(config).items():
        runs = len(schedule.fires(*year))
        tasks = len(bag.dags[dag_id].tasks)
        rows = {t: runs * (1 if t == "dag_run" else tasks * per_task[t]) for t in COUNTED if t != "dag_run"}
        rows["dag_run"] = runs
        by_dag[dag_id] = {"runs": runs, "tasks": tasks, "rows": round(sum(rows.values()))}
        without += sum(rows.values())
        # After a cleanup a table holds its retention's worth, plus up to the week until the next one.
        kept += sum(value * min(1.0, (settings.retention_of(table) + 7) / 365) for table, value in rows.items())
    return {"metadata_rows_year_without_cleanup": round(without), "metadata_rows_year_with_cleanup": round(kept),
            "by_dag": by_dag}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", f"{REPO / 'plugins'}{os.pathsep}{REPO}")
    print(json.dumps(main()))
