"""ElastiCache (Redis) health: status, CPU, memory, hit ratio, evictions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from solemate_maintenance.config import ElastiCacheCheck
from solemate_maintenance.findings import Finding, Severity, Status, threshold_finding
from solemate_maintenance.metric_queries import MetricQuery, MetricSeries
from solemate_maintenance.operators.base import MaintenanceCheckOperator
from solemate_maintenance.series import series_finding
from solemate_maintenance.window import TimeWindow

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook


class ElastiCacheHealthOperator(MaintenanceCheckOperator):
    """Check a Redis cache cluster.

    Missing or not ``available`` is P2: sessions and carts degrade, checkout still works against the
    database. Metric thresholds: warning P3, critical P2; a low hit ratio is P3 either way.

    :param cache_cluster_id: ElastiCache cluster id.
    :param thresholds: the `checks.elasticache` section of the platform config.
    """

    template_fields = (*MaintenanceCheckOperator.template_fields, "cache_cluster_id")

    def __init__(self, *, cache_cluster_id: str, thresholds: ElastiCacheCheck | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cache_cluster_id = cache_cluster_id
        self.thresholds = thresholds or ElastiCacheCheck()

    @cached_property
    def hook(self) -> AwsBaseHook:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name,
                           client_type="elasticache")

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        resource = self.cache_cluster_id
        client = self.hook.conn
        try:
            cluster = client.describe_cache_clusters(CacheClusterId=resource)["CacheClusters"][0]
        except client.exceptions.CacheClusterNotFoundFault:
            yield Finding(check="elasticache.status", resource=resource, status=Status.CRITICAL,
                          severity=Severity.P2, summary="cache cluster not found")
            return
        state = cluster["CacheClusterStatus"]
        details = {"engine": f"{cluster.get('Engine')} {cluster.get('EngineVersion', '')}".strip(),
                   "node_type": cluster.get("CacheNodeType"), "nodes": cluster.get("NumCacheNodes")}
        yield Finding(
            check="elasticache.status", resource=resource,
            status=Status.OK if state == "available" else Status.CRITICAL,
            severity=None if state == "available" else Severity.P2,
            summary="available" if state == "available" else f"cluster is {state!r}, not available",
            details=details,
        )

        t = self.thresholds
        window = TimeWindow.ending_at_run(context, t.lookback_minutes)
        dims = {"CacheClusterId": resource}

        def query(query_id: str, name: str, stat: str) -> MetricQuery:
            return MetricQuery(id=query_id, namespace="AWS/ElastiCache", metric=name, stat=stat,
                               period=t.period_seconds, dimensions=dims)

        points = self.metrics_hook.get_metric_points(
            [
                query("cpu", "EngineCPUUtilization", "Average"),
                query("memory", "DatabaseMemoryUsagePercentage", "Average"),
                query("hits", "CacheHits", "Sum"),
                query("misses", "CacheMisses", "Sum"),
                query("evictions", "Evictions", "Sum"),
            ],
            window,
        )
        series = {key: MetricSeries(key, tuple(v for _, v in values)) for key, values in points.items()}
        period = timedelta(seconds=t.period_seconds)
        yield series_finding(check="elasticache.cpu_utilization", resource=resource,
                             label="peak EngineCPUUtilization", metric="cpu_percent", points=points["cpu"], unit="%",
                             threshold=t.cpu_percent, period=period,
                             warning_severity=Severity.P3, critical_severity=Severity.P2)
        yield series_finding(check="elasticache.memory", resource=resource,
                             label="peak DatabaseMemoryUsagePercentage", metric="memory_percent",
                             points=points["memory"], unit="%", threshold=t.memory_percent, period=period,
                             warning_severity=Severity.P3, critical_severity=Severity.P2)
        hits, misses = series["hits"].reduce("sum"), series["misses"].reduce("sum")
        lookups = (hits or 0) + (misses or 0)
        hit_ratio = None if hits is None or lookups == 0 else 100 * hits / lookups
        yield threshold_finding(check="elasticache.hit_ratio", resource=resource, label="cache hit ratio",
                                metric="hit_ratio_percent", value=hit_ratio, unit="%",
                                threshold=t.hit_ratio_percent,
                                warning_severity=Severity.P3, critical_severity=Severity.P3)
        yield threshold_finding(check="elasticache.evictions", resource=resource, label="evictions",
                                metric="evictions", value=series["evictions"].reduce("sum") or 0.0,
                                unit="keys", threshold=t.evictions,
                                warning_severity=Severity.P4, critical_severity=Severity.P3)
