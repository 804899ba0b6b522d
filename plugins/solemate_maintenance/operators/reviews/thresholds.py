"""The month's data for the guide's "review the monitoring thresholds": for every CloudWatch alarm and
every threshold of the daily checks, how often it fired, how long it stayed, whether it flapped or
never fired, and where the month's observed p99 sits against it, with a suggestion. Nothing changes:
a threshold is a person's decision.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.metric_queries import MetricQuery
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.window import TimeWindow, as_utc, month_reviewed

# More transitions into ALARM than this in a month: the alarm flaps (it fires and clears on noise).
FLAPPING_TRANSITIONS = 10
# An alarm in ALARM for more than this share of the month is crying wolf, or a problem nobody fixes.
CHRONIC_SHARE = 0.2
# An alarm that never fired and whose metric's p99 stays under this share of the threshold may be too lax.
LAX_SHARE = 0.5
# How long CloudWatch keeps an alarm's history.
HISTORY_KEPT = timedelta(days=14)


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def suggest_alarm(*, fired: int, share_in_alarm: float, p99: float | None, threshold: float | None,
                  operator: str) -> str:
    if fired > FLAPPING_TRANSITIONS:
        return (f"flapping ({fired} times into ALARM): require more datapoints to alarm "
                "(DatapointsToAlarm) or a longer period, rather than moving the threshold")
    if share_in_alarm > CHRONIC_SHARE:
        return (f"in ALARM {share_in_alarm:.0%} of the month: either the threshold sits inside normal "
                "operation, or the problem it reports needs fixing")
    if fired == 0 and p99 is not None and threshold:
        high_is_bad = "Greater" in operator
        if high_is_bad and p99 < LAX_SHARE * threshold:
            return (f"never fired, p99 {p99:.4g} is under half the threshold {threshold:g}: consider about "
                    f"{p99 * 1.5:.3g} so that it fires before users notice")
        if not high_is_bad and p99 > threshold / LAX_SHARE:
            return f"never fired, p99 {p99:.4g} is far from the threshold {threshold:g}: consider a tighter one"
    if fired == 0:
        return "never fired: keep it if it guards a rare failure, and test it (set-alarm-state) once"
    return "keep"


def suggest_check(*, days_over: int, days: int, p99: float | None, warning: float | None, high_is_bad: bool) -> str:
    if days and days_over > days / 2:
        return (f"over its warning level on {days_over} of {days} days: the threshold sits inside normal "
                "operation, or the daily report has been reporting a standing problem")
    if days_over == 0 and p99 is not None and warning:
        if (high_is_bad and p99 < LAX_SHARE * warning) or (not high_is_bad and p99 > warning / LAX_SHARE):
            return f"never reached; the month's p99 {p99:.4g} is far from the warning level {warning:g}"
    return "keep"


class ThresholdReviewOperator(MaintenanceCheckOperator):
    """The month's alarm and threshold statistics, with suggestions (P4 findings; nothing is changed).

    :param bucket: reports bucket; :param reports_prefix: the reports' key prefix (the daily reports
        give the checks' thresholds and daily values).
    :param daily_dag_id: whose reports hold the checks' measurements.
    """

    template_fields = (*MaintenanceCheckOperator.template_fields, "bucket")

    def __init__(self, *, bucket: str, reports_prefix: str, daily_dag_id: str = "daily_maintenance",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bucket = bucket
        self.reports_prefix = reports_prefix
        self.daily_dag_id = daily_dag_id

    def checked_window(self, context: Any) -> TimeWindow:
        return month_reviewed(context)

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        month = self.checked_window(context)
        alarm_rows, alarm_findings = self._alarms(month)
        check_rows, check_findings = self._checks(month)
        label = f"{month.start:%B %Y}"
        suggestions = sum(1 for row in alarm_rows + check_rows if row[-1] != "keep")
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": (f"Monitoring thresholds, {label}: {len(alarm_rows)} alarm(s), {len(check_rows)} check "
                         f"threshold(s), {suggestions} suggestion(s)"),
            "alarms": len(alarm_rows), "check_thresholds": len(check_rows), "suggestions": suggestions,
            "never_fired": sum(1 for row in alarm_rows if row[1] == 0),
            "flapping": sum(1 for row in alarm_rows if row[1] > FLAPPING_TRANSITIONS),
            "tables": {
                "Alarms": {"columns": ["alarm", "times into ALARM", "time in ALARM", "month p99", "threshold",
                                       "suggestion"], "rows": alarm_rows},
                "Check thresholds": {"columns": ["check / metric", "days over warning",
                                                 "month p99 of daily values (p1 where low is bad)",
                                                 "warning", "critical", "suggestion"], "rows": check_rows}}})
        yield from alarm_findings
        yield from check_findings
        if not alarm_findings and not check_findings:
            yield Finding(check="thresholds.review", resource=label, status=Status.OK,
                          summary=f"{len(alarm_rows)} alarm(s) and {len(check_rows)} check threshold(s) reviewed: "
                                  "no suggestion")

    # -- CloudWatch alarms ------------------------------------------------------------------------------

    def _alarms(self, month: TimeWindow) -> tuple[list[list[Any]], list[Finding]]:
        """How often each alarm fired comes from the month's daily reports (their overnight_alarms findings
        list every entry into ALARM): CloudWatch keeps alarm history 14 days only. Time in ALARM comes
        from that history, over the part of the month it still covers (said in the table)."""
        from airflow.sdk.timezone import utcnow

        cloudwatch = self.client("cloudwatch")
        alarms = [a for page in self.pages(cloudwatch, "describe_alarms", max_page=100, AlarmTypes=["MetricAlarm"])
                  for a in page.get("MetricAlarms", [])]
        fired = self._fired_per_daily_reports(month)
        # What CloudWatch still has: the last 14 days from now (a fact of the wall clock, not of the run).
        covered = TimeWindow(max(month.start, utcnow() - HISTORY_KEPT), month.end)
        history: dict[str, list[tuple[datetime, str, str]]] = defaultdict(list)
        if covered.start < covered.end:
            for page in self.pages(cloudwatch, "describe_alarm_history", max_page=100, HistoryItemType="StateUpdate",
                                   AlarmTypes=["MetricAlarm"], StartDate=covered.start, EndDate=covered.end,
                                   ScanBy="TimestampAscending"):
                for item in page["AlarmHistoryItems"]:
                    try:
                        data = json.loads(item.get("HistoryData") or "{}")
                    except ValueError:
                        continue
                    history[item["AlarmName"]].append((as_utc(item["Timestamp"]),
                                                       data.get("oldState", {}).get("stateValue", ""),
                                                       data.get("newState", {}).get("stateValue", "")))
        p99 = self._p99(alarms, month)
        rows, findings = [], []
        for alarm in sorted(alarms, key=lambda a: a["AlarmName"]):
            name = alarm["AlarmName"]
            times = fired.get(name, 0)
            in_alarm = self._time_in_alarm(sorted(history.get(name, [])), covered, alarm) \
                if covered.start < covered.end else None
            share = in_alarm / (covered.end - covered.start) if in_alarm is not None else 0.0
            threshold = alarm.get("Threshold")
            operator = alarm.get("ComparisonOperator", "GreaterThanThreshold")
            suggestion = suggest_alarm(fired=times, share_in_alarm=share, p99=p99.get(name), threshold=threshold,
                                       operator=operator)
            shown = "unknown" if in_alarm is None else f"{_hours(in_alarm)} since {covered.start:%d %b}"
            rows.append([name, times, shown, _shown(p99.get(name)), threshold, suggestion])
            if suggestion != "keep":
                findings.append(Finding(check="thresholds.alarm", resource=name, status=Status.WARNING,
                                        severity=Severity.P4, summary=suggestion,
                                        details={"times_into_alarm": times, "p99": p99.get(name),
                                                 "threshold": threshold, "hours_in_alarm": None if in_alarm is None
                                                 else round(in_alarm.total_seconds() / 3600, 2)}))
        return rows, findings

    def _fired_per_daily_reports(self, month: TimeWindow) -> dict[str, int]:
        store = self.report_store(self.bucket, self.reports_prefix)
        times: dict[str, set[str]] = defaultdict(set)
        for report in store.reports_between(self.daily_dag_id, month.start, month.end + timedelta(days=1),
                                            log=self.log):
            for finding in report.findings:
                if finding.check != "cloudwatch.overnight_alarm" or finding.resource == "alarms":
                    continue
                for stamp in finding.details.get("times") or []:
                    try:
                        moment = as_utc(datetime.fromisoformat(stamp))
                    except (TypeError, ValueError):
                        continue
                    if month.start <= moment < month.end:
                        times[finding.resource].add(moment.isoformat())
        return {name: len(stamps) for name, stamps in times.items()}

    @staticmethod
    def _time_in_alarm(changes: list[tuple[datetime, str, str]], covered: TimeWindow,
                       alarm: dict[str, Any]) -> timedelta | None:
        """ALARM time inside `covered` from its transitions; the state before the first is its old state.
        Without a transition, the alarm's state now held throughout only if it last changed before; else
        unknown."""
        if changes:
            state = changes[0][1]
        else:
            updated = alarm.get("StateUpdatedTimestamp")
            if updated is None or as_utc(updated) > covered.start:
                return None
            state = alarm.get("StateValue", "")
        since, total = covered.start, timedelta(0)
        for moment, _, new in changes:
            if state == "ALARM":
                total += moment - since
            state, since = new, moment
        if state == "ALARM":
            total += covered.end - since
        return total

    def _p99(self, alarms: list[dict[str, Any]], month: TimeWindow) -> dict[str, float]:
        """The month's p99 of each single-metric alarm's metric (metric-math alarms: none)."""
        seconds = int((month.end - month.start).total_seconds())
        queries = {}
        for n, alarm in enumerate(alarms):
            if not alarm.get("MetricName") or not alarm.get("Namespace"):
                continue
            queries[f"a{n}"] = (alarm["AlarmName"], MetricQuery(
                id=f"a{n}", namespace=alarm["Namespace"], metric=alarm["MetricName"], stat="p99",
                period=seconds - seconds % 60,
                dimensions={d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}))
        if not queries:
            return {}
        series = self.metrics_hook.get_metric_data([q for _, q in queries.values()], month)
        found = {}
        for query_id, (name, _) in queries.items():
            value = series[query_id].reduce("max") if query_id in series else None
            if value is not None:
                found[name] = value
        return found

    # -- the daily checks' thresholds -------------------------------------------------------------------

    def _checks(self, month: TimeWindow) -> tuple[list[list[Any]], list[Finding]]:
        store = self.report_store(self.bucket, self.reports_prefix)
        reports = store.reports_between(self.daily_dag_id, month.start, month.end, log=self.log)
        values: dict[tuple[str, str], list[float]] = defaultdict(list)
        over: dict[tuple[str, str], int] = defaultdict(int)
        limits: dict[tuple[str, str], tuple[float | None, float | None, bool]] = {}
        for report in reports:
            for finding in report.findings:
                for metric, measured in finding.metrics.items():
                    if measured.value is None or (measured.warning is None and measured.critical is None):
                        continue
                    key = (finding.check, metric)
                    values[key].append(float(measured.value))
                    high_is_bad = measured.bad_when != "below"
                    limits[key] = (measured.warning, measured.critical, high_is_bad)
                    if measured.warning is not None and (
                            measured.value >= measured.warning if high_is_bad else measured.value <= measured.warning):
                        over[key] += 1
        rows, findings = [], []
        for key in sorted(values):
            warning, critical, high_is_bad = limits[key]
            p99 = _percentile(values[key], 0.99 if high_is_bad else 0.01)
            suggestion = suggest_check(days_over=over[key], days=len(values[key]), p99=p99, warning=warning,
                                       high_is_bad=high_is_bad)
            rows.append([f"{key[0]} / {key[1]}", f"{over[key]} of {len(values[key])}", _shown(p99), warning,
                         critical, suggestion])
            if suggestion != "keep":
                findings.append(Finding(check="thresholds.check", resource=f"{key[0]} / {key[1]}",
                                        status=Status.WARNING, severity=Severity.P4, summary=suggestion))
        return rows, findings


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return "0" if not hours else f"{hours:.1f} h"


def _shown(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"
