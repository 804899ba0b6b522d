"""Vulnerability scans of the images the ECS services actually run (ECR basic or enhanced scanning).

The running tasks' image digests are the truth (a tag may have moved since they started); a service
with no running task is judged by its task definition's image, resolved to a digest in ECR.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from solemate_maintenance.aws_errors import error_code
from solemate_maintenance.config import EcsService, VulnerabilityCheck
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator

_ECR_IMAGE = re.compile(r"^(?P<registry>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
                        r"(?P<repository>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")
SEVERITY_ORDER = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED", "UNTRIAGED"]


@dataclass
class RunningImage:
    image: str
    digest: str | None
    source: str  # "running tasks" or "task definition"
    services: set[str] = field(default_factory=set)


class ImageVulnerabilityOperator(MaintenanceCheckOperator):
    """Scan findings for every image the services run: critical CVEs P2, high P3, with the CVE ids
    and the digest. An image that was never scanned, or whose scan failed, is P3 (unknown is not
    safe); an image outside ECR is P4 (nothing here scans it).

    :param cluster: the ECS cluster.
    :param services: the services whose images are checked.
    :param thresholds: the ``checks.vulnerabilities`` section of the platform config.
    """

    template_fields: Sequence[str] = (*MaintenanceCheckOperator.template_fields, "cluster")

    def __init__(self, *, cluster: str, services: list[EcsService], thresholds: VulnerabilityCheck,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster
        self.services = services
        self.thresholds = thresholds

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        images = self._running_images()
        for missing in self.missing:  # a service we cannot see is a service nobody checks
            yield Finding(check="vulnerabilities.service", resource=f"{self.cluster}/{missing}", status=Status.WARNING,
                          severity=Severity.P3, summary=f"service {missing} not found: its image was not checked")
        rows: list[list[Any]] = []
        for image in images.values():
            yield from self._scan(image, rows)
        totals = Counter()
        for row in rows:
            totals["CRITICAL"] += row[3]
            totals["HIGH"] += row[4]
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": f"Images: {len(images)} running, {totals['CRITICAL']} critical and {totals['HIGH']} high "
                        "vulnerabilities",
            "tables": {"Images the services run": {
                "columns": ["image", "digest", "services", "critical", "high", "other", "scanned", "CVE ids"],
                "rows": rows}}})

    def _running_images(self) -> dict[tuple[str, str | None], RunningImage]:
        ecs = self.client("ecs")
        names = [s.name for s in self.services]
        described, self.missing = [], []
        for i in range(0, len(names), 10):  # DescribeServices takes at most 10 names
            answer = ecs.describe_services(cluster=self.cluster, services=names[i:i + 10])
            described += answer["services"]
            self.missing += [f.get("arn", "?").rsplit("/", 1)[-1] + f" ({f.get('reason', '?')})"
                             for f in answer.get("failures", [])]
        images: dict[tuple[str, str | None], RunningImage] = {}
        for service in described:
            tasks = [arn for page in self.pages(ecs, "list_tasks", cluster=self.cluster,
                                                serviceName=service["serviceName"], desiredStatus="RUNNING")
                     for arn in page["taskArns"]]
            containers = [c for i in range(0, len(tasks), 100)
                          for task in ecs.describe_tasks(cluster=self.cluster, tasks=tasks[i:i + 100])["tasks"]
                          for c in task.get("containers", [])]
            if containers:
                for c in containers:
                    key = (c["image"], c.get("imageDigest"))
                    images.setdefault(key, RunningImage(c["image"], c.get("imageDigest"), "running tasks"))
                    images[key].services.add(service["serviceName"])
                continue
            definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
            for c in definition["containerDefinitions"]:
                key = (c["image"], None)
                images.setdefault(key, RunningImage(c["image"], None, "task definition"))
                images[key].services.add(service["serviceName"])
        return images

    def _scan(self, image: RunningImage, rows: list[list[Any]]) -> Iterable[Finding]:
        services = ", ".join(sorted(image.services))
        match = _ECR_IMAGE.match(image.image)
        if not match:
            rows.append([image.image, image.digest or "—", services, 0, 0, 0, "not in ECR", ""])
            yield Finding(check="vulnerabilities.scan", resource=image.image, status=Status.WARNING,
                          severity=Severity.P4, summary=f"image of {services} is not in ECR: nothing here scans it")
            return
        ecr = self.client("ecr", match["region"])
        digest = image.digest or match["digest"]
        repository, registry = match["repository"], match["registry"]
        image_id = {"imageDigest": digest} if digest else {"imageTag": match["tag"] or "latest"}
        resource = f"{repository}@{(digest or image_id.get('imageTag', '?'))[:19]}"
        try:
            pages = list(self.pages(ecr, "describe_image_scan_findings", repositoryName=repository,
                                    registryId=registry, imageId=image_id))
        except Exception as exc:
            code = error_code(exc)
            if code not in ("ScanNotFoundException", "ImageNotFoundException"):
                raise
            what = "no scan exists" if code == "ScanNotFoundException" else "the image is not in the repository"
            rows.append([image.image, digest or "—", services, 0, 0, 0, what, ""])
            yield Finding(check="vulnerabilities.scan", resource=resource, status=Status.WARNING, severity=Severity.P3,
                          summary=f"{what} for the image {services} runs: turn on scan on push for {repository} "
                                  f"(or enhanced scanning) and run a scan now",
                          details={"image": image.image, "error": code})
            return
        first = pages[0]
        digest = digest or first.get("imageId", {}).get("imageDigest")
        resource = f"{repository}@{(digest or '?')[:19]}"
        status = first.get("imageScanStatus", {}).get("status", "UNKNOWN")
        found = first.get("imageScanFindings", {})
        counts = Counter({k.upper(): v for k, v in (found.get("findingSeverityCounts") or {}).items()})
        cves: dict[str, list[str]] = {}
        for page in pages:
            scan = page.get("imageScanFindings", {})
            for f in scan.get("findings", []):
                cves.setdefault(f.get("severity", "UNDEFINED").upper(), []).append(f["name"])
            for f in scan.get("enhancedFindings", []):
                vulnerability = f.get("packageVulnerabilityDetails", {}).get("vulnerabilityId") or f.get("title", "?")
                cves.setdefault(f.get("severity", "UNDEFINED").upper(), []).append(vulnerability)
        shown = self.thresholds.cves_shown
        critical, high = counts.get("CRITICAL", 0), counts.get("HIGH", 0)
        other = sum(counts.values()) - critical - high
        listed = [c for severity in SEVERITY_ORDER[:2] for c in sorted(set(cves.get(severity, [])))]
        rows.append([image.image, digest or "—", services, critical, high, other,
                     found.get("imageScanCompletedAt").strftime("%Y-%m-%d") if found.get("imageScanCompletedAt")
                     else status, ", ".join(listed[:shown])])
        details = {"image": image.image, "digest": digest, "source": image.source, "services": sorted(image.services),
                   "counts": dict(counts), "scan_status": status}
        if status not in ("COMPLETE", "ACTIVE"):
            yield Finding(check="vulnerabilities.scan", resource=resource, status=Status.WARNING, severity=Severity.P3,
                          summary=f"scan of the image {services} runs is {status}: "
                                  f"{first.get('imageScanStatus', {}).get('description', 'no description')}",
                          details=details)
            return
        for severity, level, count in (("CRITICAL", Severity.P2, critical), ("HIGH", Severity.P3, high)):
            if not count:
                continue
            ids = sorted(set(cves.get(severity, [])))
            more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
            yield Finding(check=f"vulnerabilities.{severity.lower()}", resource=resource,
                          status=Status.CRITICAL if level is Severity.P2 else Status.WARNING, severity=level,
                          summary=f"{count} {severity.lower()} vulnerabilit{'y' if count == 1 else 'ies'} in the "
                                  f"image {services} runs "
                                  f"({digest}): {', '.join(ids[:shown])}{more}; rebuild on a patched base image "
                                  "and redeploy",
                          details={**details, "cves": ids})
        completed = found.get("imageScanCompletedAt")
        # A wall-clock fact: how old the scan of the image running now is (a backfill sees today's image).
        age = (datetime.now(UTC) - completed).days if isinstance(completed, datetime) else None
        if age is not None and age > self.thresholds.max_scan_age_days:
            # A basic scan runs on push only: an old image's clean result says nothing of newer CVEs.
            yield Finding(check="vulnerabilities.scan_age", resource=resource, status=Status.WARNING,
                          severity=Severity.P3,
                          summary=f"the scan of the image {services} runs is {age} days old: rescan it, or turn on "
                                  "enhanced (continuous) scanning", details=details)
        if not critical and not high:
            yield Finding(check="vulnerabilities.scan", resource=resource, status=Status.OK,
                          summary=f"no critical or high vulnerability ({other} lower) in the image {services} runs"
                                  + (f" (scanned {age} days ago)" if age is not None else ""))
