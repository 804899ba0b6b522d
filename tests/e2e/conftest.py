from __future__ import annotations

import pytest

from sandbox.world import Sandbox
from tests.e2e.standalone import Standalone


@pytest.fixture(scope="session")
def standalone(tmp_path_factory):
    """One real Airflow on one sandbox for every module that drives it through the REST API. The
    sandbox allows failover (dr_failover's approval scenarios); each test seeds the world it needs."""
    with Sandbox(allow_failover=True) as sandbox:
        airflow = Standalone(sandbox, tmp_path_factory.mktemp("standalone")).start()
        try:
            yield airflow
        finally:
            airflow.stop()
