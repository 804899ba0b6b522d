"""monthly_review under the real scheduler: a backfill of three past months through the REST API gives
three distinct reports, each of its own month; clearing a month's cost review asks Cost Explorer
nothing (its answers are cached in the reports bucket)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sandbox import monthly as sandbox_monthly
from sandbox import moto_ce

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

DAG_ID = "monthly_review"
FINAL = {"success", "failed"}
# The runs for August, September and October 2026: a data-interval timetable on the 3rd, so the run
# dated August 3 has the interval August 3 - September 3 and reviews the calendar month August.
MONTHS = {"2026-08-03": "2026-08-01", "2026-09-03": "2026-09-01", "2026-10-03": "2026-10-01"}


@pytest.fixture
def airflow(standalone):
    return standalone


def test_backfill_of_three_months_gives_three_distinct_reports_then_a_rerun_asks_cost_explorer_nothing(airflow):
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # cost_spike is seen in the month before its anchor: anchored at October 1, it hits September.
    airflow.sandbox.seed_days({datetime(2026, 10, 1, 6, tzinfo=UTC): {"cost_spike"}, now: set()}, history_days=125)
    airflow.sandbox.slack.clear()
    calls_before = sum(moto_ce.LEDGER.calls.values())
    airflow.api("POST", "/backfills", {
        "dag_id": DAG_ID, "from_date": "2026-08-01T00:00:00Z", "to_date": "2026-10-03T06:00:00Z",
        "max_active_runs": 3, "reprocess_behavior": "none"})
    airflow.wait_for(lambda: len(airflow.runs(DAG_ID)) == 3 and all(r[1] in FINAL for r in airflow.runs(DAG_ID).values()),
                     600, "the monthly backfill to finish")
    runs = airflow.runs(DAG_ID)
    assert {day: (r[1], r[2]) for day, r in runs.items()} == dict.fromkeys(MONTHS, ("success", "backfill"))
    reports = {day: airflow.report(runs[day][0], DAG_ID) for day in MONTHS}
    costs = {day: r["measurements"]["cost_review"] for day, r in reports.items()}
    performance = {day: r["measurements"]["performance_report"] for day, r in reports.items()}
    assert {day: c["month"] for day, c in costs.items()} == MONTHS
    assert {day: p["kpis"]["p95_ms"]["days"] for day, p in performance.items()} == {
        "2026-08-03": 31, "2026-09-03": 30, "2026-10-03": 31}
    assert len({c["total_usd"] for c in costs.values()}) == 3
    for day, cost in costs.items():  # each month's total is its own ledger's
        month = datetime.fromisoformat(MONTHS[day]).date()
        expected = sum(sum(v.values()) for d, v in moto_ce.LEDGER.daily.items()
                       if (d.year, d.month) == (month.year, month.month))
        assert cost["total_usd"] == pytest.approx(expected, abs=0.01), day
    spikes = {day: [f["resource"] for f in r["findings"] if f["check"] == "cost.spike" and f["status"] != "ok"]
              for day, r in reports.items()}
    assert spikes == {"2026-08-03": [], "2026-09-03": [sandbox_monthly.SPIKED_SERVICE], "2026-10-03": []}
    summaries = {day: r["measurements"]["stakeholder_summary"]["summary_uri"] for day, r in reports.items()}
    assert len(set(summaries.values())) == 3
    first_calls = sum(moto_ce.LEDGER.calls.values()) - calls_before
    assert 9 <= first_calls <= 11  # three questions a month, two more for the month in progress' forecast
    assert sum(c["cost_explorer_calls"] for c in costs.values()) == first_calls

    # A re-run of September's review (the UI's "clear"): the cost review runs again, Cost Explorer is not asked.
    september = runs["2026-09-03"][0]
    airflow.api("POST", f"/dags/{DAG_ID}/clearTaskInstances", {
        "dag_run_id": september, "task_ids": ["cost_review"], "include_downstream": True, "only_failed": False,
        "dry_run": False})
    airflow.wait_for(lambda: airflow.report(september, DAG_ID)["clear_number"] >= 1
                     and airflow.runs(DAG_ID)["2026-09-03"][1] in FINAL, 300, "the cleared month to finish")
    again = airflow.report(september, DAG_ID)["measurements"]["cost_review"]
    assert sum(moto_ce.LEDGER.calls.values()) - calls_before == first_calls
    assert again["cost_explorer_calls"] == 0 and again["cost_explorer_cache_hits"] == 3
    assert again["total_usd"] == costs["2026-09-03"]["total_usd"]
