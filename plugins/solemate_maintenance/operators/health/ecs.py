"""ECS service health: task counts, deployments, CPU and memory."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from solemate_maintenance.config import EcsCheck, EcsService, Lower
from solemate_maintenance.findings import Finding, Measurement, Severity, Status
from solemate_maintenance.metric_queries import MetricQuery
from solemate_maintenance.operators.base import MaintenanceCheckOperator
from solemate_maintenance.series import judge, series_finding
from solemate_maintenance.window import TimeWindow

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.ecs import EcsHook


class EcsServiceHealthOperator(MaintenanceCheckOperator):
    """Check each ECS service of a cluster.

    No running task is P1; fewer running than desired (or than the configured minimum) is P2;
    a failed deployment in the look-back is P2; lingering pending tasks and a service scaled to its
    maximum are P3; CPU/memory above thresholds are P3 (warning) or P2 (critical).

    :param cluster: ECS cluster name or ARN.
    :param services: services to check, with their scaling bounds.
    :param thresholds: the `checks.ecs` section of the platform config.
    """

    template_fields = (*MaintenanceCheckOperator.template_fields, "cluster")

    def __init__(self, *, cluster: str, services: Sequence[EcsService], thresholds: EcsCheck | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster
        self.services = list(services)
        self.thresholds = thresholds or EcsCheck()

    @cached_property
    def hook(self) -> EcsHook:
        from airflow.providers.amazon.aws.hooks.ecs import EcsHook

        return EcsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        window = TimeWindow.ending_at_run(context, self.thresholds.lookback_minutes)
        names = [s.name for s in self.services]
        response = self.hook.conn.describe_services(cluster=self.cluster, services=names)
        described = {s["serviceName"]: s for s in response["services"]}
        present = [s for s in self.services if s.name in described and described[s.name]["status"] == "ACTIVE"]
        for spec in self.services:
            if spec not in present:
                yield Finding(check="ecs.service", resource=f"{self.cluster}/{spec.name}",
                              status=Status.CRITICAL, severity=Severity.P1,
                              summary="service not found or not active in the cluster",
                              details={"failures": [f for f in response.get("failures", [])
                                                    if spec.name in f.get("arn", "")]})
                continue
            yield from self._service_findings(spec, described[spec.name], window)
        yield from self._utilization_findings(present, window)

    def _service_findings(self, spec: EcsService, service: dict, window: TimeWindow) -> Iterable[Finding]:
        resource = f"{self.cluster}/{spec.name}"
        running, desired, pending = service["runningCount"], service["desiredCount"], service["pendingCount"]
        counts = {
            "running_tasks": Measurement(value=running, unit="tasks", critical=max(desired, spec.min_tasks),
                                         bad_when="below"),
            "desired_tasks": Measurement(value=desired, unit="tasks"),
            "pending_tasks": Measurement(value=pending, unit="tasks",
                                         warning=self.thresholds.pending_tasks_warning, bad_when="above"),
        }
        if running == 0 and desired > 0:
            status, severity, summary = Status.CRITICAL, Severity.P1, f"no running tasks (desired {desired})"
        elif running < desired or running < spec.min_tasks:
            status, severity = Status.CRITICAL, Severity.P2
            summary = f"{running} running of {desired} desired (minimum {spec.min_tasks})"
        else:
            status, severity, summary = Status.OK, None, f"{running} of {desired} tasks running"
        yield Finding(check="ecs.task_count", resource=resource, status=status, severity=severity,
                      summary=summary, metrics=counts)

        if pending >= self.thresholds.pending_tasks_warning:
            yield Finding(check="ecs.pending_tasks", resource=resource, status=Status.WARNING,
                          severity=Severity.P3, summary=f"{pending} task(s) pending placement",
                          metrics={"pending_tasks": counts["pending_tasks"]})
        if desired >= spec.max_tasks:
            yield Finding(check="ecs.scaling_ceiling", resource=resource, status=Status.WARNING,
                          severity=Severity.P3,
                          summary=f"desired count {desired} is at the scaling maximum {spec.max_tasks}",
                          metrics={"desired_tasks": Measurement(value=desired, unit="tasks",
                                                                warning=spec.max_tasks, bad_when="above")})

        since = window.end - timedelta(hours=self.thresholds.deployment_failure_lookback_hours)
        failed = [
            d for d in service.get("deployments", [])
            if d.get("rolloutState") == "FAILED" and since <= d.get("updatedAt", window.end) <= window.end
        ]
        yield Finding(
            check="ecs.deployments", resource=resource,
            status=Status.CRITICAL if failed else Status.OK,
            severity=Severity.P2 if failed else None,
            summary=(f"{len(failed)} failed deployment(s) in the last "
                     f"{self.thresholds.deployment_failure_lookback_hours} h") if failed
            else "no failed deployment",
            details={"failed_deployments": [
                {"id": d["id"], "reason": d.get("rolloutStateReason", ""), "task_definition": d.get("taskDefinition")}
                for d in failed
            ]},
        )

    def _utilization_findings(self, services: list[EcsService], window: TimeWindow) -> Iterable[Finding]:
        metrics = {"cpu_utilization": ("CPUUtilization", self.thresholds.cpu_percent),
                   "memory_utilization": ("MemoryUtilization", self.thresholds.memory_percent)}
        period = self.thresholds.period_seconds
        queries = []
        for i, spec in enumerate(services):
            dims = {"ClusterName": self.cluster, "ServiceName": spec.name}
            queries += [MetricQuery(id=f"{key}_{i}", namespace="AWS/ECS", metric=name, stat="Average", period=period,
                                    dimensions=dims) for key, (name, _) in metrics.items()]
            # Container Insights: the task counts over the window, not only the live count at run time.
            queries += [MetricQuery(id=f"running_{i}", namespace="ECS/ContainerInsights", metric="RunningTaskCount",
                                    stat="Minimum", period=period, dimensions=dims),
                        MetricQuery(id=f"desired_{i}", namespace="ECS/ContainerInsights", metric="DesiredTaskCount",
                                    stat="Maximum", period=period, dimensions=dims)]
        if not queries:
            return
        points = self.metrics_hook.get_metric_points(queries, window)
        for i, spec in enumerate(services):
            for key, (name, threshold) in metrics.items():
                yield series_finding(
                    check=f"ecs.{key}", resource=f"{self.cluster}/{spec.name}",
                    label=f"peak {period // 60}-min {name}", metric=f"{key}_percent", points=points[f"{key}_{i}"],
                    unit="%", threshold=threshold, period=timedelta(seconds=period),
                    warning_severity=Severity.P3, critical_severity=Severity.P2,
                )
            yield self._task_history(spec, points[f"running_{i}"], points[f"desired_{i}"], period)

    def _task_history(self, spec: EcsService, running: list, desired: list, period: int) -> Finding:
        """Fewer tasks than desired at any time of the window (P2; none running P1), with when."""
        check, resource = "ecs.task_count_history", f"{self.cluster}/{spec.name}"
        wanted = dict(desired)
        ratio = [(t, 100 * v / wanted[t]) for t, v in running if wanted.get(t)]
        if not ratio:
            return Finding(check=check, resource=resource, status=Status.SKIPPED,
                           summary="task counts over the window not checked: no Container Insights data",
                           details={"fix": "enable Container Insights on the cluster (ECS > Clusters > Update "
                                           "cluster > Monitoring)"})
        verdict = judge(ratio, Lower(warning=99.9, critical=0), timedelta(seconds=period))
        if verdict.status is Status.OK:
            return Finding(check=check, resource=resource, status=Status.OK,
                           summary=f"all desired tasks running throughout the window ({len(ratio)} datapoints)")
        worst_at = verdict.worst_at
        counts = f"{dict(running).get(worst_at, 0):.0f} of {wanted.get(worst_at, 0):.0f}"
        critical = verdict.status is Status.CRITICAL
        return Finding(
            check=check, resource=resource, status=verdict.status,
            severity=Severity.P1 if critical else Severity.P2,
            summary=f"fewer tasks running than desired ({counts} at worst) — {verdict.stretches()}; "
                    f"{verdict.minutes_bad} min short",
            details={"bad_periods": [[s.isoformat(), e.isoformat()] for s, e in verdict.spans]},
            metrics={"running_percent_of_desired": Measurement(value=round(verdict.worst, 1), unit="%",
                                                               critical=0, warning=99.9, bad_when="below")})
