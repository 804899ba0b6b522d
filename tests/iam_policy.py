"""A small IAM policy evaluator for the least-privilege test: is this recorded AWS call allowed by
these policy documents?

What it models: Allow/Deny statements, Action and NotAction with IAM wildcards (* and ?, nothing
else), Resource ARNs (the call's ARN is derived from its parameters, for the operations the DAGs make
on named resources), and the condition operators the shipped policies use (StringEquals, StringLike,
ArnLike, ArnEquals, their ForAllValues forms and IfExists) with the keys aws:RequestTag/*,
aws:ResourceTag/*, aws:RequestedRegion, cloudwatch:namespace, s3:prefix, ecs:cluster and Route 53's
record names and actions. An explicit Deny wins. Anything it cannot evaluate (NotResource, another
key or operator) raises, so an unmodelled scoping fails the test instead of passing it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from typing import Any

# botocore's signing name -> IAM's service prefix, where they differ.
IAM_PREFIX = {"monitoring": "cloudwatch", "elasticfilesystem": "elasticfilesystem"}
# Operations whose IAM action is named differently (S3, mostly).
ACTION_NAMES = {
    ("s3", "ListObjectsV2"): "ListBucket", ("s3", "ListObjects"): "ListBucket", ("s3", "HeadBucket"): "ListBucket",
    ("s3", "HeadObject"): "GetObject", ("s3", "ListBuckets"): "ListAllMyBuckets",
    ("s3", "GetBucketEncryption"): "GetEncryptionConfiguration",
    ("s3", "GetPublicAccessBlock"): "GetBucketPublicAccessBlock",
    ("s3", "GetBucketLifecycleConfiguration"): "GetLifecycleConfiguration",
    ("s3", "PutBucketLifecycleConfiguration"): "PutLifecycleConfiguration",
    ("s3", "GetBucketReplication"): "GetReplicationConfiguration",
    ("s3", "DeleteObjects"): "DeleteObject", ("s3", "ListObjectVersions"): "ListBucketVersions",
    ("s3", "CopyObject"): "PutObject",
}
READ_VERBS = ("Describe", "List", "Get", "Head", "Filter", "Lookup", "Search", "BatchGet", "Select", "Validate")


def action_of(call: dict[str, Any]) -> str:
    service = IAM_PREFIX.get(call["signing_name"], call["signing_name"])
    if call["service"] == "s3control" and call["operation"] == "GetPublicAccessBlock":
        return "s3:GetAccountPublicAccessBlock"
    return f"{service}:{ACTION_NAMES.get((service, call['operation']), call['operation'])}"


def is_read_only(action: str) -> bool:
    return action.split(":", 1)[1].startswith(READ_VERBS)


def _tags(params: dict[str, Any]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in params.get("Tags") or params.get("TagList") or params.get("tags") or []:
        if isinstance(item, dict):
            tags[item.get("Key") or item.get("key")] = item.get("Value") or item.get("value")
    for spec in params.get("TagSpecifications") or []:
        tags.update({t["Key"]: t["Value"] for t in spec.get("Tags", [])})
    return tags


def resource_arns(call: dict[str, Any]) -> list[str] | None:
    """The ARN(s) the call acts on, when the policies scope it; None when not derivable."""
    p, region, op = call["params"], call.get("region") or "*", call["operation"]
    service = IAM_PREFIX.get(call["signing_name"], call["signing_name"])
    if service == "s3" and p.get("Bucket"):
        return [f"arn:aws:s3:::{p['Bucket']}/{p['Key']}" if p.get("Key") else f"arn:aws:s3:::{p['Bucket']}"]
    if service == "rds":
        # A restore acts on its target and on what it restores from; IAM checks both.
        arns = []
        if target := p.get("TargetDBInstanceIdentifier") or p.get("DBInstanceIdentifier"):
            arns.append(f"arn:aws:rds:{region}:*:db:{target}")
        if source := p.get("SourceDBInstanceIdentifier"):
            arns.append(source if source.startswith("arn:") else f"arn:aws:rds:{region}:*:db:{source}")
        if source := p.get("SourceDBInstanceAutomatedBackupsArn"):
            arns.append(source)
        if snapshot := p.get("DBSnapshotIdentifier"):
            arns.append(snapshot if snapshot.startswith("arn:") else f"arn:aws:rds:{region}:*:snapshot:{snapshot}")
        if p.get("ResourceName"):
            arns.append(p["ResourceName"])
        if arns and op.startswith("Restore"):  # the subnet group it lands in ("default" when none is named)
            arns.append(f"arn:aws:rds:{region}:*:subgrp:{p.get('DBSubnetGroupName') or 'default'}")
        return arns or None
    if service == "cloudwatch" and op == "PutDashboard":
        return [f"arn:aws:cloudwatch::*:dashboard/{p['DashboardName']}"]
    if service == "cloudwatch" and op in ("PutMetricAlarm", "DeleteAlarms"):
        names = p.get("AlarmNames") or [p.get("AlarmName")]
        return [f"arn:aws:cloudwatch:{region}:*:alarm:{name}" for name in names]
    if service == "sns" and (p.get("TopicArn") or p.get("TargetArn")):
        return [p.get("TopicArn") or p["TargetArn"]]
    if service == "logs" and p.get("logGroupName"):
        return [f"arn:aws:logs:{region}:*:log-group:{p['logGroupName']}"]
    if service == "ecs" and op in ("UpdateService",):
        return [f"arn:aws:ecs:{region}:*:service/{p.get('cluster')}/{p.get('service')}"]
    if service == "ecs" and op in ("StopTask",):
        task = str(p.get("task", ""))
        return [task if task.startswith("arn:") else f"arn:aws:ecs:{region}:*:task/{p.get('cluster')}/{task}"]
    if service == "route53" and p.get("HostedZoneId"):
        return [f"arn:aws:route53:::hostedzone/{p['HostedZoneId'].rsplit('/', 1)[-1]}"]
    if service == "cloudformation" and p.get("StackName"):
        return [f"arn:aws:cloudformation:{region}:*:stack/{p['StackName']}/*"]
    return None


@cache
def _glob(pattern: str) -> re.Pattern:
    """IAM's wildcards: * any run of characters, ? one; every other character literal ([ too)."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.S)


def _like(value: str, pattern: str, ignore_case: bool = False) -> bool:
    if ignore_case:
        value, pattern = value.lower(), pattern.lower()
    return _glob(pattern).fullmatch(value) is not None


def _arn_matches(pattern: str, arn: str) -> bool:
    # Wildcards in the call's own ARN (an unknown region or account) must be matched by the pattern.
    if "*" in arn:
        return all(_arn_part(pp, ap) for pp, ap in zip(pattern.split(":", 5), arn.split(":", 5), strict=False)) \
            and pattern.count(":") == arn.count(":")
    return _like(arn, pattern)


def _arn_part(pattern: str, part: str) -> bool:
    return pattern == "*" or part == pattern or (part != "*" and _like(part, pattern))


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_value(key: str, call: dict[str, Any], resource_tags: dict[str, str]) -> list[str] | None:
    p, region = call["params"], call.get("region") or "*"
    if key.startswith("aws:RequestTag/"):
        value = _tags(p).get(key.split("/", 1)[1])
        return None if value is None else [value]
    if key.startswith("aws:ResourceTag/"):
        value = resource_tags.get(key.split("/", 1)[1])
        return None if value is None else [value]
    if key == "aws:RequestedRegion":
        return [call.get("region")]
    if key == "cloudwatch:namespace":
        return [p.get("Namespace")]
    if key == "s3:prefix":
        return [p.get("Prefix", "")]
    if key == "ecs:cluster":
        cluster = str(p.get("cluster") or "default")
        return [cluster if cluster.startswith("arn:") else f"arn:aws:ecs:{region}:*:cluster/{cluster}"]
    if key == "route53:ChangeResourceRecordSetsNormalizedRecordNames":
        return [str(n).rstrip(".").lower() for n in p.get("ChangeBatch", {}).get("Names", [])] or None
    if key == "route53:ChangeResourceRecordSetsActions":
        return list(p.get("ChangeBatch", {}).get("Actions", [])) or None
    raise KeyError(f"condition key {key} is not modelled")


def _compare(operator: str, actual: str, expected: list[Any]) -> bool:
    if operator == "StringEquals":
        return actual in expected
    if operator == "StringLike":
        return any(_like(str(actual), str(e)) for e in expected)
    if operator in ("ArnLike", "ArnEquals"):
        return any(_arn_matches(str(e), str(actual)) for e in expected)
    raise KeyError(f"condition operator {operator} is not modelled")


def _conditions_hold(conditions: dict[str, Any], call: dict[str, Any], resource_tags: dict[str, str]) -> bool:
    for operator, tests in conditions.items():
        for key, expected in tests.items():
            actual = _condition_value(key, call, resource_tags)
            if actual is None:
                if operator.endswith("IfExists"):
                    continue
                return False
            base = operator.removesuffix("IfExists").removeprefix("ForAllValues:")
            # Single-valued keys and ForAllValues alike: every value the request carries must match.
            if not all(_compare(base, a, _listify(expected)) for a in actual):
                return False
    return True


def _statement_matches(statement: dict[str, Any], action: str, call: dict[str, Any],
                       resource_tags: dict[str, str]) -> bool:
    if "NotResource" in statement or "NotPrincipal" in statement:
        raise KeyError(f"{statement.get('Sid')}: NotResource/NotPrincipal are not modelled")
    if "Action" in statement:
        if not any(_like(action, a, ignore_case=True) for a in _listify(statement["Action"])):
            return False
    elif any(_like(action, a, ignore_case=True) for a in _listify(statement["NotAction"])):
        return False
    resources = _listify(statement["Resource"])
    if resources != ["*"]:
        arns = resource_arns(call)
        if not arns or not all(any(_arn_matches(r, arn) for r in resources) for arn in arns):
            return False
    return _conditions_hold(statement.get("Condition", {}), call, resource_tags)


def allowed(call: dict[str, Any], policies: Iterable[dict[str, Any]],
            resource_tags: dict[str, str] | None = None) -> tuple[bool, str]:
    """(allowed, why) for one recorded call under the union of `policies`."""
    action = action_of(call)
    statements = [s for policy in policies for s in _listify(policy["Statement"])]
    tags = resource_tags or {}
    for statement in statements:
        if statement["Effect"] == "Deny" and _statement_matches(statement, action, call, tags):
            return False, f"{action} explicitly denied by {statement.get('Sid', 'a statement')}"
    for statement in statements:
        if statement["Effect"] == "Allow" and _statement_matches(statement, action, call, tags):
            return True, statement.get("Sid", "")
    return False, f"{action} on {resource_arns(call) or '*'} is not allowed"
