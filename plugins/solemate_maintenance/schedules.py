"""When each scheduled DAG runs: one place for the DAG files and for the evening review, which asks of
every one of them "should it have run today, and did it?"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from solemate_maintenance.config import PlatformConfig


@dataclass(frozen=True)
class Schedule:
    dag_id: str
    cron: str
    timezone: str = "UTC"
    # A data-interval timetable (the monthly review): a run is filed under its interval's start, the
    # schedule's previous fire, not the moment it runs.
    interval: bool = False
    # What a run leaves under <dag>/by-logical-date/<date>/; None: nothing (the watches, whose progress
    # is the incident record's `watched_until`).
    record: str | None = "report.json"

    def timetable(self) -> Any:
        from airflow.sdk import CronDataIntervalTimetable, CronTriggerTimetable

        kind = CronDataIntervalTimetable if self.interval else CronTriggerTimetable
        return kind(self.cron, timezone=self.timezone)

    def fires(self, start: datetime, end: datetime) -> list[datetime]:
        """The moments runs were due in [start, end), in UTC."""
        from datetime import UTC
        from zoneinfo import ZoneInfo

        from croniter import croniter

        zone = ZoneInfo(self.timezone)
        # Plain datetimes: croniter loses the zone of Airflow's pendulum ones.
        runs = croniter(self.cron, datetime.fromtimestamp(start.timestamp() - 1, zone))
        until = datetime.fromtimestamp(end.timestamp(), UTC)
        due = []
        while (moment := runs.get_next(datetime).astimezone(UTC)) < until:
            due.append(moment)
        return due

    def logical_date(self, fire: datetime) -> datetime:
        """What a run due at `fire` is filed under."""
        if not self.interval:
            return fire
        from datetime import UTC
        from zoneinfo import ZoneInfo

        from croniter import croniter

        start = datetime.fromtimestamp(fire.timestamp(), ZoneInfo(self.timezone))
        return croniter(self.cron, start).get_prev(datetime).astimezone(UTC)


def scheduled_dags(config: PlatformConfig) -> dict[str, Schedule]:
    """Every DAG that runs on a schedule (dr_failover runs only when a person starts it)."""
    reviews = config.reviews
    schedules = [
        Schedule("performance_watch", f"*/{config.watch.performance.interval_minutes} * * * *", record=None),
        Schedule("database_watch", "5 * * * *", record=None),
        Schedule("daily_maintenance", "0 2 * * *"),
        Schedule("weekly_backup_verification", "0 3 * * WED"),
        Schedule("weekly_review", "0 4 * * MON"),
        Schedule("monthly_review", "0 6 3 * *", interval=True),
        Schedule("dr_drill", "0 4 1 * *"),
        Schedule("airflow_housekeeping", "0 5 * * SUN"),
        Schedule("morning_review", reviews.cron("morning"), reviews.timezone, record="review.json"),
        Schedule("evening_review", reviews.cron("evening"), reviews.timezone, record="review.json"),
    ]
    return {schedule.dag_id: schedule for schedule in schedules}
