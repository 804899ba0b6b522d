"""Cost Explorer in the sandbox: answers computed from a cost ledger instead of fixed replies.

moto 5.2.5 answers GetCostAndUsage only from a queue of canned replies keyed by the exact request
body, and returns HTTP 500 for GetCostForecast and GetAnomalies. Here every query is answered from
one ledger (cost per day and service, and the anomalies Cost Anomaly Detection found), so any month,
granularity or grouping the operators ask for is consistent with every other. moto's canned-reply
queue still wins when a test fills it. Every call is counted, per operation, for the cache's tests.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from moto.ce.models import CostExplorerBackend
from moto.ce.responses import CostExplorerResponse
from moto.core.exceptions import JsonRESTError


@dataclass
class CostLedger:
    daily: dict[date, dict[str, float]] = field(default_factory=dict)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    calls: Counter = field(default_factory=Counter)

    def reset(self) -> None:
        self.daily.clear()
        self.anomalies.clear()
        self.calls.clear()


LEDGER = CostLedger()


class _DataUnavailable(JsonRESTError):
    def __init__(self, message: str) -> None:
        super().__init__("DataUnavailableException", message)


def _day(value: str) -> date:
    return date.fromisoformat(value[:10])


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]


def _periods(start: date, end: date, granularity: str) -> list[tuple[date, date]]:
    if granularity == "DAILY":
        return [(d, d + timedelta(days=1)) for d in _days(start, end)]
    periods, cursor = [], start
    while cursor < end:
        following = (cursor.replace(day=1) + timedelta(days=32)).replace(day=1)
        periods.append((cursor, min(following, end)))
        cursor = following
    return periods


def _amount(value: float) -> dict[str, str]:
    return {"Amount": f"{value:.10f}", "Unit": "USD"}


def get_cost_and_usage(self: CostExplorerBackend, body: str) -> dict[str, Any]:
    LEDGER.calls["GetCostAndUsage"] += 1
    if body in self.cost_usage_results or self.cost_usage_results_queue:
        return _moto_get_cost_and_usage(self, body)
    request = json.loads(body)
    start, end = _day(request["TimePeriod"]["Start"]), _day(request["TimePeriod"]["End"])
    metrics = request.get("Metrics") or ["UnblendedCost"]
    grouped = any(g.get("Key") == "SERVICE" for g in request.get("GroupBy") or [])
    results = []
    for period_start, period_end in _periods(start, end, request.get("Granularity", "MONTHLY")):
        by_service: dict[str, float] = defaultdict(float)
        for day in _days(period_start, period_end):
            for service, cost in LEDGER.daily.get(day, {}).items():
                by_service[service] += cost
        entry: dict[str, Any] = {"TimePeriod": {"Start": period_start.isoformat(), "End": period_end.isoformat()},
                                 "Estimated": False}
        if grouped:
            entry["Total"] = {}
            entry["Groups"] = [{"Keys": [service], "Metrics": {m: _amount(cost) for m in metrics}}
                               for service, cost in sorted(by_service.items())]
        else:
            entry["Total"] = {m: _amount(sum(by_service.values())) for m in metrics}
            entry["Groups"] = []
        results.append(entry)
    return {"ResultsByTime": results, "DimensionValueAttributes": [],
            "GroupDefinitions": request.get("GroupBy") or []}


def get_cost_forecast(self: CostExplorerResponse) -> str:
    """The mean of the 14 days before the forecast starts, for each remaining day; the prediction
    interval widens with the spread of those days, as a real forecast's does."""
    LEDGER.calls["GetCostForecast"] += 1
    request = json.loads(self.body)
    start, end = _day(request["TimePeriod"]["Start"]), _day(request["TimePeriod"]["End"])
    history = [sum(LEDGER.daily.get(start - timedelta(days=i), {}).values()) for i in range(1, 15)]
    history = [h for h in history if h]
    if not history:
        raise _DataUnavailable("Insufficient amount of historical data to generate forecast.")
    mean = sum(history) / len(history)
    spread = (max(history) - min(history)) / 2
    days = len(_days(start, end))
    return json.dumps({"Total": _amount(mean * days),
                       "ForecastResultsByTime": [{
                           "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
                           "MeanValue": f"{mean * days:.10f}",
                           "PredictionIntervalLowerBound": f"{(mean - spread) * days:.10f}",
                           "PredictionIntervalUpperBound": f"{(mean + spread) * days:.10f}"}]})


def get_anomalies(self: CostExplorerResponse) -> str:
    LEDGER.calls["GetAnomalies"] += 1
    request = json.loads(self.body)
    interval = request["DateInterval"]
    start = _day(interval["StartDate"])
    end = _day(interval["EndDate"]) if interval.get("EndDate") else date.max
    found = [a for a in LEDGER.anomalies if start <= _day(a["AnomalyStartDate"]) <= end]
    size = int(request.get("MaxResults") or 100)
    offset = int(request.get("NextPageToken") or 0)
    page = found[offset:offset + size]
    reply: dict[str, Any] = {"Anomalies": page}
    if offset + size < len(found):
        reply["NextPageToken"] = str(offset + size)
    return json.dumps(reply)


_moto_get_cost_and_usage = CostExplorerBackend.get_cost_and_usage


def apply() -> None:
    CostExplorerBackend.get_cost_and_usage = get_cost_and_usage  # type: ignore[method-assign]
    CostExplorerResponse.get_cost_forecast = get_cost_forecast  # type: ignore[attr-defined]
    CostExplorerResponse.get_anomalies = get_anomalies  # type: ignore[attr-defined]
