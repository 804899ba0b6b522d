"""Application health: the public health endpoint and the load balancer's view of its targets."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from solemate_maintenance.config import Lower, Upper
from solemate_maintenance.findings import (
    Finding,
    Measurement,
    Severity,
    Status,
    measurement,
    threshold_finding,
)
from solemate_maintenance.metric_queries import MetricQuery
from solemate_maintenance.operators.base import MaintenanceCheckOperator
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.series import series_finding

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook


class ApplicationHealthOperator(MaintenanceCheckOperator):
    """GET the health endpoint and read ALB target health.

    Unreachable or non-2xx endpoint, or a load balancer with no healthy target, is P1.
    Some unhealthy targets are P2 (partial degradation); slow responses are P3/P2.

    :param endpoint: URL of the application's health check.
    :param load_balancer_name: name of the Application Load Balancer in front of the service.
    :param timeout_seconds: HTTP timeout for the health request.
    :param latency_ms: warning/critical thresholds for the health request's latency.
    """

    template_fields = (*MaintenanceCheckOperator.template_fields, "endpoint", "load_balancer_name")

    def __init__(self, *, endpoint: str, load_balancer_name: str, timeout_seconds: float = 10,
                 latency_ms: Upper | None = None, lookback_minutes: int | None = None, period_seconds: int = 300,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The targets' health over this window too (ALB HealthyHostCount), not only at run time.
        self.history_minutes = lookback_minutes
        self.period_seconds = period_seconds
        self.endpoint = endpoint
        self.load_balancer_name = load_balancer_name
        self.timeout_seconds = timeout_seconds
        self.latency_ms = latency_ms or Upper(warning=1000, critical=5000)

    @cached_property
    def elb_hook(self) -> AwsBaseHook:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, client_type="elbv2")

    @property
    def lookback_minutes(self) -> int | None:
        return self.history_minutes

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        yield self._endpoint_finding()
        yield self._targets_finding()
        if self.history_minutes:
            yield from self._targets_history(context)

    def _targets_history(self, context: Any) -> Iterable[Finding]:
        """Any stretch of the window without a healthy target (P1: the application was unreachable)."""
        from solemate_maintenance.window import TimeWindow

        client = self.elb_hook.conn
        try:
            balancer = client.describe_load_balancers(Names=[self.load_balancer_name])["LoadBalancers"][0]
        except client.exceptions.LoadBalancerNotFoundException:
            return  # the live check already says so (P1)
        dimension = balancer["LoadBalancerArn"].split(":loadbalancer/", 1)[1]
        groups = client.describe_target_groups(LoadBalancerArn=balancer["LoadBalancerArn"])["TargetGroups"]
        queries = [MetricQuery(id=f"healthy_{i}", namespace="AWS/ApplicationELB", metric="HealthyHostCount",
                               stat="Minimum", period=self.period_seconds,
                               dimensions={"TargetGroup": g["TargetGroupArn"].split(":", 5)[5],
                                           "LoadBalancer": dimension})
                   for i, g in enumerate(groups)]
        if not queries:
            return
        points = self.metrics_hook.get_metric_points(queries, TimeWindow.ending_at_run(context, self.history_minutes))
        for i, group in enumerate(groups):
            yield series_finding(
                check="application.healthy_targets_history", resource=f"{self.load_balancer_name}/"
                f"{group['TargetGroupName']}", label="fewest healthy targets", metric="healthy_targets",
                points=points[f"healthy_{i}"], unit="targets", threshold=Lower(warning=0, critical=0),
                period=timedelta(seconds=self.period_seconds), warning_severity=Severity.P1,
                critical_severity=Severity.P1, missing_severity=Severity.P4)

    def _endpoint_finding(self) -> Finding:
        check = "application.endpoint"
        import requests

        started = time.perf_counter()
        try:
            response = requests.get(self.endpoint, timeout=self.timeout_seconds, allow_redirects=False)
        except requests.RequestException as exc:
            return Finding(
                check=check, resource=self.endpoint, status=Status.CRITICAL, severity=Severity.P1,
                summary=f"health endpoint unreachable ({type(exc).__name__})",
                details={"error": trim(scrub(str(exc)), 300), "timeout_seconds": self.timeout_seconds},
            )
        latency_ms = (time.perf_counter() - started) * 1000
        if not response.ok:
            return Finding(
                check=check, resource=self.endpoint, status=Status.CRITICAL, severity=Severity.P1,
                summary=f"health endpoint returned HTTP {response.status_code}",
                details={"status_code": response.status_code, "body": trim(response.text, 200)},
                metrics={"latency_ms": measurement(latency_ms, "ms", self.latency_ms)},
            )
        finding = threshold_finding(
            check=check, resource=self.endpoint, label=f"HTTP {response.status_code}, latency",
            metric="latency_ms", value=latency_ms, unit="ms", threshold=self.latency_ms,
            warning_severity=Severity.P3, critical_severity=Severity.P2,
        )
        return finding.model_copy(update={"details": {"status_code": response.status_code}})

    def _targets_finding(self) -> Finding:
        check = "application.alb_targets"
        client = self.elb_hook.conn
        try:
            balancers = client.describe_load_balancers(Names=[self.load_balancer_name])["LoadBalancers"]
        except client.exceptions.LoadBalancerNotFoundException:
            return Finding(check=check, resource=self.load_balancer_name, status=Status.CRITICAL,
                           severity=Severity.P1, summary="load balancer not found")
        groups = client.describe_target_groups(LoadBalancerArn=balancers[0]["LoadBalancerArn"])["TargetGroups"]
        states: dict[str, list[str]] = {}
        for group in groups:
            health = client.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
            for target in health["TargetHealthDescriptions"]:
                state = target["TargetHealth"]["State"]
                states.setdefault(state, []).append(f"{group['TargetGroupName']}/{target['Target']['Id']}")
        healthy = len(states.get("healthy", []))
        unhealthy = {s: t for s, t in states.items() if s != "healthy"}
        total = healthy + sum(len(t) for t in unhealthy.values())
        details = {"targets_by_state": {s: len(t) for s, t in states.items()},
                   "unhealthy_targets": sorted(t for ts in unhealthy.values() for t in ts)[:20]}
        metrics = {"healthy_targets": Measurement(value=healthy, unit="targets", critical=0, bad_when="below")}
        if healthy == 0:
            return Finding(check=check, resource=self.load_balancer_name, status=Status.CRITICAL,
                           severity=Severity.P1, summary=f"no healthy targets (0 of {total})",
                           details=details, metrics=metrics)
        if unhealthy:
            return Finding(check=check, resource=self.load_balancer_name, status=Status.WARNING,
                           severity=Severity.P2,
                           summary=f"{total - healthy} of {total} targets not healthy",
                           details=details, metrics=metrics)
        return Finding(check=check, resource=self.load_balancer_name, status=Status.OK,
                       summary=f"{healthy} of {total} targets healthy", details=details, metrics=metrics)
