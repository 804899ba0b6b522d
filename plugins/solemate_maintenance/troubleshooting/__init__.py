"""The guide's troubleshooting, done before anyone is woken: when a check fails, ask AWS (and the
database) why, and put the answer and the guide's next step into the alert.

Diagnosis is bounded: only for failing findings and newly opened incidents, at most
``MAX_CALLS_PER_DIAGNOSIS`` API calls each and ``MAX_DIAGNOSES_PER_RUN`` per task. A call that fails
does not stop the alert: the diagnosis keeps what it learnt and says what is missing and why.

One function per troubleshooting case, chosen by check name (``CASES``); each reads what it needs
from the platform config's resources.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from solemate_maintenance.config import PlatformConfig
from solemate_maintenance.findings import Diagnosis
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.window import TimeWindow

log = logging.getLogger(__name__)

MAX_CALLS_PER_DIAGNOSIS = 8
MAX_DIAGNOSES_PER_RUN = 5
MAX_LINES = 12
# A diagnosis must not hold up the alert it explains: short timeouts, one retry, a minute in all.
MAX_SECONDS_PER_DIAGNOSIS = 60.0
CLIENT_CONFIG = {"connect_timeout": 5, "read_timeout": 15, "retries": {"max_attempts": 2, "mode": "standard"}}


def aws_clients(aws_conn_id: str | None, region_name: str | None) -> Callable[[str], Any]:
    """Clients through the Amazon provider's hook, with the diagnosis's short timeouts."""

    def make(service: str) -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        from botocore.config import Config

        return AwsBaseHook(aws_conn_id=aws_conn_id, region_name=region_name, client_type=service,
                           config=Config(**CLIENT_CONFIG)).conn

    return make


class CallBudgetSpent(Exception):
    pass


@dataclass
class Session:
    """What a diagnosis may use: AWS clients (through the Amazon provider's hooks), a bounded number of
    calls, the window the check judged, and the platform database's connection for SQL."""

    client_factory: Callable[[str], Any]
    config: PlatformConfig
    window: TimeWindow
    max_calls: int = MAX_CALLS_PER_DIAGNOSIS
    # The database watch's latest pg_stat_statements counters (queryid -> counters), for deltas.
    statement_baseline: dict[str, Any] | None = None
    max_seconds: float = MAX_SECONDS_PER_DIAGNOSIS
    calls: int = 0
    _clients: dict[str, Any] = field(default_factory=dict)
    _started: float = field(default_factory=time.monotonic)

    def call(self, service: str, operation: str, **kwargs: Any) -> Any:
        if self.calls >= self.max_calls:
            raise CallBudgetSpent(f"the diagnosis's {self.max_calls} API calls are spent")
        if time.monotonic() - self._started > self.max_seconds:
            raise CallBudgetSpent(f"the diagnosis's {self.max_seconds:g} s are spent (AWS answering slowly)")
        self.calls += 1
        if service not in self._clients:
            self._clients[service] = self.client_factory(service)
        return getattr(self._clients[service], operation)(**kwargs)


class Notes:
    """A diagnosis being written: lines, the next step, and what could not be asked (a failed step
    is recorded and the next step still runs)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.next_steps: list[str] = []
        self.missing: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def advise(self, step: str) -> None:
        if step not in self.next_steps:
            self.next_steps.append(step)

    def step(self, what: str, action: Callable[[], Any]) -> Any:
        """Run one part of the diagnosis; a failure is noted as missing, not raised."""
        try:
            return action()
        except CallBudgetSpent as exc:
            self.missing.append(f"{what}: {exc}")
        except Exception as exc:  # an alert with half a diagnosis beats no alert
            self.missing.append(f"{what}: {_error(exc)}")
            log.warning("Diagnosis step %r failed: %s", what, _error(exc))
        return None

    def result(self, calls: int) -> Diagnosis:
        lines = [trim(scrub(line), 300) for line in self.lines[:MAX_LINES]]
        if len(self.lines) > MAX_LINES:
            lines.append(f"… {len(self.lines) - MAX_LINES} more")
        return Diagnosis(lines=lines, next_step=" ".join(self.next_steps[:3]) or None,
                         missing="; ".join(self.missing) or None, calls=calls)


def _error(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        error = response["Error"]
        return trim(scrub(f"{error.get('Code')}: {error.get('Message', '')}"), 200)
    return trim(scrub(f"{type(exc).__name__}: {exc}"), 200)


Case = Callable[[Session, str, str, Notes], None]


def _cases() -> list[tuple[tuple[str, ...], Case]]:
    from solemate_maintenance.troubleshooting import database, ecs, load_balancer

    return [
        (("ecs.task_count", "ecs.task_count_history", "ecs.deployments", "ecs.memory_utilization"),
         ecs.service_tasks),
        (("application.alb_targets", "application.unhealthy_targets", "application.healthy_targets_history",
          "application.endpoint", "kpi.error_rate", "kpi.error_rate_peak"), load_balancer.targets_and_errors),
        (("rds.cpu_utilization", "rds.connections"), database.load),
        (("elasticache.evictions", "elasticache.memory"), database.redis_memory),
        # certificates.renewal needs no case: its finding already carries ACM's RenewalStatusReason.
    ]


def case_for(check: str) -> Case | None:
    for names, case in _cases():
        if check in names:
            return case
    return None


def diagnose(session: Session, check: str, resource: str) -> Diagnosis | None:
    """The diagnosis of one failing check on one resource, or None when AWS cannot tell more than the metric."""
    case = case_for(check)
    if case is None:
        return None
    notes = Notes()
    calls_before = session.calls
    notes.step("diagnosis", lambda: case(session, check, resource, notes))
    diagnosis = notes.result(session.calls - calls_before)
    log.info("Diagnosed %s on %s with %s call(s): %s", check, resource, diagnosis.calls, diagnosis.lines)
    return diagnosis


def diagnose_findings(session_for: Callable[[], Session], findings: list[Any]) -> int:
    """Attach a diagnosis to the worst failing findings that have a case; at most MAX_DIAGNOSES_PER_RUN.
    A run without failing findings makes no call at all."""
    failing = sorted((i for i, f in enumerate(findings) if f.is_failing and f.diagnosis is None
                      and case_for(f.check)), key=lambda i: findings[i].severity or "P9")
    for rank, index in enumerate(failing):
        finding = findings[index]
        if rank < MAX_DIAGNOSES_PER_RUN:
            diagnosis = diagnose(session_for(), finding.check, finding.resource)
        else:
            diagnosis = Diagnosis(missing=f"not diagnosed: a run diagnoses its {MAX_DIAGNOSES_PER_RUN} worst failing "
                                          "findings only")
        findings[index] = finding.model_copy(update={"diagnosis": diagnosis})  # findings are immutable
    return min(len(failing), MAX_DIAGNOSES_PER_RUN)
