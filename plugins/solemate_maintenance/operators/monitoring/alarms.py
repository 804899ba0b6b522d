"""The guide's alarms, their notification paths and the overview dashboard, checked against the policy.

* `CloudWatchAlarmsOperator`: each alarm of ``monitoring.alarms`` exists, is enabled, notifies its
  severity's topic, matches the policy field by field (expected and actual side by side), and has
  data; every other alarm in the account has at least one action. With ``monitoring.enforce`` it
  creates or updates the policy's alarms (never deletes one) and reports the changes applied.
* `NotificationPathsOperator`: the severities' SNS topics exist and have confirmed subscriptions of
  the kinds the guide names (e-mail, SMS, the Slack integration's HTTPS endpoint).
* `OverviewDashboardOperator`: the overview dashboard exists and shows the guide's metric groups.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from solemate_maintenance.aws_errors import error_code
from solemate_maintenance.config import AlarmPolicy, Monitoring, Resources
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.window import as_utc, run_end

MANAGED_TAG = {"Key": "solemate:managed-by", "Value": "solemate-maintenance"}
MISSING = {"critical": Severity.P2, "warning": Severity.P3}  # a missing or silent alarm, by its severity


def problem_status(severity: Severity) -> Status:
    return Status.CRITICAL if severity in (Severity.P1, Severity.P2) else Status.WARNING
# The fields compared, in the order the report shows them.
FIELDS = ("Namespace", "MetricName", "Dimensions", "Statistic", "Period", "Metrics", "Threshold",
          "ComparisonOperator", "EvaluationPeriods", "DatapointsToAlarm", "TreatMissingData")


def resolve_topics(sns_in: Any, monitoring: Monitoring, pages: Any) -> dict[str, str | None]:
    """Each severity's topic ARN (None: the topic does not exist). A name is looked up in the task's
    region; an ARN is asked for in its own region (a topic may live in another region or account)."""
    found: dict[str, str | None] = {}
    arns: list[str] | None = None
    for severity, topic in monitoring.topics.items():
        if topic.topic.startswith("arn:"):
            client = sns_in(topic.topic.split(":")[3])
            try:
                client.get_topic_attributes(TopicArn=topic.topic)
                found[severity] = topic.topic
            except Exception as exc:
                if error_code(exc) not in ("NotFound", "NotFoundException"):
                    raise
                found[severity] = None
            continue
        if arns is None:
            arns = [t["TopicArn"] for page in pages(sns_in(None), "list_topics") for t in page.get("Topics", [])]
        found[severity] = next((a for a in arns if a.rsplit(":", 1)[-1] == topic.topic), None)
    return found


def composite_children(composites: list[dict[str, Any]]) -> set[str]:
    """Alarms a composite alarm's rule names: they notify through it, so need no action of their own."""
    import re

    named = re.compile(r'(?:ALARM|OK|INSUFFICIENT_DATA)\(\s*"?([^")]+?)"?\s*\)')
    return {name for alarm in composites for name in named.findall(alarm.get("AlarmRule", ""))}


class AlarmTargets:
    """What the policy's placeholders stand for on this platform (the load balancer's ids are looked up)."""

    def __init__(self, resources: Resources, environment: str, elbv2: Any) -> None:
        self.values: dict[str, str] = {
            "environment": environment, "cluster": resources.ecs.cluster, "db_instance": resources.rds.instance_id,
            "cache_cluster": resources.elasticache.cluster_id,
            "business_namespace": resources.business_metrics_namespace}
        self.services = [s.name for s in resources.ecs.services]
        self.target_groups: list[tuple[str, str]] = []
        self.problem: str | None = None
        try:
            balancer = elbv2.describe_load_balancers(Names=[resources.alb.name])["LoadBalancers"][0]
        except Exception as exc:
            if error_code(exc) != "LoadBalancerNotFound":
                raise
            self.problem = f"load balancer {resources.alb.name} not found"
            return
        self.values["load_balancer"] = balancer["LoadBalancerArn"].split(":loadbalancer/", 1)[1]
        groups = elbv2.describe_target_groups(LoadBalancerArn=balancer["LoadBalancerArn"])["TargetGroups"]
        self.target_groups = [(g["TargetGroupArn"].split(":", 5)[5], g["TargetGroupName"]) for g in groups]

    def expand(self, policy: AlarmPolicy) -> list[dict[str, str]]:
        """One set of values per alarm the policy stands for."""
        used = set()
        for text in [policy.name, *policy.dimensions.values(), policy.namespace or "",
                     *(v for m in policy.metrics.values() for v in [m.namespace, *m.dimensions.values()])]:
            used |= {n for _, n, _, _ in string.Formatter().parse(text) if n}
        sets = [dict(self.values)]
        if "service" in used:
            sets = [{**s, "service": service} for s in sets for service in self.services]
        if used & {"target_group", "target_group_name"}:
            sets = [{**s, "target_group": arn, "target_group_name": name} for s in sets
                    for arn, name in self.target_groups]
        return [s for s in sets if all(n in s for n in used)]


def _dimensions(template: dict[str, str], values: dict[str, str]) -> list[dict[str, str]]:
    return [{"Name": k, "Value": v.format(**values)} for k, v in sorted(template.items())]


def wanted_alarm(policy: AlarmPolicy, values: dict[str, str]) -> dict[str, Any]:
    """PutMetricAlarm's arguments for the policy (without actions)."""
    alarm: dict[str, Any] = {
        "AlarmName": policy.name.format(**values), "AlarmDescription": policy.description,
        "Threshold": float(policy.threshold), "ComparisonOperator": policy.comparison,
        "EvaluationPeriods": policy.evaluation_periods,
        "DatapointsToAlarm": policy.datapoints_to_alarm or policy.evaluation_periods,
        "TreatMissingData": policy.treat_missing_data}
    if policy.expression is None:
        alarm.update({"Namespace": (policy.namespace or "").format(**values), "MetricName": policy.metric,
                      "Dimensions": _dimensions(policy.dimensions, values), "Period": policy.period_seconds})
        alarm["Statistic" if policy.statistic[0] != "p" else "ExtendedStatistic"] = policy.statistic
    else:
        alarm["Metrics"] = [{"Id": "result", "Expression": policy.expression, "Label": policy.name.format(**values),
                             "ReturnData": True}] + [
            {"Id": key, "ReturnData": False, "MetricStat": {
                "Metric": {"Namespace": m.namespace.format(**values), "MetricName": m.metric,
                           "Dimensions": _dimensions(m.dimensions, values)},
                "Period": m.period_seconds or policy.period_seconds, "Stat": m.statistic}}
            for key, m in sorted(policy.metrics.items())]
    return alarm


def comparable(alarm: dict[str, Any]) -> dict[str, Any]:
    """The fields the policy sets, as AWS describes them, in one comparable form."""
    metrics = None
    if alarm.get("Metrics"):
        metrics = sorted(
            (m["Id"], m.get("Expression"), json.dumps({
                "namespace": m["MetricStat"]["Metric"]["Namespace"], "metric": m["MetricStat"]["Metric"]["MetricName"],
                "dimensions": sorted((d["Name"], d["Value"]) for d in m["MetricStat"]["Metric"].get("Dimensions", [])),
                "period": m["MetricStat"]["Period"], "stat": m["MetricStat"]["Stat"]}, sort_keys=True)
             if m.get("MetricStat") else None) for m in alarm["Metrics"])
    evaluation = alarm.get("EvaluationPeriods")
    return {
        "Namespace": alarm.get("Namespace"), "MetricName": alarm.get("MetricName"),
        "Dimensions": sorted((d["Name"], d["Value"]) for d in alarm.get("Dimensions") or []) or None,
        "Statistic": alarm.get("Statistic") or alarm.get("ExtendedStatistic"), "Period": alarm.get("Period"),
        "Metrics": metrics, "Threshold": float(alarm["Threshold"]) if alarm.get("Threshold") is not None else None,
        "ComparisonOperator": alarm.get("ComparisonOperator"), "EvaluationPeriods": evaluation,
        "DatapointsToAlarm": alarm.get("DatapointsToAlarm") or evaluation,
        "TreatMissingData": alarm.get("TreatMissingData") or "missing"}


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "; ".join("=".join(map(str, v)) if isinstance(v, tuple) and len(v) == 2 else
                         " ".join(str(x) for x in v if x) if isinstance(v, tuple) else str(v) for v in value)
    return str(value)


class CloudWatchAlarmsOperator(MaintenanceCheckOperator):
    """The policy's alarms against CloudWatch; with ``monitoring.enforce``, CloudWatch brought to the policy.

    Findings: a policy alarm missing, without its topic's action, or with actions disabled (critical
    alarms P2, warning P3); one that differs from the policy (P3, every differing field with expected
    and actual); one in INSUFFICIENT_DATA longer than ``insufficient_data_max_hours`` (P3: its data
    stopped); any other alarm of the account without an action (P3). When enforcing, a missing or
    different policy alarm is written (created ones are tagged ``solemate:managed-by``; an updated
    one keeps its other actions, its description and its muting) and its finding says "fixed";
    nothing is ever deleted. Either way the report has a table of the changes "applied" or "would
    apply".
    """

    def __init__(self, *, monitoring: Monitoring, platform: Resources, environment: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.monitoring = monitoring
        self.platform = platform
        self.environment = environment

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        cloudwatch = self.client("cloudwatch")
        topics = resolve_topics(lambda region: self.client("sns", region), self.monitoring, self.pages)
        targets = AlarmTargets(self.platform, self.environment, self.client("elbv2"))
        existing: dict[str, dict[str, Any]] = {}
        composites: list[dict[str, Any]] = []
        for page in self.pages(cloudwatch, "describe_alarms", max_page=100,
                               AlarmTypes=["MetricAlarm", "CompositeAlarm"]):
            composites += page.get("CompositeAlarms", [])
            for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                existing[alarm["AlarmName"]] = alarm
        if targets.problem:
            yield Finding(check="monitoring.alarm_targets", resource=self.platform.alb.name, status=Status.WARNING,
                          severity=Severity.P3, summary=f"{targets.problem}: its alarms cannot be checked",
                          details={"fix": "check resources.alb.name"})
        now = run_end(context)
        changes: list[dict[str, Any]] = []
        rows: list[list[str]] = []
        findings: list[Finding] = []
        policy_names: set[str] = set()
        for policy in self.monitoring.alarms:
            topic = topics.get(policy.severity)
            for values in targets.expand(policy):
                wanted = wanted_alarm(policy, values)
                policy_names.add(wanted["AlarmName"])
                findings += self._judge(policy, wanted, existing.get(wanted["AlarmName"]), topic, now, changes, rows)
        children = composite_children(composites)
        silent = sorted(name for name, alarm in existing.items()
                        if name not in policy_names and name not in children and not alarm.get("AlarmActions"))
        if silent:
            findings.append(Finding(
                check="monitoring.alarm.no_actions", resource="other alarms", status=Status.WARNING,
                severity=Severity.P3,
                summary=f"{len(silent)} alarm(s) notify nobody: {', '.join(silent[:5])}" + (" …" if len(silent) > 5
                                                                                             else ""),
                details={"alarms": silent[:50], "fix": "add an SNS action (or delete the alarm if it is unused)"}))
        if self.monitoring.enforce and changes:
            for change in changes:
                cloudwatch.put_metric_alarm(**change)
                self.log.info("put alarm %s", change["AlarmName"])
        yield from findings
        mode = "applied" if self.monitoring.enforce else "would apply"
        missing = sum(f.check == "monitoring.alarm.missing" for f in findings if f.is_problem)
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": (f"Alarms: {len(changes)} change(s) {mode} to match the guide" if changes else
                         f"Alarms: all {len(policy_names)} of the guide's alarms match")
            + (f"; {missing} missing" if missing and not self.monitoring.enforce else ""),
            "mode": "enforce" if self.monitoring.enforce else "report only (monitoring.enforce is false)",
            "changes": len(changes), "alarms": len(policy_names),
            "tables": {f"Alarm changes {mode}": {"columns": ["alarm", "field", "expected", "actual"],
                                                  "rows": rows}} if rows else {}})

    def _judge(self, policy: AlarmPolicy, wanted: dict[str, Any], actual: dict[str, Any] | None, topic: str | None,
               now: datetime, changes: list[dict[str, Any]], rows: list[list[str]]) -> list[Finding]:
        name = wanted["AlarmName"]
        enforce = self.monitoring.enforce
        fix = "applied by this run" if enforce else "set monitoring.enforce: true to apply"
        what = policy.description or name
        if actual is None:
            actions = [topic] if topic else []
            changes.append({**wanted, "ActionsEnabled": True, "AlarmActions": actions, "OKActions": actions,
                            "Tags": [MANAGED_TAG]})
            rows.append([name, "(alarm)", "create", "missing"])
            fixed = enforce and topic is not None
            if enforce and topic is None:
                summary = (f"created without an action: the guide's {policy.severity} alarm ({what}) notifies nobody "
                           f"until the topic {self.monitoring.topics[policy.severity].topic} exists")
            elif enforce:
                summary = f"fixed: created the guide's {policy.severity} alarm ({what})"
            else:
                summary = f"missing: the guide's {policy.severity} alarm ({what}); nobody is told when this happens"
            return [Finding(check="monitoring.alarm.missing", resource=name,
                            status=Status.OK if fixed else problem_status(MISSING[policy.severity]),
                            severity=None if fixed else MISSING[policy.severity], summary=summary,
                            details={"expected": comparable(wanted),
                                     "fix": fix if topic or not enforce else
                                     f"create the {policy.severity} topic; the next run adds it as the action"})]
        expected, current = comparable(wanted), comparable(actual)
        differs = [f for f in FIELDS if expected[f] != current[f]]
        has_topic = topic is not None and topic in actual.get("AlarmActions", [])
        findings: list[Finding] = []
        if differs or not has_topic and topic:
            # What people set on purpose stays: a muted alarm (maintenance), a runbook description,
            # other actions, OK and insufficient-data actions. Only the policy's fields and its topic change.
            merged_actions = list(dict.fromkeys([*actual.get("AlarmActions", []), *([topic] if topic else [])]))
            change = {**wanted, "AlarmDescription": actual.get("AlarmDescription") or wanted["AlarmDescription"],
                      "ActionsEnabled": actual.get("ActionsEnabled", True), "AlarmActions": merged_actions,
                      "OKActions": actual.get("OKActions", []),
                      "InsufficientDataActions": actual.get("InsufficientDataActions", [])}
            changes.append(change)
            fixed = enforce
        else:
            fixed = False
        if not fixed:
            fix = f"create the {policy.severity} topic first" if enforce else "set monitoring.enforce: true to apply"
        for field in differs:
            rows.append([name, field, _shown(expected[field]), _shown(current[field])])
        if differs:
            findings.append(Finding(
                check="monitoring.alarm.drift", resource=name, status=Status.OK if fixed else Status.WARNING,
                severity=None if fixed else Severity.P3,
                summary=(("fixed: " if fixed else "") + "differs from the guide: " + "; ".join(
                    f"{f} expected {_shown(expected[f])}, actual {_shown(current[f])}" for f in differs)),
                details={"expected": {f: expected[f] for f in differs}, "actual": {f: current[f] for f in differs},
                         "fix": fix}))
        if not actual.get("ActionsEnabled", True):
            # Never re-enabled by enforcement: muting an alarm for maintenance is a person's decision.
            findings.append(Finding(
                check="monitoring.alarm.no_actions", resource=name, status=problem_status(MISSING[policy.severity]),
                severity=MISSING[policy.severity],
                summary=f"the {policy.severity} alarm ({what}) notifies nobody: its actions are disabled",
                details={"fix": f"aws cloudwatch enable-alarm-actions --alarm-names {name} (after the maintenance "
                                "it was muted for); enforcement leaves a muted alarm muted"}))
        elif not actual.get("AlarmActions"):
            rows.append([name, "AlarmActions", topic or "its topic", "none"])
            findings.append(Finding(
                check="monitoring.alarm.no_actions", resource=name,
                status=Status.OK if fixed else problem_status(MISSING[policy.severity]),
                severity=None if fixed else MISSING[policy.severity],
                summary=(("fixed: " if fixed else "") + f"the {policy.severity} alarm ({what}) notifies nobody: "
                         "it has no action"),
                details={"fix": fix if topic else f"create the {policy.severity} topic "
                                                  f"({self.monitoring.topics[policy.severity].topic}), then {fix}"}))
        elif topic and not has_topic:
            rows.append([name, "AlarmActions", topic, ", ".join(actual["AlarmActions"])])
            findings.append(Finding(
                check="monitoring.alarm.wrong_topic", resource=name, status=Status.OK if fixed else Status.WARNING,
                severity=None if fixed else Severity.P3,
                summary=(("fixed: " if fixed else "") + f"does not notify the {policy.severity} topic "
                         f"({topic.rsplit(':', 1)[-1]}); it notifies {', '.join(actual['AlarmActions'])}"),
                details={"fix": fix}))
        # The transition into the state, not a later evaluation-state update.
        since = actual.get("StateTransitionedTimestamp") or actual.get("StateUpdatedTimestamp")
        if actual.get("StateValue") == "INSUFFICIENT_DATA" and since is not None:
            since = as_utc(since)
            hours = (now - since) / timedelta(hours=1)
            if hours >= self.monitoring.insufficient_data_max_hours:
                findings.append(Finding(
                    check="monitoring.alarm.no_data", resource=name, status=Status.WARNING, severity=Severity.P3,
                    summary=(f"in INSUFFICIENT_DATA for {hours:.0f} h (since {since:%Y-%m-%d %H:%M} UTC): its metric "
                             "stopped arriving, so it cannot fire"),
                    details={"since": since.isoformat(), "limit_hours": self.monitoring.insufficient_data_max_hours,
                             "fix": "check that the metric is still published with these dimensions "
                                    f"({_shown(current['Dimensions'])})"}))
        if not findings:
            findings.append(Finding(check="monitoring.alarm", resource=name, status=Status.OK,
                                    summary=f"matches the guide ({policy.severity}, state {actual.get('StateValue')})"))
        return findings


class NotificationPathsOperator(MaintenanceCheckOperator):
    """Each severity's topic exists and has a confirmed subscription of every kind the policy names.

    A missing topic: P2 for critical, P3 for warning. A kind with no confirmed subscription: the
    same (nobody gets the message that way). A pending confirmation is named with its endpoint's kind.
    """

    def __init__(self, *, monitoring: Monitoring, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.monitoring = monitoring

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        topics = resolve_topics(lambda region: self.client("sns", region), self.monitoring, self.pages)
        for severity, policy in self.monitoring.topics.items():
            arn = topics.get(severity)
            if arn is None:
                yield Finding(check="monitoring.topic", resource=policy.topic, status=problem_status(MISSING[severity]),
                              severity=MISSING[severity],
                              summary=(f"the {severity} alarms' SNS topic does not exist: their notifications go "
                                       "nowhere"),
                              details={"fix": f"create it, or correct monitoring.topics.{severity}.topic"})
                continue
            sns = self.client("sns", arn.split(":")[3])
            subscriptions = [s for page in self.pages(sns, "list_subscriptions_by_topic", TopicArn=arn)
                             for s in page.get("Subscriptions", [])]
            confirmed = {s["Protocol"] for s in subscriptions if s["SubscriptionArn"] != "PendingConfirmation"}
            pending = sorted({s["Protocol"] for s in subscriptions if s["SubscriptionArn"] == "PendingConfirmation"})
            absent = [p for p in policy.protocols if p not in confirmed]
            name = arn.rsplit(":", 1)[-1]
            if absent:
                yield Finding(
                    check="monitoring.subscriptions", resource=name, status=problem_status(MISSING[severity]),
                    severity=MISSING[severity],
                    summary=(f"no confirmed {', '.join(absent)} subscription on the {severity} topic"
                             + (f" ({', '.join(p for p in absent if p in pending)} pending confirmation)"
                                if set(absent) & set(pending) else "")),
                    details={"confirmed": sorted(confirmed), "pending": pending, "required": policy.protocols,
                             "fix": "confirm the pending subscription (the link in its e-mail or SMS) or subscribe "
                                    "the endpoint again"})
            else:
                yield Finding(check="monitoring.subscriptions", resource=name, status=Status.OK,
                              summary=f"{severity} topic: confirmed {', '.join(sorted(confirmed))}"
                                      + (f"; pending {', '.join(pending)}" if pending else ""))


def dashboard_metrics(body: dict[str, Any]) -> set[str]:
    """Every "Namespace/MetricName" a dashboard's metric widgets show (CloudWatch's "." repeats the row above)."""
    shown: set[str] = set()
    for widget in body.get("widgets", []):
        previous: list[Any] = []
        for row in (widget.get("properties") or {}).get("metrics") or []:
            names = [v for v in row if isinstance(v, str)]
            resolved = [previous[i] if v == "." and i < len(previous) else v for i, v in enumerate(names)]
            if len(resolved) >= 2 and not (isinstance(row[0], dict)):
                shown.add(f"{resolved[0]}/{resolved[1]}")
            previous = resolved
    return shown


class OverviewDashboardOperator(MaintenanceCheckOperator):
    """The overview dashboard exists (P3 if not) and shows each metric group of the policy (P4 per group short)."""

    def __init__(self, *, monitoring: Monitoring, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.monitoring = monitoring

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        spec = self.monitoring.dashboard
        try:
            body = json.loads(self.client("cloudwatch").get_dashboard(DashboardName=spec.name)["DashboardBody"])
        except Exception as exc:
            if error_code(exc) not in ("ResourceNotFound", "DashboardNotFoundError"):
                raise
            yield Finding(check="monitoring.dashboard", resource=spec.name, status=Status.WARNING,
                          severity=Severity.P3, summary="the overview dashboard does not exist",
                          details={"fix": "create it from the platform's templates, or correct "
                                          "monitoring.dashboard.name"})
            return
        shown = dashboard_metrics(body)
        for group, metrics in spec.metric_groups.items():
            absent = [m for m in metrics if m not in shown]
            if absent:
                yield Finding(check="monitoring.dashboard.group", resource=f"{spec.name}: {group}",
                              status=Status.WARNING, severity=Severity.P4,
                              summary=f"the {group} group lacks {', '.join(absent)}",
                              details={"missing": absent, "fix": "add the widgets (monitoring.dashboard.metric_groups "
                                                                 "lists what the guide expects)"})
            else:
                yield Finding(check="monitoring.dashboard.group", resource=f"{spec.name}: {group}", status=Status.OK,
                              summary=f"{group}: shows {len(metrics)} metric(s)")
