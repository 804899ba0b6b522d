"""The platform's monitoring layer in moto, as the guide has it, and the problems that break it.

The guide's alarms (created from the policy in the config, so the healthy world matches it), the
severity topics with confirmed e-mail, SMS and Slack (HTTPS) subscriptions, the overview dashboard,
ECS auto scaling, Performance Insights, the platform's CloudFormation stack, the log pipeline
(subscription filter, Firehose and OpenSearch metrics) and a day of application errors.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from sandbox import moto_monitoring
from solemate_maintenance.config import PlatformConfig

MONITORING_PROBLEMS = {
    "alarm_deleted": "the guide's RDS CPU alarm was deleted (P3)",
    "alarm_action_removed": "the ECS memory alarm lost its action: it notifies nobody (P3)",
    "alarm_threshold_drift": "the error-rate alarm's threshold is 10 %, the guide's 5 % (P3)",
    "alarm_no_data": "the Redis memory alarm has been in INSUFFICIENT_DATA for 10 hours (P3)",
    "subscription_unconfirmed": "the critical topic's SMS subscription is pending confirmation (P2)",
    "scaling_capped": "the backend's auto scaling max is 10 tasks, the guide's 20 (P3)",
    "stack_drift": "the platform stack drifted: a bucket's versioning suspended by hand (P3, weekly)",
    "pending_os_upgrade": "an RDS OS upgrade AWS applies on its own in 3 days (P3)",
    "subscription_filter_removed": "the application log group's subscription filter to Firehose is gone (P2)",
    "delivery_stalled": "the delivery stream stopped delivering an hour ago (P2)",
    "new_application_error": "a new error, 40 times overnight: 'inventory service unavailable' (P3)",
}
STATE_MONITORING_PROBLEMS = frozenset(MONITORING_PROBLEMS) - {"delivery_stalled", "new_application_error"}
PLATFORM_STACK = "solemate-platform"
OPENSEARCH_DOMAIN = "solemate-logs"
FIREHOSE_ROLE = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/solemate-logs-to-firehose"
ERRORS_STREAM = "backend/errors"
SUBSCRIPTION_FILTER = "to-firehose"
PROTOCOL_ENDPOINTS = {"email": "oncall@solemate.example", "sms": "+15555550100",
                      "https": "https://global.sns-api.chatbot.amazonaws.com", "http": "http://hooks.solemate.example"}
EVERYDAY_ERRORS = ["payment provider timeout for order {n}", "redis connection reset", "GET /api/cart 500"]


class MonitoringEstate:
    def __init__(self, config: PlatformConfig, client: Callable[..., Any], alb_arn: str) -> None:
        self.config = config
        self._client = client
        self.region = config.regions.primary
        self.alb_arn = alb_arn

    def _backend(self, service: str) -> Any:
        return get_backend(service)[DEFAULT_ACCOUNT_ID][self.region]

    # -- as the guide has it ------------------------------------------------------------------------------
    def create(self) -> None:
        monitoring = self.config.monitoring
        sns = self._client("sns")
        self.topics: dict[str, str] = {}
        self.subscriptions: dict[tuple[str, str], str] = {}
        for severity, topic in monitoring.topics.items():
            arn = sns.create_topic(Name=topic.topic.rsplit(":", 1)[-1])["TopicArn"]
            self.topics[severity] = arn
            for protocol in topic.protocols:
                self.subscriptions[(severity, protocol)] = sns.subscribe(
                    TopicArn=arn, Protocol=protocol, Endpoint=PROTOCOL_ENDPOINTS.get(protocol, "oncall@x.example"),
                    ReturnSubscriptionArn=True)["SubscriptionArn"]
        self.put_policy_alarms()
        # The estate's own alarms notify the warning topic, as every alarm should.
        for alarm in self._backend("cloudwatch").alarms.values():
            if not alarm.alarm_actions:
                alarm.alarm_actions = [self.topics["warning"]]
        self._dashboard()
        self._scaling()
        rds = self._backend("rds").databases[self.config.resources.rds.instance_id]
        rds.performance_insights_enabled = True
        cloudformation = self._client("cloudformation")
        cloudformation.create_stack(StackName=PLATFORM_STACK, TemplateBody=json.dumps({"Resources": {
            "AssetsBucket": {"Type": "AWS::S3::Bucket",
                             "Properties": {"VersioningConfiguration": {"Status": "Enabled"}}}}}))
        self._client("opensearch").create_domain(DomainName=OPENSEARCH_DOMAIN, EngineVersion="OpenSearch_2.13",
                                                 ClusterConfig={"InstanceType": "r6g.large.search",
                                                                "InstanceCount": 2},
                                                 EBSOptions={"EBSEnabled": True, "VolumeSize": 100})
        logs = self._client("logs")
        logs.create_log_stream(logGroupName=self.config.resources.logs.application_log_group,
                               logStreamName=ERRORS_STREAM)

    def put_policy_alarms(self) -> None:
        from solemate_maintenance.operators.monitoring.alarms import AlarmTargets, wanted_alarm

        cloudwatch = self._client("cloudwatch")
        targets = AlarmTargets(self.config.resources, self.config.environment, self._client("elbv2"))
        for policy in self.config.monitoring.alarms:
            topic = self.topics[policy.severity]
            for values in targets.expand(policy):
                cloudwatch.put_metric_alarm(**wanted_alarm(policy, values), ActionsEnabled=True,
                                            AlarmActions=[topic], OKActions=[topic])

    def _dashboard(self) -> None:
        groups = self.config.monitoring.dashboard.metric_groups
        widgets = [{"type": "metric", "x": 0, "y": 6 * i, "width": 24, "height": 6,
                    "properties": {"title": group, "region": self.region, "stat": "Average", "period": 300,
                                   "metrics": [[*metric.rsplit("/", 1)] for metric in metrics]}}
                   for i, (group, metrics) in enumerate(groups.items())]
        self._client("cloudwatch").put_dashboard(DashboardName=self.config.monitoring.dashboard.name,
                                                 DashboardBody=json.dumps({"widgets": widgets}))

    def _scaling(self) -> None:
        scaling = self._client("application-autoscaling")
        policy = self.config.monitoring.scaling
        tg = self._client("elbv2").describe_target_groups(LoadBalancerArn=self.alb_arn)["TargetGroups"][0]
        # ALBRequestCountPerTarget's label: app/<lb>/<id>/targetgroup/<tg>/<id>
        label = f"{self.alb_arn.split(':loadbalancer/', 1)[1]}/{tg['TargetGroupArn'].split(':', 5)[5]}"
        for service in self.config.resources.ecs.services:
            resource = f"service/{self.config.resources.ecs.cluster}/{service.name}"
            self.scale_range(service.name, service.min_tasks, service.max_tasks)
            for name, metric, target in (("cpu", "ECSServiceAverageCPUUtilization", policy.cpu_percent),
                                         ("memory", "ECSServiceAverageMemoryUtilization", policy.memory_percent),
                                         ("requests", "ALBRequestCountPerTarget", policy.requests_per_target)):
                spec: dict[str, Any] = {"PredefinedMetricType": metric}
                if metric == "ALBRequestCountPerTarget":
                    spec["ResourceLabel"] = label
                scaling.put_scaling_policy(
                    PolicyName=f"{service.name}-{name}", ServiceNamespace="ecs", ResourceId=resource,
                    ScalableDimension="ecs:service:DesiredCount", PolicyType="TargetTrackingScaling",
                    TargetTrackingScalingPolicyConfiguration={
                        "TargetValue": float(target), "PredefinedMetricSpecification": spec,
                        "ScaleOutCooldown": policy.scale_out_cooldown_seconds,
                        "ScaleInCooldown": policy.scale_in_cooldown_seconds})

    def scale_range(self, service: str, low: int, high: int) -> None:
        self._client("application-autoscaling").register_scalable_target(
            ServiceNamespace="ecs", ResourceId=f"service/{self.config.resources.ecs.cluster}/{service}",
            ScalableDimension="ecs:service:DesiredCount", MinCapacity=low, MaxCapacity=high)

    def stream_arn(self) -> str | None:
        name = self.config.monitoring.log_pipeline.delivery_stream
        streams = self._backend("firehose").delivery_streams
        return streams[name].delivery_stream_arn if name in streams else None

    # -- the world at an anchor -----------------------------------------------------------------------------
    def apply(self, days: dict[datetime, frozenset[str]], latest: datetime) -> None:
        problems = days[latest]
        self.put_policy_alarms()  # back to the guide, then break what this day breaks
        prefix = f"solemate-{self.config.environment}"
        cloudwatch = self._client("cloudwatch")
        alarms = self._backend("cloudwatch").alarms
        for alarm in alarms.values():
            if alarm.name.startswith(prefix):
                alarm.state_value, alarm.state_updated_timestamp = "OK", latest - timedelta(days=2)
        if "alarm_deleted" in problems:
            cloudwatch.delete_alarms(AlarmNames=[f"{prefix}-rds-cpu-high"])
        if "alarm_action_removed" in problems:
            alarm = alarms[f"{prefix}-{self.config.resources.ecs.services[0].name}-memory-high"]
            alarm.alarm_actions, alarm.ok_actions = [], []
        if "alarm_threshold_drift" in problems:
            alarms[f"{prefix}-error-rate-high"].threshold = 10.0
        if "alarm_no_data" in problems:
            alarm = alarms[f"{prefix}-redis-memory-high"]
            alarm.state_value, alarm.state_updated_timestamp = "INSUFFICIENT_DATA", latest - timedelta(hours=10)
        sms = self.subscriptions.get(("critical", "sms"))
        if sms:
            subscription = self._backend("sns").subscriptions[sms]
            subscription.attributes["PendingConfirmation"] = \
                "true" if "subscription_unconfirmed" in problems else "false"
        first = self.config.resources.ecs.services[0]
        self.scale_range(first.name, first.min_tasks, 10 if "scaling_capped" in problems else first.max_tasks)
        moto_monitoring.STACK_DRIFTS[PLATFORM_STACK] = [{
            "LogicalResourceId": "AssetsBucket", "PhysicalResourceId": "solemate-assets",
            "ResourceType": "AWS::S3::Bucket",
            "StackResourceDriftStatus": "MODIFIED", "Timestamp": latest,
            "PropertyDifferences": [{"PropertyPath": "/VersioningConfiguration/Status", "ExpectedValue": "Enabled",
                                     "ActualValue": "Suspended", "DifferenceType": "NOT_EQUAL"}]}] \
            if "stack_drift" in problems else []
        arn = self._backend("rds").databases[self.config.resources.rds.instance_id].arn
        moto_monitoring.PENDING_MAINTENANCE[arn] = [{
            "Action": "system-update", "Description": "New Operating System update is available",
            "AutoAppliedAfterDate": latest + timedelta(days=3), "ForcedApplyDate": latest + timedelta(days=10),
            "OptInStatus": "pending"}] if "pending_os_upgrade" in problems else []
        self._subscription_filter("subscription_filter_removed" not in problems)
        self._errors(days)

    def _subscription_filter(self, present: bool) -> None:
        logs, group = self._client("logs"), self.config.resources.logs.application_log_group
        stream = self.stream_arn()
        exists = any(f["filterName"] == SUBSCRIPTION_FILTER
                     for f in logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"])
        if present and not exists and stream:
            logs.put_subscription_filter(logGroupName=group, filterName=SUBSCRIPTION_FILTER, filterPattern="",
                                         destinationArn=stream, roleArn=FIREHOSE_ROLE)
        elif exists and not present:
            logs.delete_subscription_filter(logGroupName=group, filterName=SUBSCRIPTION_FILTER)

    def _errors(self, days: dict[datetime, frozenset[str]]) -> None:
        # Rewritten on every seed, like the auth events: the errors describe the seeded days only.
        group = self._backend("logs").groups[self.config.resources.logs.application_log_group]
        stream = group.streams[ERRORS_STREAM]
        stream.events.clear()
        stream.stored_bytes = 0
        events = []
        for anchor, problems in sorted(days.items()):
            rng = random.Random(f"errors-{anchor.isoformat()}")
            for i in range(30):
                template = EVERYDAY_ERRORS[i % len(EVERYDAY_ERRORS)]
                events.append((anchor - timedelta(minutes=rng.randint(10, 1400)),
                               {"level": "ERROR", "message": template.format(n=rng.randint(1000, 9999))}))
            if "new_application_error" in problems:
                for i in range(40):
                    events.append((anchor - timedelta(hours=4) + timedelta(minutes=3 * i),
                                   {"level": "ERROR", "message": "inventory service unavailable"}))
        events.sort(key=lambda e: e[0])
        if events:
            stream.put_log_events([{"timestamp": int(at.timestamp() * 1000), "message": json.dumps(body)}
                                   for at, body in events])

    def metric_entries(self, incidents: list[tuple[datetime, frozenset[str]]]) -> list[tuple[str, dict[str, Any]]]:
        """Firehose delivery and OpenSearch health for the day before each anchor."""
        entries: list[tuple[str, dict[str, Any]]] = []
        stream = self.config.monitoring.log_pipeline.delivery_stream
        domain = self.config.monitoring.log_pipeline.opensearch_domain
        for anchor, problems in incidents:
            stalled = "delivery_stalled" in problems
            for step in range(288):
                at = (anchor - timedelta(minutes=5 * (288 - step))).astimezone(UTC)
                last_hour = anchor - at <= timedelta(hours=1)
                if stream:
                    dims = [{"Name": "DeliveryStreamName", "Value": stream}]
                    # Stalled: the oldest undelivered record ages from the hour's start on.
                    freshness = 3600.0 - (anchor - at).total_seconds() + 120.0 if stalled and last_hour else 120.0
                    for name, value in (("IncomingRecords", 500.0), ("DeliveryToS3.Records",
                                                                    0.0 if stalled and last_hour else 500.0),
                                        ("DeliveryToS3.DataFreshness", freshness)):
                        entries.append(("AWS/Firehose", {"MetricName": name, "Value": value, "Timestamp": at,
                                                         "Dimensions": dims}))
                if domain and step >= 276:  # the last hour is what the check reads
                    dims = [{"Name": "DomainName", "Value": domain}, {"Name": "ClientId", "Value": DEFAULT_ACCOUNT_ID}]
                    for name, value in (("ClusterStatus.green", 1.0), ("ClusterStatus.yellow", 0.0),
                                        ("ClusterStatus.red", 0.0), ("FreeStorageSpace", 81_920.0)):
                        entries.append(("AWS/ES", {"MetricName": name, "Value": value, "Timestamp": at,
                                                   "Dimensions": dims}))
        return entries
