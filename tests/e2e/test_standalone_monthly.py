"""monthly_review under the real scheduler: a backfill of three past months through the REST API gives
three distinct reports, each of its own month; clearing a month's cost review asks Cost Explorer
nothing (its answers are cached in the reports bucket)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

import pytest

from sandbox import monthly as sandbox_monthly
from sandbox import moto_ce

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

DAG_ID = "monthly_review"
FINAL = {"success", "failed"}


def _months_reviewed(now: datetime) -> dict[str, str]:
    """The runs for the three newest months already reviewed at `now` (run date -> month reviewed): a
    data-interval timetable on the 3rd, so the run dated August 3 has the interval August 3 - September 3
    and reviews the calendar month August. Derived from now, so the test holds on any day of the year."""
    newest = sandbox_monthly.month_last_reviewed(now)
    months = [newest]
    for _ in range(2):
        months.insert(0, (months[0] - timedelta(days=1)).replace(day=1))
    return {f"{m:%Y-%m}-03": m.isoformat() for m in months}


@pytest.fixture
def airflow(standalone):
    return standalone


def test_backfill_of_three_months_gives_three_distinct_reports_then_a_rerun_asks_cost_explorer_nothing(airflow):
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    months = _months_reviewed(now)
    first_day, middle_day, last_day = months
    # cost_spike hits the month the last review before its anchor covers: anchored when the middle
    # month's review runs (the 3rd of the month after it), it hits the middle month.
    middle_reviewed = (datetime.fromisoformat(months[middle_day]) + timedelta(days=32)).replace(day=3, hour=6,
                                                                                               tzinfo=UTC)
    airflow.sandbox.seed_days({middle_reviewed: {"cost_spike"}, now: set()}, history_days=130)
    airflow.sandbox.slack.clear()
    calls_before = sum(moto_ce.LEDGER.calls.values())
    by_operation_before = dict(moto_ce.LEDGER.calls)
    airflow.api("POST", "/backfills", {
        "dag_id": DAG_ID, "from_date": f"{months[first_day][:7]}-01T00:00:00Z", "to_date": f"{last_day}T06:00:00Z",
        "max_active_runs": 3, "reprocess_behavior": "none"})
    airflow.wait_for(lambda: len(airflow.runs(DAG_ID)) == 3 and all(r[1] in FINAL for r in airflow.runs(DAG_ID).values()),
                     600, "the monthly backfill to finish")
    runs = airflow.runs(DAG_ID)
    assert {day: (r[1], r[2]) for day, r in runs.items()} == dict.fromkeys(months, ("success", "backfill"))
    reports = {day: airflow.report(runs[day][0], DAG_ID) for day in months}
    costs = {day: r["measurements"]["cost_review"] for day, r in reports.items()}
    performance = {day: r["measurements"]["performance_report"] for day, r in reports.items()}
    assert {day: c["month"] for day, c in costs.items()} == months
    assert {day: p["kpis"]["p95_ms"]["days"] for day, p in performance.items()} == {
        day: calendar.monthrange(int(month[:4]), int(month[5:7]))[1] for day, month in months.items()}
    assert len({c["total_usd"] for c in costs.values()}) == 3
    for day, cost in costs.items():  # each month's total is its own ledger's
        month = datetime.fromisoformat(months[day]).date()
        expected = sum(sum(v.values()) for d, v in moto_ce.LEDGER.daily.items()
                       if (d.year, d.month) == (month.year, month.month))
        assert cost["total_usd"] == pytest.approx(expected, abs=0.01), day
    spikes = {day: [f["resource"] for f in r["findings"] if f["check"] == "cost.spike" and f["status"] != "ok"]
              for day, r in reports.items()}
    assert spikes == {first_day: [], middle_day: [sandbox_monthly.SPIKED_SERVICE], last_day: []}
    summaries = {day: r["measurements"]["stakeholder_summary"]["summary_uri"] for day, r in reports.items()}
    assert len(set(summaries.values())) == 3
    first_calls = sum(moto_ce.LEDGER.calls.values()) - calls_before
    # Per month: by service and daily, and the anomalies while Cost Anomaly Detection still keeps the month
    # (90 days); the newest month's review also asks the month in progress' cost so far and forecast when
    # that month is the current one (from the 3rd on). Asked or answered from the S3 cache (an earlier
    # module of this session may have asked a month already): the questions are the same.
    questions = sum(2 + (datetime.fromisoformat(month).date() >= now.date() - timedelta(days=90))
                    for month in months.values())
    in_progress = (datetime.fromisoformat(months[last_day]).date() + timedelta(days=32)).replace(day=1)
    questions += (2 if now.day > 1 else 1) if now.date().replace(day=1) == in_progress else 0
    asked = {op: n - by_operation_before.get(op, 0) for op, n in moto_ce.LEDGER.calls.items()
             if n - by_operation_before.get(op, 0)}
    assert sum(c["cost_explorer_calls"] + c["cost_explorer_cache_hits"] for c in costs.values()) == questions, asked
    assert sum(c["cost_explorer_calls"] for c in costs.values()) == first_calls

    # A re-run of September's review (the UI's "clear"): the cost review runs again, Cost Explorer is not asked.
    middle_run_id = runs[middle_day][0]
    airflow.api("POST", f"/dags/{DAG_ID}/clearTaskInstances", {
        "dag_run_id": middle_run_id, "task_ids": ["cost_review"], "include_downstream": True, "only_failed": False,
        "dry_run": False})
    airflow.wait_for(lambda: airflow.report(middle_run_id, DAG_ID)["clear_number"] >= 1
                     and airflow.runs(DAG_ID)[middle_day][1] in FINAL, 300, "the cleared month to finish")
    again = airflow.report(middle_run_id, DAG_ID)["measurements"]["cost_review"]
    assert sum(moto_ce.LEDGER.calls.values()) - calls_before == first_calls
    assert again["cost_explorer_calls"] == 0 and again["cost_explorer_cache_hits"] == 3
    assert again["total_usd"] == costs[middle_day]["total_usd"]
