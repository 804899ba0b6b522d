"""Threshold judgement, lifecycle marking across runs, and the report's rendering."""

from __future__ import annotations

import pytest

from solemate_maintenance.config import Lower, Upper, load_config
from solemate_maintenance.findings import ChecksFailedError, Finding, Severity, Status, classify, threshold_finding
from solemate_maintenance.notifiers.messages import digest_message
from solemate_maintenance.report import (
    Lifecycle,
    ReportedFinding,
    RunReport,
    mark_lifecycle,
    render_markdown,
    totals,
)


@pytest.mark.parametrize(("value", "expected"), [(10, Status.OK), (70, Status.WARNING), (79.9, Status.WARNING),
                                                 (80, Status.CRITICAL), (None, None)])
def test_classify_upper(value, expected):
    assert classify(value, Upper(warning=70, critical=80)) == expected


@pytest.mark.parametrize(("value", "expected"), [(99, Status.OK), (98, Status.WARNING), (95, Status.CRITICAL)])
def test_classify_lower(value, expected):
    assert classify(value, Lower(warning=98, critical=95)) == expected


def test_threshold_finding_records_value_and_thresholds():
    finding = threshold_finding(check="rds.cpu", resource="db", label="CPU", metric="cpu_percent", value=85.123456,
                                unit="%", threshold=Upper(warning=70, critical=80),
                                warning_severity=Severity.P3, critical_severity=Severity.P2)
    assert finding.status is Status.CRITICAL and finding.severity is Severity.P2
    assert finding.summary == "CPU 85.12 % >= critical threshold 80"
    assert finding.metrics["cpu_percent"].model_dump() == {"value": 85.1235, "unit": "%", "warning": 70.0,
                                                           "critical": 80.0, "bad_when": "above"}
    assert finding.is_failing


def test_checks_failed_error_names_worst_severity():
    findings = [Finding(check="a", resource="r1", status=Status.CRITICAL, severity=Severity.P2, summary="s1"),
                Finding(check="b", resource="r2", status=Status.CRITICAL, severity=Severity.P1, summary="s2")]
    error = ChecksFailedError(findings)
    assert str(error).startswith("2 failing finding(s), worst P1:")
    assert error.findings == findings


def reported(check, status=Status.CRITICAL, severity=Severity.P2, task="t1", summary="bad"):
    return ReportedFinding(check=check, resource="r", status=status, severity=severity if status != Status.OK else None,
                           summary=summary, task_id=task)


def report_of(findings, resolved=()):
    marked = list(findings)
    return RunReport(dag_id="d", run_id="r1", run_type="scheduled", logical_date="2026-11-20T02:00:00+00:00",
                     data_interval_start=None, data_interval_end=None, environment="production",
                     task_states={}, findings=marked, resolved=list(resolved), totals=totals(marked, list(resolved)),
                     report_uri="s3://b/k", report_url="https://s3.console.aws.amazon.com/s3/object/b?prefix=k")


def test_lifecycle_new_ongoing_resolved():
    first, _ = mark_lifecycle([reported("cpu"), reported("mem", task="t2")], None, {"t1", "t2"})
    assert [f.lifecycle for f in first] == [Lifecycle.NEW, Lifecycle.NEW]
    previous = report_of(first)

    second, resolved = mark_lifecycle([reported("cpu"), reported("disk")], previous, {"t1"})
    assert {f.check: f.lifecycle for f in second} == {"cpu": Lifecycle.ONGOING, "disk": Lifecycle.NEW}
    # "mem" came from t2, which did not report this time: not resolved, we simply do not know.
    assert resolved == []

    third, resolved = mark_lifecycle([reported("cpu", status=Status.OK), reported("mem", task="t2",
                                                                                  status=Status.OK)],
                                     previous, {"t1", "t2"})
    assert {f.check for f in resolved} == {"cpu", "mem"}
    assert all(f.lifecycle is Lifecycle.RESOLVED for f in resolved)
    assert [f.lifecycle for f in third] == [None, None]


def test_totals_and_markdown():
    findings, _ = mark_lifecycle([reported("cpu"), reported("ok", status=Status.OK),
                                  reported("lat", status=Status.WARNING, severity=Severity.P3, summary="a|b")],
                                 None, {"t1"})
    report = report_of(findings)
    assert report.totals["status"] == {"ok": 1, "warning": 1, "critical": 1, "skipped": 0}
    assert report.totals["severity"] == {"P1": 0, "P2": 1, "P3": 1, "P4": 0}
    markdown = render_markdown(report)
    assert "| P2 | critical | new | cpu | r | bad |" in markdown
    assert "a\\|b" in markdown  # table cells are escaped


def test_digest_colour_and_sections():
    config = load_config()
    colors = {k: v.color for k, v in config.alerts.severities.items()}
    findings, _ = mark_lifecycle([reported("cpu", severity=Severity.P1)], None, {"t1"})
    title, attachments = digest_message(report_of(findings, [reported("old", status=Status.CRITICAL)]), colors)
    assert attachments[0]["color"] == colors["P1"]
    texts = str(attachments[0]["blocks"])
    assert "*New*" in texts and "*Resolved*" in texts and "s3://b/k" in texts
    healthy_title, healthy = digest_message(report_of([reported("cpu", status=Status.OK)]), colors)
    assert healthy[0]["color"] == "#2eb886" and "passed" in healthy_title
