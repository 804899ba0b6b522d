"""Service KPIs at the load balancer: response-time percentiles, error rate, availability."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from solemate_maintenance.config import KpiCheck, Kpis, Upper
from solemate_maintenance.findings import Finding, Measurement, Severity, Status, threshold_finding
from solemate_maintenance.metric_queries import MetricQuery, MetricSeries
from solemate_maintenance.operators.base import MaintenanceCheckOperator
from solemate_maintenance.series import judge, series_finding
from solemate_maintenance.window import TimeWindow

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook


class KpiOperator(MaintenanceCheckOperator):
    """Compare the day's ALB numbers with the KPI targets.

    Percentiles are computed by CloudWatch over the whole window (one period), not averaged from
    smaller periods, because averaging percentiles is wrong. A KPI above target is P3 (performance
    degradation); at twice the target, or an error rate above the configured critical level (5 % by
    default), it is P2.

    :param load_balancer_name: the Application Load Balancer in front of the service.
    :param kpis: the `kpis` section of the platform config.
    :param thresholds: the `checks.kpis` section of the platform config.
    """

    template_fields = (*MaintenanceCheckOperator.template_fields, "load_balancer_name")

    def __init__(self, *, load_balancer_name: str, kpis: Kpis, thresholds: KpiCheck | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.load_balancer_name = load_balancer_name
        self.kpis = kpis
        self.thresholds = thresholds or KpiCheck()

    @cached_property
    def elb_hook(self) -> AwsBaseHook:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, client_type="elbv2")

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        resource = self.load_balancer_name
        client = self.elb_hook.conn
        try:
            arn = client.describe_load_balancers(Names=[resource])["LoadBalancers"][0]["LoadBalancerArn"]
        except client.exceptions.LoadBalancerNotFoundException:
            yield Finding(check="kpi.load_balancer", resource=resource, status=Status.CRITICAL,
                          severity=Severity.P1, summary="load balancer not found: KPIs cannot be measured")
            return
        # CloudWatch names an ALB by the tail of its ARN: app/<name>/<id>.
        dims = {"LoadBalancer": arn.split(":loadbalancer/", 1)[1]}
        window = TimeWindow.ending_at_run(context, self.thresholds.lookback_minutes)
        period = window.seconds - window.seconds % 60

        def alb(query_id: str, name: str, stat: str, return_data: bool = True, every: int = period) -> MetricQuery:
            return MetricQuery(id=query_id, namespace="AWS/ApplicationELB", metric=name, stat=stat,
                               period=every, dimensions=dims, return_data=return_data)

        step = self.thresholds.period_seconds
        points = self.metrics_hook.get_metric_points(
            [
                alb("p95", "TargetResponseTime", "p95"),
                alb("p99", "TargetResponseTime", "p99"),
                alb("requests", "RequestCount", "Sum", return_data=False),
                alb("target5xx", "HTTPCode_Target_5XX_Count", "Sum", return_data=False),
                alb("elb5xx", "HTTPCode_ELB_5XX_Count", "Sum", return_data=False),
                # RequestCount leaves out requests refused before a target was chosen (503 with no healthy
                # target): they belong in the denominator, or an outage would exceed 100 % or read as no data.
                MetricQuery(id="error_rate", period=period,
                            expression="100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / "
                                       "(FILL(requests, 0) + FILL(elb5xx, 0))"),
                # The same per sub-window, for when it was bad (percentiles over the day stay one period).
                alb("p99_step", "TargetResponseTime", "p99", every=step),
                alb("requests_step", "RequestCount", "Sum", return_data=False, every=step),
                alb("target5xx_step", "HTTPCode_Target_5XX_Count", "Sum", return_data=False, every=step),
                alb("elb5xx_step", "HTTPCode_ELB_5XX_Count", "Sum", return_data=False, every=step),
                MetricQuery(id="error_rate_step", period=step,
                            expression="100 * (FILL(target5xx_step, 0) + FILL(elb5xx_step, 0)) / "
                                       "(FILL(requests_step, 0) + FILL(elb5xx_step, 0))"),
            ],
            window,
        )
        series = {key: MetricSeries(key, tuple(v for _, v in values)) for key, values in points.items()}
        for key, target in (("p95", self.kpis.response_time_p95_ms), ("p99", self.kpis.response_time_p99_ms)):
            seconds = series[key].reduce("max")
            finding = threshold_finding(
                check=f"kpi.response_time_{key}", resource=resource, label=f"{key.upper()} response time",
                metric=f"response_time_{key}_ms", value=None if seconds is None else seconds * 1000, unit="ms",
                threshold=Upper(warning=target, critical=2 * target),
                warning_severity=Severity.P3, critical_severity=Severity.P2,
            )
            p99_target = self.kpis.response_time_p99_ms
            slow = judge([(t, v * 1000) for t, v in points["p99_step"]],
                         Upper(warning=p99_target, critical=2 * p99_target), timedelta(seconds=step))
            if finding.is_problem and slow.spans:
                finding = finding.model_copy(update={"summary": f"{finding.summary} — P99 over target "
                                                                f"{slow.when('ms')}"})
            yield finding
        yield series_finding(
            check="kpi.error_rate_peak", resource=resource, label=f"worst {step // 60}-min 5xx rate",
            metric="error_rate_peak_percent", points=points["error_rate_step"], unit="%",
            threshold=self.thresholds.peak_error_rate_percent, period=timedelta(seconds=step),
            warning_severity=Severity.P2, critical_severity=Severity.P1,
        )
        error_rate = series["error_rate"].reduce("max")
        yield threshold_finding(
            check="kpi.error_rate", resource=resource, label="5xx error rate", metric="error_rate_percent",
            value=error_rate, unit="%",
            threshold=Upper(warning=self.kpis.error_rate_percent,
                            critical=max(self.kpis.error_rate_percent, self.thresholds.error_rate_critical_percent)),
            warning_severity=Severity.P3, critical_severity=Severity.P2,
        )
        if error_rate is not None:
            availability = 100 - error_rate
            target = self.kpis.availability_percent
            ok = availability >= target
            yield Finding(
                check="kpi.availability", resource=resource, status=Status.OK if ok else Status.WARNING,
                severity=None if ok else Severity.P3,
                summary=f"availability {availability:.3f} % ({'meets' if ok else 'below'} target {target} %)",
                details={"definition": "share of requests not answered with a 5xx"},
                metrics={"availability_percent": Measurement(value=round(availability, 4), unit="%",
                                                             warning=target, bad_when="below")},
            )
