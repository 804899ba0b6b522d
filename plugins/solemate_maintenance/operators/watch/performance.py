"""`PerformanceWatchOperator`: the guide's automated performance analysis every 15 minutes."""

from __future__ import annotations

from typing import Any

from solemate_maintenance.findings import Severity
from solemate_maintenance.incidents import IncidentRecord, Observation
from solemate_maintenance.operators.watch.base import IncidentWatchOperator
from solemate_maintenance.operators.watch.performance_plan import PerformancePlan, Targets
from solemate_maintenance.window import TimeWindow

ONE_WEEK_SECONDS = 7 * 24 * 3600


class PerformanceWatchOperator(IncidentWatchOperator):
    """ALB 5xx (ELB and target separately), P95/P99, healthy targets, ECS running vs desired and
    CPU/memory, RDS CPU/connections/FreeableMemory/latency, Redis CPU/memory/evictions, payment success
    and orders against a week earlier: every datapoint of the window judged on its own.

    AWS calls per run for the default platform: two elbv2 descriptions (the ALB's and its target
    groups' CloudWatch dimensions) and two GetMetricData calls (the window; orders a week earlier).
    It also escalates: an open P1 nobody acknowledged pages the next on-call contact."""

    escalates = True

    def targets(self) -> Targets:
        elb = self.client("elbv2")
        name = self.config.resources.alb.name
        try:
            balancer = elb.describe_load_balancers(Names=[name])["LoadBalancers"][0]
        except elb.exceptions.LoadBalancerNotFoundException:
            return Targets(load_balancer=None, target_groups={})
        groups = elb.describe_target_groups(LoadBalancerArn=balancer["LoadBalancerArn"])["TargetGroups"]
        return Targets(load_balancer=balancer["LoadBalancerArn"].split(":loadbalancer/", 1)[1],
                       target_groups={g["TargetGroupName"]: g["TargetGroupArn"].split(":", 5)[5] for g in groups})

    def observe(self, context: Any, window: TimeWindow, record: IncidentRecord) -> list[Observation]:
        from datetime import timedelta

        from solemate_maintenance.hooks.cloudwatch import CloudWatchMetricsHook

        targets = self.targets()
        plan = PerformancePlan(self.config, targets)
        hook = CloudWatchMetricsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
        answers = hook.get_metric_points(plan.queries, window)
        week_ago = hook.get_metric_points(plan.week_ago_queries, window.shifted(-timedelta(seconds=ONE_WEEK_SECONDS)))
        observations = plan.observations(answers, week_ago, window.start, window.end)
        if targets.load_balancer is None:
            alb = self.config.resources.alb.name
            # No load balancer: nothing can reach the application.
            observations.append(Observation(
                key=f"application.alb_targets|{alb}", check="application.alb_targets", resource=alb,
                severity=Severity.P1, summary=f"load balancer {alb} not found", first_bad=window.start,
                last_bad=window.start, still_bad=True, next_step="Check the load balancer named in the platform "
                "config exists (EC2 > Load balancers); if it was deleted, the application is unreachable."))
            self.log.warning("Load balancer %s not found: its metrics are not watched", alb)
        return observations
