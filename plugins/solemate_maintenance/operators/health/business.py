"""Business metrics the application publishes: payments, orders, cart abandonment."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from solemate_maintenance.config import BusinessCheck
from solemate_maintenance.findings import Finding, Measurement, Severity, Status, classify, threshold_finding
from solemate_maintenance.metric_queries import MetricQuery, MetricSeries
from solemate_maintenance.operators.base import MaintenanceCheckOperator
from solemate_maintenance.series import series_finding
from solemate_maintenance.window import TimeWindow

ONE_WEEK = timedelta(days=7)


class BusinessMetricsOperator(MaintenanceCheckOperator):
    """Judge the business metrics over the run's window.

    Payment success rate under the critical threshold is P1 (payment processing failure). Orders per
    minute are compared with the same window one week earlier, so the daily and weekly rhythm of the
    shop does not raise false alarms. Cart abandonment is P3 at worst.

    :param namespace: CloudWatch namespace the application publishes to.
    :param thresholds: the `checks.business` section of the platform config.
    """

    template_fields = (*MaintenanceCheckOperator.template_fields, "namespace")

    def __init__(self, *, namespace: str = "SoleMate/Business", thresholds: BusinessCheck | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.namespace = namespace
        self.thresholds = thresholds or BusinessCheck()

    def _query(self, query_id: str, name: str) -> MetricQuery:
        return MetricQuery(id=query_id, namespace=self.namespace, metric=name, stat="Average",
                           period=self.thresholds.period_seconds)

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        t = self.thresholds
        window = TimeWindow.ending_at_run(context, t.lookback_minutes)
        points = self.metrics_hook.get_metric_points(
            [self._query("payments", "PaymentSuccessRate"), self._query("orders", "OrdersPerMinute"),
             self._query("abandonment", "CartAbandonmentRate")],
            window,
        )
        current = {key: MetricSeries(key, tuple(v for _, v in values)) for key, values in points.items()}
        previous = self.metrics_hook.get_metric_data([self._query("orders", "OrdersPerMinute")],
                                                     window.shifted(-ONE_WEEK))
        yield self._payments_finding(points["payments"], current["payments"].reduce("avg"), window)
        yield self._orders_finding(current["orders"].reduce("avg"), previous["orders"].reduce("avg"), window)
        yield threshold_finding(
            check="business.cart_abandonment", resource=self.namespace, label="cart abandonment",
            metric="cart_abandonment_percent", value=current["abandonment"].reduce("avg"), unit="%",
            threshold=t.cart_abandonment_percent,
            warning_severity=Severity.P4, critical_severity=Severity.P3,
        )

    def _payments_finding(self, points: list, average: float | None, window: TimeWindow) -> Finding:
        """Judged on its worst sub-window (one period), not the window's average: an hour at 70 % in a day at
        99.4 % averages to 98 %, yet it was an hour of failed payments (P1)."""
        finding = series_finding(
            check="business.payment_success_rate", resource=self.namespace,
            label=f"payment success rate (worst {self.thresholds.period_seconds // 60} min)",
            metric="payment_success_rate_percent", points=points, unit="%",
            threshold=self.thresholds.payment_success_rate_percent,
            period=timedelta(seconds=self.thresholds.period_seconds),
            warning_severity=Severity.P2, critical_severity=Severity.P1, missing_severity=Severity.P2,
        )
        if average is None:
            return finding
        return finding.model_copy(update={
            "summary": f"{finding.summary}; {average:.2f} % over the whole window",
            "metrics": {**finding.metrics, "payment_success_rate_window_percent": Measurement(value=round(average, 3),
                                                                                            unit="%")}})

    def _orders_finding(self, now: float | None, week_ago: float | None, window: TimeWindow) -> Finding:
        threshold = self.thresholds.orders_drop_percent
        check, resource = "business.orders_per_minute", self.namespace
        metrics = {
            "orders_per_minute": Measurement(value=now, unit="orders/min"),
            "orders_per_minute_week_ago": Measurement(value=week_ago, unit="orders/min"),
        }
        if now is None:
            return Finding(check=check, resource=resource, status=Status.CRITICAL, severity=Severity.P2,
                           summary="no OrdersPerMinute data: the shop may not be taking orders",
                           metrics=metrics, details={"window": window.as_dict()})
        if not week_ago:
            return Finding(check=check, resource=resource, status=Status.OK,
                           summary=f"{now:.1f} orders/min (no baseline from a week earlier)", metrics=metrics)
        drop = max(0.0, 100 * (week_ago - now) / week_ago)
        metrics["drop_percent"] = Measurement(value=round(drop, 2), unit="%", warning=threshold.warning,
                                              critical=threshold.critical, bad_when="above")
        status = classify(drop, threshold)
        severity = {Status.OK: None, Status.WARNING: Severity.P3, Status.CRITICAL: Severity.P2}[status]
        return Finding(
            check=check, resource=resource, status=status, severity=severity,
            summary=f"{now:.1f} orders/min, {drop:.0f} % below the same window last week ({week_ago:.1f})",
            metrics=metrics,
        )
