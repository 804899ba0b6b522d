"""The time window a check looks at, derived from the run, never from the wall clock.

The daily DAG uses a cron *trigger* timetable (Airflow 3's default for a cron string): a run's
logical date is the moment it was scheduled for and its data interval has zero length. Every window
therefore *ends* at the data interval end (= the logical date) and reaches back a configured
lookback. A backfilled run for last Tuesday 02:00 looks at the hour before last Tuesday 02:00.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class TimeWindow:
    start: datetime
    end: datetime

    @classmethod
    def ending_at_run(cls, context: Any, lookback_minutes: int) -> TimeWindow:
        end = run_end(context)
        return cls(start=end - timedelta(minutes=lookback_minutes), end=end)

    def shifted(self, delta: timedelta) -> TimeWindow:
        return TimeWindow(start=self.start + delta, end=self.end + delta)

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def run_end(context: Any) -> datetime:
    """The instant a run is about: data interval end, else logical date, else when it was queued.

    Manual runs in Airflow 3 may carry no logical date; they are about the time they run after.
    """
    dag_run = context.get("dag_run")
    for candidate in (
        context.get("data_interval_end"),
        context.get("logical_date"),
        getattr(dag_run, "run_after", None),
    ):
        if candidate is not None:
            return candidate
    raise ValueError("the run has no data interval, logical date or run_after to anchor its window")


def month_reviewed(context: Any) -> TimeWindow:
    """The calendar month a monthly run reviews (UTC).

    With a data-interval timetable the run for November has the interval [Nov 1, Dec 1): November.
    A run without a month-long interval (a manual trigger, a test) reviews the last complete month
    before its date, the month it would have been scheduled for.
    """

    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is not None and end is not None and end - start >= timedelta(days=27):
        first = start.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        anchor = run_end(context).astimezone(UTC)
        this_month = anchor.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        first = (this_month - timedelta(days=1)).replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    # Plain datetimes: Airflow's pendulum ones do arithmetic and formatting of their own.
    return TimeWindow(start=datetime.fromtimestamp(first.timestamp(), UTC),
                      end=datetime.fromtimestamp(following.timestamp(), UTC))


def report_date(context: Any) -> datetime:
    """The date the run's report is filed under (its logical date): artifacts go next to it."""
    return context.get("logical_date") or run_end(context)


def as_utc(value: datetime) -> datetime:
    """An AWS timestamp in UTC: botocore gives them in the worker's local zone, moto sometimes naive."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
