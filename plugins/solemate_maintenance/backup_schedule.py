"""AWS Backup schedule expressions: when a rule last fired before a given instant."""

from __future__ import annotations

import re
from datetime import UTC, datetime


def _weekday_field(field: str) -> str:
    # AWS counts weekdays 1-7 from Sunday; croniter 0-6 from Sunday. Names mean the same in both.
    def shift(match: re.Match[str]) -> str:
        number = int(match.group(0))
        if not 1 <= number <= 7:
            raise ValueError(f"weekday {number} is outside 1-7")
        return str(number - 1)

    if "#" in field:
        day, nth = field.split("#", 1)
        return re.sub(r"\d+", shift, day) + "#" + nth
    return re.sub(r"\d+", shift, field)


def to_croniter(expression: str) -> str:
    """`cron(0 3 ? * SUN *)` -> `0 3 * * SUN`. Raises ValueError for what cannot be translated."""
    match = re.fullmatch(r"cron\((.+)\)", expression.strip())
    if not match:
        raise ValueError("not a cron(...) expression")
    fields = match.group(1).split()
    if len(fields) != 6:
        raise ValueError(f"expected 6 fields, got {len(fields)}")
    minute, hour, day, month, weekday, year = fields
    if year not in ("*", "?"):
        raise ValueError("schedules restricted to certain years are not supported")
    if day == "?" and weekday == "?":
        raise ValueError("day-of-month and day-of-week cannot both be '?'")
    day = "*" if day == "?" else day
    weekday = "*" if weekday == "?" else _weekday_field(weekday.upper())
    return " ".join([minute, hour, day, month, weekday])


def previous_fire(expression: str, before: datetime) -> datetime:
    """The last time the schedule fired at or before `before` (UTC)."""
    from croniter import croniter

    try:
        iterator = croniter(to_croniter(expression), before.astimezone(UTC))
        return iterator.get_prev(datetime).astimezone(UTC)
    except (KeyError, ValueError) as exc:
        raise ValueError(str(exc) or "invalid field") from None
    except Exception as exc:  # croniter's own errors (CroniterBadCronError ...)
        raise ValueError(str(exc)) from None
