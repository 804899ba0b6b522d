"""performance_watch and database_watch end to end: the DAG files run by real Airflow (dag.test) on the
sandbox, a few hours of watches over staged incidents, then the daily run, whose digest lists what the
watch found and does not page again for what it already paged.

The unit tests (tests/unit/test_performance_watch.py) walk a whole day every 15 minutes; here each
step is a real DAG run: a first watch, an incident opening, a scheduler gap, a cleared run, a backfill.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import sandbox_as_environment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
# Live: the watch judges the present (within alerts.page_max_age_hours of now).
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
LIVE = NOW.replace(minute=NOW.minute - NOW.minute % 15)
PAYMENTS = (LIVE - timedelta(hours=3), LIVE - timedelta(hours=2))  # P1, an SMS emergency
DATABASE = (LIVE - timedelta(hours=2, minutes=30), LIVE + timedelta(minutes=5))  # P2, still going at LIVE


@pytest.fixture(scope="module")
def world(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    with sandbox_as_environment(slack_critical=True) as sandbox:
        sandbox.seed(LIVE)
        sandbox.stage([("payment_failures", *PAYMENTS), ("rds_cpu", *DATABASE)])
        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        runs = {}
        for name, moment in (("first", LIVE - timedelta(hours=3, minutes=15)),
                             ("opens", LIVE - timedelta(hours=2, minutes=45)),
                             # 15:15 .. 16:00 did not run (a scheduler outage): the next watch covers it.
                             ("after_gap", LIVE - timedelta(hours=1, minutes=45)),
                             ("live", LIVE)):
            runs[name] = bag.dags["performance_watch"].test(logical_date=moment)
        sns_before = len(_pages(sandbox))
        runs["daily"] = bag.dags["daily_maintenance"].test(logical_date=LIVE)
        daily_pages = _pages(sandbox)[sns_before:]
        runs["database"] = bag.dags["database_watch"].test(logical_date=LIVE)
        yield sandbox, runs, daily_pages, bag


def _pages(sandbox) -> list:
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    topics = get_backend("sns")[DEFAULT_ACCOUNT_ID][sandbox.config.regions.primary].topics
    return list(topics[sandbox.config.alerts.sns_topic_arn].sent_notifications)


def _result(run) -> dict:
    [ti] = [t for t in run.get_task_instances() if t.task_id == "watch"]
    return ti.xcom_pull(task_ids="watch") or {}


def _record(sandbox) -> dict:
    s3 = sandbox.client("s3")
    key = f"{sandbox.config.reports.prefix}/incidents/{sandbox.config.environment}.json"
    return json.loads(s3.get_object(Bucket=sandbox.config.reports.bucket, Key=key)["Body"].read())


def test_the_watch_opens_each_incident_once_names_its_start_and_resolves_it_once(world):
    sandbox, runs, _, _ = world
    assert all(str(runs[n].state) == "success" for n in ("first", "opens", "after_gap", "live"))
    texts = [m["payload"]["text"] for m in sandbox.slack.messages()]
    payment_start = PAYMENTS[0].strftime("%H:%M")
    opened = [t for t in texts if "payment success rate" in t and f"since {payment_start} UTC" in t]
    resolved = [t for t in texts if "resolved after 1 h" in t and "payment success rate" in t]
    assert len(opened) == 1 and opened[0].startswith("[P1] production:")
    assert len(resolved) == 1
    cpu = [t for t in texts if "CPUUtilization 95 %" in t and f"since {DATABASE[0]:%H:%M} UTC" in t]
    assert len(cpu) == 1 and cpu[0].startswith("[P2] production:")
    # P1 in the critical channel, the rest in the default one.
    paths = {m["payload"]["text"]: m["path"].split("/")[1] for m in sandbox.slack.messages()}
    assert paths[opened[0]] == "critical" and paths[cpu[0]] == "services"


def test_the_database_cpu_incident_arrives_diagnosed_with_who_responds_by_when(world):
    """The real DAG file's watch asks RDS and the database why before it announces (the troubleshooting
    cases one by one are in tests/unit/test_diagnosis_and_escalation.py)."""
    sandbox, _, _, _ = world
    [opening] = [m["payload"] for m in sandbox.slack.messages()
                 if "CPUUtilization 95 %" in m["payload"]["text"] and "since" in m["payload"]["text"]]
    text = json.dumps(opening, ensure_ascii=False)
    assert "*Diagnosis*" in text and f"instance {sandbox.config.resources.rds.instance_id}: db.r6g.large" in text
    # RDS, Performance Insights (the sandbox's stand-in) and platform_db all asked.
    assert "top SQL by load (Performance Insights): 0.42 average active sessions: SELECT * FROM orders" in text
    assert "of max_connections" in text and "diagnosis incomplete" not in text
    assert re.search(r"P2 — respond by [\d: -]+UTC \(1 h\); on call: nobody configured \(alerts.on_call\)", text)


def test_after_a_scheduler_gap_the_next_watch_covers_it(world):
    _, runs, _, _ = world
    result = _result(runs["after_gap"])
    assert result["window"] == {"start": (LIVE - timedelta(hours=2, minutes=45)).isoformat(),
                                "end": (LIVE - timedelta(hours=1, minutes=45)).isoformat()}
    assert result["coverage"]["note"] == "since the previous watch"


def test_the_watches_cover_the_hours_without_overlap_and_the_record_says_up_to_when(world):
    """Each run's window starts where the previous one ended (a retried or cleared run, a backfill and
    two workers at once are in tests/unit/test_performance_watch.py, at the level that proves them)."""
    sandbox, runs, _, _ = world
    windows = [_result(runs[n])["window"] for n in ("first", "opens", "after_gap", "live")]
    assert all(a["end"] == b["start"] for a, b in zip(windows, windows[1:], strict=False))
    assert datetime.fromisoformat(_record(sandbox)["watched_until"]["performance_watch"]) == LIVE


def test_only_the_payment_emergency_paged_and_the_daily_run_did_not_page_it_again(world):
    sandbox, runs, daily_pages, _ = world
    pages = _pages(sandbox)
    assert len(pages) == 1 and "payment success rate" in pages[0][2]
    assert daily_pages == []
    [ti] = [t for t in runs["daily"].get_task_instances() if t.task_id == "business_metrics"]
    assert str(ti.state) == "failed"  # the day had a P1: the daily run still says so


def test_the_daily_digest_lists_the_watchs_incidents_and_calls_them_ongoing(world):
    sandbox, runs, _, _ = world
    s3 = sandbox.client("s3")
    key = f"{sandbox.config.reports.prefix}/daily_maintenance/{runs['daily'].run_id}/report.json"
    report = json.loads(s3.get_object(Bucket=sandbox.config.reports.bucket, Key=key)["Body"].read())
    by_check = {i["check"]: i for i in report["incidents"]}
    assert by_check["business.payment_success_rate"]["resolved_at"] is not None
    assert by_check["rds.cpu_utilization"]["resolved_at"] is None
    since = {f["check"]: f["incident_since"] for f in report["findings"] if f["incident_since"]}
    assert since["rds.cpu_utilization"] == DATABASE[0].isoformat()
    assert since["business.payment_success_rate"] == PAYMENTS[0].isoformat()
    [digest] = [m for m in sandbox.slack.messages() if "daily_maintenance failed" in m["payload"]["text"]
                and "Incidents in the window" in json.dumps(m["payload"])]
    text = json.dumps(digest["payload"])
    assert "Already reported by the watch" in text and f"ongoing since {DATABASE[0]:%Y-%m-%d %H:%M} UTC" in text
    # The daily alert for the payment P1 says the watch paged it already.
    [alert] = [m for m in sandbox.slack.messages() if "daily_maintenance.business_metrics failed" in m["payload"]["text"]]
    assert "the watch (incident business.payment_success_rate" in json.dumps(alert["payload"])


def test_the_database_watch_runs_read_only_and_reports_what_it_saw(world):
    _, runs, _, _ = world
    assert str(runs["database"].state) == "success"
    result = _result(runs["database"])
    assert result["observed"] >= 1 and result["coverage"]["note"] == "first watch: one interval"
