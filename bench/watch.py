"""What the 15-minute watch costs: AWS calls, worker-seconds and CloudWatch's bill per day.

Run by bench/run.py in a fresh process (Airflow reads its configuration at import):
``python -m bench.watch`` prints one JSON line. Each watch is ``airflow tasks test performance_watch
watch <date>`` against the sandbox, a process of its own as on a worker (the DAG file parsed, the task
run): its wall time and CPU are the worker-seconds. The sandbox's request log counts the AWS calls.
GetMetricData is billed per metric requested ($0.01 per 1,000, us-east-1 list price).
"""

from __future__ import annotations

import json
import os
import resource
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
    from sandbox.world import Sandbox, sandbox_env_for_subprocess

    with Sandbox() as sandbox:
        env = sandbox_env_for_subprocess(sandbox, home)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
        live = datetime.now(UTC).replace(second=0, microsecond=0)
        live = live.replace(minute=live.minute - live.minute % 15)
        sandbox.seed(live)
        sandbox.stage([("rds_cpu", live - timedelta(minutes=20), live + timedelta(minutes=5))])
        runs = []
        for moment in (live - timedelta(minutes=30), live - timedelta(minutes=15), live):
            mark = sandbox.aws_requests.mark()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "airflow", "tasks", "test", "performance_watch", "watch",
                                   moment.isoformat()], env=env, cwd=REPO, capture_output=True, text=True)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if done.returncode:
                raise SystemExit(f"watch failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
            calls = Counter(f"{r.service}:{r.operation}" for r in sandbox.aws_requests.since(mark))
            runs.append({"wall_s": round(wall, 2), "cpu_s": round((after.ru_utime + after.ru_stime)
                                                                 - (before.ru_utime + before.ru_stime), 2),
                         "calls": dict(calls)})
        from solemate_maintenance.operators.watch.performance_plan import PerformancePlan, Targets

        plan = PerformancePlan(sandbox.config, Targets(load_balancer="app/x/1",
                                                       target_groups={"tg": "targetgroup/tg/1"}))
        metrics = sum(q.expression is None for q in plan.queries) + len(plan.week_ago_queries)
        s3 = sandbox.client("s3")
        key = f"{sandbox.config.reports.prefix}/incidents/{sandbox.config.environment}.json"
        record_bytes = s3.head_object(Bucket=sandbox.config.reports.bucket, Key=key)["ContentLength"]
    return {"runs": runs, "metrics_per_run": metrics, "record_bytes": record_bytes,
            "cloudwatch_usd_per_day": round(metrics * RUNS_PER_DAY * PRICE_PER_METRIC, 4)}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", f"{REPO / 'plugins'}{os.pathsep}{REPO}")
    print(json.dumps(main()))
