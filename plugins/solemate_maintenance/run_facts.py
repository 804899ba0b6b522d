"""Which day a run checked, and what kind of run it is: said in every alert, digest and report.

A backfill for 24 November that fails reads like a live incident unless every message names the
date it checked and says that it is a backfill or a re-run. Paging (SNS) is only for runs that check
the present.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


def _run_type(dag_run: Any) -> str:
    run_type = getattr(dag_run, "run_type", None)
    return str(getattr(run_type, "value", run_type) or "unknown")


def format_instant(moment: datetime | None) -> str:
    if moment is None:
        return "unknown"
    # boto returns aware datetimes in the machine's local zone: convert, or "UTC" would be a lie.
    return (moment.astimezone(UTC) if moment.tzinfo else moment).strftime("%Y-%m-%d %H:%M UTC")


def format_age(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    if hours < 1:
        return f"{max(int(age.total_seconds() // 60), 0)} min"
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"


@dataclass(frozen=True)
class RunFacts:
    dag_id: str
    run_id: str
    run_type: str
    logical_date: datetime | None
    # "logical_date", or "run_after" for an API-triggered run that carries no logical date.
    logical_date_source: str
    clear_number: int
    # How long after its logical date the run is happening (wall clock: for labels and paging only).
    age: timedelta
    page_max_age: timedelta

    @classmethod
    def from_context(cls, context: Any, *, page_max_age_hours: float, now: datetime) -> RunFacts:
        dag_run = context.get("dag_run")
        ti = context.get("ti")
        logical_date = context.get("logical_date") or getattr(dag_run, "logical_date", None)
        source = "logical_date"
        if logical_date is None:
            logical_date, source = getattr(dag_run, "run_after", None), "run_after"
        return cls(
            dag_id=getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", "unknown"),
            run_id=getattr(ti, "run_id", None) or getattr(dag_run, "run_id", "unknown"),
            run_type=_run_type(dag_run),
            logical_date=logical_date,
            logical_date_source=source,
            clear_number=int(getattr(dag_run, "clear_number", 0) or 0),
            # A run is due at the end of its data interval (the logical date itself for a trigger
            # timetable; the month's end for the monthly review): its age counts from then. A run
            # without a logical date is about the time it runs after, whatever interval it was given.
            age=(now - ((context.get("data_interval_end") if source == "logical_date" else None) or logical_date))
            if logical_date else timedelta(0),
            page_max_age=timedelta(hours=page_max_age_hours),
        )

    @property
    def is_backfill(self) -> bool:
        return self.run_type == "backfill"

    @property
    def is_past(self) -> bool:
        return self.age > self.page_max_age

    @property
    def is_rerun(self) -> bool:
        return self.clear_number > 0

    @property
    def may_page(self) -> bool:
        """Paging is for runs checking the present, never for a backfill or a past date."""
        return not self.is_backfill and not self.is_past

    @property
    def date_label(self) -> str:
        return format_instant(self.logical_date)

    @property
    def kind(self) -> str:
        """What kind of run this is, in words; empty for a live run checking the present."""
        parts = []
        if self.is_backfill:
            parts.append("BACKFILL of a past date")
        elif self.is_past:
            parts.append(f"PAST DATE checked {format_age(self.age)} later")
        if self.is_rerun:
            parts.append(f"RE-RUN (cleared {self.clear_number}×)")
        if self.logical_date_source == "run_after":
            parts.append("no logical date: anchored at the run's run_after")
        return "; ".join(parts)

    @property
    def tag(self) -> str:
        """The run kind for a title, e.g. " [BACKFILL of a past date]"; empty for a live run."""
        return f" [{self.kind.split(';')[0]}]" if self.is_backfill or self.is_past or self.is_rerun else ""

    @property
    def headline(self) -> str:
        """Appended to every title: the checked date, and the run kind when it is not live."""
        return f" — {self.date_label}{self.tag}"

    @property
    def paging_note(self) -> str:
        if self.may_page:
            return "live run: P1 pages"
        reason = "a backfill" if self.is_backfill else f"checking a date {format_age(self.age)} old"
        return f"not paging: {reason} (paging is for runs within {format_age(self.page_max_age)} of their date)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "logical_date": self.logical_date.isoformat() if self.logical_date else None,
            "logical_date_source": self.logical_date_source,
            "run_kind": self.kind or "live",
            "run_tag": self.tag,
            "clear_number": self.clear_number,
            "checked_hours_after_logical_date": round(self.age.total_seconds() / 3600, 2),
            "paging": self.paging_note,
        }
