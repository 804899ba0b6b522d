"""Synthetic CloudWatch metrics for every metric the checks read: a healthy week, or a broken one."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

STEP = timedelta(minutes=5)
GIB = 1024**3


@dataclass(frozen=True)
class Names:
    cluster: str
    service: str
    db_instance: str
    cache_cluster: str
    alb_dimension: str  # app/<name>/<id>
    business_namespace: str


def _daily(ts: datetime, low: float, high: float) -> float:
    """A smooth day curve: quiet at night UTC, busy in the evening."""
    phase = (ts.hour * 60 + ts.minute) / 1440 * 2 * math.pi
    return low + (high - low) * (0.5 - 0.5 * math.cos(phase - math.pi / 3))


Incident = tuple[datetime, frozenset[str]]


def _active(incidents: Sequence[Incident], ts: datetime, before: timedelta) -> frozenset[str]:
    return frozenset().union(*(problems for anchor, problems in incidents if anchor - before <= ts < anchor))


def generate(names: Names, start: datetime, end: datetime, incidents: Sequence[Incident],
             seed: int = 7, origin: datetime | None = None) -> Iterator[tuple[str, dict]]:
    """Yield (namespace, MetricData entry) pairs every 5 minutes from start to end.

    Each incident is (anchor, problems): the problems distort the data only shortly before that
    anchor (a run's logical date), like an incident would: 3 hours for resource metrics, the whole
    day for the ALB latency KPI. Several incidents describe several days, each with its own problems.
    """
    rng = random.Random(seed)
    origin = origin or start  # where free storage starts falling: one line across several spans
    ts = start
    while ts < end:
        recent_problems = _active(incidents, ts, timedelta(hours=3))
        day_problems = _active(incidents, ts, timedelta(days=1))
        jitter = rng.uniform
        ecs = {"ClusterName": names.cluster, "ServiceName": names.service}
        yield from _entries("AWS/ECS", ecs, ts, {
            "CPUUtilization": _daily(ts, 20, 45) + jitter(-3, 3),
            "MemoryUtilization": 50 + jitter(-4, 4),
        })
        cpu = 92 + jitter(0, 4) if "rds_high_cpu" in recent_problems else _daily(ts, 15, 40) + jitter(-3, 3)
        yield from _entries("AWS/RDS", {"DBInstanceIdentifier": names.db_instance}, ts, {
            "CPUUtilization": cpu,
            "DatabaseConnections": round(_daily(ts, 60, 180) + jitter(-10, 10)),
            "ReadLatency": 0.002 + jitter(0, 0.001),
            "WriteLatency": 0.003 + jitter(0, 0.001),
            "FreeStorageSpace": 60 * GIB - (ts - origin).total_seconds() * 1000,
        })
        hits = _daily(ts, 3000, 12000)
        yield from _entries("AWS/ElastiCache", {"CacheClusterId": names.cache_cluster}, ts, {
            "EngineCPUUtilization": _daily(ts, 8, 25) + jitter(-2, 2),
            "DatabaseMemoryUsagePercentage": 45 + jitter(-2, 2),
            "CacheHits": round(hits),
            "CacheMisses": round(hits * 0.04),
            "Evictions": 0,
        })
        payments = 88 + jitter(0, 2) if "payment_failures" in recent_problems else 99.4 + jitter(0, 0.5)
        yield from _entries(names.business_namespace, {}, ts, {
            "PaymentSuccessRate": payments,
            "OrdersPerMinute": _daily(ts, 15, 60) * (1 + jitter(-0.05, 0.05)),
            "CartAbandonmentRate": 68 + jitter(-3, 3),
        })
        alb = {"LoadBalancer": names.alb_dimension}
        requests = round(_daily(ts, 2000, 9000))
        yield from _entries("AWS/ApplicationELB", alb, ts, {
            "RequestCount": requests,
            "HTTPCode_Target_5XX_Count": round(requests * 0.0002),
            "HTTPCode_ELB_5XX_Count": 0,
        })
        slow = 3.0 if "slow_responses" in day_problems else 1.0
        # Raw samples, so that CloudWatch-style percentiles have a distribution to work on.
        samples = [rng.lognormvariate(math.log(0.12), 0.45) * slow for _ in range(20)]
        yield "AWS/ApplicationELB", {"MetricName": "TargetResponseTime", "Timestamp": ts,
                                     "Dimensions": _dims(alb), "Values": samples, "Unit": "Seconds"}
        ts += STEP


def _dims(dimensions: dict[str, str]) -> list[dict[str, str]]:
    return [{"Name": k, "Value": v} for k, v in dimensions.items()]


def _entries(namespace: str, dimensions: dict[str, str], ts: datetime,
             values: dict[str, float]) -> Iterator[tuple[str, dict]]:
    for name, value in values.items():
        yield namespace, {"MetricName": name, "Timestamp": ts, "Dimensions": _dims(dimensions), "Value": value}


HOUR = timedelta(hours=1)
# Capacity planning reads four weeks; the 5-minute week above is too costly to build for 36 days, so
# the weeks before it are hourly (CloudWatch keeps hourly data for 15 months anyway).
GROWTH = timedelta(days=28)


def history(names: Names, spans: Sequence[tuple[datetime, datetime]], end: datetime, incidents: Sequence[Incident],
            length: timedelta, seed: int = 11) -> Iterator[tuple[str, dict]]:
    """Hourly capacity and traffic metrics outside the 5-minute `spans`, and the service's running
    task count (Container Insights) hourly up to `end`. "capacity_growth" makes the task count climb for four
    weeks to each anchor, towards the service's 20-task maximum."""
    rng = random.Random(seed)
    growing = [anchor for anchor, problems in incidents if "capacity_growth" in problems]
    ecs = {"ClusterName": names.cluster, "ServiceName": names.service}
    ts = (end - length).replace(minute=0, second=0, microsecond=0)
    alb = {"LoadBalancer": names.alb_dimension}
    while ts < end:
        jitter = rng.uniform
        tasks = 2 + round(_daily(ts, 0, 2))
        for anchor in growing:
            if anchor - GROWTH <= ts < anchor:
                tasks = max(tasks, round(4 + 10 * (ts - (anchor - GROWTH)) / GROWTH))
        yield from _entries("ECS/ContainerInsights", ecs, ts, {"RunningTaskCount": tasks})
        if not any(span_start <= ts < span_end for span_start, span_end in spans):
            yield from _entries("AWS/ECS", ecs, ts, {"CPUUtilization": _daily(ts, 20, 45) + jitter(-3, 3),
                                                     "MemoryUtilization": 50 + jitter(-4, 4)})
            yield from _entries("AWS/RDS", {"DBInstanceIdentifier": names.db_instance}, ts, {
                "CPUUtilization": _daily(ts, 15, 40) + jitter(-3, 3),
                "DatabaseConnections": round(_daily(ts, 60, 180) + jitter(-10, 10)),
                "FreeStorageSpace": 60 * GIB - (ts - spans[0][0]).total_seconds() * 1000})
            yield from _entries("AWS/ElastiCache", {"CacheClusterId": names.cache_cluster}, ts, {
                "DatabaseMemoryUsagePercentage": 45 + jitter(-2, 2)})
            # The monthly performance report's month: hourly ALB totals and a latency distribution.
            requests = round(_daily(ts, 2000, 9000)) * 12
            yield from _entries("AWS/ApplicationELB", alb, ts, {
                "RequestCount": requests, "HTTPCode_Target_5XX_Count": round(requests * 0.0002),
                "HTTPCode_ELB_5XX_Count": 0})
            yield "AWS/ApplicationELB", {"MetricName": "TargetResponseTime", "Timestamp": ts, "Dimensions": _dims(alb),
                                         "Values": [rng.lognormvariate(math.log(0.12), 0.45) for _ in range(20)],
                                         "Unit": "Seconds"}
        ts += HOUR
