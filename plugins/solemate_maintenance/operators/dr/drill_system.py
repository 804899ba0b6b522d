"""The drill's complete-system component: Route 53 failover records with a health check, and the DR
stack's template valid in the DR region."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from solemate_maintenance.config import REPO_ROOT
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.dr.drill import _DrCheck, _error


# -- complete system ---------------------------------------------------------------------------------------
class DrFailoverReadinessOperator(_DrCheck):
    """The pieces of a whole-region failover: Route 53 PRIMARY/SECONDARY records with a health check on
    the primary, and the DR CloudFormation template valid in the DR region. Records the DNS TTL."""

    component = "complete_system"

    def __init__(self, *, hosted_zone: str, record_name: str, dr_load_balancer: str, template_path: str,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hosted_zone = hosted_zone
        self.record_name = record_name
        self.dr_load_balancer = dr_load_balancer
        self.template_path = template_path

    def measure(self, context: Any) -> Iterable[Finding]:
        ready, ttl = True, None
        for finding, record_ttl in self._dns():
            ready &= finding.severity is not Severity.P1
            ttl = record_ttl if record_ttl is not None else ttl
            yield finding
        cloudformation = self.client("cloudformation")
        path = REPO_ROOT / self.template_path
        try:
            body = path.read_text()
            cloudformation.validate_template(TemplateBody=body)
        except (OSError, cloudformation.exceptions.ClientError) as exc:
            ready = False
            yield Finding(check="dr.cloudformation.template", resource=self.template_path, status=Status.CRITICAL,
                          severity=Severity.P1, summary=f"DR template does not validate in {self.region_name}: "
                                                        f"{_error(exc)}")
        else:
            yield Finding(check="dr.cloudformation.template", resource=self.template_path, status=Status.OK,
                          summary=f"DR template validates in {self.region_name}")
        self.push_component(context, "complete_system", can_fail_over=ready, dns_ttl_seconds=ttl)

    def _dns(self) -> Iterable[tuple[Finding, int | None]]:
        from solemate_maintenance.hooks import route53 as dns

        route53 = self.client("route53", self.primary_region)
        zone = dns.public_zone_id(route53, self.hosted_zone)
        if zone is None:
            yield Finding(check="dr.dns.records", resource=self.hosted_zone, status=Status.CRITICAL,
                          severity=Severity.P1, summary=f"public hosted zone {self.hosted_zone} not found: no DNS "
                                                        "failover"), None
            return
        roles = dns.failover_records(route53, zone, self.record_name)
        primary, secondary = roles.get("PRIMARY", []), roles.get("SECONDARY", [])
        if not primary or not secondary:
            yield Finding(check="dr.dns.records", resource=self.record_name, status=Status.CRITICAL,
                          severity=Severity.P1, summary=f"{self.record_name} lacks a "
                          f"{'PRIMARY' if not primary else 'SECONDARY'} failover record"), None
            return
        ttl = max(int(r.get("TTL") or 60) for r in primary + secondary)
        balancer = dns.load_balancer(self.client("elbv2"), self.dr_load_balancer)
        dr_target = balancer["DNSName"].rstrip(".") if balancer else None
        wrong = sorted({dns.target_of(r) for r in secondary} - {dr_target})
        if balancer is None or wrong:
            summary = (f"no load balancer {self.dr_load_balancer} in {self.region_name}" if balancer is None
                       else f"SECONDARY points at {', '.join(wrong)}, not the DR load balancer {dr_target}")
            yield Finding(check="dr.dns.secondary", resource=self.record_name, status=Status.CRITICAL,
                          severity=Severity.P1, summary=summary,
                          details={"secondary": [dns.target_of(r) for r in secondary]}), ttl
            return
        missing_checks = []
        for record in primary:
            try:
                route53.get_health_check(HealthCheckId=record.get("HealthCheckId") or "none")
            except route53.exceptions.NoSuchHealthCheck:
                missing_checks.append(f"{record['Type']} {record.get('SetIdentifier', '')}")
        if missing_checks:
            yield Finding(check="dr.dns.health_check", resource=self.record_name, status=Status.CRITICAL,
                          severity=Severity.P1, summary=f"PRIMARY record(s) {', '.join(missing_checks)} have no "
                          "(existing) health check: Route 53 would never fail over by itself"), ttl
            return
        yield Finding(check="dr.dns.records", resource=self.record_name, status=Status.OK,
                      summary=f"PRIMARY -> {', '.join(sorted({dns.target_of(r) for r in primary}))} with a health "
                              f"check, SECONDARY -> {dr_target}, TTL {ttl} s"), ttl
