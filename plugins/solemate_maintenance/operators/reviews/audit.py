"""The monthly security audit of the account: IAM credentials, public or unencrypted storage,
CloudTrail. Where Prowler has the same check, the semantics (and the check id, in the details) are
Prowler's, so a finding here can be cross-checked with a Prowler scan."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from solemate_maintenance.aws_errors import error_code
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator

KEY_MAX_AGE_DAYS = 90           # prowler iam_rotate_access_key_90_days
KEY_UNUSED_DAYS = 45            # prowler iam_user_accesskey_unused (CIS 1.12)
ROOT_RECENT_USE_DAYS = 30       # prowler iam_avoid_root_usage looks at the last days' use
PUBLIC_GRANTEES = {"http://acs.amazonaws.com/groups/global/AllUsers",
                   "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"}
REPORT_WAIT_SECONDS = 60


def _when(value: str) -> datetime | None:
    if value in ("", "N/A", "no_information", "not_supported"):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _finding(check: str, resource: str, severity: Severity | None, summary: str, prowler: str,
             **details: Any) -> Finding:
    status = Status.OK if severity is None else Status.CRITICAL if severity <= Severity.P2 else Status.WARNING
    return Finding(check=check, resource=resource, status=status, severity=severity, summary=summary,
                   details={"prowler_check": prowler, **details})


class SecurityAuditOperator(MaintenanceCheckOperator):
    """IAM (credential report), S3 exposure and encryption, RDS and EBS encryption, CloudTrail.

    Root access keys, root without MFA, root used recently, a public bucket, and no multi-region
    trail logging are P2; a console user without MFA, keys older than 90 days and unencrypted storage
    P3; keys unused for 45 days P4. Credentials are live state, checked as they are now.

    :param regions: regions whose RDS instances and EBS volumes are checked.
    """

    template_fields: Sequence[str] = (*MaintenanceCheckOperator.template_fields, "regions")

    def __init__(self, *, regions: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.regions = regions

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        now = datetime.now(UTC)
        counts: dict[str, int] = {}
        for part in (self._credentials(now), self._buckets(), self._encryption(), self._cloudtrail()):
            for finding in part:
                if finding.is_problem:
                    area = finding.check.split(".")[1]
                    counts[area] = counts.get(area, 0) + 1
                yield finding
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": "Security audit: " + (", ".join(f"{n} {area}" for area, n in sorted(counts.items()))
                                              or "nothing found"),
            "problems_by_area": counts, "checked_at": now.isoformat(timespec="minutes")})

    # -- IAM ----------------------------------------------------------------------------------------
    def _credentials(self, now: datetime) -> Iterable[Finding]:
        iam = self.client("iam")
        deadline = time.monotonic() + REPORT_WAIT_SECONDS
        while iam.generate_credential_report()["State"] != "COMPLETE":
            if time.monotonic() > deadline:
                raise TimeoutError("the IAM credential report was not ready in time; the retry will ask again")
            time.sleep(2)
        rows = list(csv.DictReader(io.StringIO(iam.get_credential_report()["Content"].decode())))
        users = [r for r in rows if r["user"] != "<root_account>"]
        for root in (r for r in rows if r["user"] == "<root_account>"):
            yield from self._root(root, now)
        flagged = 0
        for row in users:
            user = row["user"]
            if row["password_enabled"] == "true" and row["mfa_active"] != "true":
                flagged += 1
                yield _finding("security.iam_mfa", user, Severity.P3,
                               f"IAM user {user} signs in to the console without MFA: enforce MFA (or remove the "
                               "password if it only needs keys)", "iam_user_mfa_enabled_console_access")
            for n in (1, 2):
                if row[f"access_key_{n}_active"] != "true":
                    continue
                rotated = _when(row[f"access_key_{n}_last_rotated"])
                used = _when(row[f"access_key_{n}_last_used_date"])
                if rotated and now - rotated > timedelta(days=KEY_MAX_AGE_DAYS):
                    flagged += 1
                    yield _finding("security.iam_key_age", f"{user} key {n}", Severity.P3,
                                   f"access key {n} of {user} is {(now - rotated).days} days old (over "
                                   f"{KEY_MAX_AGE_DAYS}): rotate it", "iam_rotate_access_key_90_days")
                last = used or rotated
                if last and now - last > timedelta(days=KEY_UNUSED_DAYS):
                    flagged += 1
                    yield _finding("security.iam_key_unused", f"{user} key {n}", Severity.P4,
                                   f"access key {n} of {user} unused for {(now - last).days} days: deactivate it",
                                   "iam_user_accesskey_unused")
        if not flagged:
            yield _finding("security.iam_users", "IAM users", None,
                           f"{len(users)} users: console users have MFA, keys under {KEY_MAX_AGE_DAYS} days and used",
                           "iam_user_mfa_enabled_console_access")

    def _root(self, row: dict[str, str], now: datetime) -> Iterable[Finding]:
        problems = 0
        if "true" in (row["access_key_1_active"], row["access_key_2_active"]):
            problems += 1
            yield _finding("security.root_keys", "root account", Severity.P2,
                           "the root account has an active access key: delete it (root is for break-glass only)",
                           "iam_no_root_access_key")
        if row["mfa_active"] != "true":
            problems += 1
            yield _finding("security.root_mfa", "root account", Severity.P2,
                           "the root account has no MFA: enable a hardware MFA now", "iam_root_mfa_enabled")
        used = [d for d in (_when(row["password_last_used"]), _when(row["access_key_1_last_used_date"]),
                            _when(row["access_key_2_last_used_date"])) if d]
        if used and now - max(used) < timedelta(days=ROOT_RECENT_USE_DAYS):
            problems += 1
            yield _finding("security.root_use", "root account", Severity.P2,
                           f"the root account was used {max(used):%Y-%m-%d %H:%M} UTC: find out who and why "
                           "(CloudTrail, userIdentity.type Root)", "iam_avoid_root_usage")
        if not problems:
            yield _finding("security.root", "root account", None, "root: MFA on, no access keys, not used recently",
                           "iam_root_mfa_enabled")

    # -- S3 -----------------------------------------------------------------------------------------
    def _buckets(self) -> Iterable[Finding]:
        s3 = self.client("s3")
        listed = [b for page in self.pages(s3, "list_buckets") for b in page.get("Buckets", [])]
        account_block = self._account_public_access_block()
        regional: dict[str, Any] = {}
        exposed = 0
        for bucket in listed:
            name = bucket["Name"]
            try:
                region = bucket.get("BucketRegion") or _bucket_region(s3.get_bucket_location(Bucket=name))
                if region not in regional:
                    regional[region] = self.client("s3", region)
                found = list(self._bucket(regional[region], name, account_block))
            except Exception as exc:
                code = error_code(exc)
                if code is None:
                    raise
                # One bucket we may not read (an explicit Deny, a bucket being deleted) must not end the audit.
                found = [_finding("security.s3_unreadable", name, Severity.P3,
                                  f"bucket {name} could not be audited ({code}): give the audit role read access "
                                  "to its ACL, policy status, public access block and encryption",
                                  "s3_bucket_public_access", error=code)]
            exposed += sum(f.is_problem for f in found)
            yield from found
        if not exposed:
            scope = " (the account's public access block covers them)" if _blocks_all(account_block) else ""
            yield _finding("security.s3", f"{len(listed)} buckets", None,
                           f"no public bucket; every bucket blocks public access{scope} and encrypts by default",
                           "s3_bucket_public_access")

    def _account_public_access_block(self) -> dict[str, Any]:
        """The account-level block, or {} when there is none or it cannot be read: then every bucket is
        judged by its own block alone, which can only report more, never hide a public bucket."""
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        from botocore.config import Config
        from botocore.exceptions import EndpointConnectionError

        account = self.client("sts").get_caller_identity()["Account"]
        # S3 Control is reached at <account>.s3-control.<region>.amazonaws.com: a host a proxy or a custom
        # endpoint may not resolve. One quick attempt; its absence is not worth the task's retries.
        s3control = AwsBaseHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, client_type="s3control",
                                config=Config(connect_timeout=5, retries={"max_attempts": 2})).conn
        try:
            return s3control.get_public_access_block(AccountId=account)["PublicAccessBlockConfiguration"]
        except EndpointConnectionError as exc:
            self.log.warning("Account-level public access block not read (%s): judging buckets by their own", exc)
            return {}
        except Exception as exc:
            if error_code(exc) not in ("NoSuchPublicAccessBlockConfiguration", "AccessDenied"):
                raise
            return {}

    def _bucket(self, regional: Any, bucket: str, account_block: dict[str, Any]) -> Iterable[Finding]:
        try:
            block = regional.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        except Exception as exc:
            if error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
                raise
            block = {}
        # Prowler's semantics: the account-level block counts for every bucket, either level will do.
        effective = {k: bool(block.get(k) or account_block.get(k)) for k in
                     ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")}
        public_by_acl = not effective["IgnorePublicAcls"] and any(
            g.get("Grantee", {}).get("URI") in PUBLIC_GRANTEES
            for g in regional.get_bucket_acl(Bucket=bucket).get("Grants", []))
        public_by_policy = False
        if not effective["RestrictPublicBuckets"]:
            try:
                public_by_policy = regional.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"]
            except Exception as exc:
                if error_code(exc) not in ("NoSuchBucketPolicy", "NotImplemented"):
                    raise
        if public_by_acl or public_by_policy:
            how = " and ".join(w for w, on in (("ACL", public_by_acl), ("bucket policy", public_by_policy)) if on)
            yield _finding("security.s3_public", bucket, Severity.P2,
                           f"bucket {bucket} is public by {how}: remove the public grant and turn on the public "
                           "access block, unless it is meant to serve the public", "s3_bucket_public_access")
        elif not (effective["IgnorePublicAcls"] and effective["RestrictPublicBuckets"]):
            yield _finding("security.s3_public_access_block", bucket, Severity.P3,
                           f"bucket {bucket} has no public access block (bucket or account level): one policy or "
                           "ACL edit away from public", "s3_bucket_level_public_access_block")
        try:
            regional.get_bucket_encryption(Bucket=bucket)
        except Exception as exc:
            if error_code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
                raise
            yield _finding("security.s3_encryption", bucket, Severity.P3,
                           f"bucket {bucket} has no default encryption: set SSE-S3 or SSE-KMS",
                           "s3_bucket_default_encryption")

    # -- encryption at rest ---------------------------------------------------------------------------
    def _encryption(self) -> Iterable[Finding]:
        found = 0
        for region in self.regions:
            rds = self.client("rds", region)
            for page in self.pages(rds, "describe_db_instances"):
                for db in page["DBInstances"]:
                    if not db.get("StorageEncrypted"):
                        found += 1
                        yield _finding("security.rds_encryption", f"{db['DBInstanceIdentifier']} ({region})",
                                       Severity.P3, "RDS storage is not encrypted: restore an encrypted copy of a "
                                       "snapshot and switch over", "rds_instance_storage_encrypted")
            ec2 = self.client("ec2", region)
            for page in self.pages(ec2, "describe_volumes", max_page=500,
                                   Filters=[{"Name": "encrypted", "Values": ["false"]}]):
                for volume in page["Volumes"]:
                    found += 1
                    yield _finding("security.ebs_encryption", f"{volume['VolumeId']} ({region})", Severity.P3,
                                   "EBS volume is not encrypted: snapshot it, copy the snapshot encrypted, swap the "
                                   "volume; turn on EBS encryption by default", "ec2_ebs_volume_encryption")
        if not found:
            yield _finding("security.encryption", ", ".join(self.regions), None,
                           "RDS instances and EBS volumes are encrypted", "rds_instance_storage_encrypted")

    # -- CloudTrail -------------------------------------------------------------------------------------
    def _cloudtrail(self) -> Iterable[Finding]:
        cloudtrail = self.client("cloudtrail")
        trails = cloudtrail.describe_trails(includeShadowTrails=True)["trailList"]
        logging, unreadable = [], []
        for trail in trails:
            if not trail.get("IsMultiRegionTrail"):
                continue
            try:
                # Asked in the trail's home region: elsewhere an organisation's or a shadow trail may be refused.
                home = self.client("cloudtrail", trail.get("HomeRegion"))
                if home.get_trail_status(Name=trail["TrailARN"]).get("IsLogging"):
                    logging.append(trail["Name"])
            except Exception as exc:
                if error_code(exc) is None:
                    raise
                unreadable.append(f"{trail['Name']} ({error_code(exc)})")
        if logging:
            yield _finding("security.cloudtrail", ", ".join(sorted(set(logging))), None,
                           "a multi-region trail is logging", "cloudtrail_multi_region_enabled")
        else:
            yield _finding("security.cloudtrail", "account", Severity.P2,
                           "no multi-region CloudTrail trail is logging: API activity is not recorded (create one, "
                           "or start logging)" + (f"; status unreadable for {', '.join(unreadable)}" if unreadable
                                                  else ""),
                           "cloudtrail_multi_region_enabled", trails=[t["Name"] for t in trails])


def _bucket_region(location: dict[str, Any]) -> str:
    """GetBucketLocation's answer as a region: None is us-east-1, and legacy buckets say "EU"."""
    constraint = location.get("LocationConstraint")
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(constraint, constraint)


def _blocks_all(block: dict[str, Any]) -> bool:
    return all(block.get(k) for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                                      "RestrictPublicBuckets"))
