"""CloudWatch metrics, read in batches with GetMetricData."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from solemate_maintenance.metric_queries import MAX_QUERIES_PER_CALL, MetricQuery, MetricSeries
from solemate_maintenance.window import TimeWindow


class CloudWatchMetricsHook(AwsBaseHook):
    """Read many metrics in few calls. Results come back oldest first, keyed by query id."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["client_type"] = "cloudwatch"
        super().__init__(*args, **kwargs)

    def get_metric_data(self, queries: Sequence[MetricQuery], window: TimeWindow) -> dict[str, MetricSeries]:
        return {query_id: MetricSeries(query_id, tuple(v for _, v in points))
                for query_id, points in self.get_metric_points(queries, window).items()}

    def get_metric_points(self, queries: Sequence[MetricQuery],
                          window: TimeWindow) -> dict[str, list[tuple[datetime, float]]]:
        """(timestamp, value) pairs per query id, oldest first: for trends that need the time axis."""
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
        return {query_id: sorted(points, key=lambda p: p[0]) for query_id, points in collected.items()}


def _batches(queries: Sequence[MetricQuery]) -> Iterable[Sequence[MetricQuery]]:
    # An expression must travel with the metrics it references, so expressions force one batch.
    if any(q.expression for q in queries) and len(queries) > MAX_QUERIES_PER_CALL:
        raise ValueError("metric-math queries must fit in one GetMetricData call (500 queries)")
    for start in range(0, len(queries), MAX_QUERIES_PER_CALL):
        yield queries[start : start + MAX_QUERIES_PER_CALL]
