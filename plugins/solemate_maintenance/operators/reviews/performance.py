"""The monthly performance report: the month's latency, errors and availability against the KPI
targets, the days that missed, and right-sizing hints for ECS and RDS."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from solemate_maintenance.charts import Chart, Series, publish_charts
from solemate_maintenance.config import EcsService, Kpis, RightSizing
from solemate_maintenance.findings import Finding, Measurement, Severity, Status
from solemate_maintenance.metric_queries import MetricQuery
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.window import TimeWindow, month_reviewed, report_date

DAY = 86400
HOUR = 3600


def _alb_queries(prefix: str, dims: dict[str, str], period: int) -> list[MetricQuery]:
    def alb(name: str, metric: str, stat: str, return_data: bool = True) -> MetricQuery:
        return MetricQuery(id=f"{prefix}{name}", namespace="AWS/ApplicationELB", metric=metric, stat=stat,
                           period=period, dimensions=dims, return_data=return_data)

    return [alb("p95", "TargetResponseTime", "p95"), alb("p99", "TargetResponseTime", "p99"),
            alb("requests", "RequestCount", "Sum"), alb("target5xx", "HTTPCode_Target_5XX_Count", "Sum", False),
            alb("elb5xx", "HTTPCode_ELB_5XX_Count", "Sum", False),
            # RequestCount leaves out what the load balancer refused before choosing a target (a 503 with
            # no healthy target): those count in the denominator too, or an outage would read as no data.
            MetricQuery(id=f"{prefix}errors", period=period,
                        expression=f"100 * (FILL({prefix}target5xx, 0) + FILL({prefix}elb5xx, 0)) / "
                                   f"(FILL({prefix}requests, 0) + FILL({prefix}elb5xx, 0))")]


class PerformanceReportOperator(MaintenanceCheckOperator):
    """P95/P99 latency, error rate and availability for the month reviewed, each against its KPI
    target (a missed month is P3, with the days that missed); ECS services and the RDS instance
    chronically under-used or saturated get a right-sizing hint (P4). Two charts go to the report.

    :param load_balancer_name: the production ALB.
    :param kpis: the ``kpis`` section (targets).
    :param cluster: the ECS cluster; :param services: its services.
    :param db_instance_identifier: the RDS instance.
    :param right_sizing: the ``right_sizing`` section of the platform config.
    :param bucket: reports bucket (the charts); :param reports_prefix: the reports' key prefix.
    """

    template_fields: Sequence[str] = (*MaintenanceCheckOperator.template_fields, "load_balancer_name", "bucket")

    def __init__(self, *, load_balancer_name: str, kpis: Kpis, cluster: str, services: list[EcsService],
                 db_instance_identifier: str, right_sizing: RightSizing, bucket: str, reports_prefix: str,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.load_balancer_name = load_balancer_name
        self.kpis = kpis
        self.cluster = cluster
        self.services = services
        self.db_instance_identifier = db_instance_identifier
        self.right_sizing = right_sizing
        self.bucket = bucket
        self.reports_prefix = reports_prefix

    def checked_window(self, context: Any) -> TimeWindow:
        return month_reviewed(context)

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        month = self.checked_window(context)
        label = month.start.strftime("%B %Y")
        elb = self.client("elbv2")
        try:
            arn = elb.describe_load_balancers(Names=[self.load_balancer_name])["LoadBalancers"][0]["LoadBalancerArn"]
        except elb.exceptions.LoadBalancerNotFoundException:
            yield Finding(check="performance.load_balancer", resource=self.load_balancer_name, status=Status.WARNING,
                          severity=Severity.P3, summary="load balancer not found: the month's KPIs cannot be measured")
            return
        dims = {"LoadBalancer": arn.split(":loadbalancer/", 1)[1]}
        usage = self._usage_queries()
        points = self.metrics_hook.get_metric_points(
            [*_alb_queries("m_", dims, month.seconds - month.seconds % 60), *_alb_queries("d_", dims, DAY), *usage],
            month)

        def whole(query_id: str) -> float | None:
            values = [v for _, v in points.get(query_id, [])]
            return values[0] if values else None

        daily = {name: points.get(f"d_{name}", []) for name in ("p95", "p99", "errors", "requests")}
        kpis = {
            "p95_ms": ("P95 response time", _ms(whole("m_p95")), self.kpis.response_time_p95_ms, "ms", "above",
                       [(t, v * 1000) for t, v in daily["p95"]]),
            "p99_ms": ("P99 response time", _ms(whole("m_p99")), self.kpis.response_time_p99_ms, "ms", "above",
                       [(t, v * 1000) for t, v in daily["p99"]]),
            "error_rate_percent": ("error rate", whole("m_errors"), self.kpis.error_rate_percent, "%", "above",
                                   daily["errors"]),
            "availability_percent": ("availability", None if whole("m_errors") is None else 100 - whole("m_errors"),
                                     self.kpis.availability_percent, "%", "below",
                                     [(t, 100 - v) for t, v in daily["errors"]]),
        }
        attainment = {}
        for key, (name, value, target, unit, bad_when, per_day) in kpis.items():
            missed = [t for t, v in per_day if (v > target if bad_when == "above" else v < target)]
            met = value is not None and (value <= target if bad_when == "above" else value >= target)
            attainment[key] = {"name": name, "target": target, "value": None if value is None else round(value, 4),
                               "met": met,
                               "days": len(per_day), "days_missed": [t.strftime("%Y-%m-%d") for t in missed]}
            yield self._kpi_finding(key, name, value, target, unit, bad_when, missed, len(per_day), label)
        yield from self._right_sizing(points)
        charts = [
            Chart(name="performance-latency", title=f"Daily P95 / P99 response time, {label}", unit="ms",
                  series=[Series("P95", kpis["p95_ms"][5]), Series("P99", kpis["p99_ms"][5])],
                  limit=self.kpis.response_time_p95_ms, limit_label="P95 target"),
            Chart(name="performance-errors", title=f"Daily 5xx error rate, {label}", unit="%",
                  series=[Series("error rate", daily["errors"])], limit=self.kpis.error_rate_percent,
                  limit_label="target"),
        ]
        store = self.report_store(self.bucket, self.reports_prefix)
        published = publish_charts(store, context["ti"].dag_id, report_date(context), [c for c in charts
                                                                              if any(s.points for s in c.series)])
        met = sum(a["met"] for a in attainment.values())
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": f"Performance {label}: {met} of {len(attainment)} KPI targets met "
                        f"(P95 {_shown(attainment['p95_ms']['value'], 'ms')}, availability "
                        f"{_shown(attainment['availability_percent']['value'], '%', 3)})",
            "month": month.start.date().isoformat(), "kpis": attainment,
            "requests": round(sum(v for _, v in daily["requests"])),
            "tables": {"KPIs against their targets": {
                "columns": ["KPI", "month", "target", "met", "days missed"],
                "rows": [[a["name"], a["value"], a["target"], "yes" if a["met"] else "NO",
                          f"{len(a['days_missed'])} of {a['days']}"] for a in attainment.values()]}},
            "charts": published})

    def _kpi_finding(self, key: str, name: str, value: float | None, target: float, unit: str, bad_when: str,
                     missed: list[datetime], days: int, label: str) -> Finding:
        metrics = {key: Measurement(value=None if value is None else round(value, 4), unit=unit, warning=target,
                                    bad_when=bad_when)}
        resource = f"{self.load_balancer_name} {label}"
        if value is None:
            return Finding(check=f"performance.{key}", resource=resource, status=Status.WARNING, severity=Severity.P3,
                           summary=f"{name}: no data for {label}", metrics=metrics)
        met = value <= target if bad_when == "above" else value >= target
        shown = f"{value:.4g} {unit}"
        days_text = (f"; missed on {len(missed)} of {days} days ("
                     f"{', '.join(t.strftime('%d') for t in missed[:10])}{'…' if len(missed) > 10 else ''})"
                     if missed else f"; every one of {days} days met it")
        if met:
            return Finding(check=f"performance.{key}", resource=resource, status=Status.OK,
                           summary=f"{name} {shown} meets the target {target:g} {unit}{days_text}", metrics=metrics,
                           details={"days_missed": [t.strftime("%Y-%m-%d") for t in missed]})
        return Finding(check=f"performance.{key}", resource=resource, status=Status.WARNING, severity=Severity.P3,
                       summary=f"{name} {shown} missed the target {target:g} {unit} for {label}{days_text}",
                       metrics=metrics, details={"days_missed": [t.strftime("%Y-%m-%d") for t in missed]})

    def _usage_queries(self) -> list[MetricQuery]:
        queries = []
        for i, service in enumerate(self.services):
            dims = {"ClusterName": self.cluster, "ServiceName": service.name}
            queries += [MetricQuery(id=f"u_ecs_cpu_{i}", namespace="AWS/ECS", metric="CPUUtilization", dimensions=dims,
                                    period=HOUR),
                        MetricQuery(id=f"u_ecs_memory_{i}", namespace="AWS/ECS", metric="MemoryUtilization",
                                    dimensions=dims, period=HOUR)]
        queries.append(MetricQuery(id="u_rds_cpu", namespace="AWS/RDS", metric="CPUUtilization",
                                   dimensions={"DBInstanceIdentifier": self.db_instance_identifier}, period=HOUR))
        return queries

    def _right_sizing(self, points: dict[str, list[tuple[datetime, float]]]) -> Iterable[Finding]:
        limits = self.right_sizing
        targets = [(f"u_ecs_cpu_{i}", f"{s.name} CPU", "ECS service") for i, s in enumerate(self.services)]
        targets += [(f"u_ecs_memory_{i}", f"{s.name} memory", "ECS service") for i, s in enumerate(self.services)]
        targets.append(("u_rds_cpu", f"{self.db_instance_identifier} CPU", "RDS instance"))
        for query_id, resource, kind in targets:
            values = [v for _, v in points.get(query_id, [])]
            if len(values) < 24:
                continue
            average = statistics.fmean(values)
            peak = sorted(values)[max(0, int(0.95 * len(values)) - 1)]  # P95 of the hourly averages
            metrics = {"average_percent": Measurement(value=round(average, 2), unit="%"),
                       "p95_hourly_percent": Measurement(value=round(peak, 2), unit="%")}
            if average <= limits.underused_average_percent and peak <= limits.underused_peak_percent:
                hint = (f"under-used all month (average {average:.0f} %, P95 hour {peak:.0f} %): a smaller "
                        f"{'task size' if kind == 'ECS service' else 'instance class'} would do")
            elif peak >= limits.saturated_peak_percent:
                hint = (f"saturated (P95 hour {peak:.0f} %, average {average:.0f} %): scale up or out before it "
                        "limits the service")
            else:
                yield Finding(check="performance.right_sizing", resource=resource, status=Status.OK, metrics=metrics,
                              summary=f"sized right (average {average:.0f} %, P95 hour {peak:.0f} %)")
                continue
            yield Finding(check="performance.right_sizing", resource=resource, status=Status.WARNING,
                          severity=Severity.P4, summary=hint, metrics=metrics)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _shown(value: float | None, unit: str, digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}f} {unit}"
