"""The drill's verdicts against the guide's table, and the complete system's estimate."""

from __future__ import annotations

import pytest

from solemate_maintenance import dr
from solemate_maintenance.config import ConfigError, load_config, parse_config

TARGETS = load_config().disaster_recovery.targets


def test_the_guides_table_is_the_default():
    assert {name: (t.rto_minutes, t.rpo_minutes) for name, t in TARGETS.items()} == {
        "database": (15, 5), "application": (10, 60), "static_assets": (5, 1440), "complete_system": (30, 60)}


@pytest.mark.parametrize(("result", "verdict"), [
    (dr.ComponentResult("database", 12.0, 4.0, True), dr.MET),
    (dr.ComponentResult("database", 16.0, 4.0, True), dr.MISSED),
    (dr.ComponentResult("database", 12.0, 6.0, True), dr.MISSED),
    (dr.ComponentResult("database", None, 4.0, True), dr.MISSED),  # restored, but never validated
    (dr.ComponentResult("database", 1.0, 1.0, False), dr.CANNOT),
    (dr.ComponentResult("database"), dr.NOT_MEASURED),
])
def test_verdicts(result, verdict):
    assert result.verdict(TARGETS["database"]) == verdict


def test_complete_system_is_estimated_from_the_measured_parts():
    parts = {"database": dr.ComponentResult("database", 12.0, 3.0, True),
             "application": dr.ComponentResult("application", 2.5, 2.0, True),
             "static_assets": dr.ComponentResult("static_assets", 0.01, 0.7, True)}
    system = dr.estimate_complete_system(parts, dns_ttl_seconds=60, ready=True)
    assert (system.rto_minutes, system.rpo_minutes, system.can_fail_over) == (15.5, 3.0, True)
    assert system.verdict(TARGETS["complete_system"]) == dr.MET
    parts["application"] = dr.ComponentResult("application", None, 9000.0, False)
    blocked = dr.estimate_complete_system(parts, dns_ttl_seconds=60, ready=True)
    assert blocked.verdict(TARGETS["complete_system"]) == dr.CANNOT and "blocked by: Application" in blocked.note
    assert dr.estimate_complete_system({}, None, ready=False).can_fail_over is False
    # The database and application not drilled this time: no estimate, so no verdict either.
    partial = dr.estimate_complete_system({"application": parts["application"]}, 60, ready=True)
    assert partial.verdict(TARGETS["complete_system"]) == dr.NOT_MEASURED


def test_scorecard_rows_follow_the_guides_order():
    rows = dr.scorecard_rows({"static_assets": dr.ComponentResult("static_assets", 0.0, 1.0, True)}, TARGETS)
    assert [r["component"] for r in rows] == ["Database", "Application", "Static assets", "Complete system"]
    assert [r["verdict"] for r in rows] == [dr.NOT_MEASURED, dr.NOT_MEASURED, dr.MET, dr.NOT_MEASURED]


def test_the_old_single_pair_gets_a_pointer_to_the_table():
    from solemate_maintenance.config import DEFAULT_CONFIG_PATH

    text = DEFAULT_CONFIG_PATH.read_text().replace("  allow_failover: false", "  rto_minutes: 60\n  allow_failover: false")
    with pytest.raises(ConfigError) as error:
        parse_config(text, "platform.yaml")
    assert "platform.yaml" in str(error.value) and "disaster_recovery" in str(error.value)
    assert "replaced by the guide's per-component table" in str(error.value)
    override = DEFAULT_CONFIG_PATH.read_text().replace(
        "database:        {rto_minutes: 15, rpo_minutes: 5,    recovery_method: point-in-time recovery}",
        "database: {rpo_minutes: 10}")
    targets = parse_config(override, "platform.yaml").disaster_recovery.targets
    assert (targets["database"].rto_minutes, targets["database"].rpo_minutes) == (15, 10)
    with pytest.raises(ConfigError, match="targets.mainframe"):
        parse_config(DEFAULT_CONFIG_PATH.read_text().replace("  targets:\n", "  targets:\n    mainframe: {rto_minutes: 1}\n"),
                     "platform.yaml")


@pytest.mark.parametrize(("image", "parsed"), [
    ("123456789012.dkr.ecr.us-west-2.amazonaws.com/solemate/backend:1.0",
     ("us-west-2", "solemate/backend", {"imageTag": "1.0"})),
    ("123456789012.dkr.ecr.us-west-2.amazonaws.com/solemate/backend@sha256:abc",
     ("us-west-2", "solemate/backend", {"imageDigest": "sha256:abc"})),
    ("123456789012.dkr.ecr.us-west-2.amazonaws.com/solemate/backend:1.0@sha256:abc",
     ("us-west-2", "solemate/backend", {"imageDigest": "sha256:abc"})),
    ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app", ("eu-west-1", "app", {"imageTag": "latest"})),
    ("public.ecr.aws/datadog/agent:7", None),
    ("localhost:5000/app:1", None),
    ("datadog/agent:latest", None),
])
def test_ecr_image_references(image, parsed):
    from solemate_maintenance.operators.dr.drill_application import parse_ecr_image

    assert parse_ecr_image(image) == parsed
