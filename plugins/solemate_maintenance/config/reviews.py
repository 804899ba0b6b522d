"""The `reviews` section: the operator's day (the guide's 9 AM and 6 PM checklists, the Monday and
Friday roll-ups), in the team's time zone."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from solemate_maintenance.config.base import _Strict

CRON_DAYS = {"mon-fri": "MON-FRI", "every-day": "*"}


class Reviews(_Strict):
    # The team's IANA time zone: the reviews run at the guide's local times, summer time included.
    timezone: str = "UTC"
    morning: str = Field(default="09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    evening: str = Field(default="18:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    # mon-fri: Monday's morning review covers the weekend (since Friday's evening review).
    days: Literal["mon-fri", "every-day"] = "mon-fri"
    # The KPI trend compares the latest daily run with the average of this many before it.
    kpi_trend_days: int = Field(default=7, ge=2, le=31)
    # A scheduled run this recent may still be running: the evening review does not call it missing.
    run_grace_minutes: int = Field(default=60, ge=0, le=12 * 60)
    # The review's e-mail; empty: `alerts.digest_email`. Slack: `alerts.slack_conn_id`.
    email: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = []
    # Lines per section before "and N more" (a Slack message has a size limit a person has too).
    max_lines: int = Field(default=10, ge=3, le=50)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if not re.fullmatch(r"[A-Za-z0-9_+\-/]{1,64}", value):
            raise ValueError(f"{value!r} is not an IANA time zone name such as Europe/Berlin")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)") from exc
        return value

    @model_validator(mode="after")
    def _morning_before_evening(self) -> Reviews:
        if self.morning >= self.evening:
            raise ValueError(f"morning {self.morning} must be before evening {self.evening}: the evening review "
                             "covers the day up to it, the morning review the night since the evening one")
        return self

    def cron(self, which: Literal["morning", "evening"]) -> str:
        hour, minute = (int(part) for part in getattr(self, which).split(":"))
        return f"{minute} {hour} * * {CRON_DAYS[self.days]}"
