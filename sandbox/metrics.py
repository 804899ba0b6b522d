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
    target_group_dimension: str = ""  # targetgroup/<name>/<id>


def _daily(ts: datetime, low: float, high: float) -> float:
    """A smooth day curve: quiet at night UTC, busy in the evening."""
    phase = (ts.hour * 60 + ts.minute) / 1440 * 2 * math.pi
    return low + (high - low) * (0.5 - 0.5 * math.cos(phase - math.pi / 3))


Incident = tuple[datetime, frozenset[str]]


def _active(incidents: Sequence[Incident], ts: datetime, before: timedelta) -> frozenset[str]:
    return frozenset().union(*(problems for anchor, problems in incidents if anchor - before <= ts < anchor))


def running_tasks(ts: datetime, growing: Sequence[datetime]) -> int:
    """The service's task count (Container Insights): 2-4 with the day's load, and climbing for four weeks
    to each "capacity_growth" anchor, towards the service's 20-task maximum."""
    tasks = 2 + round(_daily(ts, 0, 2))
    for anchor in growing:
        if anchor - GROWTH <= ts < anchor:
            tasks = max(tasks, round(4 + 10 * (ts - (anchor - GROWTH)) / GROWTH))
    return tasks


def generate(names: Names, start: datetime, end: datetime, incidents: Sequence[Incident],
             seed: int = 7, origin: datetime | None = None) -> Iterator[tuple[str, dict]]:
    """Yield (namespace, MetricData entry) pairs every 5 minutes from start to end.

    Each incident is (anchor, problems): the problems distort the data only shortly before that
    anchor (a run's logical date), like an incident would: 3 hours for resource metrics, the whole
    day for the ALB latency KPI. Several incidents describe several days, each with its own problems.
    """
    rng = random.Random(seed)
    origin = origin or start  # where free storage starts falling: one line across several spans
    growing = [anchor for anchor, problems in incidents if "capacity_growth" in problems]
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
        tasks = running_tasks(ts, growing)  # autoscaling keeps desired = running when healthy
        yield from _entries("ECS/ContainerInsights", ecs, ts, {"RunningTaskCount": tasks, "DesiredTaskCount": tasks})
        cpu = 92 + jitter(0, 4) if "rds_high_cpu" in recent_problems else _daily(ts, 15, 40) + jitter(-3, 3)
        yield from _entries("AWS/RDS", {"DBInstanceIdentifier": names.db_instance}, ts, {
            "CPUUtilization": cpu,
            "DatabaseConnections": round(_daily(ts, 60, 180) + jitter(-10, 10)),
            "ReadLatency": 0.002 + jitter(0, 0.001),
            "WriteLatency": 0.003 + jitter(0, 0.001),
            "FreeStorageSpace": 60 * GIB - (ts - origin).total_seconds() * 1000,
            "FreeableMemory": 6 * GIB + jitter(-0.2, 0.2) * GIB,
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
        if names.target_group_dimension:
            yield from _entries("AWS/ApplicationELB", {"TargetGroup": names.target_group_dimension, **alb}, ts,
                                {"HealthyHostCount": 2, "UnHealthyHostCount": 0})
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
    """Hourly capacity and traffic metrics outside the 5-minute `spans` (the service's task count from
    Container Insights among them, see running_tasks)."""
    rng = random.Random(seed)
    growing = [anchor for anchor, problems in incidents if "capacity_growth" in problems]
    ecs = {"ClusterName": names.cluster, "ServiceName": names.service}
    ts = (end - length).replace(minute=0, second=0, microsecond=0)
    alb = {"LoadBalancer": names.alb_dimension}
    while ts < end:
        jitter = rng.uniform
        if not any(span_start <= ts < span_end for span_start, span_end in spans):
            tasks = running_tasks(ts, growing)
            yield from _entries("ECS/ContainerInsights", ecs, ts,
                                {"RunningTaskCount": tasks, "DesiredTaskCount": tasks})
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


# Timed episodes a test stages on top of a seeded world, at any time of day (the watch's incidents):
# kind -> what it does to the metrics in [start, end).
EPISODES = {
    "rds_cpu": "RDS CPUUtilization 95 %",
    "alb_5xx": "target 5xx on 20 % of the ALB's requests",
    "payment_failures": "payment success rate 70 %",
    "ecs_tasks": "1 of 4 ECS tasks running (Container Insights)",
    "slow_p99": "every response takes about 3 s (P95/P99 3 s)",
    "targets_down": "no healthy target in the ALB's target group",
    "alb_502": "the ALB answers 502 to 30 % of requests (its targets do not answer)",
}
Episode = tuple[str, datetime, datetime]


def overlay(backend: object, names: Names, episodes: Sequence[Episode]) -> None:
    """Replace the seeded datapoints inside each episode's [start, end) with the episode's (new datapoint
    objects; the seeded ones are shared with other worlds and never changed in place)."""
    unknown = {kind for kind, _, _ in episodes} - EPISODES.keys()
    if unknown:
        raise ValueError(f"unknown episodes {sorted(unknown)}; known: {sorted(EPISODES)}")
    alb = {"LoadBalancer": names.alb_dimension}
    ecs = {"ClusterName": names.cluster, "ServiceName": names.service}
    for kind, start, end in episodes:
        if kind == "alb_5xx":
            requests = {d.timestamp: d.value for d in _matching(backend, "AWS/ApplicationELB", "RequestCount", alb,
                                                                start, end)}
            _replace(backend, "AWS/ApplicationELB", alb, start, end,
                     {"HTTPCode_Target_5XX_Count": lambda ts, r=requests: round(r.get(ts, 5000) * 0.2)})
        elif kind == "alb_502":
            requests = {d.timestamp: d.value for d in _matching(backend, "AWS/ApplicationELB", "RequestCount", alb,
                                                                start, end)}
            refused = {"HTTPCode_ELB_5XX_Count": lambda ts, r=requests: round(r.get(ts, 5000) * 0.3),
                       "HTTPCode_ELB_502_Count": lambda ts, r=requests: round(r.get(ts, 5000) * 0.3)}
            _replace(backend, "AWS/ApplicationELB", alb, start, end, refused)
        elif kind == "rds_cpu":
            _replace(backend, "AWS/RDS", {"DBInstanceIdentifier": names.db_instance}, start, end,
                     {"CPUUtilization": lambda ts: 95.0})
        elif kind == "payment_failures":
            _replace(backend, names.business_namespace, {}, start, end, {"PaymentSuccessRate": lambda ts: 70.0})
        elif kind == "ecs_tasks":
            _replace(backend, "ECS/ContainerInsights", ecs, start, end,
                     {"RunningTaskCount": lambda ts: 1, "DesiredTaskCount": lambda ts: 4})
        elif kind == "targets_down":
            _replace(backend, "AWS/ApplicationELB", {"TargetGroup": names.target_group_dimension, **alb}, start, end,
                     {"HealthyHostCount": lambda ts: 0, "UnHealthyHostCount": lambda ts: 2})
        elif kind == "slow_p99":
            # Every request of the episode answered in about 3 s.
            _replace(backend, "AWS/ApplicationELB", alb, start, end,
                     {"TargetResponseTime": lambda ts: [2.9 + i / 200 for i in range(20)]})


def _dims_of(datum: object) -> dict[str, str]:
    return {d.name: d.value for d in datum.dimensions}


def _matching(backend: object, namespace: str, metric: str, dimensions: dict[str, str], start: datetime,
              end: datetime) -> list:
    return [d for d in backend.metric_data if d.namespace == namespace and d.name == metric
            and _dims_of(d) == dimensions and start <= d.timestamp < end]


def _replace(backend: object, namespace: str, dimensions: dict[str, str], start: datetime, end: datetime,
             values: dict[str, object]) -> None:
    stamps: set[datetime] = set()
    doomed: set[int] = set()
    for metric in values:
        for datum in _matching(backend, namespace, metric, dimensions, start, end):
            stamps.add(datum.timestamp)
            doomed.add(id(datum))
    if not stamps:  # nothing seeded there: the episode has the seeded data's 5-minute rhythm
        stamp = start
        while stamp < end:
            stamps.add(stamp)
            stamp += STEP
    backend.metric_data = [d for d in backend.metric_data if id(d) not in doomed]
    entries = []
    for stamp in sorted(stamps):
        for metric, value_at in values.items():
            value = value_at(stamp)
            entry = {"MetricName": metric, "Timestamp": stamp, "Dimensions": _dims(dimensions)}
            entry.update({"Values": value} if isinstance(value, list) else {"Value": value})
            entries.append(entry)
    backend.put_metric_data(namespace, entries)
