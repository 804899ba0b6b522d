"""The `monitoring` section: the guide's real-time layer (CloudWatch alarms and their SNS topics, the
overview dashboard, ECS auto scaling, pending updates, stack drift, the log pipeline) as it should
be. The daily and weekly runs check AWS against it; alarms change only with ``enforce: true``."""

from __future__ import annotations

import re
import string
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from solemate_maintenance.config.base import Percent, _Strict

AlarmSeverity = Literal["critical", "warning"]
Comparison = Literal["GreaterThanThreshold", "GreaterThanOrEqualToThreshold", "LessThanThreshold",
                     "LessThanOrEqualToThreshold"]
SubscriptionProtocol = Literal["email", "email-json", "sms", "https", "http", "lambda", "sqs", "firehose",
                               "application"]
BASIC_STATISTICS = ("Average", "Sum", "Minimum", "Maximum", "SampleCount")
# What an alarm's name and dimensions may refer to. {service} and {target_group...} make one alarm
# per ECS service / per target group of the load balancer; the others are single values.
PLACEHOLDERS = frozenset({"environment", "cluster", "service", "db_instance", "cache_cluster", "load_balancer",
                          "target_group", "target_group_name", "business_namespace"})


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _statistic(value: str) -> str:
    if value in BASIC_STATISTICS or re.fullmatch(r"p(\d{1,2}(\.\d{1,2})?|100)", value):
        return value
    raise ValueError(f"{value!r} is not a CloudWatch statistic ({', '.join(BASIC_STATISTICS)} or a percentile "
                     "such as p99)")


class AlarmMetric(_Strict):
    namespace: str = Field(min_length=1, max_length=255)
    metric: str = Field(min_length=1, max_length=255)
    dimensions: dict[str, str] = Field(default={}, max_length=30)
    statistic: str = "Average"
    # Within a metric-math alarm each metric has its own period; a plain alarm uses the alarm's.
    period_seconds: int | None = None

    @field_validator("statistic")
    @classmethod
    def _known_statistic(cls, value: str) -> str:
        return _statistic(value)


class AlarmPolicy(_Strict):
    """One alarm as the guide wants it. Either one metric (``metric`` …) or metric math
    (``expression`` over ``metrics``, e.g. the error rate ``100 * errors / requests``)."""

    name: str = Field(min_length=1, max_length=255)
    description: str = ""
    severity: AlarmSeverity
    namespace: str | None = None
    metric: str | None = None
    dimensions: dict[str, str] = Field(default={}, max_length=30)
    statistic: str = "Average"
    expression: str | None = Field(default=None, max_length=1024)
    metrics: dict[Annotated[str, Field(pattern=r"^[a-z][a-zA-Z0-9_]*$")], AlarmMetric] = {}
    threshold: float
    comparison: Comparison
    period_seconds: int = 300
    evaluation_periods: int = Field(default=1, ge=1)
    datapoints_to_alarm: int | None = Field(default=None, ge=1)
    treat_missing_data: Literal["missing", "notBreaching", "breaching", "ignore"] = "missing"

    @field_validator("statistic")
    @classmethod
    def _known_statistic(cls, value: str) -> str:
        return _statistic(value)

    @model_validator(mode="after")
    def _what_aws_accepts(self) -> AlarmPolicy:
        single = self.namespace is not None or self.metric is not None
        if single == (self.expression is not None):
            raise ValueError(f"alarm {self.name!r}: give either namespace and metric, or expression and metrics")
        if single and not (self.namespace and self.metric):
            raise ValueError(f"alarm {self.name!r}: a single-metric alarm needs both namespace and metric")
        if self.expression is not None:
            if "result" in self.metrics:
                raise ValueError(f"alarm {self.name!r}: 'result' is the expression's own id; name the metric otherwise")
            if not self.metrics:
                raise ValueError(f"alarm {self.name!r}: the expression needs its metrics")
            unknown = set(re.findall(r"\b[a-z][a-zA-Z0-9_]*\b", self.expression)) - set(self.metrics) - {"fill"}
            if unknown:
                raise ValueError(f"alarm {self.name!r}: the expression uses {sorted(unknown)}, not among its metrics "
                                 f"{sorted(self.metrics)}")
        periods = [self.period_seconds, *(m.period_seconds for m in self.metrics.values() if m.period_seconds)]
        for period in periods:
            if period not in (10, 20, 30) and (period <= 0 or period % 60):
                raise ValueError(f"alarm {self.name!r}: CloudWatch accepts a period of 10, 20, 30 or a multiple of "
                                 f"60 seconds, not {period}")
        total = self.period_seconds * self.evaluation_periods
        if total > 7 * 86400 or (self.period_seconds < 3600 and total > 86400):
            raise ValueError(f"alarm {self.name!r}: period x evaluation_periods is {total} s; CloudWatch evaluates "
                             "at most 7 days, and at most one day for periods under an hour")
        if self.datapoints_to_alarm and self.datapoints_to_alarm > self.evaluation_periods:
            raise ValueError(f"alarm {self.name!r}: datapoints_to_alarm ({self.datapoints_to_alarm}) exceeds "
                             f"evaluation_periods ({self.evaluation_periods})")
        texts = [self.name, *self.dimensions.values(),
                 *(v for m in self.metrics.values() for v in m.dimensions.values()), self.namespace or "",
                 *(m.namespace for m in self.metrics.values())]
        unknown = set().union(*(_placeholders(t) for t in texts)) - PLACEHOLDERS
        if unknown:
            raise ValueError(f"alarm {self.name!r}: unknown placeholder(s) {sorted(unknown)}; known: "
                             f"{sorted(PLACEHOLDERS)}")
        used, named = set().union(*(_placeholders(t) for t in texts)), _placeholders(self.name)
        for each, in_name in (("service", {"service"}), ("target group", {"target_group", "target_group_name"})):
            if used & ({"service"} if each == "service" else {"target_group", "target_group_name"}) and \
                    not named & in_name:
                raise ValueError(f"alarm {self.name!r}: it becomes one alarm per {each}, so its name must contain "
                                 f"{' or '.join('{' + p + '}' for p in sorted(in_name))} too")
        return self


def _alarm(name: str, severity: AlarmSeverity, description: str, **fields: object) -> AlarmPolicy:
    return AlarmPolicy(name=name, severity=severity, description=description, **fields)  # type: ignore[arg-type]


ECS_DIMENSIONS = {"ClusterName": "{cluster}", "ServiceName": "{service}"}
ALB_DIMENSIONS = {"LoadBalancer": "{load_balancer}"}


def default_alarms() -> list[AlarmPolicy]:
    """The guide's alarms: critical (application unavailable, payment failures) and warning
    (resources over 80 %, error rate over 5 %)."""
    prefix = "solemate-{environment}"
    return [
        _alarm(f"{prefix}-application-unavailable-{{target_group_name}}", "critical",
               "No healthy target behind the load balancer: the application is unavailable.",
               namespace="AWS/ApplicationELB", metric="HealthyHostCount", statistic="Minimum",
               dimensions={**ALB_DIMENSIONS, "TargetGroup": "{target_group}"}, threshold=1,
               comparison="LessThanThreshold", period_seconds=60, evaluation_periods=2, treat_missing_data="breaching"),
        _alarm(f"{prefix}-payment-failures", "critical",
               "Under 95 % of payments succeed: payment processing is failing.",
               namespace="{business_namespace}", metric="PaymentSuccessRate", statistic="Average", threshold=95,
               comparison="LessThanThreshold", period_seconds=300, evaluation_periods=1),
        _alarm(f"{prefix}-{{service}}-cpu-high", "warning", "ECS service CPU over 80 %.",
               namespace="AWS/ECS", metric="CPUUtilization", dimensions=ECS_DIMENSIONS, threshold=80,
               comparison="GreaterThanThreshold", period_seconds=300, evaluation_periods=2),
        _alarm(f"{prefix}-{{service}}-memory-high", "warning", "ECS service memory over 80 %.",
               namespace="AWS/ECS", metric="MemoryUtilization", dimensions=ECS_DIMENSIONS, threshold=80,
               comparison="GreaterThanThreshold", period_seconds=300, evaluation_periods=2),
        _alarm(f"{prefix}-rds-cpu-high", "warning", "RDS CPU over 80 %.",
               namespace="AWS/RDS", metric="CPUUtilization", dimensions={"DBInstanceIdentifier": "{db_instance}"},
               threshold=80, comparison="GreaterThanThreshold", period_seconds=300, evaluation_periods=2),
        _alarm(f"{prefix}-redis-memory-high", "warning", "ElastiCache memory over 80 %.",
               namespace="AWS/ElastiCache", metric="DatabaseMemoryUsagePercentage",
               dimensions={"CacheClusterId": "{cache_cluster}"}, threshold=80, comparison="GreaterThanThreshold",
               period_seconds=300, evaluation_periods=2),
        _alarm(f"{prefix}-error-rate-high", "warning", "More than 5 % of requests answered with a 5xx.",
               # FILL: the ALB publishes no 5xx count while there are none; without it the rate has no
               # value, and the alarm would sit in INSUFFICIENT_DATA on a healthy day.
               expression="100 * FILL(errors, 0) / requests", metrics={
                   "errors": AlarmMetric(namespace="AWS/ApplicationELB", metric="HTTPCode_Target_5XX_Count",
                                         dimensions=ALB_DIMENSIONS, statistic="Sum"),
                   "requests": AlarmMetric(namespace="AWS/ApplicationELB", metric="RequestCount",
                                           dimensions=ALB_DIMENSIONS, statistic="Sum")},
               threshold=5, comparison="GreaterThanThreshold", period_seconds=300, evaluation_periods=1),
    ]


SNS_TOPIC = r"^(arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:)?[A-Za-z0-9_-]{1,256}$"


class NotificationTopic(_Strict):
    """Where a severity's alarms notify: an SNS topic (name in the primary region, or ARN) and the
    kinds of subscription it must have confirmed (the guide: e-mail, SMS, the Slack integration)."""

    topic: str = Field(pattern=SNS_TOPIC)
    protocols: list[SubscriptionProtocol] = Field(min_length=1)


class OverviewDashboard(_Strict):
    name: str = Field(default="SoleMate-Overview", pattern=r"^[A-Za-z0-9_-]{1,255}$")
    # Metric groups the dashboard must show: group -> "Namespace/MetricName" it must contain.
    metric_groups: dict[str, list[Annotated[str, Field(pattern=r"^\S+/[^/\s]+$")]]] = Field(default_factory=lambda: {
        "application": ["AWS/ApplicationELB/RequestCount", "AWS/ApplicationELB/TargetResponseTime",
                        "AWS/ApplicationELB/HTTPCode_Target_5XX_Count"],
        "ecs": ["AWS/ECS/CPUUtilization", "AWS/ECS/MemoryUtilization"],
        "database": ["AWS/RDS/CPUUtilization", "AWS/RDS/DatabaseConnections", "AWS/RDS/FreeableMemory"],
        "cache": ["AWS/ElastiCache/DatabaseMemoryUsagePercentage", "AWS/ElastiCache/CacheHits"],
    })


class ScalingPolicy(_Strict):
    """The guide's ECS auto scaling: min and max tasks are each service's ``min_tasks``/``max_tasks``
    (resources.ecs.services); target tracking on these, with these cooldowns."""

    cpu_percent: Percent = 70
    memory_percent: Percent = 80
    requests_per_target: float = Field(default=1000, gt=0)
    scale_out_cooldown_seconds: int = Field(default=300, ge=0, le=86_400)
    scale_in_cooldown_seconds: int = Field(default=300, ge=0, le=86_400)


class PendingUpdates(_Strict):
    """The Friday "review and apply security updates", listed every day with deadlines."""

    # An update AWS applies on its own within this many days is P3 (plan it now); later ones P4.
    auto_apply_warning_days: int = Field(default=7, ge=1, le=90)
    # The current Fargate platform version; a service pinned to another misses its fixes (P4).
    ecs_platform_version: str = Field(default="1.4.0", pattern=r"^\d+\.\d+\.\d+$")


class StackDrift(_Strict):
    """CloudFormation drift of the platform's stacks (weekly)."""

    stacks: list[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$")]] = []
    timeout_minutes: int = Field(default=30, ge=1, le=24 * 60)
    poll_seconds: int = Field(default=30, ge=1, le=600)


class ErrorSummary(_Strict):
    """The guide's first log query, "find application errors", as a daily summary."""

    level_field: str = Field(default="level", pattern=r"^[A-Za-z_@][\w.]*$")
    levels: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]] = ["ERROR", "FATAL"]
    message_field: str = Field(default="message", pattern=r"^[A-Za-z_@][\w.]*$")
    top: int = Field(default=10, ge=1, le=100)
    max_rows: int = Field(default=10_000, ge=1, le=10_000)
    # New error messages (not in the previous day's summary) at or above this count are P3.
    new_error_min_count: int = Field(default=10, ge=1)


class LogPipeline(_Strict):
    """Logs flow from the application log groups through a Firehose stream to S3 and OpenSearch."""

    # Log groups (shell patterns) that must have a subscription filter to the delivery stream.
    subscribed_log_groups: list[str] = ["/ecs/*/application"]
    delivery_stream: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9_.-]{1,64}$")
    # DeliveryToS3/OpenSearch.DataFreshness: the oldest record not yet delivered (seconds).
    max_data_freshness_seconds: int = Field(default=900, ge=60, le=86_400)
    # Delivered records / incoming records over the day below this share: records are being lost.
    min_delivered_percent: Percent = 99
    opensearch_domain: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{2,27}$")
    min_free_storage_gb: float = Field(default=20, ge=0)
    errors: ErrorSummary = ErrorSummary()


class Monitoring(_Strict):
    # Create or update the policy's alarms (never delete one). Off: the run reports the exact diff.
    enforce: bool = False
    topics: dict[AlarmSeverity, NotificationTopic] = Field(default_factory=lambda: {
        "critical": NotificationTopic(topic="solemate-critical-alerts", protocols=["email", "sms", "https"]),
        "warning": NotificationTopic(topic="solemate-warning-alerts", protocols=["email", "https"]),
    })
    alarms: list[AlarmPolicy] = Field(default_factory=default_alarms)
    # An alarm in INSUFFICIENT_DATA this long has lost its data (the metric stopped, a dimension changed).
    insufficient_data_max_hours: int = Field(default=6, ge=1, le=24 * 14)
    dashboard: OverviewDashboard = OverviewDashboard()
    scaling: ScalingPolicy = ScalingPolicy()
    updates: PendingUpdates = PendingUpdates()
    drift: StackDrift = StackDrift()
    log_pipeline: LogPipeline = LogPipeline()

    @model_validator(mode="after")
    def _alarms_have_topics(self) -> Monitoring:
        names = [a.name for a in self.alarms]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"alarms: {twice} defined twice")
        missing = sorted({a.severity for a in self.alarms} - set(self.topics))
        if missing:
            raise ValueError(f"topics: no topic for the {missing} alarms")
        return self
