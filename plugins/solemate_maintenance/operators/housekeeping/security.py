"""Daily security checks: failed logins and rate-limit violations (Logs Insights), world-open ports."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from solemate_maintenance.config import OpenIngressAllowance, SecurityCheck, Upper
from solemate_maintenance.findings import Finding, Measurement, Severity, Status
from solemate_maintenance.hooks.logs_insights import run_insights_query
from solemate_maintenance.operators.base import MaintenanceCheckOperator
from solemate_maintenance.window import TimeWindow

# Ports whose exposure to the internet is an incident waiting to happen (P2); any other is P3.
SENSITIVE_PORTS = {22: "SSH", 3389: "RDP", 5432: "PostgreSQL", 3306: "MySQL", 1433: "SQL Server",
                   1521: "Oracle", 6379: "Redis", 11211: "Memcached", 27017: "MongoDB", 9200: "Elasticsearch"}
WORLD = ("0.0.0.0/0", "::/0")
# IpProtocol comes as a name or an IANA number; only TCP and UDP rules carry ports.
PROTOCOL_NAMES = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}
PORTED = ("tcp", "udp")

class SecurityEventsOperator(MaintenanceCheckOperator):
    """Failed logins and rate-limit violations in the application log group, from Logs Insights.

    One query per kind of event (failed logins, rate-limit violations), so the noise of one cannot
    crowd the other out of the results. The queries return the matching rows; they are counted here
    per client IP and per user (the same code is right whether or not the engine computes
    ``stats``). Logs Insights returns at most 10,000 rows a query: when a day has more, the counts
    are lower bounds and the finding says so (10,000 failed logins in a day are over every default
    threshold anyway). Over a threshold's warning is P3, over its critical P2; the finding names the
    top offenders.

    :param log_group: the application log group.
    :param thresholds: the `checks.security` section of the platform config.
    """

    template_fields = (*MaintenanceCheckOperator.template_fields, "log_group")

    def __init__(self, *, log_group: str, thresholds: SecurityCheck | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log_group = log_group
        self.thresholds = thresholds or SecurityCheck()

    def query(self, events: Sequence[str]) -> str:
        t = self.thresholds
        quoted = ", ".join(json.dumps(e) for e in events)
        return (f"fields @timestamp, {t.event_field}, {t.ip_field}, {t.user_field}"
                f" | filter {t.event_field} in [{quoted}]"
                f" | limit {t.max_rows}")

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        window = TimeWindow.ending_at_run(context, self.thresholds.lookback_minutes)
        logs = self.client("logs")
        try:
            failed = self._run_query(logs, window, self.query(self.thresholds.failed_login_events))
            limited = self._run_query(logs, window, self.query(self.thresholds.rate_limit_events))
        except logs.exceptions.ResourceNotFoundException:
            yield Finding(check="security.log_query", resource=self.log_group, status=Status.CRITICAL,
                          severity=Severity.P2,
                          summary="application log group not found: failed logins cannot be checked",
                          details={"fix": "check resources.logs.application_log_group in the platform config"})
            return
        yield from self.judge(failed, limited)

    def _run_query(self, logs: Any, window: TimeWindow, query: str) -> tuple[list[dict[str, str]], int | None]:
        t = self.thresholds
        return run_insights_query(logs, log_group=self.log_group, window=window, query=query, max_rows=t.max_rows,
                                  timeout_seconds=t.query_timeout_seconds, poll_seconds=t.poll_seconds,
                                  timeout_setting="checks.security.query_timeout_seconds")

    def judge(self, failed: tuple[list[dict[str, str]], int | None],
              limited: tuple[list[dict[str, str]], int | None]) -> Iterable[Finding]:
        t = self.thresholds
        failures_by_ip: Counter[str] = Counter()
        failures_by_user: Counter[str] = Counter()
        users_by_ip: dict[str, set[str]] = defaultdict(set)
        ips_by_user: dict[str, set[str]] = defaultdict(set)
        limited_by_ip: Counter[str] = Counter()
        # The filter ran in Logs Insights; checked again here in case an event field is missing.
        for row in failed[0]:
            if row.get(t.event_field) not in t.failed_login_events:
                continue
            ip, user = row.get(t.ip_field) or "unknown", row.get(t.user_field)
            failures_by_ip[ip] += 1
            if user:
                failures_by_user[user] += 1
                users_by_ip[ip].add(user)
                ips_by_user[user].add(ip)
        for row in limited[0]:
            if row.get(t.event_field) in t.rate_limit_events:
                limited_by_ip[row.get(t.ip_field) or "unknown"] += 1

        def about(result: tuple[list[dict[str, str]], int | None], events: list[str]) -> dict[str, Any]:
            rows, matched = result
            facts: dict[str, Any] = {"rows": len(rows), "records_matched": matched,
                                     "truncated": len(rows) >= t.max_rows, "query": self.query(events)}
            if facts["truncated"]:
                facts["note"] = (f"Logs Insights returned its maximum of {t.max_rows} rows ({matched} matched): "
                                 "counts are lower bounds")
            return facts

        common = about(failed, t.failed_login_events)
        bound = "at least " if common["truncated"] else ""

        def offenders(counter: Counter[str], extra: dict[str, set[str]], extra_name: str) -> list[dict[str, Any]]:
            return [{"key": key, "count": count, extra_name: len(extra.get(key, ()))}
                    for key, count in counter.most_common(t.top_offenders)]

        yield self._threshold(
            "security.failed_logins_per_ip", "failed logins from one IP", failures_by_ip, t.failed_logins_per_ip,
            bound, {**common, "top_ips": offenders(failures_by_ip, users_by_ip, "users")},
            lambda o: f"{o['key']}: {bound}{o['count']} failed logins ({o['users']} users)")
        distinct_users = Counter({ip: len(users) for ip, users in users_by_ip.items()})
        yield self._threshold(
            "security.credential_stuffing", "distinct users failing from one IP", distinct_users, t.users_per_ip,
            bound, {**common, "top_ips": [{"key": ip, "users": n, "failures": failures_by_ip[ip]}
                                          for ip, n in distinct_users.most_common(t.top_offenders)]},
            lambda o: f"{o['key']}: {bound}{o['users']} users ({o['failures']} failures)", judged="users")
        yield self._threshold(
            "security.failed_logins_per_user", "failed logins for one user", failures_by_user,
            t.failed_logins_per_user, bound,
            {**common, "top_users": offenders(failures_by_user, ips_by_user, "ips")},
            lambda o: f"user {o['key']}: {bound}{o['count']} failed logins from {o['ips']} IPs")
        rate = about(limited, t.rate_limit_events)
        rate_bound = "at least " if rate["truncated"] else ""
        yield self._threshold(
            "security.rate_limit_violations", "rate-limit violations from one IP", limited_by_ip,
            t.rate_limit_violations_per_ip, rate_bound,
            {**rate, "top_ips": [{"key": ip, "count": n} for ip, n in limited_by_ip.most_common(t.top_offenders)]},
            lambda o: f"{o['key']}: {rate_bound}{o['count']} violations")

    def _threshold(self, check: str, label: str, counter: Counter[str], threshold: Upper, bound: str,
                   details: dict[str, Any], describe: Any, judged: str = "count") -> Finding:
        """One finding for the worst offender of `counter`; `judged` is the offenders' compared key."""
        worst = max(counter.values(), default=0)
        metric = Measurement(value=worst, unit="events", warning=threshold.warning, critical=threshold.critical,
                             bad_when="above")
        listed = next(v for k, v in details.items() if k.startswith("top_"))
        if worst >= threshold.critical:
            status, severity = Status.CRITICAL, Severity.P2
        elif worst >= threshold.warning:
            status, severity = Status.WARNING, Severity.P3
        else:
            return Finding(check=check, resource=self.log_group, status=Status.OK,
                           summary=f"most {label}: {bound}{worst} (warning at {threshold.warning:g})",
                           details=details, metrics={"worst": metric})
        over = [o for o in listed if o[judged] >= threshold.warning]
        total_over = sum(1 for value in counter.values() if value >= threshold.warning)
        summary = f"{label} over {threshold.warning:g}: " + "; ".join(describe(o) for o in over[:3])
        if total_over > 3:
            summary += f"; and {total_over - 3} more"
        return Finding(check=check, resource=self.log_group, status=status, severity=severity, summary=summary,
                       details=details, metrics={"worst": metric})


class OpenSecurityGroupsOperator(MaintenanceCheckOperator):
    """Ingress open to the whole internet (0.0.0.0/0 or ::/0) outside the allow-list.

    Database, cache, SSH and RDP ports (and every port, for "all traffic") are P2; other ports P3.
    Each finding names the group, the ports and what uses the group (its network interfaces).

    :param allowed: intended world-open ingress (group id or name, ports).
    """

    def __init__(self, *, allowed: Sequence[OpenIngressAllowance] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allowed = list(allowed)

    def _allowed_ports(self, group: dict[str, Any]) -> set[int]:
        return {port for allowance in self.allowed
                if allowance.security_group in (group["GroupId"], group.get("GroupName"))
                for port in allowance.ports}

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        ec2 = self.client("ec2")
        groups = [g for page in self.pages(ec2, "describe_security_groups") for g in page["SecurityGroups"]]
        exposures = [(group, rule) for group in groups for rule in self._open_rules(group)]
        users = self._users({group["GroupId"] for group, _ in exposures}, ec2) if exposures else {}
        for group, (ports, protocol, sources) in exposures:
            name = group.get("GroupName", "")
            label = self._port_label(ports, protocol)
            sensitive = self._sensitive(ports, protocol)
            used_by = users.get(group["GroupId"], [])
            severity = Severity.P2 if sensitive else Severity.P3
            what = f" ({', '.join(sensitive)})" if sensitive else ""
            yield Finding(
                check="security.open_ingress", resource=f"{group['GroupId']}:{label}",
                status=Status.CRITICAL if severity is Severity.P2 else Status.WARNING, severity=severity,
                summary=(f"security group {name} ({group['GroupId']}) opens {label}{what} to {', '.join(sources)}; "
                         f"used by {', '.join(used_by[:3]) or 'nothing attached'}"
                         + (f" and {len(used_by) - 3} more" if len(used_by) > 3 else "")),
                details={"group_id": group["GroupId"], "group_name": name, "vpc": group.get("VpcId"),
                         "ports": label, "sources": sources, "used_by": used_by[:20],
                         "fix": "remove the rule, or restrict it to known CIDRs or security groups; if it is "
                                "intended, add it to checks.security.open_ingress_allowed"})
        if not exposures:
            yield Finding(check="security.open_ingress", resource="security-groups", status=Status.OK,
                          summary=f"no world-open ingress beyond the allow-list ({len(groups)} groups checked)")

    def _open_rules(self, group: dict[str, Any]) -> Iterable[tuple[tuple[int, int], str, list[str]]]:
        allowed = self._allowed_ports(group)
        for rule in group.get("IpPermissions", []):
            sources = [r["CidrIp"] for r in rule.get("IpRanges", []) if r.get("CidrIp") in WORLD]
            sources += [r["CidrIpv6"] for r in rule.get("Ipv6Ranges", []) if r.get("CidrIpv6") in WORLD]
            if not sources:
                continue
            protocol = PROTOCOL_NAMES.get(str(rule.get("IpProtocol", "-1")), str(rule.get("IpProtocol")))
            if protocol in PORTED:
                ports = (rule.get("FromPort", 0), rule.get("ToPort", 65535))
                if ports[0] == ports[1] and ports[0] in allowed:
                    continue
            else:  # ICMP type/code, or a protocol without ports (ESP, GRE): FromPort is not a port
                ports = (-1, -1)
            yield ports, protocol, sources

    @staticmethod
    def _port_label(ports: tuple[int, int], protocol: str) -> str:
        if protocol == "-1":
            return "all traffic"
        if protocol not in PORTED:
            return f"all {protocol}" if protocol in ("icmp", "icmpv6") else f"protocol {protocol}"
        return f"{protocol}/{ports[0]}" if ports[0] == ports[1] else f"{protocol}/{ports[0]}-{ports[1]}"

    @staticmethod
    def _sensitive(ports: tuple[int, int], protocol: str) -> list[str]:
        if protocol == "-1":
            return ["every port"]
        if protocol not in PORTED:
            return []
        return [f"{name} {port}" for port, name in SENSITIVE_PORTS.items() if ports[0] <= port <= ports[1]]

    def _users(self, group_ids: set[str], ec2: Any) -> dict[str, list[str]]:
        """What sits behind each group: its network interfaces, described in one paginated listing."""
        users: dict[str, list[str]] = defaultdict(list)
        ids = sorted(group_ids)
        for start in range(0, len(ids), 200):  # a filter takes at most 200 values
            for page in self.pages(ec2, "describe_network_interfaces",
                                   Filters=[{"Name": "group-id", "Values": ids[start:start + 200]}]):
                for eni in page["NetworkInterfaces"]:
                    attachment = eni.get("Attachment") or {}
                    used = (f"instance {attachment['InstanceId']}" if attachment.get("InstanceId")
                            else eni.get("Description") or eni.get("InterfaceType") or eni["NetworkInterfaceId"])
                    for group in eni.get("Groups", []):
                        if group["GroupId"] in group_ids and used not in users[group["GroupId"]]:
                            users[group["GroupId"]].append(used)
        return users
