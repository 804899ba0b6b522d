from __future__ import annotations

from solemate_maintenance.redaction import scrub, trim


def test_scrub_removes_credentials_from_text():
    text = ("could not connect to postgresql://app:s3cr3t-pw@db.internal:5432/shop; "
            "webhook https://hooks.slack.com/services/T0ABCDEFG/B0ABCDEFG/abcdefghijklmnopqrstuvwx "
            "password=hunter2hunter2 aws key AKIAABCDEFGHIJKLMNOP")
    cleaned = scrub(text)
    for secret in ("s3cr3t-pw", "abcdefghijklmnopqrstuvwx", "hunter2hunter2", "AKIAABCDEFGHIJKLMNOP"):
        assert secret not in cleaned
    assert "postgresql://app:***@db.internal" in cleaned


def test_scrub_walks_nested_values_and_keeps_other_types():
    assert scrub({"a": ["token=abcdef123456", 3], "b": None}) == {"a": ["token=***", 3], "b": None}


def test_scrub_uses_airflow_masker():
    from airflow.sdk.log import mask_secret

    mask_secret("registered-secret-value")
    assert scrub("it was registered-secret-value here") == "it was *** here"


def test_trim():
    assert trim("abc", 5) == "abc"
    assert trim("abcdefgh", 5) == "abcd…"
