"""Daily log lifecycle: CloudWatch retention per log class, the archive buckets' S3 lifecycle, Firehose.

Read-only unless ``log_lifecycle.enforce`` is true. Either way the run computes the exact changes
that would bring AWS to the policy and shows them in the report ("would apply" or "applied").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from solemate_maintenance.aws_errors import error_code
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
                rules_of[archive.bucket] = self._bucket_rules(s3, archive.bucket)
            rules = rules_of[archive.bucket]
            if rules is None:
                findings.append(Finding(
                    check="logs.archive_bucket", resource=resource, status=Status.CRITICAL, severity=Severity.P2,
                    summary=f"{class_name} log archive bucket does not exist",
                    details={"fix": f"create the bucket or correct log_lifecycle.classes.{class_name}.archive.bucket"}))
                continue
            archived.add(class_name)
            want = expected_rule(class_name, archive)
            expected = _effective(want)
            # Every enabled rule whose prefix covers the archive's objects acts on them.
            covering = [r for r in rules if r.get("Status") == "Enabled" and _rule_prefix(r) is not None
                        and archive.prefix.startswith(_rule_prefix(r) or "")]
            exact = [r for r in covering if _rule_prefix(r) == archive.prefix]
            earlier = [r for r in covering if r.get("ID") != want["ID"] and (r.get("Expiration") or {}).get("Days")
                       and r["Expiration"]["Days"] < archive.expire_after_days]
            matches = any(_effective(r) == expected for r in exact)
            shown_actual = "; ".join(self._describe(_effective(r)) for r in exact) or "none"
            fixed = False
            if not matches:
                changes.append({"target": resource, "change": "put_bucket_lifecycle_configuration",
                                "from": shown_actual if exact else "no rule", "to": self._describe(expected),
                                "bucket": archive.bucket, "rule": want})
                fixed = self.lifecycle.enforce
                findings.append(Finding(
                    check="logs.archive_lifecycle", resource=resource,
                    status=Status.OK if fixed else Status.WARNING, severity=None if fixed else Severity.P3,
                    summary=(f"{'fixed: ' if fixed else ''}{class_name} archive lifecycle "
                             f"{'differs from' if exact else 'missing for'} the policy: expected "
                             f"{self._describe(expected)}, actual {shown_actual}"),
                    details={"expected": expected, "actual": [_effective(r) for r in exact],
                             "fix": "applied by this run" if fixed else "set log_lifecycle.enforce: true to apply"}))
            if earlier:
                findings.append(Finding(
                    check="logs.archive_lifecycle.conflict", resource=resource, status=Status.WARNING,
                    severity=Severity.P3,
                    summary=(f"rule(s) {', '.join(str(r.get('ID', '?')) for r in earlier)} on {archive.bucket} expire "
                             f"{class_name} logs after {min(r['Expiration']['Days'] for r in earlier)} days, before "
                             f"the policy's {archive.expire_after_days}"),
                    details={"rules": [r.get("ID") for r in earlier],
                             "fix": "narrow or change those rules by hand; enforcement never touches other rules"}))
            elif matches:
                findings.append(Finding(check="logs.archive_lifecycle", resource=resource, status=Status.OK,
                                        summary=f"{class_name} archive lifecycle matches the policy",
                                        details={"expected": expected}))
        return findings, archived

    @staticmethod
    def _bucket_rules(s3: Any, bucket: str) -> list[dict[str, Any]] | None:
        """The bucket's lifecycle rules; [] without a configuration, None without the bucket."""
        try:
            return s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        except s3.exceptions.NoSuchBucket:
            return None
        except Exception as exc:  # NoSuchLifecycleConfiguration comes as a plain ClientError
            if error_code(exc) != "NoSuchLifecycleConfiguration":
                raise
            return []

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
        logs, s3 = self.client("logs"), self.client("s3")
        for change in changes:
            if "log_group" in change:
                logs.put_retention_policy(logGroupName=change["log_group"], retentionInDays=change["days"])
                self.log.info("applied %s on %s: %s -> %s", change["change"], change["target"], change["from"],
                              change["to"])
        # One read and one write per bucket (classes may share one), changing only this policy's rules.
        by_bucket: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for change in changes:
            if "bucket" in change:
                by_bucket[change["bucket"]].append(change)
        for bucket, bucket_changes in by_bucket.items():
            try:
                current = s3.get_bucket_lifecycle_configuration(Bucket=bucket)
            except Exception as exc:
                if error_code(exc) != "NoSuchLifecycleConfiguration":
                    raise
                current = {"Rules": []}
            rules = list(current["Rules"])
            for change in bucket_changes:
                want = change["rule"]
                kept = next((r for r in rules if r.get("ID") == want["ID"]), None)
                merged = {**(kept or {}), **want}  # keeps e.g. its noncurrent-version and multipart settings
                merged.pop("Prefix", None)  # the legacy form cannot be combined with Filter
                if "Transitions" not in want:
                    merged.pop("Transitions", None)
                rules = [r for r in rules if r.get("ID") != want["ID"]] + [merged]
            kwargs: dict[str, Any] = {}
            if current.get("TransitionDefaultMinimumObjectSize"):
                kwargs["TransitionDefaultMinimumObjectSize"] = current["TransitionDefaultMinimumObjectSize"]
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules}, **kwargs)
            for change in bucket_changes:
                self.log.info("applied %s on %s: %s -> %s", change["change"], change["target"], change["from"],
                              change["to"])
