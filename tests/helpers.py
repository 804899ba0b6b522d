"""Small pieces the tests share: a task context for calling operators directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

ANCHOR = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
# The unit tests' "now" (the clock is frozen there, ticking from this instant): a week and a morning after
# ANCHOR, so ANCHOR is a past date just outside a 7-day restore window, whatever day the suite runs on.
UNIT_NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


@dataclass
class RecordingTaskInstance:
    """Stands in for the task instance when an operator's execute() is called directly.

    It only records XCom pushes: AWS and the databases the operators talk to are real (moto,
    embedded PostgreSQL).
    """

    task_id: str = "check"
    dag_id: str = "daily_maintenance"
    run_id: str = "scheduled__2026-11-20T02:00:00+00:00"
    try_number: int = 1
    max_tries: int = 2
    start_date: datetime = ANCHOR
    log_url: str = "http://localhost:8080/dags/daily_maintenance/runs/x/tasks/check?try_number=1"
    pushed: dict[str, Any] = field(default_factory=dict)

    previous_dagrun: Any = None

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        """Its own pushes only (what an operator reads back of itself, e.g. across a deferral)."""
        return self.pushed.get(key) if task_ids == self.task_id else None

    def get_previous_dagrun(self) -> Any:
        return self.previous_dagrun


def live_anchor() -> datetime:
    """A logical date checking the present (alerts for it may page)."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def make_context(anchor: datetime = ANCHOR, run_type: str = "scheduled", clear_number: int = 0,
                 **ti_fields: Any) -> dict[str, Any]:
    ti = RecordingTaskInstance(**ti_fields)
    dag_run = SimpleNamespace(run_type=run_type, run_after=anchor, logical_date=anchor, run_id=ti.run_id,
                              clear_number=clear_number, dag_id=ti.dag_id)
    return {"ti": ti, "dag_run": dag_run, "logical_date": anchor, "data_interval_start": anchor,
            "data_interval_end": anchor}


def findings_of(context: dict[str, Any]) -> dict[str, dict]:
    """The findings an operator pushed, keyed by check name."""
    return {f["check"]: f for f in context["ti"].pushed["findings"]}
