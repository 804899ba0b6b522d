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
from solemate_maintenance.operators.housekeeping import bucket_lifecycle
from solemate_maintenance.operators.housekeeping.bucket_lifecycle import WantedRule

RULE_ID_PREFIX = "solemate-log-class-"
LISTED = 20  # log groups named per finding; the report's table lists every change


def _days(value: int | None) -> str:
    return "never expire" if value is None else f"{value} days"


def wanted_rule(log_class: str, archive: LogArchive) -> WantedRule:
    return WantedRule(rule_id=f"{RULE_ID_PREFIX}{log_class}", bucket=archive.bucket, prefix=archive.prefix,
                      transitions=tuple((t.after_days, t.storage_class) for t in archive.transitions),
                      expire_after_days=archive.expire_after_days, label=f"{log_class} archive",
                      enforce_key="log_lifecycle.enforce")


def expected_rule(log_class: str, archive: LogArchive) -> dict[str, Any]:
    return wanted_rule(log_class, archive).as_rule()


class LogLifecycleOperator(MaintenanceCheckOperator):
    """Check (and, when enforcing, fix) the log retention policy.

    * Every log group of a class keeps its events the class's ``cloudwatch_days``. "Never expire" is
      P3 (it costs money forever); shorter than the policy is P3 (logs lost early); longer is P4.
      A group of no class (and not ignored) is P4.
    * Each class's archive bucket has an enabled lifecycle rule for its prefix with the class's
      transitions and expiry (missing or different: P3; missing bucket: P2); another enabled rule
      over the same objects that expires them earlier is P3 and is never touched.
    * Each configured Firehose delivery stream is ACTIVE (otherwise, or missing: P2).

    When enforcing, the changes are applied first and the findings then say what was fixed.
    Lengthening a retention is always safe. Shortening one (including "never expire", which deletes
    the older events) needs ``allow_shortening`` too, and is skipped for a class whose archive
    bucket is missing or while a delivery stream is down: CloudWatch may hold the only copy. On an
    archive bucket only this policy's own rule (``solemate-log-class-<class>``) is added or updated,
    with its other settings kept; every other rule stays as it is.
    """

    def __init__(self, *, lifecycle: LogLifecycle, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lifecycle = lifecycle

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        changes: list[dict[str, Any]] = []
        firehose = list(self._firehose())
        streams_ok = all(f.status is Status.OK for f in firehose)
        archives, archived_classes = self._archives(changes)
        retention = self._retention(changes, {c for c in archived_classes if streams_ok})
        mode = "applied" if self.lifecycle.enforce else "would apply"
        if self.lifecycle.enforce and changes:
            self._apply(changes)  # before any finding says "fixed"
        yield from retention
        yield from archives
        yield from firehose
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

    def _retention(self, changes: list[dict[str, Any]], may_shorten: set[str]) -> list[Finding]:
        logs = self.client("logs")
        groups = [g for page in self.pages(logs, "describe_log_groups", max_page=50) for g in page["logGroups"]
                  # DELIVERY-class groups keep one day by design (vended logs on their way elsewhere).
                  if g.get("logGroupClass") != "DELIVERY"]
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
        findings = []
        for class_name, log_class in self.lifecycle.classes.items():
            findings += self._class_retention(class_name, log_class, by_class.get(class_name, []), changes,
                                              class_name in may_shorten)
        if unclassified:
            findings.append(Finding(
                check="logs.unclassified", resource="log-groups", status=Status.WARNING, severity=Severity.P4,
                summary=f"{len(unclassified)} log group(s) match no log class: "
                        f"{', '.join(unclassified[:5])}" + (" …" if len(unclassified) > 5 else ""),
                details={"log_groups": unclassified[:LISTED * 5], "count": len(unclassified),
                         "fix": "add a pattern to a class in log_lifecycle.classes, or to "
                                "log_lifecycle.ignore_log_groups"}))
        return findings

    def _class_retention(self, class_name: str, log_class: LogClass, groups: list[dict[str, Any]],
                         changes: list[dict[str, Any]], archive_safe: bool) -> list[Finding]:
        want = log_class.cloudwatch_days
        never = [g for g in groups if g.get("retentionInDays") is None]
        shorter = [g for g in groups if g.get("retentionInDays") is not None and g["retentionInDays"] < want]
        longer = [g for g in groups if g.get("retentionInDays") is not None and g["retentionInDays"] > want]
        shorten = self.lifecycle.allow_shortening and archive_safe
        for group in [*shorter, *((never + longer) if shorten else [])]:
            changes.append({"target": group["logGroupName"], "change": "put_retention_policy",
                            "from": _days(group.get("retentionInDays")), "to": _days(want),
                            "log_group": group["logGroupName"], "days": want})
        resource = f"log class {class_name}"
        enforcing = self.lifecycle.enforce
        if not self.lifecycle.allow_shortening:
            blocked = "set log_lifecycle.allow_shortening: true (it deletes the older events)"
        else:
            blocked = "not shortened while the class's archive bucket is missing or a delivery stream is down"
        findings = []
        for check, listed, severity, what, fixable in (
            ("logs.retention.never_expires", never, Severity.P3, "never expire (their storage costs grow forever)",
             shorten),
            ("logs.retention.too_short", shorter, Severity.P3, "keep logs shorter than the policy", True),
            ("logs.retention.too_long", longer, Severity.P4, "keep logs longer than the policy", shorten),
        ):
            if not listed:
                continue
            names = [g["logGroupName"] for g in listed]
            fixed = enforcing and fixable
            if fixed:
                fix = "applied by this run"
            elif not enforcing:
                fix = "set log_lifecycle.enforce: true to apply" + ("" if fixable else f", and {blocked}")
            else:
                fix = blocked
            findings.append(Finding(
                check=check, resource=resource, status=Status.OK if fixed else Status.WARNING,
                severity=None if fixed else severity,
                summary=(f"{'fixed: ' if fixed else ''}{len(names)} {class_name} log group(s) {what}; policy "
                         f"{want} days: {', '.join(names[:3])}" + (" …" if len(names) > 3 else "")),
                details={"log_groups": {g["logGroupName"]: _days(g.get("retentionInDays")) for g in listed[:LISTED]},
                         "count": len(names), "policy_days": want, "fix": fix}))
        if not (never or shorter or longer):
            findings.append(Finding(check="logs.retention", resource=resource, status=Status.OK,
                                    summary=f"{len(groups)} {class_name} log group(s) keep {want} days"))
        return findings

    def _archives(self, changes: list[dict[str, Any]]) -> tuple[list[Finding], set[str]]:
        """The archive buckets' lifecycle; also which classes have an archive bucket at all."""
        s3 = self.client("s3")
        findings: list[Finding] = []
        archived: set[str] = set()
        rules_of: dict[str, list[dict[str, Any]] | None] = {}
        for class_name, log_class in self.lifecycle.classes.items():
            archive = log_class.archive
            if archive is None:
                continue
            resource = f"s3://{archive.bucket}/{archive.prefix}"
            if archive.bucket not in rules_of:
                rules_of[archive.bucket] = bucket_lifecycle.bucket_rules(s3, archive.bucket)
            rules = rules_of[archive.bucket]
            if rules is None:
                findings.append(Finding(
                    check="logs.archive_bucket", resource=resource, status=Status.CRITICAL, severity=Severity.P2,
                    summary=f"{class_name} log archive bucket does not exist",
                    details={"fix": f"create the bucket or correct log_lifecycle.classes.{class_name}.archive.bucket"}))
                continue
            archived.add(class_name)
            findings += bucket_lifecycle.compare(wanted_rule(class_name, archive), rules,
                                                 check="logs.archive_lifecycle", enforce=self.lifecycle.enforce,
                                                 changes=changes)
        return findings, archived

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
            targets = [self._destination(d) for d in described.get("Destinations", [])]
            ok = status == "ACTIVE"
            yield Finding(check="logs.firehose", resource=stream.name,
                          status=Status.OK if ok else Status.CRITICAL, severity=None if ok else Severity.P2,
                          summary=f"delivery stream {status} to {', '.join(targets) or 'no destination'}",
                          details={"status": status, "destinations": targets,
                                   "failure": described.get("FailureDescription")})

    @staticmethod
    def _destination(description: dict[str, Any]) -> str:
        for key, value in description.items():
            if not key.endswith("DestinationDescription") or not isinstance(value, dict):
                continue
            for field in ("BucketARN", "DomainARN", "CollectionEndpoint", "ClusterEndpoint", "HECEndpoint",
                          "ClusterJDBCURL", "AccountUrl"):
                if value.get(field):
                    return str(value[field])
            return key.removesuffix("DestinationDescription")
        return "unknown destination"

    def _apply(self, changes: list[dict[str, Any]]) -> None:
        logs = self.client("logs")
        for change in changes:
            if "log_group" in change:
                logs.put_retention_policy(logGroupName=change["log_group"], retentionInDays=change["days"])
                self.log.info("applied %s on %s: %s -> %s", change["change"], change["target"], change["from"],
                              change["to"])
        bucket_lifecycle.apply(self.client("s3"), changes, self.log)
