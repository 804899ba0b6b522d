"""The time window a check looks at, derived from the run, never from the wall clock.

The daily DAG uses a cron *trigger* timetable (Airflow 3's default for a cron string): a run's
logical date is the moment it was scheduled for and its data interval has zero length. Every window
therefore *ends* at the data interval end (= the logical date) and reaches back a configured
lookback. A backfilled run for last Tuesday 02:00 looks at the hour before last Tuesday 02:00.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
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
