"""S3 lifecycle rules the project owns (the log archives', the reports bucket's): compare a bucket's
rules with the policy, and apply only the project's own rules, keeping every other one as it is."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from solemate_maintenance.aws_errors import error_code
from solemate_maintenance.findings import Finding, Severity, Status


@dataclass(frozen=True)
class WantedRule:
    """One lifecycle rule of the policy: objects under `prefix` of `bucket` move down `transitions`
    ((days, storage class), ...) and expire after `expire_after_days` (None: never)."""

    rule_id: str
    bucket: str
    prefix: str
    transitions: tuple[tuple[int, str], ...]
    expire_after_days: int | None
    # How the findings name it ("security log archive"), and the setting that turns enforcement on.
    label: str
    enforce_key: str
    # Old versions in a versioned bucket; None: not the policy's business (a rule's own setting is kept).
    noncurrent_expire_after_days: int | None = None

    @property
    def resource(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def as_rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"ID": self.rule_id, "Filter": {"Prefix": self.prefix}, "Status": "Enabled"}
        if self.expire_after_days is not None:
            rule["Expiration"] = {"Days": self.expire_after_days}
        if self.transitions:
            rule["Transitions"] = [{"Days": days, "StorageClass": storage} for days, storage in self.transitions]
        if self.noncurrent_expire_after_days is not None:
            rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": self.noncurrent_expire_after_days}
        return rule


def rule_prefix(rule: dict[str, Any]) -> str | None:
    if "Prefix" in rule:  # the legacy form
        return rule["Prefix"]
    filt = rule.get("Filter") or {}
    if "Prefix" in filt:
        return filt["Prefix"]
    if not filt:
        return ""
    return None  # tag or "And" filters: not a whole-prefix rule


def effective(rule: dict[str, Any], *, noncurrent: bool = False) -> dict[str, Any]:
    """What a rule does to current objects (and, with `noncurrent`, to old versions), comparable
    between the policy's and the bucket's."""
    transitions = sorted((t.get("Days"), t.get("StorageClass")) for t in rule.get("Transitions") or [])
    effect: dict[str, Any] = {"transitions": [{"after_days": d, "storage_class": c} for d, c in transitions],
                              "expire_after_days": (rule.get("Expiration") or {}).get("Days")}
    if noncurrent:
        effect["noncurrent_expire_after_days"] = (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays")
    return effect


def describe(effect: dict[str, Any]) -> str:
    steps = [f"{t['storage_class']} after {t['after_days']} d" for t in effect["transitions"]]
    steps.append(f"expire after {effect['expire_after_days']} d" if effect["expire_after_days"] else "never expire")
    if effect.get("noncurrent_expire_after_days"):
        steps.append(f"old versions expire after {effect['noncurrent_expire_after_days']} d")
    return ", ".join(steps)


def bucket_rules(s3: Any, bucket: str) -> list[dict[str, Any]] | None:
    """The bucket's lifecycle rules; [] without a configuration, None without the bucket."""
    try:
        return s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except s3.exceptions.NoSuchBucket:
        return None
    except Exception as exc:  # NoSuchLifecycleConfiguration comes as a plain ClientError
        if error_code(exc) != "NoSuchLifecycleConfiguration":
            raise
        return []


def compare(wanted: WantedRule, rules: list[dict[str, Any]], *, check: str, enforce: bool,
            changes: list[dict[str, Any]]) -> list[Finding]:
    """Findings for one wanted rule against the bucket's `rules`; the change it needs goes to `changes`.

    Missing or different: P3 (or "fixed" when enforcing: the caller applies `changes` first). Another
    enabled rule over the same objects that expires them earlier: P3, never touched."""
    noncurrent = wanted.noncurrent_expire_after_days is not None
    expected = effective(wanted.as_rule(), noncurrent=noncurrent)
    # Every enabled rule whose prefix covers the objects acts on them.
    covering = [r for r in rules if r.get("Status") == "Enabled" and rule_prefix(r) is not None
                and wanted.prefix.startswith(rule_prefix(r) or "")]
    exact = [r for r in covering if rule_prefix(r) == wanted.prefix]
    keep = wanted.expire_after_days
    earlier = [r for r in covering if r.get("ID") != wanted.rule_id and (r.get("Expiration") or {}).get("Days")
               and (keep is None or r["Expiration"]["Days"] < keep)]
    matches = any(effective(r, noncurrent=noncurrent) == expected for r in exact)
    shown_actual = "; ".join(describe(effective(r, noncurrent=noncurrent)) for r in exact) or "none"
    findings = []
    if not matches:
        changes.append({"target": wanted.resource, "change": "put_bucket_lifecycle_configuration",
                        "from": shown_actual if exact else "no rule", "to": describe(expected),
                        "bucket": wanted.bucket, "rule": wanted.as_rule()})
        findings.append(Finding(
            check=check, resource=wanted.resource,
            status=Status.OK if enforce else Status.WARNING, severity=None if enforce else Severity.P3,
            summary=(f"{'fixed: ' if enforce else ''}{wanted.label} lifecycle "
                     f"{'differs from' if exact else 'missing for'} the policy: expected "
                     f"{describe(expected)}, actual {shown_actual}"),
            details={"expected": expected, "actual": [effective(r, noncurrent=noncurrent) for r in exact],
                     "fix": "applied by this run" if enforce else f"set {wanted.enforce_key}: true to apply"}))
    if earlier:
        findings.append(Finding(
            check=f"{check}.conflict", resource=wanted.resource, status=Status.WARNING, severity=Severity.P3,
            summary=(f"rule(s) {', '.join(str(r.get('ID', '?')) for r in earlier)} on {wanted.bucket} expire "
                     f"{wanted.label} objects after {min(r['Expiration']['Days'] for r in earlier)} days, before "
                     f"the policy's {'expiry after ' + str(keep) + ' days' if keep else 'no expiry'}"),
            details={"rules": [r.get("ID") for r in earlier],
                     "fix": "narrow or change those rules by hand; enforcement never touches other rules"}))
    elif matches:
        findings.append(Finding(check=check, resource=wanted.resource, status=Status.OK,
                                summary=f"{wanted.label} lifecycle matches the policy", details={"expected": expected}))
    return findings


def apply(s3: Any, changes: Sequence[dict[str, Any]], log: Any) -> None:
    """One read and one write per bucket, changing only the policy's own rules (kept settings, such
    as a rule's noncurrent-version expiry, stay)."""
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
            merged = {**(kept or {}), **want}
            merged.pop("Prefix", None)  # the legacy form cannot be combined with Filter
            for optional in ("Transitions", "Expiration"):
                if optional not in want:
                    merged.pop(optional, None)
            rules = [r for r in rules if r.get("ID") != want["ID"]] + [merged]
        kwargs: dict[str, Any] = {}
        if current.get("TransitionDefaultMinimumObjectSize"):
            kwargs["TransitionDefaultMinimumObjectSize"] = current["TransitionDefaultMinimumObjectSize"]
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules}, **kwargs)
        for change in bucket_changes:
            log.info("applied %s on %s: %s -> %s", change["change"], change["target"], change["from"], change["to"])
