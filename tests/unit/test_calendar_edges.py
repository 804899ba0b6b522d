"""The date-sensitive logic at the days of the year that break naive date code: the 1st, 2nd, 3rd and
31st of a month, a year end and a leap day. The rest of the unit suite runs on one frozen calendar;
this is the guard that the product behaves on every other one (the clock is moved here on purpose)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
import time_machine

from sandbox.monthly import last_monthly_run, month_last_reviewed
from solemate_maintenance.backup_schedule import previous_fire
from solemate_maintenance.config import Cost
from solemate_maintenance.operators.reviews.cost import CostReviewOperator
from solemate_maintenance.run_facts import RunFacts
from solemate_maintenance.window import TimeWindow, month_reviewed

EDGES = {
    "the 1st": datetime(2027, 3, 1, 0, 30, tzinfo=UTC),
    "the 2nd": datetime(2026, 12, 2, 5, 0, tzinfo=UTC),
    "the 3rd, before the monthly run": datetime(2027, 1, 3, 5, 59, tzinfo=UTC),
    "the 3rd, after the monthly run": datetime(2027, 1, 3, 7, 0, tzinfo=UTC),
    "the 31st": datetime(2026, 12, 31, 23, 30, tzinfo=UTC),
    "1 January": datetime(2028, 1, 1, 0, 15, tzinfo=UTC),
    "29 February": datetime(2028, 2, 29, 12, 0, tzinfo=UTC),
}
edges = pytest.mark.parametrize("today", list(EDGES.values()), ids=list(EDGES))


def first_of_previous_month(day: date) -> date:
    return (day.replace(day=1) - timedelta(days=1)).replace(day=1)


@edges
def test_a_manual_monthly_run_reviews_the_whole_month_before_today(today):
    with time_machine.travel(today, tick=False):
        now = datetime.now(UTC)
        month = month_reviewed({"logical_date": now, "data_interval_start": now, "data_interval_end": now})
    assert month.start.date() == first_of_previous_month(today.date())
    assert month.end == datetime(today.year, today.month, 1, tzinfo=UTC)


@edges
def test_the_scheduled_monthly_run_and_the_sandbox_agree_on_the_month_last_reviewed(today):
    ran = last_monthly_run(today)
    assert ran <= today and ran.day == 3 and ran.hour == 6 and today - ran < timedelta(days=32)
    # The scheduled run at `ran` has the interval [3rd of the month before, `ran`): that month is reviewed.
    interval_start = (ran.replace(day=1) - timedelta(days=1)).replace(day=3)
    month = month_reviewed({"logical_date": interval_start, "data_interval_start": interval_start,
                            "data_interval_end": ran})
    assert month.start.date() == month_last_reviewed(today)


class AskedQuestions:
    """Records what the cost review would ask Cost Explorer (the answers do not matter here)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict]] = []

    def ask(self, operation: str, request: dict, **_: object) -> dict:
        self.asked.append((operation, request))
        return {"Total": {"Amount": "10"}, "ForecastResultsByTime": [{}], "ResultsByTime": []}


@edges
def test_the_forecast_is_of_the_month_in_progress_and_its_periods_are_valid(today):
    operator = CostReviewOperator(task_id="cost_review", settings=Cost(), bucket="b", reports_prefix="reports")
    newest = first_of_previous_month(today.date())
    for reviewed in (newest, first_of_previous_month(newest)):  # the newest month, and an older one
        following = (reviewed + timedelta(days=32)).replace(day=1)
        questions = AskedQuestions()
        with time_machine.travel(today, tick=False):
            forecast = operator._forecast(questions, datetime.now(UTC), following)
        if reviewed != newest:
            assert forecast is None and questions.asked == []  # a past month has no month in progress
            continue
        operations = [operation for operation, _ in questions.asked]
        # On the 1st nothing of the month has been spent yet: no month-to-date question (its period would be empty).
        assert operations == (["get_cost_forecast"] if today.day == 1 else ["get_cost_and_usage", "get_cost_forecast"])
        for _, request in questions.asked:
            period = request["TimePeriod"]
            assert date.fromisoformat(period["Start"]) < date.fromisoformat(period["End"])
            assert date.fromisoformat(period["End"]) <= (today.date().replace(day=1) + timedelta(days=32)).replace(day=1)
        assert forecast["month"] == today.strftime("%B %Y")


@edges
def test_the_monthly_backup_rule_was_last_due_on_the_1st_of_this_or_the_previous_month(today):
    due = previous_fire("cron(0 4 1 * ? *)", today)
    this_month = datetime(today.year, today.month, 1, 4, tzinfo=UTC)
    assert due == (this_month if today >= this_month else
                   datetime.combine(first_of_previous_month(today.date()), datetime.min.time(), UTC).replace(hour=4))
    sunday = previous_fire("cron(0 3 ? * SUN *)", today)
    assert sunday.weekday() == 6 and timedelta(0) < today - sunday <= timedelta(days=7)


@edges
def test_a_run_for_yesterday_is_a_past_date_and_the_window_crosses_the_boundary(today):
    yesterday = today - timedelta(days=1)
    context = {"logical_date": yesterday, "data_interval_end": yesterday,
               "dag_run": SimpleNamespace(run_type="scheduled", logical_date=yesterday, clear_number=0),
               "ti": SimpleNamespace(dag_id="daily_maintenance", run_id="r")}
    with time_machine.travel(today, tick=False):
        facts = RunFacts.from_context(context, page_max_age_hours=6, now=datetime.now(UTC))
    assert facts.is_past and not facts.may_page
    window = TimeWindow.ending_at_run(context, 24 * 60)
    assert window.seconds == 24 * 3600 and window.end == yesterday
