"""Judging a metric's datapoints one by one: when it was bad, for how long, and its peak.

A day's average hides an hour at 20 % 5xx ("1.7 % for the day"); every message about a metric says
when it was bad ("12:00–15:05 UTC, peak 95 % at 13:40"). Both the watch and the daily checks use this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from solemate_maintenance.config import Lower, Upper
from solemate_maintenance.findings import Finding, Severity, Status, classify, threshold_finding

Point = tuple[datetime, float]


@dataclass(frozen=True)
class SeriesVerdict:
    status: Status | None  # None: no datapoint
    worst: float | None = None
    worst_at: datetime | None = None
    # The bad stretches, each [start, end) with end one period after its last bad datapoint.
    spans: list[tuple[datetime, datetime]] = field(default_factory=list)
    still_bad: bool = False
    period: timedelta = timedelta(minutes=5)

    @property
    def has_data(self) -> bool:
        return self.status is not None

    @property
    def first_bad(self) -> datetime | None:
        return self.spans[0][0] if self.spans else None

    @property
    def last_bad(self) -> datetime | None:
        return self.spans[-1][1] - self.period if self.spans else None

    @property
    def minutes_bad(self) -> int:
        return int(sum((end - start).total_seconds() for start, end in self.spans) // 60)

    def stretches(self) -> str:
        """'12:00–15:05 UTC' (the bad stretches, dated when the window spans days)."""
        if not self.spans:
            return ""
        dated = self.spans[0][0].astimezone(UTC).date() != self.spans[-1][1].astimezone(UTC).date()
        form = "%m-%d %H:%M" if dated else "%H:%M"
        shown = [f"{s.astimezone(UTC).strftime(form)}–{e.astimezone(UTC).strftime(form)}" for s, e in self.spans[:3]]
        more = f" and {len(self.spans) - 3} more" if len(self.spans) > 3 else ""
        return ", ".join(shown) + more + " UTC"

    def when(self, unit: str = "") -> str:
        """'12:00–15:05 UTC, peak 95 % at 13:40' (the bad stretches and the peak)."""
        if not self.spans:
            return ""
        text = self.stretches()
        if self.worst is not None and self.worst_at is not None:
            text += f", peak {self.worst:.4g}{unit and ' ' + unit} at {_clock(self.worst_at)}"
        return text


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M")


def judge(points: Sequence[Point], threshold: Upper | Lower, period: timedelta) -> SeriesVerdict:
    """Classify every datapoint; the verdict is the worst, with the stretches that were not ok."""
    if not points:
        return SeriesVerdict(status=None, period=period)
    above = isinstance(threshold, Upper)
    worst_at, worst = max(points, key=lambda p: p[1]) if above else min(points, key=lambda p: p[1])
    status = Status.OK
    spans: list[tuple[datetime, datetime]] = []
    last_status = Status.OK
    for stamp, value in sorted(points):
        point_status = classify(value, threshold)
        last_status = point_status
        if point_status is Status.OK:
            continue
        if point_status is Status.CRITICAL or status is Status.OK:
            status = point_status if status is not Status.CRITICAL else status
        if spans and spans[-1][1] >= stamp:
            spans[-1] = (spans[-1][0], stamp + period)
        else:
            spans.append((stamp, stamp + period))
    return SeriesVerdict(status=status, worst=worst, worst_at=worst_at, spans=spans,
                         still_bad=last_status is not Status.OK, period=period)


def series_finding(*, check: str, resource: str, label: str, metric: str, points: Sequence[Point], unit: str,
                   threshold: Upper | Lower, warning_severity: Severity, critical_severity: Severity,
                   period: timedelta, missing_severity: Severity = Severity.P3) -> Finding:
    """A threshold finding judged on every datapoint: its worst value, and, when it is a problem, when it
    was bad and for how long ("12:00–15:05 UTC, peak 95 % at 13:40; 185 min past the threshold")."""
    verdict = judge(points, threshold, period)
    finding = threshold_finding(check=check, resource=resource, label=label, metric=metric, value=verdict.worst,
                                unit=unit, threshold=threshold, warning_severity=warning_severity,
                                critical_severity=critical_severity, missing_severity=missing_severity)
    if not finding.is_problem or not verdict.spans:
        return finding
    details = {**finding.details, "bad_periods": [[s.isoformat(), e.isoformat()] for s, e in verdict.spans],
               "minutes_past_threshold": verdict.minutes_bad,
               "worst_at": verdict.worst_at.isoformat() if verdict.worst_at else None}
    return finding.model_copy(update={
        "summary": f"{finding.summary} — {verdict.when(unit)}; {verdict.minutes_bad} min past the warning threshold",
        "details": details})
