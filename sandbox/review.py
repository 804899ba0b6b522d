"""What the weekly review looks at beyond metrics: the public certificate (in ACM and as served) and
the running image's vulnerability scan. The database's problems live in sandbox.postgres."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from sandbox.dr import IMAGE_TAG
from sandbox.tls import PUBLIC_NAME, PrivateCa, TlsEndpoint
from solemate_maintenance.config import PlatformConfig

REVIEW_PROBLEMS = {
    "expiring_certificate": "the public certificate (in ACM and as the endpoint serves it) expires in 12 days (P2)",
    "critical_cve": "the running image's scan reports a critical CVE (P2) and two high ones (P3)",
    "capacity_growth": "the backend's running tasks grew for four weeks, reaching 20 tasks in ~17 days (P3)",
    "database_bloat": "a table with half its rows dead and a 3 MB index never scanned (P3, P4)",
}
# Live state (describe calls and the database answer for now), unlike capacity_growth's metrics.
REVIEW_STATE_PROBLEMS = frozenset({"expiring_certificate", "critical_cve", "database_bloat"})
HEALTHY_DAYS, EXPIRING_DAYS = 300, 12
CRITICAL_CVE, HIGH_CVES = "CVE-2026-31337", ["CVE-2026-20001", "CVE-2026-20002"]


class ReviewEstate:
    def __init__(self, config: PlatformConfig, client: Callable[..., Any], ca: PrivateCa | None = None,
                 tls: TlsEndpoint | None = None) -> None:
        self.config = config
        self._client = client
        self.ca = ca or PrivateCa()
        self.tls = tls
        self.certificate_arn: str | None = None

    def apply(self, problems: frozenset[str], load_balancer_arn: str) -> None:
        now = datetime.now(UTC)
        days = EXPIRING_DAYS if "expiring_certificate" in problems else HEALTHY_DAYS
        # A few hours past the day boundary, so "12 days" reads as 12 however long a test takes.
        issued = self.ca.issue(PUBLIC_NAME, now + timedelta(days=days, hours=6))
        if self.tls is not None:
            self.tls.serve(issued)
        acm = self._client("acm")
        arn = {"CertificateArn": self.certificate_arn} if self.certificate_arn else {}
        self.certificate_arn = acm.import_certificate(
            Certificate=issued.certificate_pem, PrivateKey=issued.private_key_pem, CertificateChain=issued.chain_pem,
            **arn)["CertificateArn"]
        bundle = get_backend("acm")[DEFAULT_ACCOUNT_ID][self.config.regions.primary]._certificates[self.certificate_arn]
        bundle.in_use_by = [load_balancer_arn]  # moto tracks use only for classic ELB listeners
        self._scan("critical_cve" in problems, now)

    def _scan(self, vulnerable: bool, now: datetime) -> None:
        """The running image's scan result (moto serves a fixed HIGH finding unless given one)."""
        repository_name = self.config.disaster_recovery.ecr_repository
        backend = get_backend("ecr")[DEFAULT_ACCOUNT_ID][self.config.regions.primary]
        image = next(i for i in backend.repositories[repository_name].images if i.image_tag == IMAGE_TAG)
        vulnerable_findings = [_finding(CRITICAL_CVE, "CRITICAL", "openssl"),
                               *(_finding(c, "HIGH", "libxml2") for c in HIGH_CVES)]
        findings = (vulnerable_findings
                    if vulnerable else [_finding("CVE-2025-0001", "LOW", "bash")])
        counts: dict[str, int] = {}
        for f in findings:
            counts[f["severity"]] = counts.get(f["severity"], 0) + 1
        image.last_scan = now.replace(tzinfo=None)
        image.scan_finding_results.clear()
        image.scan_finding_results_queue[:] = [{
            "registryId": DEFAULT_ACCOUNT_ID, "repositoryName": repository_name,
            "imageId": {"imageDigest": image.image_digest, "imageTag": IMAGE_TAG},
            "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
            "imageScanFindings": {"imageScanCompletedAt": (now - timedelta(hours=5)).timestamp(),
                                  "findings": findings, "findingSeverityCounts": counts}}]


def _finding(cve: str, severity: str, package: str) -> dict[str, Any]:
    return {"name": cve, "uri": f"https://nvd.nist.gov/vuln/detail/{cve}", "severity": severity,
            "attributes": [{"key": "package_name", "value": package}, {"key": "package_version", "value": "1.0"}]}
