"""The shape every maintenance check shares: measure, record findings, fail on P1/P2."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from solemate_maintenance.findings import ChecksFailedError, Finding, Status
from solemate_maintenance.hooks.cloudwatch import CloudWatchMetricsHook

FINDINGS_XCOM_KEY = "findings"


class MaintenanceCheckOperator(BaseOperator):
    """Base for check operators.

    Subclasses implement `collect_findings`. The findings are pushed to XCom (key ``findings``)
    before the verdict, so the run report sees them even when the task fails. A P1 or P2 finding
    fails the task with :class:`ChecksFailedError`, which does not retry: the window is fixed by the
    run, so a retry would measure the same thing. AWS errors (throttling, timeouts) raise normally
    and use the task's retries.

    :param aws_conn_id: Airflow connection for AWS credentials.
    :param region_name: AWS region; None uses the connection's.
    """

    template_fields: Sequence[str] = ("aws_conn_id", "region_name")
    ui_color = "#e8f4ea"

    def __init__(self, *, aws_conn_id: str | None = "aws_default", region_name: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    @cached_property
    def metrics_hook(self) -> CloudWatchMetricsHook:
        return CloudWatchMetricsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    @abstractmethod
    def collect_findings(self, context: Any) -> Iterable[Finding]:
        """Measure and judge. Return every finding, `ok` ones included: they document what was checked."""

    def execute(self, context: Any) -> dict[str, int]:
        findings = list(self.collect_findings(context))
        context["ti"].xcom_push(key=FINDINGS_XCOM_KEY, value=[f.model_dump(mode="json") for f in findings])
        for finding in findings:
            level = self.log.info if finding.status is Status.OK else self.log.warning
            level("[%s] %s %s: %s", finding.severity or "ok", finding.check, finding.resource, finding.summary)
        failing = [f for f in findings if f.is_failing]
        if failing:
            raise ChecksFailedError(failing)
        return {status.value: sum(f.status is status for f in findings) for status in Status}
