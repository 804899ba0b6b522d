"""The daily checks cover the whole day: the issue's incidents, staged the day before the 02:00 run,
are each found, at the right severity, with when they were bad (before: two never, two 8-12 h late
as milder problems, one a live count at 02:00)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from solemate_maintenance.operators.health.application import ApplicationHealthOperator
from tests.helpers import ANCHOR
from tests.unit.test_operators import business, ecs, kpis, rds, run

DAY = ANCHOR - timedelta(days=1)  # the run at ANCHOR (02:00) judges the 24 hours before it


def at(hour: int) -> object:
    return DAY.replace(hour=hour, minute=0) if hour >= 2 else ANCHOR.replace(hour=hour)


@pytest.fixture(scope="module")
def day():
    """One world for the module: the checks only read it."""
    from moto import mock_aws

    from sandbox.platform import Platform
    from sandbox.servers import HealthEndpoint
    from solemate_maintenance.config import load_config
    from tests.unit.conftest import cached_clients

    config = load_config()
    health = HealthEndpoint().start()
    try:
        with mock_aws():
            world = Platform(config, cached_clients(config.regions.primary), health)
            world.create()
            world.seed(ANCHOR)
            world.stage([("payment_failures", at(10), at(11)), ("rds_cpu", at(12), at(15)),
                          ("ecs_tasks", at(12), at(13)), ("alb_5xx", at(14), at(16)), ("slow_p99", at(18), at(19)),
                          ("targets_down", at(22), at(22) + timedelta(minutes=15))])
            yield world
    finally:
        health.stop()


def test_an_hour_of_failed_payments_is_p1_with_when_not_averaged_away(day, config):
    findings, _ = run(business(config))
    payment = findings["business.payment_success_rate"]
    assert payment["severity"] == "P1"
    assert "70 %" in payment["summary"] and "10:00–11:00 UTC" in payment["summary"]
    assert "60 min past the warning threshold" in payment["summary"]
    # The day's average alone would have passed (98.x %), and the finding still says so.
    day_average = payment["metrics"]["payment_success_rate_window_percent"]["value"]
    assert 97 < day_average < 99 and f"{day_average:.2f} % over the whole window" in payment["summary"]


def test_three_hours_of_database_cpu_at_midday_are_found_at_02_00_with_their_peak(day, config):
    findings, _ = run(rds(config))
    cpu = findings["rds.cpu_utilization"]
    assert cpu["severity"] == "P2" and "12:00–15:00 UTC, peak 95 % at 12:00" in cpu["summary"]
    assert cpu["details"]["minutes_past_threshold"] == 180


def test_a_service_short_of_tasks_at_noon_is_found_from_container_insights(day, config):
    findings, _ = run(ecs(config))
    history = findings["ecs.task_count_history"]
    assert history["severity"] == "P2"
    assert "1 of 4 at worst" in history["summary"] and "12:00–13:00 UTC" in history["summary"]
    assert findings["ecs.task_count"]["status"] == "ok"  # the live count at 02:00 sees nothing


def test_two_hours_of_5xx_are_20_percent_not_a_days_1_7(day, config):
    findings, _ = run(kpis(config))
    peak = findings["kpi.error_rate_peak"]
    assert peak["severity"] == "P2" and "20 %" in peak["summary"] and "14:00–16:00 UTC" in peak["summary"]
    assert findings["kpi.error_rate"]["metrics"]["error_rate_percent"]["value"] < 5  # the day as a whole
    p99 = findings["kpi.response_time_p99"]
    assert p99["severity"] in ("P2", "P3") and "18:00–19:00 UTC" in p99["summary"]


def test_a_quarter_hour_without_a_healthy_target_at_night_is_p1(day, config, health):
    operator = ApplicationHealthOperator(task_id="application_health", endpoint=health.health_url,
                                         load_balancer_name=config.resources.alb.name, lookback_minutes=24 * 60)
    findings, _ = run(operator)
    history = findings["application.healthy_targets_history"]
    assert history["severity"] == "P1" and "22:00–22:15 UTC" in history["summary"]
    assert findings["application.alb_targets"]["status"] == "ok"  # healthy again at 02:00
