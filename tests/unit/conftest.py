from __future__ import annotations

import functools
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws
from moto.cloudwatch.models import CloudWatchBackend
from moto.core.exceptions import ServiceException

from sandbox.platform import Platform
from sandbox.servers import HealthEndpoint
from solemate_maintenance.config import load_config
from solemate_maintenance.findings import Status
from tests.helpers import ANCHOR, UNIT_NOW


@pytest.fixture(scope="module", autouse=True)
def frozen_calendar():
    """Every unit test sees the same calendar (UNIT_NOW, ticking): its dates are written against ANCHOR,
    and a test that passes on 20 November must pass on 2 December, on 1 January and on 29 February.
    Only the date is moved: monotonic clocks and timeouts run as usual. Per module, not per session:
    the end-to-end tests that run after the unit tests in the same process (the shared Airflow's, whose
    moto server is a thread of this process) must see the real clock."""
    import time_machine

    with time_machine.travel(UNIT_NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture
def config():
    return load_config()


@pytest.fixture
def health() -> Iterator[HealthEndpoint]:
    server = HealthEndpoint().start()
    yield server
    server.stop()


def cached_clients(default_region: str):
    """One boto3 client per service and region for a world: creating one costs ~60 ms, and seeding a
    platform asks for dozens."""
    @functools.cache
    def client(service: str, region: str | None = None):
        return boto3.client(service, region_name=region or default_region)

    return client


@pytest.fixture
def platform(config, health) -> Iterator[Platform]:
    """The SoleMate platform in moto (mock_aws), healthy, metrics up to ANCHOR."""
    with mock_aws():
        world = Platform(config, cached_clients(config.regions.primary), health)
        world.create()
        world.seed(ANCHOR)
        yield world


def throttle(monkeypatch, backend_cls: type, method: str, times: int = 2) -> dict[str, int]:
    """Make a moto backend answer 'Throttling' (HTTP 400, as AWS does) to its first `times` calls.

    botocore sees a real throttling response and retries it; the operator must end up with data.
    """
    calls = {"count": 0}
    original = getattr(backend_cls, method)
    # moto finds the service's error shapes from the exception's module (moto.<service>....).
    throttling = type("Throttling", (ServiceException,), {"code": "Throttling", "__module__": backend_cls.__module__})

    def flaky(self, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] <= times:
            raise throttling("Rate exceeded")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(backend_cls, method, flaky)
    return calls


@pytest.fixture
def throttle_cloudwatch(monkeypatch) -> dict[str, int]:
    return throttle(monkeypatch, CloudWatchBackend, "get_metric_data")


def statuses(findings: dict[str, dict]) -> dict[str, str]:
    return {check: f["status"] for check, f in findings.items()}


def problems(findings: dict[str, dict]) -> dict[str, str]:
    return {check: f["severity"] for check, f in findings.items() if f["status"] != Status.OK.value}


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL server with the SoleMate schema."""
    from sandbox.postgres import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg")).start()
    yield server
    server.stop()
