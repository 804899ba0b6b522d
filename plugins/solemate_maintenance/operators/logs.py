"""Daily log lifecycle: CloudWatch retention per log class, the archive buckets' S3 lifecycle, Firehose.

Read-only unless ``log_lifecycle.enforce`` is true. Either way the run computes the exact changes
that would bring AWS to the policy and shows them in the report ("would apply" or "applied").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from solemate_maintenance.config import LogArchive, LogClass, LogLifecycle
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator

RULE_ID_PREFIX = "solemate-log-class-"
LISTED = 20  # log groups named per finding; the report's table lists every change


def _days(value: int | None) -> str:
    return "never expire" if value is None else f"{value} days"


def expected_rule(log_class: str, archive: LogArchive) -> dict[str, Any]:
    rule: dict[str, Any] = {"ID": f"{RULE_ID_PREFIX}{log_class}", "Filter": {"Prefix": archive.prefix},
                            "Status": "Enabled", "Expiration": {"Days": archive.expire_after_days}}
    if archive.transitions:
        rule["Transitions"] = [{"Days": t.after_days, "StorageClass": t.storage_class} for t in archive.transitions]
    return rule


def _rule_prefix(rule: dict[str, Any]) -> str | None:
    if "Prefix" in rule:  # the legacy form
        return rule["Prefix"]
    filt = rule.get("Filter") or {}
    if "Prefix" in filt:
        return filt["Prefix"]
    if not filt:
        return ""
    return None  # tag or "And" filters: not a whole-prefix rule


def _effective(rule: dict[str, Any]) -> dict[str, Any]:
    """What a rule does to current objects, comparable with `expected_rule`."""
    transitions = sorted((t.get("Days"), t.get("StorageClass")) for t in rule.get("Transitions") or [])
    return {"transitions": [{"after_days": d, "storage_class": c} for d, c in transitions],
            "expire_after_days": (rule.get("Expiration") or {}).get("Days")}


class LogLifecycleOperator(MaintenanceCheckOperator):
    """Check (and, when enforcing, fix) the log retention policy.

    * Every log group of a class keeps its events the class's ``cloudwatch_days``. "Never expire" is
      P3 (it costs money forever); shorter than the policy is P3 (logs lost early); longer is P4.
      A group of no class (and not ignored) is P4.
    * Each class's archive bucket has an enabled lifecycle rule for its prefix with the class's
      transitions and expiry (missing or different: P3; missing bucket: P2).
    * Each configured Firehose delivery stream is ACTIVE (otherwise, or missing: P2).

    When enforcing, the retention and lifecycle changes are applied and reported as applied; a
    retention longer than the policy is shortened only with ``allow_shortening``.
    """

    def __init__(self, *, lifecycle: LogLifecycle, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lifecycle = lifecycle

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        changes: list[dict[str, Any]] = []
        yield from self._retention(changes)
        yield from self._archives(changes)
        yield from self._firehose()
        mode = "applied" if self.lifecycle.enforce else "would apply"
        if self.lifecycle.enforce and changes:
            self._apply(changes)
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": (f"Log lifecycle: {len(changes)} change(s) {mode}" if changes
                         else "Log lifecycle: matches the policy, nothing to change"),
            "mode": "enforce" if self.lifecycle.enforce else "report only (log_lifecycle.enforce is false)",
            "changes": len(changes),
            "tables": {f"Changes {mode}": {
                "columns": ["target", "change", "from", "to"],
                "rows": [[c["target"], c["change"], c["from"], c["to"]] for c in changes]}} if changes else {},
        })

    def _class_of(self, name: str) -> str | None:
        for class_name, log_class in self.lifecycle.classes.items():
            if any(fnmatchcase(name, pattern) for pattern in log_class.log_groups):
                return class_name
        return None

    def _retention(self, changes: list[dict[str, Any]]) -> Iterable[Finding]:
        logs = self.client("logs")
        groups = [g for page in self.pages(logs, "describe_log_groups", max_page=50) for g in page["logGroups"]]
        unclassified: list[str] = []
        by_class: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for group in groups:
            name = group["logGroupName"]
            if any(fnmatchcase(name, pattern) for pattern in self.lifecycle.ignore_log_groups):
                continue
            class_name = self._class_of(name)
            if class_name is None:
                unclassified.append(name)
            else:
                by_class[class_name].append(group)
        for class_name, log_class in self.lifecycle.classes.items():
            yield from self._class_retention(class_name, log_class, by_class.get(class_name, []), changes)
        if unclassified:
            yield Finding(check="logs.unclassified", resource="log-groups", status=Status.WARNING, severity=Severity.P4,
                          summary=f"{len(unclassified)} log group(s) match no log class: "
                                  f"{', '.join(unclassified[:5])}" + (" …" if len(unclassified) > 5 else ""),
                          details={"log_groups": unclassified[:LISTED * 5], "count": len(unclassified),
                                   "fix": "add a pattern to a class in log_lifecycle.classes, or to "
                                          "log_lifecycle.ignore_log_groups"})

    def _class_retention(self, class_name: str, log_class: LogClass, groups: list[dict[str, Any]],
                         changes: list[dict[str, Any]]) -> Iterable[Finding]:
        want = log_class.cloudwatch_days
        never = [g for g in groups if g.get("retentionInDays") is None]
        shorter = [g for g in groups if g.get("retentionInDays") is not None and g["retentionInDays"] < want]
        longer = [g for g in groups if g.get("retentionInDays") is not None and g["retentionInDays"] > want]
        for group in [*never, *shorter, *(longer if self.lifecycle.allow_shortening else [])]:
            changes.append({"target": group["logGroupName"], "change": "put_retention_policy",
                            "from": _days(group.get("retentionInDays")), "to": _days(want),
                            "log_group": group["logGroupName"], "days": want})
        resource = f"log class {class_name}"
        fixing = self.lifecycle.enforce
        for check, listed, severity, what in (
            ("logs.retention.never_expires", never, Severity.P3, "never expire (their storage costs grow forever)"),
            ("logs.retention.too_short", shorter, Severity.P3, "keep logs shorter than the policy"),
            ("logs.retention.too_long", longer, Severity.P4, "keep logs longer than the policy"),
        ):
            if not listed:
                continue
            names = [g["logGroupName"] for g in listed]
            fixed = fixing and (check != "logs.retention.too_long" or self.lifecycle.allow_shortening)
            yield Finding(
                check=check, resource=resource, status=Status.OK if fixed else Status.WARNING,
                severity=None if fixed else severity,
                summary=(f"{'fixed: ' if fixed else ''}{len(names)} {class_name} log group(s) {what}; policy "
                         f"{want} days: {', '.join(names[:3])}" + (" …" if len(names) > 3 else "")),
                details={"log_groups": {g["logGroupName"]: _days(g.get("retentionInDays")) for g in listed[:LISTED]},
                         "count": len(names), "policy_days": want,
                         "fix": "applied by this run" if fixed else "set log_lifecycle.enforce: true to apply"
                         + (" (and allow_shortening: true to shorten)" if check == "logs.retention.too_long" else "")})
        if not (never or shorter or longer):
            yield Finding(check="logs.retention", resource=resource, status=Status.OK,
                          summary=f"{len(groups)} {class_name} log group(s) keep {want} days")

    def _archives(self, changes: list[dict[str, Any]]) -> Iterable[Finding]:
        s3 = self.client("s3")
        for class_name, log_class in self.lifecycle.classes.items():
            archive = log_class.archive
            if archive is None:
                continue
            resource = f"s3://{archive.bucket}/{archive.prefix}"
            want = expected_rule(class_name, archive)
            try:
                rules = s3.get_bucket_lifecycle_configuration(Bucket=archive.bucket)["Rules"]
            except s3.exceptions.NoSuchBucket:
                yield Finding(check="logs.archive_bucket", resource=resource, status=Status.CRITICAL,
                              severity=Severity.P2, summary=f"{class_name} log archive bucket does not exist",
                              details={"fix": f"create the bucket or correct log_lifecycle.classes.{class_name}"
                                              ".archive.bucket"})
                continue
            except Exception as exc:  # NoSuchLifecycleConfiguration comes as a plain ClientError
                if getattr(exc, "response", {}).get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
                    raise
                rules = []
            covering = [r for r in rules if r.get("Status") == "Enabled" and _rule_prefix(r) == archive.prefix]
            expected = _effective(want)
            actual = [_effective(r) for r in covering]
            shown_actual = "; ".join(self._describe(a) for a in actual) or "none"
            if expected in actual:
                yield Finding(check="logs.archive_lifecycle", resource=resource, status=Status.OK,
                              summary=f"{class_name} archive lifecycle matches the policy",
                              details={"expected": expected})
                continue
            others = [r for r in rules if r.get("ID") != want["ID"] and r not in covering]
            changes.append({"target": resource, "change": "put_bucket_lifecycle_configuration",
                            "from": "; ".join(self._describe(a) for a in actual) or "no rule",
                            "to": self._describe(expected), "bucket": archive.bucket, "rules": [*others, want]})
            fixed = self.lifecycle.enforce
            yield Finding(
                check="logs.archive_lifecycle", resource=resource, status=Status.OK if fixed else Status.WARNING,
                severity=None if fixed else Severity.P3,
                summary=(f"{'fixed: ' if fixed else ''}{class_name} archive lifecycle "
                         f"{'differs from' if actual else 'missing for'} the policy: expected "
                         f"{self._describe(expected)}, actual {shown_actual}"),
                details={"expected": expected, "actual": actual,
                         "fix": "applied by this run" if fixed else "set log_lifecycle.enforce: true to apply"})

    @staticmethod
    def _describe(effective: dict[str, Any]) -> str:
        steps = [f"{t['storage_class']} after {t['after_days']} d" for t in effective["transitions"]]
        steps.append(f"expire after {effective['expire_after_days']} d" if effective["expire_after_days"]
                     else "never expire")
        return ", ".join(steps)

    def _firehose(self) -> Iterable[Finding]:
        for stream in self.lifecycle.firehose_streams:
            firehose = self.client("firehose", stream.region)
            try:
                described = firehose.describe_delivery_stream(DeliveryStreamName=stream.name)[
                    "DeliveryStreamDescription"]
            except firehose.exceptions.ResourceNotFoundException:
                yield Finding(check="logs.firehose", resource=stream.name, status=Status.CRITICAL, severity=Severity.P2,
                              summary="Firehose delivery stream not found: logs are not reaching the archive",
                              details={"fix": "recreate the stream or correct log_lifecycle.firehose_streams"})
                continue
            status = described["DeliveryStreamStatus"]
            targets = [d.get("ExtendedS3DestinationDescription", d.get("S3DestinationDescription", {})).get("BucketARN")
                       or (d.get("AmazonopensearchserviceDestinationDescription")
                           or d.get("ElasticsearchDestinationDescription") or {}).get("DomainARN")
                       for d in described.get("Destinations", [])]
            ok = status == "ACTIVE"
            yield Finding(check="logs.firehose", resource=stream.name,
                          status=Status.OK if ok else Status.CRITICAL, severity=None if ok else Severity.P2,
                          summary=f"delivery stream {status} to "
                                  f"{', '.join(t for t in targets if t) or 'no destination'}",
                          details={"status": status, "destinations": targets,
                                   "failure": described.get("FailureDescription")})

    def _apply(self, changes: list[dict[str, Any]]) -> None:
        logs, s3 = self.client("logs"), self.client("s3")
        for change in changes:
            if "log_group" in change:
                logs.put_retention_policy(logGroupName=change["log_group"], retentionInDays=change["days"])
            else:
                s3.put_bucket_lifecycle_configuration(Bucket=change["bucket"],
                                                      LifecycleConfiguration={"Rules": change["rules"]})
            self.log.info("applied %s on %s: %s -> %s", change["change"], change["target"], change["from"],
                          change["to"])
