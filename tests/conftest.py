"""Test set-up. Airflow reads its configuration at import, so the environment is fixed first."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="solemate-test-airflow-"))

from sandbox.world import airflow_env  # noqa: E402  (imports no Airflow)

os.environ.update(airflow_env(_AIRFLOW_HOME, REPO))
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws", "extra": {"region_name": "us-east-1"}}',
})
# A developer's shell may point at real AWS or a sandbox; unit tests must not.
for leaked in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "MAINTENANCE_CONFIG"):
    os.environ.pop(leaked, None)

import shutil  # noqa: E402

import pytest  # noqa: E402

from sandbox import moto_patches  # noqa: E402

moto_patches.apply()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB (sqlite) for dag.test()."""
    result = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return _AIRFLOW_HOME


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that drive the real Airflow (the session's `standalone`) run last, together: its idle
    scheduler, DAG processor and API server would otherwise slow every test after the first of them.
    After them the tests that judge what every run did (marker ``after_the_runs``), the IAM test last
    of all: it judges the calls of the others too (the dashboard's)."""
    def order(item: pytest.Item) -> tuple[bool, bool, bool]:
        judges = item.get_closest_marker("after_the_runs") is not None
        return (judges, judges and item.module.__name__.endswith("test_iam_policies"),
                "standalone" in getattr(item, "fixturenames", ()))

    items.sort(key=order)
