"""Daily unused resources and what they cost. Report only: nothing is deleted.

Costs are estimates from the list prices in ``checks.unused_resources.prices`` (storage and address
charges; a stopped instance costs its volumes). Snapshots are priced at their full size, an upper
bound: EBS and RDS snapshots are incremental.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from solemate_maintenance.config import UnusedResourcesCheck
from solemate_maintenance.findings import Finding, Measurement, Severity, Status
from solemate_maintenance.metric_queries import MetricQuery
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.restore import TAG_PURPOSE
from solemate_maintenance.window import TimeWindow, run_end

LISTED = 25  # resources named per finding (the count and the cost cover all of them)
_STOPPED_AT = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) GMT\)")
# Snapshots this project or AWS Backup made: their own lifecycles delete them.
BACKUP_TAG_PREFIX = "aws:backup:"


def _tags(item: dict[str, Any], key: str = "Tags") -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get(key) or []}


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class UnusedResourcesOperator(MaintenanceCheckOperator):
    """Unattached EBS volumes, unassociated Elastic IPs, old manual RDS and EBS snapshots, idle load
    balancers, long-stopped instances, ECR repositories without a lifecycle policy, silent log groups.

    One P4 finding per kind, naming the resources and their estimated monthly cost; the total goes
    to the digest. Ages are measured at the run's logical date, so a backfill judges its own day.

    :param thresholds: the `checks.unused_resources` section of the platform config.
    :param excluded_snapshot_prefixes: snapshot names this project's own runs make (restore test, DR).
    """

    def __init__(self, *, thresholds: UnusedResourcesCheck | None = None,
                 excluded_snapshot_prefixes: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.thresholds = thresholds or UnusedResourcesCheck()
        self.excluded_snapshot_prefixes = list(excluded_snapshot_prefixes or [])

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        now = run_end(context)
        ec2 = self.client("ec2")
        volumes = [v for page in self.pages(ec2, "describe_volumes") for v in page["Volumes"]]
        kinds = [
            ("unattached_volumes", "unattached EBS volume(s)", self._unattached_volumes(volumes)),
            ("unassociated_elastic_ips", "unassociated Elastic IP(s)", self._elastic_ips(ec2)),
            ("old_rds_snapshots", f"manual RDS snapshot(s) older than {self.thresholds.snapshot_max_age_days} days",
             self._rds_snapshots(now)),
            ("old_ebs_snapshots", f"EBS snapshot(s) older than {self.thresholds.snapshot_max_age_days} days",
             self._ebs_snapshots(ec2, now)),
            ("idle_load_balancers", f"load balancer(s) with no requests or no healthy target for "
                                    f"{self.thresholds.idle_load_balancer_days} days", self._load_balancers(now)),
            ("stopped_instances", f"EC2 instance(s) stopped for more than {self.thresholds.stopped_instance_days} days",
             self._stopped_instances(ec2, volumes, now)),
            ("ecr_without_lifecycle", "ECR repositories without a lifecycle policy", self._ecr()),
            ("silent_log_groups", f"log group(s) with no events for {self.thresholds.silent_log_group_days} days",
             self._silent_log_groups(now)),
        ]
        total, rows = 0.0, []
        for kind, label, found in kinds:
            found = sorted(found, key=lambda r: -(r["monthly_usd"] or 0))
            cost = round(sum(r["monthly_usd"] or 0 for r in found), 2)
            total += cost
            rows += [[kind, r["id"], r["what"], "—" if r["monthly_usd"] is None else f"{r['monthly_usd']:.2f}"]
                     for r in found]
            if not found:
                yield Finding(check=f"unused.{kind}", resource=kind, status=Status.OK, summary=f"no {label}")
                continue
            named = ", ".join(f"{r['id']} (${r['monthly_usd']:.2f})" if r["monthly_usd"] is not None else r["id"]
                              for r in found[:3])
            yield Finding(
                check=f"unused.{kind}", resource=kind, status=Status.WARNING, severity=Severity.P4,
                summary=f"{len(found)} {label}, ~${cost:.2f}/month: {named}" + (" …" if len(found) > 3 else ""),
                details={"resources": found[:LISTED], "count": len(found), "estimated_monthly_usd": cost,
                         "note": "estimate from list prices (checks.unused_resources.prices); nothing was deleted"},
                metrics={"estimated_monthly_usd": Measurement(value=cost, unit="USD/month")})
        total = round(total, 2)
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": f"Unused resources: {len(rows)} costing ~${total:.2f}/month (estimate; nothing deleted)",
            "estimated_monthly_usd": total, "resources": len(rows),
            "tables": {"Unused resources": {"columns": ["kind", "resource", "what", "USD/month"],
                                            "rows": rows[:200]}} if rows else {}})

    # -- each kind: dicts with id, what, monthly_usd (None: not estimated) --------------------------------
    def _volume_cost(self, volume: dict[str, Any]) -> float:
        prices = self.thresholds.prices.ebs_gb_month
        return round(volume["Size"] * prices.get(volume.get("VolumeType", "gp2"), prices.get("gp2", 0.10)), 2)

    def _unattached_volumes(self, volumes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"id": v["VolumeId"], "what": f"{v['Size']} GiB {v.get('VolumeType', '')}, "
                                              f"created {_utc(v['CreateTime']):%Y-%m-%d}",
                 "monthly_usd": self._volume_cost(v)}
                for v in volumes if v.get("State") == "available" and not v.get("Attachments")]

    def _elastic_ips(self, ec2: Any) -> list[dict[str, Any]]:
        # DescribeAddresses returns every address of the region in one response (it has no pagination).
        return [{"id": a.get("AllocationId") or a["PublicIp"], "what": a["PublicIp"],
                 "monthly_usd": self.thresholds.prices.elastic_ip_month}
                for a in ec2.describe_addresses()["Addresses"]
                if not a.get("AssociationId") and not a.get("InstanceId") and not a.get("NetworkInterfaceId")]

    def _own_snapshot(self, name: str, tags: dict[str, str]) -> bool:
        return (any(name.startswith(p) for p in self.excluded_snapshot_prefixes) or TAG_PURPOSE in tags
                or any(k.startswith(BACKUP_TAG_PREFIX) for k in tags) or name.startswith("awsbackup:"))

    def _rds_snapshots(self, now: datetime) -> list[dict[str, Any]]:
        rds = self.client("rds")
        cutoff = now - timedelta(days=self.thresholds.snapshot_max_age_days)
        found = []
        for page in self.pages(rds, "describe_db_snapshots", max_page=100, SnapshotType="manual"):
            for snap in page["DBSnapshots"]:
                created = snap.get("SnapshotCreateTime")
                name = snap["DBSnapshotIdentifier"]
                if created is None or _utc(created) > cutoff or self._own_snapshot(name, _tags(snap, "TagList")):
                    continue
                found.append({"id": name, "what": f"{snap.get('AllocatedStorage', 0)} GiB of "
                                                  f"{snap.get('DBInstanceIdentifier')}, {_utc(created):%Y-%m-%d}",
                              "monthly_usd": round(snap.get("AllocatedStorage", 0)
                                                   * self.thresholds.prices.rds_snapshot_gb_month, 2)})
        return found

    def _ebs_snapshots(self, ec2: Any, now: datetime) -> list[dict[str, Any]]:
        cutoff = now - timedelta(days=self.thresholds.snapshot_max_age_days)
        found = []
        for page in self.pages(ec2, "describe_snapshots", OwnerIds=["self"]):
            for snap in page["Snapshots"]:
                started = _utc(snap["StartTime"])
                description = snap.get("Description") or ""
                # Snapshots behind an AMI (made or copied for one) cannot be deleted while it exists.
                if started > cutoff or self._own_snapshot(description, _tags(snap)) \
                        or "Created by AWS Backup" in description \
                        or any(mark in description for mark in ("CreateImage", "DestinationAmi", "ami-")):
                    continue
                found.append({"id": snap["SnapshotId"], "what": f"{snap.get('VolumeSize', 0)} GiB, {started:%Y-%m-%d}",
                              "monthly_usd": round(snap.get("VolumeSize", 0)
                                                   * self.thresholds.prices.ebs_snapshot_gb_month, 2)})
        return found

    def _load_balancers(self, now: datetime) -> list[dict[str, Any]]:
        """No requests for days (a balancer that only redirects still has requests), or target groups
        that had no healthy target all that time. Both from one batched GetMetricData."""
        elb = self.client("elbv2")
        days = self.thresholds.idle_load_balancer_days
        since = now - timedelta(days=days)
        balancers = [lb for page in self.pages(elb, "describe_load_balancers") for lb in page["LoadBalancers"]
                     if _utc(lb["CreatedTime"]) <= since and lb.get("Type") in ("application", "network")]
        groups_of: dict[str, list[str]] = {}
        for page in self.pages(elb, "describe_target_groups"):
            for group in page["TargetGroups"]:
                for arn in group.get("LoadBalancerArns", []):
                    groups_of.setdefault(arn, []).append(group["TargetGroupArn"].split(":", 5)[5])
        queries: list[MetricQuery] = []
        for i, lb in enumerate(balancers):
            namespace = "AWS/ApplicationELB" if lb["Type"] == "application" else "AWS/NetworkELB"
            dimension = lb["LoadBalancerArn"].split(":loadbalancer/", 1)[1]
            queries.append(MetricQuery(id=f"lb{i}", namespace=namespace, stat="Sum", period=86400,
                                       metric="RequestCount" if lb["Type"] == "application" else "NewFlowCount",
                                       dimensions={"LoadBalancer": dimension}))
            queries += [MetricQuery(id=f"lb{i}tg{j}", namespace=namespace, metric="HealthyHostCount", stat="Maximum",
                                    period=86400, dimensions={"TargetGroup": group, "LoadBalancer": dimension})
                        for j, group in enumerate(groups_of.get(lb["LoadBalancerArn"], []))]
        series = self.metrics_hook.get_metric_data(queries, TimeWindow(start=since, end=now)) if queries else {}
        found = []
        for i, lb in enumerate(balancers):
            groups = groups_of.get(lb["LoadBalancerArn"], [])
            requests = series[f"lb{i}"].reduce("sum") or 0.0
            healthy = [series[f"lb{i}tg{j}"].reduce("max") for j in range(len(groups))]
            if requests == 0:
                why = f"no requests in {days} days" + ("" if groups else ", no target group")
            elif groups and all(h == 0 for h in healthy):  # data, and never a healthy target
                why = f"no healthy target in {days} days"
            else:
                continue
            found.append({"id": lb["LoadBalancerName"], "what": f"{lb['Type']}, {why}",
                          "monthly_usd": self.thresholds.prices.load_balancer_month})
        return found

    def _sums(self, queries: list[MetricQuery], window: TimeWindow) -> dict[str, float]:
        """Sum of each query's datapoints; batched by the hook (500 queries per GetMetricData call)."""
        if not queries:
            return {}
        series = self.metrics_hook.get_metric_data(queries, window)
        return {q.id: series[q.id].reduce("sum") or 0.0 for q in queries}

    def _stopped_instances(self, ec2: Any, volumes: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
        cutoff = now - timedelta(days=self.thresholds.stopped_instance_days)
        attached: dict[str, float] = {}
        for volume in volumes:
            for attachment in volume.get("Attachments") or []:
                instance = attachment["InstanceId"]
                attached[instance] = attached.get(instance, 0) + self._volume_cost(volume)
        found = []
        for page in self.pages(ec2, "describe_instances",
                               Filters=[{"Name": "instance-state-name", "Values": ["stopped"]}]):
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    match = _STOPPED_AT.search(instance.get("StateTransitionReason") or "")
                    if not match:
                        continue
                    stopped = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
                    if stopped > cutoff:
                        continue
                    name = _tags(instance).get("Name", "")
                    found.append({"id": instance["InstanceId"],
                                  "what": f"{name + ', ' if name else ''}{instance.get('InstanceType')}, "
                                          f"stopped {stopped:%Y-%m-%d}",
                                  "monthly_usd": round(attached.get(instance["InstanceId"], 0.0), 2)})
        return found

    def _ecr(self) -> list[dict[str, Any]]:
        ecr = self.client("ecr")
        found = []
        for page in self.pages(ecr, "describe_repositories"):
            for repo in page["repositories"]:
                # ECR has no batch read of lifecycle policies: one call per repository (the one
                # per-resource call of this check; `make bench` counts it).
                try:
                    ecr.get_lifecycle_policy(repositoryName=repo["repositoryName"], registryId=repo["registryId"])
                except ecr.exceptions.LifecyclePolicyNotFoundException:
                    found.append({"id": repo["repositoryName"], "what": "images are never expired",
                                  "monthly_usd": None})
        return found

    def _silent_log_groups(self, now: datetime) -> list[dict[str, Any]]:
        logs = self.client("logs")
        days = self.thresholds.silent_log_group_days
        since = now - timedelta(days=days)
        groups = [g for page in self.pages(logs, "describe_log_groups", max_page=50) for g in page["logGroups"]
                  if datetime.fromtimestamp(g["creationTime"] / 1000, UTC) <= since]
        queries = [MetricQuery(id=f"lg{i}", namespace="AWS/Logs", metric="IncomingBytes", stat="Sum", period=86400,
                               dimensions={"LogGroupName": g["logGroupName"]}) for i, g in enumerate(groups)]
        incoming = self._sums(queries, TimeWindow(start=since, end=now))
        price = self.thresholds.prices.log_storage_gb_month
        return [{"id": g["logGroupName"], "what": f"{g.get('storedBytes', 0) / 1e9:.2f} GB stored",
                 "monthly_usd": round(g.get("storedBytes", 0) / 1e9 * price, 2)}
                for i, g in enumerate(groups) if not incoming.get(f"lg{i}")]
