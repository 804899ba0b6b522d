"""Close moto's fidelity gaps so production queries run unchanged (RDS restores: moto_rds; AWS
Backup jobs and recovery points: moto_backup; ECS task lifecycle: moto_ecs; S3 replication status:
moto_s3; target health: moto_elbv2; Logs Insights: moto_logs; listings that page: moto_paging; Cost
Explorer: moto_ce; the credential report's root row: moto_iam; drift detection, pending maintenance and service updates,
unconfirmed subscriptions: moto_monitoring;
CloudWatch here).

moto's GetMetricData knows only the basic statistics, evaluates little metric math, and scans
every datapoint once per period (far too slow for a week of metrics). This replaces it with an
indexed implementation that also supports percentile statistics (``p95``, ``p99.9``) and the
arithmetic subset of metric math (``+ - * /``, parentheses, numbers, ``FILL(m, value)``).
"""

from __future__ import annotations

import ast
import bisect
import json
import math
import operator
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.cloudwatch.exceptions import ValidationError
from moto.cloudwatch.models import Alarm, CloudWatchBackend, MetricAggregatedDatum
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.responses import ActionResult


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile, as CloudWatch reports for raw samples."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _statistic(stat: str) -> Callable[[list[float]], float]:
    basic: dict[str, Callable[[list[float]], float]] = {
        "Average": lambda v: sum(v) / len(v),
        "Sum": sum,
        "Minimum": min,
        "Maximum": max,
        "SampleCount": lambda v: float(len(v)),
    }
    if stat in basic:
        return basic[stat]
    if stat.startswith("p"):
        try:
            pct = float(stat[1:])
        except ValueError:
            pct = -1
        if 0 < pct <= 100:
            return lambda values: percentile(values, pct)
    raise ValidationError(f"The statistic {stat} is not supported by the sandbox")


def _utc(value: datetime) -> datetime:
    # moto keeps whatever it was given: naive UTC from HTTP requests, aware from direct calls.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _samples(datum: Any) -> list[float]:
    if isinstance(datum, MetricAggregatedDatum):
        # A statistic set carries no distribution; spread its mean so sums and counts stay right.
        count = int(datum.sample_count) or 1
        return [datum.sum / count] * count
    return [float(datum.value)]


def _metric_stat(query: dict, data: dict, start: datetime, end: datetime) -> dict[datetime, float]:
    stat = query["MetricStat"]
    metric = stat["Metric"]
    period = timedelta(seconds=int(stat["Period"]))
    wanted_dims = sorted((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
    unit = stat.get("Unit")
    buckets: dict[int, list[float]] = defaultdict(list)
    stamps, datapoints = data.get((metric["Namespace"], metric["MetricName"]), ((), ()))
    for position in range(bisect.bisect_left(stamps, start), bisect.bisect_left(stamps, end)):
        datum, stamp = datapoints[position], stamps[position]
        if sorted((d.name, d.value) for d in datum.dimensions) != wanted_dims:
            continue
        if unit and datum.unit != unit:
            continue
        buckets[int((stamp - start) / period)].extend(_samples(datum))
    reduce = _statistic(stat["Stat"])
    return {start + index * period: reduce(values) for index, values in sorted(buckets.items())}


class _Expression(ast.NodeVisitor):
    """Evaluate arithmetic metric math over timestamp-aligned series."""

    _ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}

    def __init__(self, series: dict[str, dict[datetime, float]]):
        self.series = series

    def evaluate(self, expression: str) -> dict[datetime, float]:
        try:
            tree = ast.parse(expression, mode="eval")
        except SyntaxError as exc:
            raise ValidationError(f"Invalid metric math expression: {expression}") from exc
        result = self.visit(tree.body)
        if not isinstance(result, dict):
            raise ValidationError(f"Metric math expression {expression!r} does not reference a metric")
        return result

    def generic_visit(self, node: ast.AST) -> Any:
        raise ValidationError(f"Unsupported metric math construct: {ast.dump(node)[:60]}")

    def visit_Constant(self, node: ast.Constant) -> float:
        return float(node.value)

    def visit_Name(self, node: ast.Name) -> dict[datetime, float]:
        if node.id not in self.series:
            raise ValidationError(f"Metric math references unknown id {node.id!r}")
        return self.series[node.id]

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.USub):
            return {t: -v for t, v in value.items()} if isinstance(value, dict) else -value
        return value

    def visit_Call(self, node: ast.Call) -> dict[datetime, float]:
        if not isinstance(node.func, ast.Name) or node.func.id != "FILL" or len(node.args) != 2:
            raise ValidationError("Only FILL(metric, value) is supported among metric math functions")
        return _FillMarker(self.visit(node.args[0]), self.visit(node.args[1]))

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        op = self._ops.get(type(node.op))
        if op is None:
            raise ValidationError("Unsupported metric math operator")
        left, right = self.visit(node.left), self.visit(node.right)
        if not isinstance(left, dict) and not isinstance(right, dict):
            return op(left, right)
        stamps = _timestamps(left, right)
        out = {}
        for stamp in stamps:
            a, b = _value_at(left, stamp), _value_at(right, stamp)
            if a is None or b is None or (op is operator.truediv and b == 0):
                continue  # CloudWatch drops points where an operand is missing or the divisor is 0
            out[stamp] = op(a, b)
        return out


class _FillMarker(dict):
    """A series that answers a fill value for timestamps it lacks."""

    def __init__(self, series: dict[datetime, float], fill: float):
        super().__init__(series)
        self.fill = fill


def _timestamps(*operands: Any) -> list[datetime]:
    stamps: set[datetime] = set()
    real = [o for o in operands if isinstance(o, dict) and not isinstance(o, _FillMarker)]
    for operand in real or [o for o in operands if isinstance(o, dict)]:
        stamps.update(operand)
    return sorted(stamps)


def _value_at(operand: Any, stamp: datetime) -> float | None:
    if not isinstance(operand, dict):
        return operand
    if stamp in operand:
        return operand[stamp]
    return operand.fill if isinstance(operand, _FillMarker) else None


def _indexed(backend: CloudWatchBackend) -> dict[tuple[str, str], list]:
    """Datapoints by (namespace, metric). The stored ones are indexed once per version of the list (the
    sandbox replaces the list when it seeds, put_metric_data appends to it); the providers' computed
    metrics are added on every call, as moto computes them on the fly."""
    stored = backend.metric_data
    cached = getattr(backend, "_sandbox_index", None)
    if cached is None or cached[0] is not stored or cached[1] != len(stored):
        cached = (stored, len(stored), _by_metric(stored))
        backend._sandbox_index = cached
    computed = backend.aws_metric_data
    if not computed:
        return cached[2]
    # Few and small (e.g. S3's bucket sizes): only their metrics are indexed again, with the stored ones.
    keys = {(c.namespace, c.name) for c in computed}
    stored_too = [d for key in keys for d in cached[2].get(key, ((), ()))[1]]
    return {**cached[2], **_by_metric(stored_too + computed)}


def _by_metric(datapoints: list) -> dict[tuple[str, str], tuple[list[datetime], list]]:
    """(namespace, metric) -> (timestamps, datapoints), in time order, for bisecting a window."""
    grouped: dict[tuple[str, str], list] = defaultdict(list)
    for datum in datapoints:
        grouped[(datum.namespace, datum.name)].append((_utc(datum.timestamp), datum))
    index = {}
    for key, pairs in grouped.items():
        pairs.sort(key=lambda pair: pair[0])
        index[key] = ([stamp for stamp, _ in pairs], [datum for _, datum in pairs])
    return index


def get_metric_data(self: CloudWatchBackend, queries: list[dict[str, Any]], start_time: datetime,
                    end_time: datetime, scan_by: str = "TimestampAscending") -> list[dict[str, Any]]:
    start, end = _utc(start_time.replace(microsecond=0)), _utc(end_time.replace(microsecond=0))
    if start >= end:
        raise ValidationError("The parameter StartTime must be less than the parameter EndTime.")
    data = _indexed(self)

    series: dict[str, dict[datetime, float]] = {}
    for query in queries:
        if "MetricStat" in query:
            series[query["Id"]] = _metric_stat(query, data, start, end)
    evaluator = _Expression(series)
    for query in queries:
        if "Expression" in query:
            series[query["Id"]] = dict(evaluator.evaluate(query["Expression"]))

    results = []
    for query in queries:
        if not query.get("ReturnData", True):
            continue
        points = sorted(series[query["Id"]].items(), reverse=scan_by == "TimestampDescending")
        label = query.get("Label") or (query["MetricStat"]["Metric"]["MetricName"] if "MetricStat" in query
                                       else query["Id"])
        results.append({"id": query["Id"], "label": label, "values": [v for _, v in points],
                        "timestamps": [t for t, _ in points], "status_code": "Complete"})
    return results


def record_state_change(alarm: Any, old: str, new: str, reason: str, when: datetime) -> None:
    """Keep a state change as AWS's alarm history does (the sandbox also backdates some)."""
    if not hasattr(alarm, "state_history"):
        alarm.state_history = []
    alarm.state_history.append({"timestamp": _utc(when), "old": old, "new": new, "reason": reason})


_original_update_state = Alarm.update_state


def _update_state(self: Alarm, reason: str, reason_data: str, state_value: str) -> None:
    old = self.state_value
    _original_update_state(self, reason, reason_data, state_value)
    if old != state_value:
        record_state_change(self, old, state_value, reason, datetime.now(UTC))


def _date_param(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return _utc(value)
    from dateutil import parser

    return _utc(parser.isoparse(str(value)))


def describe_alarm_history(self: CloudWatchResponse) -> ActionResult:
    """DescribeAlarmHistory (moto 5.2.5 has none): state updates, newest first, paginated."""
    name, kind = self._get_param("AlarmName"), self._get_param("HistoryItemType")
    start, end = _date_param(self._get_param("StartDate")), _date_param(self._get_param("EndDate"))
    limit = int(self._get_param("MaxRecords") or 100)
    offset = int(self._get_param("NextToken") or 0)
    items = []
    if kind in (None, "", "StateUpdate"):
        for alarm in self.cloudwatch_backend.alarms.values():
            if name and alarm.name != name:
                continue
            for change in getattr(alarm, "state_history", []):
                if (start and change["timestamp"] < start) or (end and change["timestamp"] > end):
                    continue
                items.append({
                    "AlarmName": alarm.name, "AlarmType": "MetricAlarm", "Timestamp": change["timestamp"],
                    "HistoryItemType": "StateUpdate",
                    "HistorySummary": f"Alarm updated from {change['old']} to {change['new']}",
                    "HistoryData": json.dumps({"version": "1.0", "oldState": {"stateValue": change["old"]},
                                               "newState": {"stateValue": change["new"],
                                                            "stateReason": change["reason"]}})})
    items.sort(key=lambda item: item["Timestamp"], reverse=True)
    page = items[offset:offset + limit]
    result: dict[str, Any] = {"AlarmHistoryItems": page}
    if offset + limit < len(items):
        result["NextToken"] = str(offset + limit)
    return ActionResult(result)


def apply() -> None:
    """Install the patches (idempotent). The sandbox and the tests call this before using moto."""
    from sandbox import (
        moto_backup,
        moto_ce,
        moto_ecs,
        moto_elbv2,
        moto_iam,
        moto_logs,
        moto_monitoring,
        moto_paging,
        moto_rds,
        moto_s3,
    )

    CloudWatchBackend.get_metric_data = get_metric_data  # type: ignore[method-assign]
    Alarm.update_state = _update_state  # type: ignore[method-assign]
    CloudWatchResponse.describe_alarm_history = describe_alarm_history  # type: ignore[attr-defined]
    moto_logs.apply()
    moto_paging.apply()
    moto_rds.apply()
    moto_backup.apply()
    moto_ecs.apply()
    moto_elbv2.apply()
    moto_s3.apply()
    moto_ce.apply()
    moto_iam.apply()
    moto_monitoring.apply()
