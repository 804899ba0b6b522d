"""Capacity planning: the last weeks' daily peaks, their trend, and the days until each hits its limit.

Each metric is read hourly over the look-back that ends at the run's logical date, reduced to a
daily peak (the lowest value for a metric that runs out, like free storage), and fitted with a
least-squares line. Days until the line crosses the limit: under 30 is P3, under 7 P2. A chart per
metric goes next to the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from solemate_maintenance.charts import Chart, Series, publish_charts
from solemate_maintenance.config import CapacityCheck, EcsService
from solemate_maintenance.findings import Finding, Measurement, Severity, Status, classify, measurement
from solemate_maintenance.metric_queries import MetricQuery
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.window import TimeWindow, report_date

GB = 1024**3  # FreeStorageSpace is bytes; GiB, as the daily RDS check reads the same limit
HOUR = 3600
HORIZON_DAYS = 90  # a crossing further out than this is "not within 90 days", not a precise date


@dataclass(frozen=True)
class CapacityMetric:
    id: str
    label: str
    namespace: str
    metric: str
    dimensions: dict[str, str]
    limit: float
    unit: str
    # "up": runs out by growing (CPU, connections, tasks); "down": by shrinking (free storage).
    direction: Literal["up", "down"] = "up"
    scale: float = 1.0


@dataclass(frozen=True)
class Trend:
    days_with_data: int
    slope_per_day: float
    at_end: float  # the fitted value at the window's end
    latest_peak: float
    days_to_limit: float | None  # None: the trend never reaches it

    def fitted(self, day: float, last_day: float) -> float:
        return self.at_end + self.slope_per_day * (day - last_day)


def fit_trend(daily: list[tuple[float, float]], limit: float, direction: str) -> Trend:
    """Least squares over (day, value); days from the last day until the line reaches `limit`."""
    n = len(daily)
    xs, ys = [d for d, _ in daily], [v for _, v in daily]
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in daily) / spread if spread else 0.0
    at_end = mean_y + slope * (xs[-1] - mean_x)
    sign = 1 if direction == "up" else -1
    latest = ys[-1]
    if sign * (latest - limit) >= 0 or sign * (at_end - limit) >= 0:
        days: float | None = 0.0
    elif sign * slope > 0:
        days = (limit - at_end) / slope
    else:
        days = None
    return Trend(days_with_data=n, slope_per_day=slope, at_end=at_end, latest_peak=latest, days_to_limit=days)


class CapacityPlanningOperator(MaintenanceCheckOperator):
    """Trends of ECS CPU/memory and task count, RDS CPU/connections/free storage and Redis memory.

    :param cluster: the ECS cluster; each service's task count is judged against its ``max_tasks``
        (ECS Container Insights' RunningTaskCount).
    :param services: the ECS services.
    :param db_instance_identifier: the RDS instance.
    :param cache_cluster_id: the ElastiCache (Redis) cluster.
    :param thresholds: the ``checks.capacity`` section of the platform config.
    :param bucket: reports bucket (the charts go next to the report).
    :param reports_prefix: the reports' key prefix.
    """

    template_fields: Sequence[str] = (*MaintenanceCheckOperator.template_fields, "bucket")

    def __init__(self, *, cluster: str, services: list[EcsService], db_instance_identifier: str,
                 cache_cluster_id: str, thresholds: CapacityCheck, bucket: str, reports_prefix: str,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster
        self.services = services
        self.db_instance_identifier = db_instance_identifier
        self.cache_cluster_id = cache_cluster_id
        self.thresholds = thresholds
        self.bucket = bucket
        self.reports_prefix = reports_prefix

    @property
    def lookback_minutes(self) -> int:
        return self.thresholds.lookback_days * 24 * 60

    def metrics(self) -> list[CapacityMetric]:
        t = self.thresholds
        found: list[CapacityMetric] = []
        for i, service in enumerate(self.services):
            ecs = {"ClusterName": self.cluster, "ServiceName": service.name}
            found += [
                CapacityMetric(f"ecs_cpu_{i}", f"{service.name} CPU", "AWS/ECS", "CPUUtilization", ecs,
                               t.ecs_cpu_percent, "%"),
                CapacityMetric(f"ecs_memory_{i}", f"{service.name} memory", "AWS/ECS", "MemoryUtilization", ecs,
                               t.ecs_memory_percent, "%"),
                CapacityMetric(f"ecs_tasks_{i}", f"{service.name} running tasks", "ECS/ContainerInsights",
                               "RunningTaskCount", ecs, service.max_tasks, "tasks"),
            ]
        rds = {"DBInstanceIdentifier": self.db_instance_identifier}
        found += [
            CapacityMetric("rds_cpu", "RDS CPU", "AWS/RDS", "CPUUtilization", rds, t.rds_cpu_percent, "%"),
            CapacityMetric("rds_connections", "RDS connections", "AWS/RDS", "DatabaseConnections", rds,
                           t.rds_connections, "connections"),
            CapacityMetric("rds_free_storage", "RDS free storage", "AWS/RDS", "FreeStorageSpace", rds,
                           t.rds_free_storage_gb, "GB", direction="down", scale=1 / GB),
            CapacityMetric("redis_memory", "Redis memory", "AWS/ElastiCache", "DatabaseMemoryUsagePercentage",
                           {"CacheClusterId": self.cache_cluster_id}, t.redis_memory_percent, "%"),
        ]
        return found

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        window = self.checked_window(context)
        specs = self.metrics()
        queries = [MetricQuery(id=m.id, namespace=m.namespace, metric=m.metric, dimensions=m.dimensions,
                               stat="Average", period=HOUR) for m in specs]
        points = self.metrics_hook.get_metric_points(queries, window)
        rows, charts = [], []
        for spec in specs:
            daily = _daily_peaks(points.get(spec.id, []), spec, window)
            finding, trend = self._judge(spec, daily)
            yield finding
            if trend is None:
                rows.append([spec.label, len(daily), "—", "—", f"{spec.limit:g} {spec.unit}", finding.summary])
                continue
            rows.append([spec.label, trend.days_with_data, round(trend.latest_peak, 2),
                         f"{trend.slope_per_day:+.3g}/day", f"{spec.limit:g} {spec.unit}", _days_label(trend)])
            charts.append(_chart(spec, daily, trend, window))
        store = self.report_store(self.bucket, self.reports_prefix)
        published = publish_charts(store, context["ti"].dag_id, report_date(context), charts)
        soon = [r for r in rows if isinstance(r[-1], str) and r[-1].startswith("in ")]
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": f"Capacity: {len(soon)} of {len(specs)} metrics reach their limit within "
                        f"{HORIZON_DAYS} days",
            "window_days": self.thresholds.lookback_days,
            "tables": {"Trends (daily peaks)": {
                "columns": ["metric", "days", "latest peak", "trend", "limit", "limit reached"], "rows": rows}},
            "charts": published})

    def _judge(self, spec: CapacityMetric, daily: list[tuple[datetime, float]]) -> tuple[Finding, Trend | None]:
        check, resource = f"capacity.{spec.id.rsplit('_', 1)[0] if spec.id[-1].isdigit() else spec.id}", spec.label
        if not daily:
            return Finding(check=check, resource=resource, status=Status.WARNING, severity=Severity.P4,
                           summary=f"no {spec.namespace} {spec.metric} data in the last "
                                   f"{self.thresholds.lookback_days} days"
                                   + (": turn on Container Insights for the cluster"
                                      if spec.namespace == "ECS/ContainerInsights" else "")), None
        if len(daily) < self.thresholds.min_days:
            return Finding(check=check, resource=resource, status=Status.SKIPPED,
                           summary=f"only {len(daily)} day(s) of data; a trend needs {self.thresholds.min_days}"), None
        first = daily[0][0]
        trend = fit_trend([((d - first).total_seconds() / 86400, v) for d, v in daily], spec.limit, spec.direction)
        limits = self.thresholds.days_to_limit
        days = trend.days_to_limit
        metrics = {"days_to_limit": measurement(days, "days", limits),
                   "latest_peak": Measurement(value=round(trend.latest_peak, 4), unit=spec.unit)}
        status = classify(days, limits) if days is not None else Status.OK
        text = (f"peak {trend.latest_peak:.4g} {spec.unit}, trend {trend.slope_per_day:+.3g} {spec.unit}/day, "
                f"limit {spec.limit:g} {spec.unit}: {_days_label(trend)}")
        if status is Status.OK:
            return Finding(check=check, resource=resource, status=status, summary=text, metrics=metrics), trend
        severity = Severity.P2 if status is Status.CRITICAL else Severity.P3
        return Finding(check=check, resource=resource, status=status, severity=severity, metrics=metrics,
                       summary=f"{text}; plan the scaling now ({_remedy(spec)})"), trend


def _daily_peaks(points: list[tuple[datetime, float]], spec: CapacityMetric,
                 window: TimeWindow) -> list[tuple[datetime, float]]:
    """Peak (or trough, for "down" metrics) of the hourly averages per 24 hours, counted back from the
    window's end: whole days only, so a partial calendar day (a quiet night) never reads as a drop."""
    days: dict[datetime, list[float]] = {}
    for moment, value in points:
        if window.start <= moment < window.end:
            # A datapoint's timestamp starts its hour: the hour it describes ends an hour later.
            # In seconds: Airflow's window ends are pendulum datetimes, whose durations do not floor-divide.
            back = int((window.end - moment).total_seconds() - HOUR) // 86400
            day = window.end - timedelta(days=back)
            days.setdefault(day, []).append(value * spec.scale)
    pick = max if spec.direction == "up" else min
    return [(day, pick(values)) for day, values in sorted(days.items())]


def _days_label(trend: Trend) -> str:
    if trend.days_to_limit is None:
        return "not on this trend"
    if trend.days_to_limit <= 0:
        return "already reached"
    if trend.days_to_limit > HORIZON_DAYS:
        return f"not within {HORIZON_DAYS} days"
    return f"in {trend.days_to_limit:.0f} days"


def _remedy(spec: CapacityMetric) -> str:
    if spec.id.startswith("ecs_tasks"):
        return "raise the service's maximum tasks or make each task do more"
    if spec.id.startswith("ecs"):
        return "scale the service out or give its tasks more CPU/memory"
    if spec.id == "rds_free_storage":
        return "grow the allocated storage or enable storage autoscaling"
    if spec.id.startswith("rds"):
        return "a larger instance class, a read replica, or a connection pooler"
    return "a larger node type or another shard"


def _chart(spec: CapacityMetric, daily: list[tuple[datetime, float]], trend: Trend, window: TimeWindow) -> Chart:
    first, last = daily[0][0], daily[-1][0]
    last_day = (last - first).total_seconds() / 86400
    ahead = min(HORIZON_DAYS, max(14.0, (trend.days_to_limit or 0) + 3))
    projection = [(first + timedelta(days=d), trend.fitted(d, last_day)) for d in (0.0, last_day + ahead)]
    return Chart(name=f"capacity-{spec.id}", title=f"{spec.label}: daily peak over {len(daily)} days",
                 unit=spec.unit, limit=spec.limit,
                 series=[Series("daily peak", daily), Series("trend", projection, style="dashed")],
                 notes={"Window": f"{window.start.isoformat()} to {window.end.isoformat()}"})
