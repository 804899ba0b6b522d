"""The restore test's throw-away instance: its name, its tags, and the guard in front of every delete.

The instance's identifier is derived from the DAG and the run's logical date, never from the clock:
a retry, a cleared run or a new run for the same date finds the instance an earlier attempt created
and reuses it. Its tags say what it is, which run owns it, when it was requested and when it
expires; nothing is deleted unless those tags say it is this test's ephemeral copy.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

PURPOSE = "restore-test"
TAG_PURPOSE = "solemate:purpose"
TAG_EPHEMERAL = "solemate:ephemeral"
TAG_SOURCE = "solemate:source-db"
TAG_DAG = "solemate:owner-dag"
TAG_RUN = "solemate:owner-run"
TAG_EXPIRES = "solemate:expires-at"
TAG_REQUESTED = "solemate:restore-requested-at"
TAG_RESTORE_POINT = "solemate:restore-point"
TAG_RESTORE_TYPE = "solemate:restore-type"


def instance_id(prefix: str, dag_id: str, logical_date: datetime) -> str:
    """`restore-test-20261125-0300-1a2b3c`: readable date, short digest of DAG and date (<= 63 chars)."""
    moment = logical_date.astimezone(UTC)
    digest = hashlib.sha256(f"{dag_id}|{moment.isoformat()}".encode()).hexdigest()[:6]
    return f"{prefix}-{moment:%Y%m%d-%H%M}-{digest}"


def tag_value(value: str) -> str:
    # RDS tag values allow letters, digits, spaces and _ . : / = + - @ (at most 256 characters).
    allowed = set("_.:/=+-@ ")
    return "".join(ch if ch.isalnum() or ch in allowed else "_" for ch in value)[:256]


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in instance.get("TagList") or []}


def creation_tags(*, source: str, dag_id: str, run_id: str, requested_at: datetime, expires_at: datetime,
                  restore_point: datetime | None, restore_type: str, environment: str) -> list[dict[str, str]]:
    values = {
        TAG_PURPOSE: PURPOSE, TAG_EPHEMERAL: "true", TAG_SOURCE: source, TAG_DAG: dag_id, TAG_RUN: run_id,
        TAG_REQUESTED: requested_at.astimezone(UTC).isoformat(timespec="seconds"),
        TAG_EXPIRES: expires_at.astimezone(UTC).isoformat(timespec="seconds"),
        TAG_RESTORE_TYPE: restore_type, "environment": environment,
    }
    if restore_point is not None:
        values[TAG_RESTORE_POINT] = restore_point.astimezone(UTC).isoformat(timespec="seconds")
    return [{"Key": key, "Value": tag_value(value)} for key, value in values.items()]


def restore_window(rds: Any, source: str) -> dict[str, datetime] | None:
    """The live instance's point-in-time restore window (``EarliestTime``, ``LatestTime``), or None when
    automated backups are off or not yet taken. 'retained' backups belong to an earlier instance of the
    same name and are not the live window. The one place both the backup check and the restore test read it,
    so they cannot disagree about whether a date is restorable."""
    backups = rds.describe_db_instance_automated_backups(DBInstanceIdentifier=source).get(
        "DBInstanceAutomatedBackups", [])
    window = next((b.get("RestoreWindow") for b in backups
                   if b.get("RestoreWindow") and b.get("Status", "active") == "active"), None)
    return window if window and window.get("LatestTime") and window.get("EarliestTime") else None


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def why_not_ephemeral(instance: dict[str, Any], *, prefix: str, source: str, run_id: str | None = None) -> list[str]:
    """Every reason this instance must not be deleted by the restore test; empty when it may be."""
    identifier = instance.get("DBInstanceIdentifier", "")
    tags = tags_of(instance)
    reasons = []
    if identifier == source:
        reasons.append("it is the source (production) database")
    if not identifier.startswith(prefix + "-"):
        reasons.append(f"its identifier does not start with {prefix!r}-")
    if tags.get(TAG_PURPOSE) != PURPOSE:
        reasons.append(f"tag {TAG_PURPOSE} is {tags.get(TAG_PURPOSE)!r}, not {PURPOSE!r}")
    if tags.get(TAG_EPHEMERAL) != "true":
        reasons.append(f"tag {TAG_EPHEMERAL} is {tags.get(TAG_EPHEMERAL)!r}, not 'true'")
    if tags.get(TAG_SOURCE) != source:
        reasons.append(f"tag {TAG_SOURCE} is {tags.get(TAG_SOURCE)!r}, not {source!r}")
    if instance.get("DeletionProtection"):
        reasons.append("deletion protection is on")
    if run_id is not None and tags.get(TAG_RUN) != tag_value(run_id):
        reasons.append(f"it belongs to run {tags.get(TAG_RUN)!r}, not this run")
    return reasons
