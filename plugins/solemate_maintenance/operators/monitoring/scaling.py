"""ECS auto scaling against the guide: the scalable target's range and the target-tracking policies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from solemate_maintenance.config import EcsResources, ScalingPolicy
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator

DIMENSION = "ecs:service:DesiredCount"
# The guide's three target-tracking policies, by the predefined metric each tracks.
TRACKED = {"ECSServiceAverageCPUUtilization": "cpu_percent",
           "ECSServiceAverageMemoryUtilization": "memory_percent",
           "ALBRequestCountPerTarget": "requests_per_target"}


class EcsScalingPolicyOperator(MaintenanceCheckOperator):
    """Each ECS service's auto scaling against the guide (daily, read-only).

    * No scalable target: P2 (the service cannot scale out under load), unless the service is
      fixed-size on purpose (``min_tasks`` = ``max_tasks``).
    * Min or max different from the service's ``min_tasks``/``max_tasks``: P3 (max below: capped
      under load; min below: less redundancy).
    * A target-tracking policy missing (CPU 70 %, memory 80 %, requests per target 1000/min) or with
      another target value or cooldowns than ``monitoring.scaling``: P3, with expected and actual.
    """

    def __init__(self, *, ecs: EcsResources, policy: ScalingPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ecs = ecs
        self.policy = policy

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        scaling = self.client("application-autoscaling")
        ids = {f"service/{self.ecs.cluster}/{s.name}": s for s in self.ecs.services}
        targets = {t["ResourceId"]: t for page in self.pages(scaling, "describe_scalable_targets",
                                                              ServiceNamespace="ecs", ResourceIds=list(ids),
                                                              ScalableDimension=DIMENSION)
                   for t in page["ScalableTargets"]}
        rows: list[list[str]] = []
        for resource_id, service in ids.items():
            target = targets.get(resource_id)
            if target is None and service.min_tasks == service.max_tasks:
                yield Finding(check="scaling.target", resource=service.name, status=Status.OK,
                              summary=f"fixed at {service.min_tasks} task(s) (min_tasks = max_tasks): no auto scaling")
                continue
            if target is None:
                rows.append([service.name, "scalable target", f"{service.min_tasks}-{service.max_tasks}", "none"])
                yield Finding(check="scaling.target", resource=service.name, status=Status.CRITICAL,
                              severity=Severity.P2,
                              summary=f"no auto scaling: the service stays at its desired count under any load "
                                      f"(guide: {service.min_tasks}-{service.max_tasks} tasks)",
                              details={"fix": f"register {resource_id} as a scalable target with min "
                                              f"{service.min_tasks} and max {service.max_tasks}"})
                continue
            differs = [(what, want, have) for what, want, have in (
                ("min tasks", service.min_tasks, target["MinCapacity"]),
                ("max tasks", service.max_tasks, target["MaxCapacity"])) if want != have]
            rows += [[service.name, what, str(want), str(have)] for what, want, have in differs]
            if differs:
                capped = any(what == "max tasks" and have < want for what, want, have in differs)
                yield Finding(check="scaling.range", resource=service.name, status=Status.WARNING, severity=Severity.P3,
                              summary="; ".join(f"{what} {have}, guide {want}" for what, want, have in differs)
                                      + (": capped below the guide's peak capacity" if capped else ""),
                              details={"expected": {"min": service.min_tasks, "max": service.max_tasks},
                                       "actual": {"min": target["MinCapacity"], "max": target["MaxCapacity"]},
                                       "fix": "aws application-autoscaling register-scalable-target "
                                              f"--service-namespace ecs --resource-id {resource_id} "
                                              f"--scalable-dimension {DIMENSION} "
                                              f"--min-capacity {service.min_tasks} --max-capacity {service.max_tasks}"})
            yield from self._policies(scaling, resource_id, service.name, rows, bool(differs))
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": (f"Auto scaling: {len(rows)} difference(s) from the guide" if rows
                         else "Auto scaling: matches the guide"),
            "tables": {"Auto scaling against the guide": {"columns": ["service", "setting", "guide", "actual"],
                                                          "rows": rows}} if rows else {}})

    def _policies(self, scaling: Any, resource_id: str, service: str, rows: list[list[str]],
                  range_differs: bool) -> Iterable[Finding]:
        tracking: dict[str, dict[str, Any]] = {}
        for page in self.pages(scaling, "describe_scaling_policies", ServiceNamespace="ecs", ResourceId=resource_id,
                               ScalableDimension=DIMENSION):
            for policy in page["ScalingPolicies"]:
                config = policy.get("TargetTrackingScalingPolicyConfiguration") or {}
                metric = (config.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
                if metric in TRACKED:
                    tracking[metric] = config
        problems = []
        for metric, attribute in TRACKED.items():
            want = {"target": float(getattr(self.policy, attribute)),
                    "scale-out cooldown": self.policy.scale_out_cooldown_seconds,
                    "scale-in cooldown": self.policy.scale_in_cooldown_seconds}
            config = tracking.get(metric)
            if config is None:
                rows.append([service, metric, f"target {want['target']:g}", "no policy"])
                problems.append(f"no {metric} policy (guide: target {want['target']:g})")
                continue
            have = {"target": float(config["TargetValue"]), "scale-out cooldown": config.get("ScaleOutCooldown", 300),
                    "scale-in cooldown": config.get("ScaleInCooldown", 300)}
            for what in want:
                if want[what] != have[what]:
                    rows.append([service, f"{metric} {what}", f"{want[what]:g}", f"{have[what]:g}"])
                    problems.append(f"{metric} {what} {have[what]:g}, guide {want[what]:g}")
        if problems:
            yield Finding(check="scaling.policies", resource=service, status=Status.WARNING, severity=Severity.P3,
                          summary="; ".join(problems),
                          details={"fix": "put-scaling-policy with the guide's target tracking (monitoring.scaling)"})
        elif not range_differs:
            p = self.policy
            yield Finding(check="scaling.policies", resource=service, status=Status.OK,
                          summary=(f"scales at {p.cpu_percent:g} % CPU, {p.memory_percent:g} % memory, "
                                   f"{p.requests_per_target:g} requests per target; cooldowns "
                                   f"{p.scale_out_cooldown_seconds}/{p.scale_in_cooldown_seconds} s"))
