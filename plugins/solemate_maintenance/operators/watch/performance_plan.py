"""What the 15-minute watch measures: one GetMetricData call for the window (every metric of the
platform) and one for orders a week earlier, and how each series is judged.

Check names and resources are the daily checks' own, so that the daily report recognises a problem
the watch already opened as an incident.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import fmean

from solemate_maintenance.config import Lower, PlatformConfig, Upper
from solemate_maintenance.findings import Severity, Status
from solemate_maintenance.incidents import Observation
from solemate_maintenance.metric_queries import MetricQuery
from solemate_maintenance.notifiers.messages import next_step_for
from solemate_maintenance.series import Point, SeriesVerdict, judge

MIB = 1024**2


@dataclass(frozen=True)
class Judged:
    """One series to judge: how to read it from the answers, its threshold and severities."""

    check: str
    resource: str
    label: str
    unit: str
    threshold: Upper | Lower
    warning: Severity
    critical: Severity
    points: Callable[[dict[str, list[Point]]], list[Point]]
    # How to say the worst value in words, from the answers at its time (default: value and unit).
    worded: Callable[[dict[str, list[Point]], datetime], str] | None = None


@dataclass(frozen=True)
class Targets:
    """What AWS said about the load balancer: its CloudWatch dimension and its target groups'."""

    load_balancer: str | None  # app/<name>/<id>; None: not found
    target_groups: dict[str, str]  # target group name -> targetgroup/<name>/<id>


def _series(query_id: str, scale: float = 1.0) -> Callable[[dict[str, list[Point]]], list[Point]]:
    return lambda answers: [(t, v * scale) for t, v in answers.get(query_id, [])]


def _ratio(numerator: str, denominator: str) -> Callable[[dict[str, list[Point]]], list[Point]]:
    """Running tasks as a percentage of desired, per datapoint (both must be there)."""
    def points(answers: dict[str, list[Point]]) -> list[Point]:
        desired = dict(answers.get(denominator, []))
        return [(t, 100 * v / desired[t]) for t, v in answers.get(numerator, []) if desired.get(t)]
    return points


class PerformancePlan:
    """The queries and judgements of one watch for the configured platform."""

    def __init__(self, config: PlatformConfig, targets: Targets) -> None:
        self.config = config
        self.targets = targets
        self.period = config.watch.performance.period_seconds
        self.queries: list[MetricQuery] = []
        self.judged: list[Judged] = []
        self._build()

    def _query(self, query_id: str, namespace: str, metric: str, dimensions: dict[str, str], stat: str,
               return_data: bool = True) -> None:
        self.queries.append(MetricQuery(id=query_id, namespace=namespace, metric=metric, dimensions=dimensions,
                                        stat=stat, period=self.period, return_data=return_data))

    def _judge(self, check: str, resource: str, label: str, unit: str, threshold: Upper | Lower,
               warning: Severity, critical: Severity, points: Callable, worded: Callable | None = None) -> None:
        self.judged.append(Judged(check, resource, label, unit, threshold, warning, critical, points, worded))

    def _build(self) -> None:
        config, checks, res = self.config, self.config.checks, self.config.resources
        kpis, watch = config.kpis, config.watch.performance
        alb = res.alb.name
        if self.targets.load_balancer:
            dims = {"LoadBalancer": self.targets.load_balancer}
            self._query("requests", "AWS/ApplicationELB", "RequestCount", dims, "Sum", return_data=False)
            self._query("target5xx", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", dims, "Sum", return_data=False)
            self._query("elb5xx", "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", dims, "Sum", return_data=False)
            # Who produced the error: the application (target 5xx) or the load balancer (no healthy target,
            # timeouts). Requests refused by the ALB never reach RequestCount: they join its denominator.
            self.queries.append(MetricQuery(id="target_error_rate", period=self.period,
                                            expression="100 * FILL(target5xx, 0) / FILL(requests, 0)"))
            self.queries.append(MetricQuery(id="elb_error_rate", period=self.period,
                                            expression="100 * FILL(elb5xx, 0) / (FILL(requests, 0) + FILL(elb5xx, 0))"))
            self._query("p95", "AWS/ApplicationELB", "TargetResponseTime", dims, "p95")
            self._query("p99", "AWS/ApplicationELB", "TargetResponseTime", dims, "p99")
            errors = Upper(warning=checks.kpis.error_rate_critical_percent,
                           critical=max(checks.kpis.error_rate_critical_percent, watch.unavailable_error_rate_percent))
            for source in ("target", "elb"):
                self._judge("kpi.error_rate_peak", f"{alb} ({source.upper() if source == 'elb' else source} 5xx)",
                            f"{'ELB' if source == 'elb' else 'target'} 5xx rate", "%", errors,
                            Severity.P2, Severity.P1, _series(f"{source}_error_rate"))
            for key, target in (("p95", kpis.response_time_p95_ms), ("p99", kpis.response_time_p99_ms)):
                self._judge(f"kpi.response_time_{key}", alb, f"{key.upper()} response time", "ms",
                            Upper(warning=target, critical=2 * target), Severity.P3, Severity.P2,
                            _series(key, 1000))
            for index, (name, dimension) in enumerate(sorted(self.targets.target_groups.items())):
                tg_dims = {"TargetGroup": dimension, "LoadBalancer": self.targets.load_balancer}
                self._query(f"healthy_{index}", "AWS/ApplicationELB", "HealthyHostCount", tg_dims, "Minimum")
                self._query(f"unhealthy_{index}", "AWS/ApplicationELB", "UnHealthyHostCount", tg_dims, "Maximum")
                self._judge("application.alb_targets", f"{alb}/{name}", "healthy targets", "targets",
                            Lower(warning=0, critical=0), Severity.P1, Severity.P1, _series(f"healthy_{index}"))
                self._judge("application.unhealthy_targets", f"{alb}/{name}", "unhealthy targets", "targets",
                            Upper(warning=1, critical=1), Severity.P2, Severity.P2, _series(f"unhealthy_{index}"))
        for index, service in enumerate(res.ecs.services):
            ecs = {"ClusterName": res.ecs.cluster, "ServiceName": service.name}
            resource = f"{res.ecs.cluster}/{service.name}"
            self._query(f"running_{index}", "ECS/ContainerInsights", "RunningTaskCount", ecs, "Average")
            self._query(f"desired_{index}", "ECS/ContainerInsights", "DesiredTaskCount", ecs, "Average")
            self._query(f"ecs_cpu_{index}", "AWS/ECS", "CPUUtilization", ecs, "Average")
            self._query(f"ecs_memory_{index}", "AWS/ECS", "MemoryUtilization", ecs, "Average")
            # Below 100 % of desired is P2; none running (0 %) is P1: the service is down.
            self._judge("ecs.task_count", resource, "running tasks", "% of desired",
                        Lower(warning=99.9, critical=0), Severity.P2, Severity.P1,
                        _ratio(f"running_{index}", f"desired_{index}"),
                        _tasks_in_words(f"running_{index}", f"desired_{index}"))
            self._judge("ecs.cpu_utilization", resource, "CPUUtilization", "%", checks.ecs.cpu_percent,
                        Severity.P3, Severity.P2, _series(f"ecs_cpu_{index}"))
            self._judge("ecs.memory_utilization", resource, "MemoryUtilization", "%", checks.ecs.memory_percent,
                        Severity.P3, Severity.P2, _series(f"ecs_memory_{index}"))
        rds, db = checks.rds, {"DBInstanceIdentifier": res.rds.instance_id}
        for query_id, metric, stat, check, label, unit, scale, threshold in (
            ("rds_cpu", "CPUUtilization", "Average", "rds.cpu_utilization", "CPUUtilization", "%", 1, rds.cpu_percent),
            ("rds_connections", "DatabaseConnections", "Maximum", "rds.connections", "DatabaseConnections",
             "connections", 1, rds.connections),
            ("rds_memory", "FreeableMemory", "Minimum", "rds.freeable_memory", "FreeableMemory", "MiB", 1 / MIB,
             watch.freeable_memory_mb),
            ("rds_read", "ReadLatency", "Average", "rds.read_latency", "ReadLatency", "ms", 1000, rds.read_latency_ms),
            ("rds_write", "WriteLatency", "Average", "rds.write_latency", "WriteLatency", "ms", 1000,
             rds.write_latency_ms),
        ):
            self._query(query_id, "AWS/RDS", metric, db, stat)
            self._judge(check, res.rds.instance_id, label, unit, threshold, Severity.P3, Severity.P2,
                        _series(query_id, scale))
        cache, redis = checks.elasticache, {"CacheClusterId": res.elasticache.cluster_id}
        self._query("redis_cpu", "AWS/ElastiCache", "EngineCPUUtilization", redis, "Average")
        self._query("redis_memory", "AWS/ElastiCache", "DatabaseMemoryUsagePercentage", redis, "Maximum")
        self._query("redis_evictions", "AWS/ElastiCache", "Evictions", redis, "Sum")
        for check, label, unit, query_id, threshold, warning, critical in (
            ("elasticache.cpu_utilization", "EngineCPUUtilization", "%", "redis_cpu", cache.cpu_percent,
             Severity.P3, Severity.P2),
            ("elasticache.memory", "DatabaseMemoryUsagePercentage", "%", "redis_memory", cache.memory_percent,
             Severity.P3, Severity.P2),
            ("elasticache.evictions", "evictions", "keys", "redis_evictions", cache.evictions, Severity.P4,
             Severity.P3),
        ):
            self._judge(check, res.elasticache.cluster_id, label, unit, threshold, warning, critical,
                        _series(query_id))
        namespace = res.business_metrics_namespace
        self._query("payments", namespace, "PaymentSuccessRate", {}, "Average")
        self._query("orders", namespace, "OrdersPerMinute", {}, "Average")
        self._judge("business.payment_success_rate", namespace, "payment success rate", "%",
                    checks.business.payment_success_rate_percent, Severity.P2, Severity.P1, _series("payments"))

    @property
    def week_ago_queries(self) -> list[MetricQuery]:
        return [q for q in self.queries if q.id == "orders"]

    def observations(self, answers: dict[str, list[Point]], week_ago: dict[str, list[Point]],
                     window_start: datetime, window_end: datetime) -> list[Observation]:
        period = timedelta(seconds=self.period)
        observed = [self._observe(item, judge(item.points(answers), item.threshold, period), answers)
                    for item in self.judged]
        observed.append(self._orders(answers.get("orders", []), week_ago.get("orders", []), window_start,
                                     window_end))
        return observed

    def _observe(self, item: Judged, verdict: SeriesVerdict, answers: dict[str, list[Point]]) -> Observation:
        key = f"{item.check}|{item.resource}"
        step = _next_step(item.check)
        if not verdict.has_data:
            return Observation(key=key, check=item.check, resource=item.resource, severity=None,
                               summary=f"{item.label}: no data in the window", has_data=False,
                               period=verdict.period, next_step=step)
        shown = f"{verdict.worst:.4g} {item.unit}".strip()
        if verdict.status is Status.OK:
            return Observation(key=key, check=item.check, resource=item.resource, severity=None,
                               summary=f"{item.label} {shown} at worst", period=verdict.period, next_step=step)
        critical = verdict.status is Status.CRITICAL
        limit = item.threshold.critical if critical else item.threshold.warning
        relation = "≥" if isinstance(item.threshold, Upper) else "≤"
        summary = f"{item.label} {shown} ({relation} {limit:g}) on {item.resource}"
        if item.worded is not None and verdict.worst_at is not None:
            summary = f"{item.worded(answers, verdict.worst_at)} on {item.resource}"
        return Observation(
            key=key, check=item.check, resource=item.resource,
            severity=item.critical if critical else item.warning, label=item.label,
            summary=summary,
            first_bad=verdict.first_bad, last_bad=verdict.last_bad, still_bad=verdict.still_bad,
            peak=verdict.worst, peak_at=verdict.worst_at, unit=item.unit,
            bad_when="above" if isinstance(item.threshold, Upper) else "below", next_step=step,
            period=verdict.period)

    def _orders(self, now: Sequence[Point], week_ago: Sequence[Point], start: datetime,
                end: datetime) -> Observation:
        """Orders per minute against the same window a week earlier: one judgement for the window (a
        5-minute comparison of a shop's orders is noise)."""
        namespace = self.config.resources.business_metrics_namespace
        key, check = f"business.orders_per_minute|{namespace}", "business.orders_per_minute"
        step = _next_step(check)
        window = end - start
        if not now or not week_ago or not fmean(v for _, v in week_ago):
            return Observation(key=key, check=check, resource=namespace, severity=None,
                               summary="orders per minute: no data or no baseline a week earlier",
                               has_data=False, period=window, next_step=step)
        current, before = fmean(v for _, v in now), fmean(v for _, v in week_ago)
        drop = max(0.0, 100 * (before - current) / before)
        verdict = judge([(now[0][0], drop)], self.config.checks.business.orders_drop_percent, window)
        summary = f"{current:.1f} orders/min, {drop:.0f} % below the same window last week ({before:.1f})"
        if verdict.status is Status.OK:
            return Observation(key=key, check=check, resource=namespace, severity=None, summary=summary,
                               period=window, next_step=step)
        severity = Severity.P2 if verdict.status is Status.CRITICAL else Severity.P3
        return Observation(key=key, check=check, resource=namespace, severity=severity, summary=summary,
                           label="orders per minute against a week earlier",
                           first_bad=now[0][0], last_bad=now[0][0], still_bad=True, peak=drop, peak_at=now[0][0],
                           unit="% drop", next_step=step, period=window)


def _tasks_in_words(running: str, desired: str) -> Callable[[dict[str, list[Point]], datetime], str]:
    def worded(answers: dict[str, list[Point]], moment: datetime) -> str:
        now, wanted = dict(answers.get(running, [])).get(moment), dict(answers.get(desired, [])).get(moment)
        return f"{now:.0f} of {wanted:.0f} tasks running" if now is not None and wanted else "tasks missing"
    return worded


def _next_step(check: str) -> str:
    return next_step_for(check) or ""
