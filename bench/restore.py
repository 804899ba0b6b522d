"""One restore test in the sandbox with AWS taking `seconds` to restore: worker-seconds and wall time.

Run by bench/run.py in a fresh process (Airflow reads its configuration at import):
``python -m bench.restore 20`` prints one JSON line. Worker time is the time spent inside the
restore tasks' own code (execute and every resumption after a deferral); the waits happen in the
trigger, which in production runs on the triggerer and holds no worker slot.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(seconds: float) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="solemate-bench-airflow-"))
    try:
        return measure(seconds, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)  # each bench run left its Airflow home in /tmp


def measure(seconds: float, home: Path) -> dict[str, float]:
    from sandbox.world import airflow_env

    os.environ.update(airflow_env(home, REPO))
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)

    from sandbox.world import Sandbox
    from solemate_maintenance.operators.backups.restore import RestoreCleanupOperator, RestoreRequestOperator
    from solemate_maintenance.operators.backups.restore_validation import RestoreValidationOperator

    busy: dict[str, float] = {}

    def timed(cls: type, name: str) -> None:
        original = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            started = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                busy[self.task_id] = busy.get(self.task_id, 0.0) + time.perf_counter() - started

        setattr(cls, name, wrapper)

    for cls, names in ((RestoreRequestOperator, ("execute",)),
                       (RestoreValidationOperator, ("execute", "resume_when_available")),
                       (RestoreCleanupOperator, ("execute", "resume_when_deleted"))):
        for name in names:
            timed(cls, name)

    with Sandbox(restore_seconds=seconds, restore_timeout_minutes=max(5.0, seconds / 60 * 3)) as sandbox:
        os.environ.update(sandbox.env())
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.pop(name, None)
        logical_date = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        sandbox.seed(logical_date)
        from airflow.dag_processing.dagbag import DagBag

        dag = DagBag(dag_folder=str(REPO / "dags")).dags["weekly_backup_verification"]
        subset = dag.partial_subset(task_ids=["restore_request", "restore_validate", "restore_cleanup"],
                                    include_upstream=False)
        started = time.perf_counter()
        dag_run = subset.test(logical_date=logical_date)
        wall = time.perf_counter() - started
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        if set(states.values()) != {"success"}:
            raise SystemExit(f"restore test did not succeed: {states}")
    return {"restore_seconds": seconds, "worker_s": sum(busy.values()), "wall_s": wall,
            "busy": {k: round(v, 2) for k, v in busy.items()}}


if __name__ == "__main__":
    print(json.dumps(main(float(sys.argv[1]))))
