"""The drill's static-asset component: replication configured and enabled, and the age of the oldest
change the replica lacks (RPO)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from airflow.sdk.timezone import utcnow

from solemate_maintenance.config import AssetReplication
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.dr.drill import SCAN_LIMIT, _DrCheck, _minutes, _utc


# -- static assets -----------------------------------------------------------------------------------------
class DrStaticAssetsOperator(_DrCheck):
    """Replication configured and enabled on each asset bucket, and its lag: the newest objects of the
    source compared with the replica. RPO = the oldest unreplicated change (or the slowest copy)."""

    component = "static_assets"

    def __init__(self, *, buckets: list[AssetReplication], sample: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.buckets = buckets
        self.sample = sample

    def measure(self, context: Any) -> Iterable[Finding]:
        if not self.buckets:
            self.push_component(context, "static_assets", can_fail_over=False)
            yield Finding(check="dr.static_assets.replication", resource="disaster_recovery.asset_buckets",
                          status=Status.CRITICAL, severity=Severity.P1,
                          summary="no asset buckets configured: static assets have no DR copy to fail over to")
            return
        worst, can, serving = 0.0, True, 0.0
        for pair in self.buckets:
            findings, rpo, ok, seconds = self._bucket(pair)
            yield from findings
            can &= ok
            worst = max(worst, rpo or 0.0)
            serving = max(serving, seconds or 0.0)
        # The replica is live: recovering is pointing the CDN/DNS at it (counted in the complete system);
        # what the drill can measure is that the replica serves the newest object, and how fast.
        self.push_component(context, "static_assets", rpo_minutes=round(worst, 2), can_fail_over=can,
                            rto_minutes=_minutes(serving) if can else None)
        if can:
            yield self.rpo_finding("dr.static_assets.rpo", ", ".join(p.replica_bucket for p in self.buckets),
                                   round(worst, 2), f"the oldest change among the newest {self.sample} objects that "
                                                    "the replica lacks")

    def _newest_objects(self, s3: Any, bucket: str) -> tuple[list[dict[str, Any]], int]:
        """The newest `sample` objects among at most SCAN_LIMIT listed (S3 lists by key, not by time)."""
        scanned: list[dict[str, Any]] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            scanned += page.get("Contents", [])
            if len(scanned) >= SCAN_LIMIT:
                break
        newest = sorted(scanned, key=lambda o: o["LastModified"], reverse=True)[: self.sample]
        return newest, len(scanned)

    @staticmethod
    def _replica_holds(replica: Any, bucket: str, key: str, source: dict[str, Any]) -> str:
        """'current', 'stale' (the replica has the key but an older version: written while replication
        was off) or 'absent'. Replication keeps the source's version id and ETag; the same content written
        again (same ETag) is held too."""
        try:
            copy = replica.head_object(Bucket=bucket, Key=key)
        except replica.exceptions.ClientError:
            return "absent"
        same_version = source.get("VersionId") not in (None, "null") and copy.get("VersionId") == source["VersionId"]
        same_content = source.get("ETag") is not None and copy.get("ETag") == source["ETag"]
        return "current" if same_version or same_content else "stale"

    def _bucket(self, pair: AssetReplication) -> tuple[list[Finding], float | None, bool, float | None]:
        source = self.client("s3", self.primary_region)
        replica = self.client("s3")
        resource = f"{pair.source_bucket} -> {pair.replica_bucket}"
        findings: list[Finding] = []
        try:
            rules = source.get_bucket_replication(Bucket=pair.source_bucket)["ReplicationConfiguration"]["Rules"]
        except source.exceptions.ClientError as exc:
            rules = []
            if "ReplicationConfigurationNotFound" not in str(exc):
                raise
        replica_arn = f"arn:aws:s3:::{pair.replica_bucket}"
        to_replica = [r for r in rules if r.get("Destination", {}).get("Bucket") == replica_arn]
        if not to_replica:
            return [Finding(check="dr.static_assets.replication", resource=resource, status=Status.CRITICAL,
                            severity=Severity.P1, summary=f"no replication rule from {pair.source_bucket} to "
                                                          f"{pair.replica_bucket}: assets cannot fail over")], \
                None, False, None
        if not any(r.get("Status") == "Enabled" for r in to_replica):
            findings.append(Finding(check="dr.static_assets.replication", resource=resource, status=Status.CRITICAL,
                                    severity=Severity.P2, summary="replication rule is Disabled: new assets no longer "
                                                                  "reach the DR region"))
        else:
            findings.append(Finding(check="dr.static_assets.replication", resource=resource, status=Status.OK,
                                    summary="replication rule enabled"))
        newest, scanned = self._newest_objects(source, pair.source_bucket)
        lags: list[float] = []
        missing: list[str] = []
        stale: list[str] = []
        failed: list[str] = []
        now = utcnow()
        for obj in newest:
            # A replica keeps the source's LastModified, so the copy's time says nothing: S3's own
            # replication status does; an object without one (written while the rule was off) is
            # looked for in the replica.
            head = source.head_object(Bucket=pair.source_bucket, Key=obj["Key"])
            status = head.get("ReplicationStatus")
            if status == "COMPLETED":
                lags.append(0.0)
                continue
            held = self._replica_holds(replica, pair.replica_bucket, obj["Key"], head) if status is None else None
            if held == "current":
                lags.append(0.0)
                continue
            if held == "stale":
                stale.append(obj["Key"])
            (failed if status == "FAILED" else missing).append(obj["Key"])
            # The change the replica lacks is the source's current version: its age is the lag.
            lags.append(_minutes((now - _utc(obj["LastModified"])).total_seconds()))
        present = [o["Key"] for o in newest if o["Key"] not in missing and o["Key"] not in failed]
        seconds = None
        if present:
            began = time.monotonic()
            replica.get_object(Bucket=pair.replica_bucket, Key=present[0])["Body"].read()
            seconds = time.monotonic() - began
        sample = f"the newest {len(newest)} objects" + (f" of the first {scanned} listed" if scanned >= SCAN_LIMIT
                                                          else "")
        if failed:
            findings.append(Finding(check="dr.static_assets.failed", resource=resource, status=Status.CRITICAL,
                                    severity=Severity.P2,
                                    summary=f"replication FAILED for {len(failed)} of {sample} (e.g. {failed[0]}): "
                                            "check the replication role's permissions and the replica's KMS key",
                                    details={"failed": failed[:20]}))
        if missing:
            findings.append(Finding(check="dr.static_assets.missing", resource=resource, status=Status.WARNING,
                                    severity=Severity.P3,
                                    summary=f"{len(missing)} of {sample} are not in the replica yet "
                                            f"(e.g. {missing[0]})"
                                            + (f"; {len(stale)} of them only as an older version (written while "
                                               "replication was off: S3 Batch Replication copies them)"
                                               if stale else ""),
                                    details={"missing": missing[:20], "older_version_in_replica": stale[:20]}))
        return findings, max(lags) if lags else 0.0, True, seconds
