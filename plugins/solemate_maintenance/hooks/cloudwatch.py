"""CloudWatch metrics, read in batches with GetMetricData."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from solemate_maintenance.window import TimeWindow

# GetMetricData accepts at most 500 queries per request.
MAX_QUERIES_PER_CALL = 500

Reducer = Literal["max", "min", "avg", "sum", "last"]


@dataclass(frozen=True)
class MetricQuery:
    """One GetMetricData query: a metric statistic, or a metric-math expression over other ids."""

    id: str
    namespace: str = ""
    metric: str = ""
    dimensions: dict[str, str] = field(default_factory=dict)
    stat: str = "Average"
    period: int = 300
    expression: str | None = None
    return_data: bool = True

    def to_api(self) -> dict:
        if self.expression is not None:
            return {"Id": self.id, "Expression": self.expression, "Period": self.period,
                    "ReturnData": self.return_data}
        return {
            "Id": self.id,
            "MetricStat": {
                "Metric": {
                    "Namespace": self.namespace,
                    "MetricName": self.metric,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions.items()],
                },
                "Period": self.period,
                "Stat": self.stat,
            },
            "ReturnData": self.return_data,
        }


@dataclass(frozen=True)
class MetricSeries:
    id: str
    values: tuple[float, ...]

    def reduce(self, how: Reducer) -> float | None:
        """Collapse the series to one number; None when CloudWatch had no datapoints."""
        if not self.values:
            return None
        if how == "last":
            return self.values[-1]
        return {"max": max, "min": min, "sum": sum, "avg": statistics.fmean}[how](self.values)


class CloudWatchMetricsHook(AwsBaseHook):
    """Read many metrics in few calls. Results come back oldest first, keyed by query id."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["client_type"] = "cloudwatch"
        super().__init__(*args, **kwargs)

    def get_metric_data(self, queries: Sequence[MetricQuery], window: TimeWindow) -> dict[str, MetricSeries]:
        collected: dict[str, list[tuple]] = {q.id: [] for q in queries if q.return_data}
        for batch in _batches(queries):
            kwargs = {
                "MetricDataQueries": [q.to_api() for q in batch],
                "StartTime": window.start,
                "EndTime": window.end,
                "ScanBy": "TimestampAscending",
            }
            while True:
                response = self.conn.get_metric_data(**kwargs)
                for result in response.get("MetricDataResults", []):
                    collected.setdefault(result["Id"], []).extend(
                        zip(result.get("Timestamps", []), result.get("Values", []), strict=False)
                    )
                token = response.get("NextToken")
                if not token:
                    break
                kwargs["NextToken"] = token
        return {
            query_id: MetricSeries(query_id, tuple(v for _, v in sorted(points, key=lambda p: p[0])))
            for query_id, points in collected.items()
        }


def _batches(queries: Sequence[MetricQuery]) -> Iterable[Sequence[MetricQuery]]:
    # An expression must travel with the metrics it references, so expressions force one batch.
    if any(q.expression for q in queries) and len(queries) > MAX_QUERIES_PER_CALL:
        raise ValueError("metric-math queries must fit in one GetMetricData call (500 queries)")
    for start in range(0, len(queries), MAX_QUERIES_PER_CALL):
        yield queries[start : start + MAX_QUERIES_PER_CALL]
