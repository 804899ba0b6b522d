"""CloudWatch metric queries and series: plain values, importable without boto3 (DAG parse time)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Literal

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
