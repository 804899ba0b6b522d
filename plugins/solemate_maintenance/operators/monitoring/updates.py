"""Pending updates with their deadlines: the Friday "review and apply security updates", every day.

RDS pending maintenance actions (and whether Performance Insights is on), ElastiCache service
updates, and the Fargate platform versions the ECS services run.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from solemate_maintenance.config import PendingUpdates, Resources
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.window import as_utc, run_end

OPEN_UPDATE_STATUSES = ["not-applied", "waiting-to-start", "in-progress", "stopping", "stopped", "scheduling",
                        "scheduled"]


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


class PendingUpdatesOperator(MaintenanceCheckOperator):
    """Every pending update of the platform, as one list with deadlines (daily, read-only).

    An update AWS will apply on its own within ``auto_apply_warning_days`` (or past its
    recommended date) is P3: plan it before it plans itself. Others are P4. Performance Insights
    off on the database is P3 (the guide's database diagnosis needs its top SQL). A service pinned
    to another Fargate platform version than ``monitoring.updates.ecs_platform_version`` is P4.
    """

    def __init__(self, *, platform: Resources, updates: PendingUpdates, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.platform = platform
        self.updates = updates

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        now = run_end(context)
        rows: list[list[str]] = []
        yield from self._rds(now, rows)
        yield from self._elasticache(now, rows)
        yield from self._ecs(rows)
        rows.sort(key=lambda r: r[3] or "9999")
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": (f"Pending updates: {len(rows)}, the first due {rows[0][3]}" if rows and rows[0][3]
                         else f"Pending updates: {len(rows)}" if rows else "Pending updates: none"),
            "pending_updates": len(rows),
            "tables": {"Pending updates": {"columns": ["resource", "update", "kind", "deadline", "by"],
                                           "rows": rows}} if rows else {}})

    def _severity(self, deadline: datetime | None, now: datetime) -> Severity:
        soon = deadline is not None and deadline - now <= timedelta(days=self.updates.auto_apply_warning_days)
        return Severity.P3 if soon else Severity.P4

    def _rds(self, now: datetime, rows: list[list[str]]) -> Iterable[Finding]:
        rds = self.client("rds")
        instance_id = self.platform.rds.instance_id
        instance = rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]
        if not instance.get("PerformanceInsightsEnabled"):
            yield Finding(check="updates.rds.performance_insights", resource=instance_id, status=Status.WARNING,
                          severity=Severity.P3,
                          summary="Performance Insights is off: an alert cannot name the SQL loading the database",
                          details={"fix": f"aws rds modify-db-instance --db-instance-identifier {instance_id} "
                                          "--enable-performance-insights --apply-immediately (no restart)"})
        actions = [a for page in self.pages(rds, "describe_pending_maintenance_actions", max_page=100,
                                            ResourceIdentifier=instance["DBInstanceArn"])
                   for resource in page["PendingMaintenanceActions"]
                   for a in resource["PendingMaintenanceActionDetails"]]
        for action in actions:
            dates = [d for d in (_utc(action.get("AutoAppliedAfterDate")), _utc(action.get("ForcedApplyDate"))) if d]
            deadline = min(dates) if dates else _utc(action.get("CurrentApplyDate"))
            severity = self._severity(deadline, now)
            when = f"{deadline:%Y-%m-%d}" if deadline else ""
            who = "AWS, automatically" if dates else "you (opt-in)"
            rows.append([instance_id, action.get("Description") or action["Action"], action["Action"], when, who])
            yield Finding(
                check="updates.rds.maintenance", resource=f"{instance_id}: {action['Action']}", status=Status.WARNING,
                severity=severity,
                summary=(f"{action.get('Description') or action['Action']}"
                         + (f"; AWS applies it on its own from {deadline:%Y-%m-%d}" if dates and deadline else
                            f"; scheduled {when}" if when else "; waiting for you to apply it")),
                details={"action": action["Action"], "deadline": when or None, "opt_in": action.get("OptInStatus"),
                         "fix": f"apply it in the next maintenance window: aws rds apply-pending-maintenance-action "
                                f"--resource-identifier {instance['DBInstanceArn']} --apply-action {action['Action']} "
                                "--opt-in-type next-maintenance"})
        if not actions:
            yield Finding(check="updates.rds.maintenance", resource=instance_id, status=Status.OK,
                          summary="no pending maintenance action")

    def _elasticache(self, now: datetime, rows: list[list[str]]) -> Iterable[Finding]:
        cache = self.client("elasticache")
        cluster = self.platform.elasticache.cluster_id
        # Redis service updates are reported per replication group when the node belongs to one.
        node = cache.describe_cache_clusters(CacheClusterId=cluster)["CacheClusters"][0]
        group = node.get("ReplicationGroupId")
        scope = {"ReplicationGroupIds": [group]} if group else {"CacheClusterIds": [cluster]}
        target = f"--replication-group-ids {group}" if group else f"--cache-cluster-ids {cluster}"
        actions = [a for page in self.pages(cache, "describe_update_actions", max_page=100, **scope,
                                            UpdateActionStatus=OPEN_UPDATE_STATUSES)
                   for a in page["UpdateActions"]]
        for action in actions:
            deadline = _utc(action.get("ServiceUpdateRecommendedApplyByDate"))
            severity = self._severity(deadline, now)
            name = action["ServiceUpdateName"]
            when = f"{deadline:%Y-%m-%d}" if deadline else ""
            kind = f"{action.get('ServiceUpdateSeverity', '?')} {action.get('ServiceUpdateType', 'update')}"
            rows.append([cluster, name, kind, when, "you (recommended date)"])
            yield Finding(
                check="updates.elasticache.service_update", resource=f"{cluster}: {name}", status=Status.WARNING,
                severity=severity,
                summary=(f"{kind} {name} {action.get('UpdateActionStatus', 'not-applied')}"
                         + (f"; apply by {when}" if when else "")),
                details={"deadline": when or None, "status": action.get("UpdateActionStatus"),
                         "fix": f"aws elasticache batch-apply-update-action --service-update-name {name} "
                                f"{target}"})
        if not actions:
            yield Finding(check="updates.elasticache.service_update", resource=cluster, status=Status.OK,
                          summary="no pending service update")

    def _ecs(self, rows: list[list[str]]) -> Iterable[Finding]:
        ecs = self.client("ecs")
        names = [s.name for s in self.platform.ecs.services]
        services = []
        for start in range(0, len(names), 10):  # DescribeServices takes at most 10
            services += ecs.describe_services(cluster=self.platform.ecs.cluster,
                                              services=names[start:start + 10])["services"]
        current = self.updates.ecs_platform_version
        for service in services:
            if service.get("launchType") != "FARGATE" and not any(
                    s.get("capacityProvider", "").startswith("FARGATE")
                    for s in service.get("capacityProviderStrategy") or []):
                continue
            versions = sorted({d.get("platformVersion") or "LATEST" for d in service.get("deployments") or []}
                              or {service.get("platformVersion") or "LATEST"})
            stale = [v for v in versions if v not in ("LATEST", current)]
            if stale:
                rows.append([service["serviceName"], f"Fargate platform {', '.join(stale)}", "platform version", "",
                             "you (redeploy)"])
                yield Finding(check="updates.ecs.platform_version", resource=service["serviceName"],
                              status=Status.WARNING, severity=Severity.P4,
                              summary=f"pinned to Fargate platform version {', '.join(stale)}, current is {current}",
                              details={"versions": versions,
                                       "fix": f"update the service with --platform-version LATEST (or {current}) and "
                                              "let it redeploy"})
            else:
                yield Finding(check="updates.ecs.platform_version", resource=service["serviceName"], status=Status.OK,
                              summary=f"Fargate platform {', '.join(versions)}")
