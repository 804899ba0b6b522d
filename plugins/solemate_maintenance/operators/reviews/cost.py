"""The monthly cost review: Cost Explorer, asked as little as possible.

Cost Explorer bills every request ($0.01 each), so each answer is cached in the reports bucket under
a key derived from the request. A month whose figures have settled (`settle_days` after it ends) is
never asked again; a younger answer (and any forecast) is reused for `unsettled_cache_hours` (24 h).
A re-run of a settled month, or a retry or re-run within a day, makes no Cost Explorer call at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from solemate_maintenance.aws_errors import error_code
from solemate_maintenance.charts import Chart, Series, publish_charts
from solemate_maintenance.config import Cost
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.report_store import ObjectNotReadable, ReportStore
from solemate_maintenance.window import TimeWindow, month_reviewed, report_date

METRIC = "UnblendedCost"
ANOMALY_HISTORY_DAYS = 90
BY_SERVICE = [{"Type": "DIMENSION", "Key": "SERVICE"}]


class CostExplorerCache:
    """Cost Explorer answers, kept in S3 by request; `calls` counts the requests really made."""

    def __init__(self, store: ReportStore, prefix: str, ce: Any, *, settle_days: int, unsettled_hours: int,
                 now: datetime) -> None:
        self.store, self.prefix, self.ce = store, prefix.strip("/"), ce
        self.settle_days, self.unsettled_hours, self.now = settle_days, unsettled_hours, now
        self.calls: list[str] = []
        self.hits: list[str] = []

    def key(self, operation: str, request: dict[str, Any]) -> str:
        digest = hashlib.sha256(json.dumps({"operation": operation, "request": request}, sort_keys=True)
                                .encode()).hexdigest()
        return self.store.key(self.prefix, operation, f"{digest}.json")

    def settled(self, period_end: str | None) -> bool:
        return period_end is not None and \
            date.fromisoformat(period_end[:10]) + timedelta(days=self.settle_days) <= self.now.date()

    def ask(self, operation: str, request: dict[str, Any], *, period_end: str | None,
            token_field: str = "NextPageToken", merge: str | None = None) -> dict[str, Any]:
        """The answer to `request` (every page, merged on `merge`), from the cache when it may be."""
        key = self.key(operation, request)
        try:
            cached = self.store.read_json(key)
        except ObjectNotReadable:
            cached = None
        if cached is not None:
            age = self.now - datetime.fromisoformat(cached["cached_at"])
            if cached.get("settled") or age <= timedelta(hours=self.unsettled_hours):
                self.hits.append(operation)
                return cached["response"]
        response = self._all_pages(operation, request, token_field, merge)
        record = {"operation": operation, "request": request, "response": response,
                  "cached_at": self.now.isoformat(), "settled": self.settled(period_end)}
        self.store.write(key, json.dumps(record, default=str))
        return response

    def _all_pages(self, operation: str, request: dict[str, Any], token_field: str,
                   merge: str | None) -> dict[str, Any]:
        method = getattr(self.ce, operation)
        self.calls.append(operation)
        response = method(**request)
        response.pop("ResponseMetadata", None)
        while merge and response.get(token_field):
            self.calls.append(operation)
            following = method(**request, **{token_field: response.pop(token_field)})
            response[merge] = response.get(merge, []) + following.get(merge, [])
            response[token_field] = following.get(token_field)
        response.pop(token_field, None)
        return json.loads(json.dumps(response, default=str))


def _amount(metrics: dict[str, Any]) -> float:
    return float(metrics.get(METRIC, {}).get("Amount", 0) or 0)


def _month_label(day: date) -> str:
    return day.strftime("%B %Y")


class CostReviewOperator(MaintenanceCheckOperator):
    """The month's cost by service against the previous month, the biggest movers, cost anomalies,
    the current month's forecast (live runs only: a past month has no forecast), and the budget.

    A service that grew by ``spike_percent`` and ``spike_min_usd`` is P3, as is an anomaly over
    ``anomaly_min_impact_usd``, a month over budget, or a forecast over ``forecast_warning_percent``
    of it. The daily cost chart goes next to the report; the digest links it.

    :param settings: the ``cost`` section of the platform config.
    :param bucket: reports bucket (cache and chart).
    :param reports_prefix: the reports' key prefix.
    """

    template_fields: Sequence[str] = (*MaintenanceCheckOperator.template_fields, "bucket")

    def __init__(self, *, settings: Cost, bucket: str, reports_prefix: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.bucket = bucket
        self.reports_prefix = reports_prefix

    def checked_window(self, context: Any) -> TimeWindow:
        return month_reviewed(context)

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        month = self.checked_window(context)
        first, following = month.start.date(), month.end.date()
        previous = (first - timedelta(days=1)).replace(day=1)
        now = datetime.now(UTC)  # what has settled, and which month is in progress, are wall-clock facts
        store = self.report_store(self.bucket, self.reports_prefix)
        cache = CostExplorerCache(store, self.settings.cache_prefix, self.client("ce", "us-east-1"),
                                  settle_days=self.settings.settle_days,
                                  unsettled_hours=self.settings.unsettled_cache_hours, now=now)
        by_month = cache.ask("get_cost_and_usage", {
            "TimePeriod": {"Start": previous.isoformat(), "End": following.isoformat()}, "Granularity": "MONTHLY",
            "Metrics": [METRIC], "GroupBy": BY_SERVICE}, period_end=following.isoformat(), merge="ResultsByTime")
        services = self._by_service(by_month, previous, first)
        daily = cache.ask("get_cost_and_usage", {
            "TimePeriod": {"Start": first.isoformat(), "End": following.isoformat()}, "Granularity": "DAILY",
            "Metrics": [METRIC]}, period_end=following.isoformat(), merge="ResultsByTime")
        days = [(datetime.fromisoformat(r["TimePeriod"]["Start"]).replace(tzinfo=UTC), _amount(r.get("Total", {})))
                for r in daily.get("ResultsByTime", [])]
        # Cost Anomaly Detection keeps 90 days: an older month's "no anomaly" would be a guess, not a finding.
        anomalies_kept = first >= now.date() - timedelta(days=ANOMALY_HISTORY_DAYS)
        anomalies = cache.ask("get_anomalies", {
            "DateInterval": {"StartDate": first.isoformat(), "EndDate": (following - timedelta(days=1)).isoformat()},
            "MaxResults": 100}, period_end=following.isoformat(), merge="Anomalies").get("Anomalies", []) \
            if anomalies_kept else []
        total = sum(v[1] for v in services.values())
        previous_total = sum(v[0] for v in services.values())
        label = _month_label(first)
        yield from self._movers(services, label, _month_label(previous))
        if anomalies_kept:
            yield from self._anomalies(anomalies, label)
        else:
            yield Finding(check="cost.anomaly", resource=label, status=Status.SKIPPED,
                          summary=f"Cost Anomaly Detection keeps {ANOMALY_HISTORY_DAYS} days: {label} is older")
        forecast = self._forecast(cache, now, following)
        yield from self._budget(total, forecast, label)
        chart = Chart(name="cost-daily", title=f"Daily cost, {label} (USD)", unit="USD",
                      series=[Series("daily cost", days)],
                      limit=round(self.settings.monthly_budget_usd / len(days), 2)
                      if self.settings.monthly_budget_usd and days else None, limit_label="budget per day")
        published = publish_charts(store, context["ti"].dag_id, report_date(context), [chart]) if days else []
        movers = sorted(services.items(), key=lambda kv: abs(kv[1][1] - kv[1][0]), reverse=True)
        headline = (f"Cost {label}: ${total:,.2f} ({_change(total, previous_total)} on {_month_label(previous)})"
                    + (f"; forecast {forecast['month']}: ${forecast['mean']:,.0f} "
                       f"(${forecast['low']:,.0f}–${forecast['high']:,.0f})" if forecast else "")
                    + f"; {len(anomalies)} anomal{'y' if len(anomalies) == 1 else 'ies'}")
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": headline, "month": first.isoformat(), "total_usd": round(total, 2),
            "previous_total_usd": round(previous_total, 2), "forecast": forecast,
            "cost_explorer_calls": len(cache.calls), "cost_explorer_cache_hits": len(cache.hits),
            "tables": {
                f"By service, {label} against {_month_label(previous)}": {
                    "columns": ["service", _month_label(previous), label, "change"],
                    "rows": [[s, round(p, 2), round(c, 2), _change(c, p)] for s, (p, c) in
                             sorted(services.items(), key=lambda kv: -kv[1][1])]},
                "Biggest movers": {"columns": ["service", "change USD", "change"],
                                   "rows": [[s, round(c - p, 2), _change(c, p)]
                                            for s, (p, c) in movers[:self.settings.biggest_movers]]},
                "Cost anomalies": {"columns": ["start", "service", "impact USD", "score"],
                                   "rows": [[a.get("AnomalyStartDate", "")[:10], _root_service(a),
                                             round(float(a.get("Impact", {}).get("TotalImpact", 0)), 2),
                                             a.get("AnomalyScore", {}).get("MaxScore")] for a in anomalies]}},
            "charts": published})

    @staticmethod
    def _by_service(response: dict[str, Any], previous: date, first: date) -> dict[str, tuple[float, float]]:
        services: dict[str, list[float]] = {}
        for result in response.get("ResultsByTime", []):
            start = date.fromisoformat(result["TimePeriod"]["Start"][:10])
            slot = 0 if start == previous else 1 if start == first else None
            if slot is None:
                continue
            for group in result.get("Groups", []):
                services.setdefault(group["Keys"][0], [0.0, 0.0])[slot] += _amount(group.get("Metrics", {}))
        return {name: (p, c) for name, (p, c) in services.items()}

    def _movers(self, services: dict[str, tuple[float, float]], label: str, previous_label: str) -> Iterable[Finding]:
        spikes = 0
        for service, (before, now) in services.items():
            grew = now - before
            spiked = before > 0 and 100 * grew / before >= self.settings.spike_percent
            if grew >= self.settings.spike_min_usd and spiked:
                spikes += 1
                yield Finding(check="cost.spike", resource=service, status=Status.WARNING, severity=Severity.P3,
                              summary=f"{service} cost ${now:,.2f} in {label}, {_change(now, before)} on "
                                      f"{previous_label} (+${grew:,.2f}); find what changed (Cost Explorer, daily, "
                                      "by usage type)",
                              details={"previous_usd": round(before, 2), "current_usd": round(now, 2)})
        if not spikes:
            yield Finding(check="cost.spike", resource="all services", status=Status.OK,
                          summary=f"no service grew {self.settings.spike_percent:g} % and "
                                  f"${self.settings.spike_min_usd:g} on {previous_label}")

    def _anomalies(self, anomalies: list[dict[str, Any]], label: str) -> Iterable[Finding]:
        # An anomaly someone marked as planned in the console was looked at: not a finding again.
        big = [a for a in anomalies if a.get("Feedback") != "PLANNED_ACTIVITY"
               and float(a.get("Impact", {}).get("TotalImpact", 0)) >= self.settings.anomaly_min_impact_usd]
        for a in big:
            impact = float(a["Impact"]["TotalImpact"])
            resource = f"{_root_service(a)} from {a.get('AnomalyStartDate', '')[:10]}"
            yield Finding(check="cost.anomaly", resource=resource,
                          status=Status.WARNING, severity=Severity.P3,
                          summary=f"cost anomaly: ${impact:,.2f} above the expected spend "
                                  f"({_root_cause(a)}); confirm it is planned, or stop it",
                          details={"anomaly_id": a.get("AnomalyId"), "impact_usd": impact})
        if not big:
            yield Finding(check="cost.anomaly", resource="all services", status=Status.OK,
                          summary=f"no cost anomaly of ${self.settings.anomaly_min_impact_usd:g} or more in {label}")

    def _forecast(self, cache: CostExplorerCache, now: datetime, following: date) -> dict[str, Any] | None:
        """The month in progress: month-to-date actual plus the forecast of the rest, when the review
        is of the month just before it (a past month's review has no 'current month' to forecast)."""
        today = now.date()
        if today.replace(day=1) != following:
            return None
        month_end = (following + timedelta(days=32)).replace(day=1)
        so_far = 0.0
        if today > following:
            actual = cache.ask("get_cost_and_usage", {
                "TimePeriod": {"Start": following.isoformat(), "End": today.isoformat()}, "Granularity": "MONTHLY",
                "Metrics": [METRIC]}, period_end=None, merge="ResultsByTime")
            so_far = sum(_amount(r.get("Total", {})) for r in actual.get("ResultsByTime", []))
        try:
            predicted = cache.ask("get_cost_forecast", {
                "TimePeriod": {"Start": today.isoformat(), "End": month_end.isoformat()}, "Metric": "UNBLENDED_COST",
                "Granularity": "MONTHLY", "PredictionIntervalLevel": 80}, period_end=None)
        except Exception as exc:
            if error_code(exc) != "DataUnavailableException":
                raise
            return {"month": _month_label(following), "unavailable": "Cost Explorer has too little history to forecast"}
        result = (predicted.get("ForecastResultsByTime") or [{}])[0]
        mean = so_far + float(predicted.get("Total", {}).get("Amount", 0))
        return {"month": _month_label(following), "so_far": round(so_far, 2), "mean": round(mean, 2),
                "low": round(so_far + float(result.get("PredictionIntervalLowerBound", 0)), 2),
                "high": round(so_far + float(result.get("PredictionIntervalUpperBound", 0)), 2),
                "prediction_interval_percent": 80}

    def _budget(self, total: float, forecast: dict[str, Any] | None, label: str) -> Iterable[Finding]:
        budget = self.settings.monthly_budget_usd
        if not budget:
            return
        if total > budget:
            yield Finding(check="cost.budget", resource=label, status=Status.WARNING, severity=Severity.P3,
                          summary=f"${total:,.2f} spent, over the ${budget:,.0f} budget by ${total - budget:,.2f}")
        else:
            yield Finding(check="cost.budget", resource=label, status=Status.OK,
                          summary=f"${total:,.2f} of the ${budget:,.0f} budget ({100 * total / budget:.0f} %)")
        warn_at = budget * self.settings.forecast_warning_percent / 100
        if forecast and "mean" in forecast and forecast["mean"] >= warn_at:
            yield Finding(check="cost.forecast", resource=forecast["month"], status=Status.WARNING,
                          severity=Severity.P3,
                          summary=f"forecast ${forecast['mean']:,.0f} (80 % interval ${forecast['low']:,.0f}–"
                                  f"${forecast['high']:,.0f}) is {100 * forecast['mean'] / budget:.0f} % of the "
                                  f"${budget:,.0f} budget")


def _change(current: float, previous: float) -> str:
    if not previous:
        return "new" if current else "—"
    return f"{100 * (current - previous) / previous:+.0f} %"


def _root_service(anomaly: dict[str, Any]) -> str:
    causes = anomaly.get("RootCauses") or []
    return causes[0].get("Service", "?") if causes else anomaly.get("DimensionValue", "?")


def _root_cause(anomaly: dict[str, Any]) -> str:
    causes = anomaly.get("RootCauses") or []
    if not causes:
        return "no root cause given"
    c = causes[0]
    return ", ".join(f"{k} {c[k]}" for k in ("Service", "Region", "UsageType") if c.get(k))
