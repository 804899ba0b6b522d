"""A real scheduler: `airflow standalone` (scheduler, dag-processor, triggerer, api-server, LocalExecutor)
with its metadata database on PostgreSQL, as in production (Airflow refuses concurrent backfill
creation on SQLite: "Database is locked").

A user backfills three past days, each with its own problem, through the REST API (what the UI's
backfill dialog calls): the runs go concurrently, and each day's report must still compare with the
day before (the report waits, deferred, for the previous date's report). Then the UI's usual
recovery, "clear only failed tasks" (the same API call), after the problem is fixed: the run turns
green and its report says so.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from solemate_maintenance.notifiers.delivery import secret_forms
from solemate_maintenance.notifiers.status import STATUS_MARK
from tests.e2e.conftest import BACKFILL_FIRST_DAY, MUTATING_WORKER

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

FIRST, SECOND, THIRD = (BACKFILL_FIRST_DAY + timedelta(days=n) for n in range(3))
DAYS = {FIRST: {"payment_failures"}, SECOND: set(), THIRD: {"rds_high_cpu"}}
D1, D2, D3 = (d.date().isoformat() for d in DAYS)
FINAL = {"success", "failed"}


@pytest.fixture
def airflow(standalone):
    return standalone


def sns_topic(airflow):
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    topics = get_backend("sns")[DEFAULT_ACCOUNT_ID][airflow.sandbox.config.regions.primary].topics
    return topics[airflow.sandbox.config.alerts.sns_topic_arn]


def test_concurrent_backfill_compares_each_day_with_the_day_before(airflow):
    airflow.sandbox.seed_days(DAYS)
    airflow.sandbox.slack.clear()  # the Airflow is shared: earlier modules' messages are not this test's
    pages_before = len(sns_topic(airflow).sent_notifications)
    import airflow_client.client as client

    # With the official REST client, as a script would (the UI's backfill dialog posts the same).
    backfill = client.BackfillApi(airflow.client()).create_backfill(client.BackfillPostBody(
        dag_id="daily_maintenance", from_date=FIRST.replace(hour=0),
        to_date=THIRD, max_active_runs=3,
        reprocess_behavior=client.ReprocessBehavior.NONE))
    assert backfill.dag_id == "daily_maintenance"
    airflow.wait_for(lambda: len(airflow.runs()) == 3 and all(r[1] in FINAL for r in airflow.runs().values()),
                     600, "the backfill to finish")
    runs = airflow.runs()
    assert {day: (r[1], r[2]) for day, r in runs.items()} == {
        D1: ("failed", "backfill"), D2: ("success", "backfill"), D3: ("failed", "backfill")}
    spans = sorted((r[3], r[4]) for r in runs.values())
    assert any(later_start < earlier_end for (_, earlier_end), (later_start, _) in zip(spans, spans[1:], strict=False)), \
        f"the backfill runs did not overlap, so concurrency was not tested: {spans}"

    first, second, third = (airflow.report(runs[d][0]) for d in (D1, D2, D3))
    problems = {r["logical_date"][:10]: {f["check"]: f["lifecycle"] for f in r["findings"]
                                          if f["status"] in ("warning", "critical")}
                for r in (first, second, third)}
    assert problems == {D1: {"business.payment_success_rate": "new"}, D2: {}, D3: {"rds.cpu_utilization": "new"}}
    assert first["comparison"] == {"status": "first_run"}
    assert second["comparison"] == {"status": "compared", "previous_run_id": runs[D1][0]}
    assert [f["check"] for f in second["resolved"]] == ["business.payment_success_rate"]
    assert third["comparison"] == {"status": "compared", "previous_run_id": runs[D2][0]}

    messages = [m["payload"]["text"] for m in airflow.sandbox.slack.messages()]
    p1 = [t for t in messages if t.startswith("[P1]")]
    assert p1 == [f"[P1] production: daily_maintenance.business_metrics failed — {FIRST:%Y-%m-%d %H:%M} UTC "
                  "[BACKFILL of a past date]"]
    assert all("[BACKFILL of a past date]" in t for t in messages), messages
    assert len(sns_topic(airflow).sent_notifications) == pages_before  # backfills never page


def test_clear_only_failed_after_a_fix_leaves_a_green_run_and_a_report_that_says_so(airflow):
    day = D3
    run_id = airflow.runs()[day][0]
    airflow.sandbox.seed_days({**DAYS, THIRD: set()})  # the fix
    airflow.sandbox.slack.clear()
    cleared = airflow.api("POST", "/dags/daily_maintenance/clearTaskInstances", {
        "dag_run_id": run_id, "only_failed": True, "dry_run": False})
    assert {ti["task_id"] for ti in cleared["task_instances"]} == {"rds_health", "run_verdict"}
    airflow.wait_for(lambda: airflow.runs()[day][1] == "success", 300, "the cleared run to turn green")
    states = dict(airflow.query("SELECT task_id, state FROM task_instance WHERE run_id = %s", run_id))
    assert states["rds_health"] == "success" and states["run_verdict"] == "success"
    report = airflow.report(run_id)
    assert report["refreshed_after_rerun"] is True
    assert report["failed_tasks"] == [] and report["clear_number"] >= 1
    assert not [f for f in report["findings"] if f["status"] in ("warning", "critical")]
    [digest] = [m["payload"]["text"] for m in airflow.sandbox.slack.messages()]
    assert f"passed (updated after a re-run) — {THIRD:%Y-%m-%d %H:%M} UTC" in digest


def _wednesdays_before(moment: datetime) -> tuple[datetime, datetime]:
    """The last two weekly_backup_verification dates (Wednesdays 03:00 UTC) at or before `moment`."""
    from solemate_maintenance.backup_schedule import previous_fire

    last = previous_fire("cron(0 3 ? * WED *)", moment)
    return previous_fire("cron(0 3 ? * WED *)", last - timedelta(seconds=1)), last


def test_weekly_backfill_defers_in_the_triggerer_and_skips_a_date_beyond_retention(airflow):
    """Two weeks backfilled concurrently: last week is restored for real (the wait runs in the
    triggerer, the task shows `deferred`), the week before is older than the 7-day restore window
    and its expired snapshots: skipped with the reason, not a false alarm. The worker that started
    the restore's wait is replaced while it waits (a rolling update): the wait resumes on its successor."""
    from solemate_maintenance import restore

    older, newer = _wednesdays_before(datetime.now(UTC))
    airflow.sandbox.seed_days({newer: set()})
    # The restore stays "creating" until the worker that deferred its wait is replaced (on a busy
    # machine a timer would race the tasks before the wait).
    airflow.sandbox.restores.held = True
    requests_before = len(airflow.sandbox.restores.requests)
    airflow.sandbox.slack.clear()
    airflow.api("POST", "/backfills", {
        "dag_id": "weekly_backup_verification", "from_date": (older - timedelta(hours=1)).isoformat(),
        "to_date": (newer + timedelta(hours=1)).isoformat(), "max_active_runs": 2, "reprocess_behavior": "none"})

    def weekly_runs() -> dict[str, tuple]:
        return {row[0]: row[1:] for row in airflow.query(
            "SELECT run_id, state, logical_date FROM dag_run WHERE dag_id = 'weekly_backup_verification'")}

    deferred: set[str] = set()
    waiting_on: dict[str, str] = {}  # the restore's wait: the worker that deferred it, its successor

    def finished() -> bool:
        parked = dict(airflow.query("SELECT task_id, hostname FROM task_instance "
                                    "WHERE dag_id = 'weekly_backup_verification' AND state = 'deferred'"))
        deferred.update(parked)
        if "restore_validate" in parked and not waiting_on:
            waiting_on["deferred_by"] = parked["restore_validate"]
            _, waiting_on["successor"] = airflow.replace_worker(parked["restore_validate"])
            airflow.sandbox.restores.held = False
        runs = weekly_runs()
        return len(runs) == 2 and all(state in FINAL for state, _ in runs.values())

    try:
        airflow.wait_for(finished, 600, "the weekly backfill to finish")
    finally:
        airflow.sandbox.restores.held = False
    runs = {logical.astimezone(UTC): (run_id, state) for run_id, (state, logical) in weekly_runs().items()}
    assert {moment: state for moment, (_, state) in runs.items()} == {older: "success", newer: "success"}
    assert {"restore_validate", "restore_cleanup"} <= deferred  # the waits freed the worker slot
    assert waiting_on["deferred_by"] == MUTATING_WORKER
    [(resumed_on, tries)] = airflow.query(
        "SELECT hostname, try_number FROM task_instance WHERE dag_id = 'weekly_backup_verification' "
        "AND task_id = 'restore_validate' AND run_id = %s", runs[newer][0])
    assert (resumed_on, tries) == (waiting_on["successor"], 1)

    s3 = airflow.sandbox.client("s3")

    def report(moment: datetime) -> dict:
        key = f"{airflow.sandbox.config.reports.prefix}/weekly_backup_verification/{runs[moment][0]}/report.json"
        return json.loads(s3.get_object(Bucket=airflow.sandbox.config.reports.bucket, Key=key)["Body"].read())

    old_findings = {f["check"]: f for f in report(older)["findings"]}
    assert old_findings["restore.request"]["status"] == "skipped"
    assert "before the restore window" in old_findings["restore.request"]["summary"]
    assert old_findings["backup.rds.latest_snapshot"]["status"] == "skipped"
    assert "automated snapshots are kept 7 days" in old_findings["backup.rds.latest_snapshot"]["summary"]
    measured = report(newer)["measurements"]["restore_validate"]
    assert measured["validation"] == "passed" and measured["available_after_minutes"] > 0
    [request] = airflow.sandbox.restores.requests[requests_before:]  # one restore, for the newer date only
    assert request["as_of"] == newer
    tagged = [i for i in airflow.sandbox.client("rds").describe_db_instances()["DBInstances"]
              if restore.tags_of(i).get(restore.TAG_PURPOSE) == restore.PURPOSE]
    assert tagged == [] and airflow.sandbox.postgres.restored_databases() == []
    texts = [m["payload"]["text"] for m in airflow.sandbox.slack.messages()]
    digests = sorted(t for t in texts if not t.startswith(STATUS_MARK))
    # The restore test's updates: the newer date's restore started and was validated; the older date,
    # outside the restore window, restored nothing and said nothing of a restore.
    started = [t for t in texts if t.startswith(STATUS_MARK) and "— started" in t]
    validated = [t for t in texts if t.startswith(STATUS_MARK) and "— restored copy available" in t]
    assert len(started) == 1 and len(validated) == 1, texts
    assert digests == sorted(f":white_check_mark: production: weekly_backup_verification passed — "
                             f"{moment:%Y-%m-%d %H:%M} UTC [BACKFILL of a past date]" for moment in (older, newer))


def test_task_logs_written_by_the_scheduler_hold_no_secret(airflow):
    logs = "".join(p.read_text(errors="replace") for p in (airflow.home / "logs").rglob("*") if p.is_file())
    assert "business_metrics" in logs and "restore_validate" in logs  # the task logs are there to scan
    for secret in airflow.sandbox.secrets():
        for form in secret_forms(secret):
            assert form not in logs, f"a form of a secret is in the task logs: {form[:4]}…"
