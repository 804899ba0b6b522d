"""Findings: what every check reports, and how thresholds turn a measurement into one."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from airflow.sdk.exceptions import AirflowFailException
from pydantic import BaseModel, ConfigDict, Field

from solemate_maintenance.config import Lower, Upper


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    # Not checked, with the reason (e.g. its connection is not configured): never silence.
    SKIPPED = "skipped"


PROBLEM_STATUSES = frozenset({Status.WARNING, Status.CRITICAL})


class Severity(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


# The check name of a finding that says a check itself broke (crashed, or stopped part-way).
TASK_ERROR_CHECK = "maintenance.task_error"

# A check task fails (red in the UI, failure alert) when it reports one of these.
FAILING_SEVERITIES = frozenset({Severity.P1, Severity.P2})


class Measurement(BaseModel):
    """A measured number and the thresholds it was compared with."""

    model_config = ConfigDict(frozen=True)

    value: float | None
    unit: str = ""
    warning: float | None = None
    critical: float | None = None
    # "above": bad when value >= threshold; "below": bad when value <= threshold.
    bad_when: Literal["above", "below"] | None = None


class Diagnosis(BaseModel):
    """What AWS (or the database) said when asked why a check failed: the guide's troubleshooting,
    done before anyone is woken. ``missing`` says what could not be asked and why."""

    lines: list[str] = Field(default_factory=list)
    next_step: str | None = None
    missing: str | None = None
    calls: int = 0


class Finding(BaseModel):
    """One observation about one resource. `severity` is None for `ok` findings."""

    model_config = ConfigDict(frozen=True)

    check: str
    resource: str
    status: Status
    severity: Severity | None = None
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Measurement] = Field(default_factory=dict)
    diagnosis: Diagnosis | None = None

    @property
    def key(self) -> str:
        """Identity across runs, used to mark findings new, ongoing or resolved."""
        return f"{self.check}|{self.resource}"

    @property
    def is_problem(self) -> bool:
        return self.status in PROBLEM_STATUSES

    @property
    def is_failing(self) -> bool:
        return self.is_problem and self.severity in FAILING_SEVERITIES


def classify(value: float | None, threshold: Upper | Lower) -> Status | None:
    """Compare a value with a warning/critical pair. None when there is no value to judge."""
    if value is None:
        return None
    if isinstance(threshold, Upper):
        if value >= threshold.critical:
            return Status.CRITICAL
        return Status.WARNING if value >= threshold.warning else Status.OK
    if value <= threshold.critical:
        return Status.CRITICAL
    return Status.WARNING if value <= threshold.warning else Status.OK


def measurement(value: float | None, unit: str, threshold: Upper | Lower) -> Measurement:
    return Measurement(
        value=None if value is None else round(value, 4),
        unit=unit,
        warning=threshold.warning,
        critical=threshold.critical,
        bad_when="above" if isinstance(threshold, Upper) else "below",
    )


def threshold_finding(
    *,
    check: str,
    resource: str,
    label: str,
    metric: str,
    value: float | None,
    unit: str,
    threshold: Upper | Lower,
    warning_severity: Severity,
    critical_severity: Severity,
    missing_severity: Severity = Severity.P3,
) -> Finding:
    """The common case: one metric, one threshold pair, a finding saying where the value stands."""
    status = classify(value, threshold)
    metrics = {metric: measurement(value, unit, threshold)}
    if status is None:
        return Finding(
            check=check,
            resource=resource,
            status=Status.WARNING,
            severity=missing_severity,
            summary=f"{label}: no data in the window",
            details={"reason": "CloudWatch returned no datapoints; the metric may not be published"},
            metrics=metrics,
        )
    shown = f"{value:.4g}{unit and ' ' + unit}"
    if status is Status.OK:
        return Finding(check=check, resource=resource, status=status, summary=f"{label} {shown}",
                       metrics=metrics)
    limit = threshold.critical if status is Status.CRITICAL else threshold.warning
    relation = ">=" if isinstance(threshold, Upper) else "<="
    return Finding(
        check=check,
        resource=resource,
        status=status,
        severity=critical_severity if status is Status.CRITICAL else warning_severity,
        summary=f"{label} {shown} {relation} {status.value} threshold {limit:g}",
        metrics=metrics,
    )


class ChecksFailedError(AirflowFailException):
    """A check found P1/P2 problems. Fails the task without retrying: the data will not change."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        worst = min(f.severity for f in findings if f.severity)
        lines = "; ".join(f"[{f.severity}] {f.resource}: {f.summary}" for f in findings)
        super().__init__(f"{len(findings)} failing finding(s), worst {worst}: {lines}")


class RunRefused(AirflowFailException):
    """A run refused before it changed anything (bad manual input, a closed gate). Not an incident: the
    alert says what to fix instead of a severity's description, and there is no report to open."""
