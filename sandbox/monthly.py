"""What the monthly review looks at beyond metrics: the bill (a Cost Explorer ledger) and the
account's security posture (IAM users, S3 buckets, CloudTrail, encryption)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from sandbox import moto_ce, moto_iam
from solemate_maintenance.config import PlatformConfig

MONTHLY_PROBLEMS = {
    "cost_spike": "ECS costs 2.5x from the 15th of the month the last monthly review covers, with a cost "
                  "anomaly (P3)",
    "user_without_mfa": "IAM user 'bob' signs in to the console with a password and no MFA (P3)",
    "public_bucket": "bucket 'solemate-marketing-drafts' is public by ACL, with no public access block (P2)",
}
MONTHLY_STATE_PROBLEMS = frozenset({"user_without_mfa", "public_bucket"})
# What a month of the platform costs per day (USD), by Cost Explorer's service names.
DAILY_COSTS = {
    "Amazon Elastic Container Service": 42.0,
    "Amazon Relational Database Service": 55.0,
    "Amazon ElastiCache": 18.0,
    "Elastic Load Balancing": 6.5,
    "Amazon Simple Storage Service": 3.2,
    "AmazonCloudWatch": 4.1,
    "AWS Backup": 2.4,
}
SPIKED_SERVICE, SPIKE_FACTOR, SPIKE_DAY = "Amazon Elastic Container Service", 2.5, 15
PUBLIC_BUCKET = "solemate-marketing-drafts"
LEDGER_DAYS = 160


def month_before(moment: datetime) -> date:
    """The month a monthly review at `moment` looks at (the run for October ends on November 1)."""
    return (moment.date().replace(day=1) - timedelta(days=1)).replace(day=1)


def last_monthly_run(moment: datetime) -> datetime:
    """When the monthly review last ran (the 3rd, 06:00): a manual run at that date gets the interval
    ending there, which reviews the calendar month before it."""
    this_month = moment.astimezone(UTC).replace(day=3, hour=6, minute=0, second=0, microsecond=0)
    return this_month if this_month <= moment else (this_month.replace(day=1) - timedelta(days=1)).replace(day=3)


def month_last_reviewed(moment: datetime) -> date:
    """The month the newest monthly review at or before `moment` covers: on the 1st and 2nd that is still
    the month before last (the review of last month runs on the 3rd)."""
    return month_before(last_monthly_run(moment))


class MonthlyEstate:
    def __init__(self, config: PlatformConfig, client: Callable[..., Any]) -> None:
        self.config = config
        self._client = client

    def create(self) -> None:
        iam = self._client("iam")
        iam.create_user(UserName="deploy-bot")  # programmatic only: keys, no password
        iam.create_access_key(UserName="deploy-bot")
        iam.create_user(UserName="alice")
        iam.create_login_profile(UserName="alice", Password="Sandbox-only-1!")
        device = iam.create_virtual_mfa_device(VirtualMFADeviceName="alice")["VirtualMFADevice"]
        iam.enable_mfa_device(UserName="alice", SerialNumber=device["SerialNumber"], AuthenticationCode1="123456",
                              AuthenticationCode2="654321")
        trail_bucket = "solemate-cloudtrail"
        self._client("s3").create_bucket(Bucket=trail_bucket)
        cloudtrail = self._client("cloudtrail")
        cloudtrail.create_trail(Name="solemate-organization", S3BucketName=trail_bucket, IsMultiRegionTrail=True)
        cloudtrail.start_logging(Name="solemate-organization")

    def apply(self, days: dict[datetime, frozenset[str]], latest: datetime) -> None:
        problems = days[latest]
        self._ledger([month_last_reviewed(anchor) for anchor, p in days.items() if "cost_spike" in p], latest)
        self._users("user_without_mfa" in problems)
        self._buckets("public_bucket" in problems)
        moto_iam.ROOT.__init__()  # a healthy root: MFA on, no keys, not used

    def _ledger(self, spiked_months: list[date], latest: datetime) -> None:
        moto_ce.LEDGER.daily.clear()
        moto_ce.LEDGER.anomalies.clear()
        # Up to today as well: the forecast of the month in progress looks at the days before today.
        last = max(latest.date(), datetime.now(UTC).date())
        for offset in range((last - latest.date()).days + LEDGER_DAYS + 2):
            day = latest.date() - timedelta(days=LEDGER_DAYS) + timedelta(days=offset)
            rng = random.Random(day.toordinal())
            costs = {service: round(cost * rng.uniform(0.95, 1.05), 4) for service, cost in DAILY_COSTS.items()}
            if day.replace(day=1) in spiked_months and day.day >= SPIKE_DAY:
                costs[SPIKED_SERVICE] = round(costs[SPIKED_SERVICE] * SPIKE_FACTOR, 4)
            moto_ce.LEDGER.daily[day] = costs
        for month in spiked_months:
            start = month.replace(day=SPIKE_DAY)
            following = (month + timedelta(days=32)).replace(day=1)
            impact = sum(moto_ce.LEDGER.daily.get(start + timedelta(days=i), {}).get(SPIKED_SERVICE, 0)
                         for i in range((following - start).days)) * (1 - 1 / SPIKE_FACTOR)
            moto_ce.LEDGER.anomalies.append({
                "AnomalyId": f"anomaly-{month:%Y%m}", "AnomalyStartDate": start.isoformat(),
                "AnomalyEndDate": (following - timedelta(days=1)).isoformat(), "DimensionValue": SPIKED_SERVICE,
                "MonitorArn": f"arn:aws:ce::{DEFAULT_ACCOUNT_ID}:anomalymonitor/solemate-services",
                "RootCauses": [{"Service": SPIKED_SERVICE, "Region": self.config.regions.primary,
                                "UsageType": "USE1-Fargate-vCPU-Hours:perCPU"}],
                "AnomalyScore": {"MaxScore": 0.92, "CurrentScore": 0.81},
                "Impact": {"MaxImpact": round(impact / 10, 2), "TotalImpact": round(impact, 2),
                           "TotalActualSpend": round(impact * SPIKE_FACTOR / (SPIKE_FACTOR - 1), 2),
                           "TotalExpectedSpend": round(impact / (SPIKE_FACTOR - 1), 2)}})

    def _users(self, without_mfa: bool) -> None:
        iam = self._client("iam")
        users = {u["UserName"] for u in iam.list_users()["Users"]}
        if without_mfa and "bob" not in users:
            iam.create_user(UserName="bob")
            iam.create_login_profile(UserName="bob", Password="Sandbox-only-2!")
        elif not without_mfa and "bob" in users:
            iam.delete_login_profile(UserName="bob")
            iam.delete_user(UserName="bob")

    def _buckets(self, public: bool) -> None:
        s3 = self._client("s3")
        names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        if public and PUBLIC_BUCKET not in names:
            s3.create_bucket(Bucket=PUBLIC_BUCKET)
        if not public and PUBLIC_BUCKET in names:
            s3.delete_bucket(Bucket=PUBLIC_BUCKET)
        block = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                 "RestrictPublicBuckets": True}
        for bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            region = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
            regional = self._client("s3", region)
            if public and bucket == PUBLIC_BUCKET:
                regional.put_bucket_acl(Bucket=bucket, ACL="public-read")
                continue
            regional.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
            regional.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        # The estate's volumes are encrypted, as the account's EBS default encryption would make them.
        for region in (self.config.regions.primary, self.config.regions.dr):
            for volume in get_backend("ec2")[DEFAULT_ACCOUNT_ID][region].volumes.values():
                volume.encrypted = True

