"""The guide's SSL renewal check: ACM certificates, and what the public endpoints really serve.

ACM says what should be served and whether renewal works; a live TLS handshake says what users get
(a load balancer may still serve an old certificate, or the wrong one). Certificates are live state:
days left are counted from now, whatever date the run checks.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from solemate_maintenance.config import CertificateCheck, TlsEndpoint
from solemate_maintenance.findings import Finding, Severity, Status, classify, measurement
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.redaction import trim

# ListCertificates returns RSA-2048 certificates only unless asked for every key type.
ALL_KEY_TYPES = ["RSA_1024", "RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1",
                 "EC_secp521r1"]
LISTED_STATUSES = ["PENDING_VALIDATION", "ISSUED", "INACTIVE", "EXPIRED", "VALIDATION_TIMED_OUT", "REVOKED",
                   "FAILED"]
# Statuses whose expiry date means something; the others are judged by their status.
DATED_STATUSES = {"ISSUED", "EXPIRED", "INACTIVE"}


@dataclass(frozen=True)
class Probe:
    """One TLS handshake's outcome; `not_after` is read even when verification failed."""

    endpoint: str
    verified: bool
    verify_error: str | None = None
    connect_error: str | None = None
    not_after: datetime | None = None
    subject: str | None = None
    issuer: str | None = None
    names: tuple[str, ...] = ()


def probe_tls(endpoint: TlsEndpoint, timeout: float) -> Probe:
    """Handshake as a browser would (system or configured CA, host name checked); if that fails,
    handshake again without verification to read the certificate that made it fail."""
    name = endpoint.server_name or endpoint.host
    label = f"{name}:{endpoint.port}" if name == endpoint.host else f"{name} via {endpoint.host}:{endpoint.port}"
    verifying = ssl.create_default_context(cafile=endpoint.ca_bundle)
    try:
        der = _handshake(endpoint, name, verifying, timeout)
        return _described(label, der, verified=True)
    except ssl.SSLCertVerificationError as exc:
        verify_error = exc.verify_message or str(exc)
    except (OSError, ssl.SSLError) as exc:
        return Probe(endpoint=label, verified=False, connect_error=f"{type(exc).__name__}: {trim(str(exc), 200)}")
    reading = ssl.create_default_context()
    reading.check_hostname = False
    reading.verify_mode = ssl.CERT_NONE
    try:
        der = _handshake(endpoint, name, reading, timeout)
    except (OSError, ssl.SSLError) as exc:
        return Probe(endpoint=label, verified=False, verify_error=verify_error,
                     connect_error=f"{type(exc).__name__}: {trim(str(exc), 200)}")
    return _described(label, der, verified=False, verify_error=verify_error)


def _handshake(endpoint: TlsEndpoint, name: str, context: ssl.SSLContext, timeout: float) -> bytes:
    with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as sock, \
            context.wrap_socket(sock, server_hostname=name) as tls:
        return tls.getpeercert(binary_form=True)


def _described(label: str, der: bytes, **outcome: Any) -> Probe:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        names = tuple(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                      .get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return Probe(endpoint=label, not_after=cert.not_valid_after_utc, subject=cert.subject.rfc4514_string(),
                 issuer=cert.issuer.rfc4514_string(), names=names, **outcome)


class CertificateExpiryOperator(MaintenanceCheckOperator):
    """ACM certificates in every region given, and a TLS probe of each configured endpoint.

    Days left at or under ``days_left.warning`` (30) is P2, under ``days_left.critical`` (7) P1, for a
    certificate in use; an unused one is P4 (delete it). A failed renewal is P2. A probe whose chain,
    host name or date does not verify is P1: every browser refuses it. An unreachable endpoint is P2.

    :param regions: regions whose ACM certificates are checked (the primary and the DR region).
    :param thresholds: the ``checks.certificates`` section of the platform config.
    """

    template_fields: Sequence[str] = (*MaintenanceCheckOperator.template_fields, "regions")

    def __init__(self, *, regions: list[str], thresholds: CertificateCheck, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.regions = regions
        self.thresholds = thresholds

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        now = datetime.now(UTC)
        rows: list[list[Any]] = []
        for region in self.regions:
            yield from self._acm(region, now, rows)
        probes: list[list[Any]] = []
        for endpoint in self.thresholds.endpoints:
            yield from self._probe(endpoint, now, probes)
        soonest = min((r[3] for r in rows + probes if isinstance(r[3], int)), default=None)
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": f"Certificates: {len(rows)} in ACM, {len(probes)} endpoint(s) probed"
                        + (f", soonest expiry in {soonest} days" if soonest is not None else ""),
            "measured_at": now.isoformat(timespec="minutes"),
            "tables": {
                "ACM certificates": {"columns": ["domain", "region", "expires", "days left", "type", "in use by"],
                                     "rows": rows},
                "Served by the endpoints (TLS probe)": {
                    "columns": ["endpoint", "verified", "subject", "days left", "issuer"], "rows": probes},
            }})

    # -- ACM ----------------------------------------------------------------------------------------
    def _acm(self, region: str, now: datetime, rows: list[list[Any]]) -> Iterable[Finding]:
        acm = self.client("acm", region)
        arns = [c["CertificateArn"]
                for page in self.pages(acm, "list_certificates", CertificateStatuses=LISTED_STATUSES,
                                       Includes={"keyTypes": ALL_KEY_TYPES})
                for c in page["CertificateSummaryList"]]
        for arn in arns:
            # No batch describe exists; a platform has a handful of certificates.
            cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
            domain, in_use = cert["DomainName"], cert.get("InUseBy") or []
            not_after = cert.get("NotAfter")
            days = (not_after - now).days if not_after else None
            rows.append([domain, region, not_after.strftime("%Y-%m-%d") if not_after else "—", days,
                         cert.get("Type", "?"), len(in_use)])
            resource = f"{domain} ({region}, {arn.rsplit('/', 1)[-1][:8]})"
            status = cert.get("Status", "ISSUED")
            if status not in DATED_STATUSES:
                if status == "REVOKED" and in_use:
                    yield Finding(check="certificates.acm", resource=resource, status=Status.CRITICAL,
                                  severity=Severity.P1,
                                  summary=f"REVOKED but still attached to {', '.join(in_use)}: browsers refuse it; "
                                          "attach a valid certificate now")
                elif status in ("FAILED", "VALIDATION_TIMED_OUT"):
                    yield Finding(check="certificates.acm", resource=resource, status=Status.WARNING,
                                  severity=Severity.P4, summary=f"{status}: request it again or delete it")
                continue
            yield self._expiry_finding("certificates.acm", resource, days, not_after, in_use=bool(in_use),
                                       how_to_renew=_renewal_hint(cert))
            renewal = cert.get("RenewalSummary") or {}
            if renewal.get("RenewalStatus") == "FAILED":
                yield Finding(check="certificates.renewal", resource=resource, status=Status.CRITICAL,
                              severity=Severity.P2,
                              summary=f"ACM renewal failed: {renewal.get('RenewalStatusReason', 'no reason given')}",
                              details={"arn": arn, "renewal": _plain(renewal)})

    def _expiry_finding(self, check: str, resource: str, days: int | None, not_after: datetime | None, *,
                        in_use: bool, how_to_renew: str) -> Finding:
        limits = self.thresholds.days_left
        metrics = {"days_left": measurement(days, "days", limits)}
        expiry = not_after.strftime("%Y-%m-%d") if not_after else "unknown"
        status = classify(days, limits)
        if status is None or status is Status.OK:
            return Finding(check=check, resource=resource, status=Status.OK,
                           summary=f"valid until {expiry} ({days} days)", metrics=metrics)
        if not in_use:
            return Finding(check=check, resource=resource, status=Status.WARNING, severity=Severity.P4,
                           summary=f"expires {expiry} ({days} days) but nothing uses it: delete it", metrics=metrics)
        severity = Severity.P1 if status is Status.CRITICAL else Severity.P2
        when = "expired" if days < 0 else f"expires in {days} days"
        return Finding(check=check, resource=resource, status=status, severity=severity,
                       summary=f"{when} ({expiry}): {how_to_renew}", metrics=metrics)

    # -- the live endpoints -------------------------------------------------------------------------
    def _probe(self, endpoint: TlsEndpoint, now: datetime, rows: list[list[Any]]) -> Iterable[Finding]:
        probe = probe_tls(endpoint, self.thresholds.timeout_seconds)
        days = (probe.not_after - now).days if probe.not_after else None
        rows.append([probe.endpoint, "yes" if probe.verified else f"NO: {probe.verify_error or probe.connect_error}",
                     probe.subject or "—", days, probe.issuer or "—"])
        check = "certificates.endpoint"
        if probe.not_after is None:
            yield Finding(check=check, resource=probe.endpoint, status=Status.CRITICAL, severity=Severity.P2,
                          summary=f"TLS handshake failed: {probe.connect_error}",
                          details={"error": probe.connect_error})
            return
        if not probe.verified:
            yield Finding(check=check, resource=probe.endpoint, status=Status.CRITICAL, severity=Severity.P1,
                          summary=f"browsers refuse the certificate served: {probe.verify_error} (subject "
                                  f"{probe.subject}, names {', '.join(probe.names) or 'none'}, issuer {probe.issuer})",
                          details={"verify_error": probe.verify_error, "names": list(probe.names),
                                   "not_after": probe.not_after.isoformat()})
            return
        yield self._expiry_finding(check, probe.endpoint, days, probe.not_after, in_use=True,
                                   how_to_renew="the load balancer still serves this certificate: attach the renewed "
                                                "one to its HTTPS listener")


def _renewal_hint(cert: dict[str, Any]) -> str:
    if cert.get("Type") == "IMPORTED":
        return "imported certificates do not renew: import the renewed certificate into the same ARN"
    if cert.get("RenewalEligibility") == "INELIGIBLE":
        return "ACM will not renew it (not in use or validation missing): request a new certificate"
    return "ACM should have renewed it 60 days before expiry: check the DNS validation CNAME records"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.isoformat() if isinstance(value, datetime) else value
