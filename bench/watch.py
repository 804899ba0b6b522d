"""What the 15-minute watch costs: AWS calls, worker-seconds and CloudWatch's bill per day.

Run by bench/run.py in a fresh process (Airflow reads its configuration at import):
``python -m bench.watch`` prints one JSON line. Three watches run through ``dag.test()`` against the
sandbox (one healthy, one opening an incident, one while it lasts). Worker time is what a worker
spends on a run beyond its standing start-up: parsing the DAG file and the task's own code
(``execute``, building its AWS clients cold included; its CPU counts the in-process moto server's
too, so it is an upper bound). ``airflow tasks test`` would add an in-process API server and a
cold interpreter, which a Celery worker (forking a warm process) does not pay. The sandbox's request
log counts the AWS calls. GetMetricData is billed per metric requested ($0.01 per 1,000, us-east-1).
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
PRICE_PER_METRIC = 0.01 / 1000
RUNS_PER_DAY = 24 * 60 // 15


def main() -> dict:
    home = Path(tempfile.mkdtemp(prefix="solemate-bench-watch-"))
    try:
        return measure(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def measure(home: Path) -> dict:
    from sandbox.world import airflow_env

    os.environ.update(airflow_env(home, REPO))
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)

    from sandbox.world import Sandbox
    from solemate_maintenance.operators.watch.performance import PerformanceWatchOperator

    busy: list[float] = []
    original = PerformanceWatchOperator.execute

    def timed(self, context):
        started = time.process_time()
        try:
            return original(self, context)
        finally:
            busy.append(time.process_time() - started)

    PerformanceWatchOperator.execute = timed
    saved = dict(os.environ)
    with Sandbox() as sandbox:
        os.environ.update(sandbox.env())
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.pop(name, None)
        try:
            # A worker's task process builds its AWS clients cold: not with the sandbox's shared loader.
            import botocore.session

            from sandbox import client_speedups

            botocore.session.create_loader = client_speedups._ORIGINAL_CREATE_LOADER
            live = datetime.now(UTC).replace(second=0, microsecond=0)
            live = live.replace(minute=live.minute - live.minute % 15)
            sandbox.seed(live)
            sandbox.stage([("rds_cpu", live - timedelta(minutes=20), live + timedelta(minutes=5))])
            parse = _parse_seconds()
            runs = []
            for moment in (live - timedelta(minutes=30), live - timedelta(minutes=15), live):
                from airflow.dag_processing.dagbag import DagBag

                dag = DagBag(dag_folder=str(REPO / "dags" / "performance_watch.py")).dags[
                    "performance_watch"]
                mark = sandbox.aws_requests.mark()
                run = dag.test(logical_date=moment)
                if str(run.state) != "success":
                    raise SystemExit(f"the watch for {moment} ended {run.state}")
                calls = Counter(f"{r.service}:{r.operation}" for r in sandbox.aws_requests.since(mark))
                runs.append({"task_cpu_s": round(busy[-1], 2), "worker_s": round(parse + busy[-1], 2),
                             "calls": dict(calls)})
            from solemate_maintenance.operators.watch.performance_plan import PerformancePlan, Targets

            plan = PerformancePlan(sandbox.config, Targets(load_balancer="app/x/1",
                                                           target_groups={"tg": "targetgroup/tg/1"}))
            metrics = sum(q.expression is None for q in plan.queries) + len(plan.week_ago_queries)
            s3 = sandbox.client("s3")
            key = f"{sandbox.config.reports.prefix}/incidents/{sandbox.config.environment}.json"
            record_bytes = s3.head_object(Bucket=sandbox.config.reports.bucket, Key=key)["ContentLength"]
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return {"runs": runs, "parse_s": round(parse, 2), "metrics_per_run": metrics, "record_bytes": record_bytes,
            "cloudwatch_usd_per_day": round(metrics * RUNS_PER_DAY * PRICE_PER_METRIC, 4)}


def _parse_seconds() -> float:
    """CPU of parsing the watch's DAG file in a fresh interpreter that has airflow.sdk imported (as a
    worker's task process has), best of three."""
    script = ("import time, runpy, airflow.sdk; t = time.process_time(); "
              f"runpy.run_path({str(REPO / 'dags' / 'performance_watch.py')!r}); print(time.process_time() - t)")
    times = []
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return min(times)

if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", f"{REPO / 'plugins'}{os.pathsep}{REPO}")
    print(json.dumps(main()))
