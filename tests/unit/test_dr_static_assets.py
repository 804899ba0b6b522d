"""The drill's static-asset RPO against replicas that hold the key but not the change."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from solemate_maintenance.findings import ChecksFailedError
from solemate_maintenance.operators.dr.drill_assets import DrStaticAssetsOperator
from tests.helpers import findings_of, make_context

SOURCE, REPLICA = "solemate-static-assets", "solemate-static-assets-dr"


def _drill_assets(config, fails: bool = False) -> dict:
    recovery = config.disaster_recovery
    context = make_context(dag_id="dr_drill", task_id="dr_static_assets")
    with pytest.raises(ChecksFailedError) if fails else contextlib.nullcontext():
        _run(config, recovery, context)
    return context


def _run(config, recovery, context) -> None:
    DrStaticAssetsOperator(task_id="dr_static_assets", buckets=recovery.asset_buckets,
                           sample=recovery.drill.replication_sample, target=recovery.targets["static_assets"],
                           region_name=config.regions.dr, primary_region=config.regions.primary).execute(context)


def test_an_object_overwritten_while_replication_was_off_is_a_change_the_replica_lacks(platform, config):
    s3 = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    newest = max(s3.buckets[SOURCE].keys.values(), key=lambda k: k.last_modified)
    # Overwritten 30 h ago while the rule was off: no replication status, the replica keeps the old version.
    overwritten = datetime.now(UTC) - timedelta(hours=30)
    fresh = s3.put_object(SOURCE, newest.name, b"the new product photo")
    fresh.last_modified = overwritten.replace(tzinfo=None)
    fresh._sandbox_replication_status = None
    for other in s3.buckets[SOURCE].keys.values():  # the older version is now the source's newest change
        if other.name != newest.name and other.last_modified > fresh.last_modified:
            other.last_modified = fresh.last_modified - timedelta(hours=1)

    found = findings_of(_drill_assets(config, fails=True))
    rpo = found["dr.static_assets.rpo"]
    assert rpo["metrics"]["rpo_minutes"]["value"] >= 30 * 60 - 1, rpo
    assert rpo["status"] == "critical" and "a failover now would lose" in rpo["summary"], rpo
    missing = found["dr.static_assets.missing"]
    assert "only as an older version" in missing["summary"]
    assert missing["details"]["older_version_in_replica"] == [newest.name]


def test_a_replica_holding_the_same_content_without_a_status_counts_as_replicated(platform, config):
    s3 = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key in s3.buckets[SOURCE].keys.values():
        key._sandbox_replication_status = None  # e.g. copied by a batch job: no status, same ETag
    found = findings_of(_drill_assets(config))
    assert "dr.static_assets.missing" not in found
    assert found["dr.static_assets.rpo"]["status"] == "ok"
