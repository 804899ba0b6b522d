"""The shape every maintenance check shares: measure, record findings, fail on P1/P2."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from solemate_maintenance.aws_errors import PermanentAwsError, classify
from solemate_maintenance.findings import TASK_ERROR_CHECK, ChecksFailedError, Finding, Severity, Status
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.window import TimeWindow

if TYPE_CHECKING:
    from solemate_maintenance.config import PlatformConfig
    from solemate_maintenance.hooks.cloudwatch import CloudWatchMetricsHook
    from solemate_maintenance.report_store import ReportStore

FINDINGS_XCOM_KEY = "findings"
WINDOW_XCOM_KEY = "window"
# Set when a check stopped part-way: its findings are real but not the whole picture, so the report
# must not call a previous problem resolved on their strength.
INCOMPLETE_XCOM_KEY = "incomplete"
# Headline numbers of a check (e.g. a restore's RTO and RPO): the report shows them and keeps them.
MEASUREMENTS_XCOM_KEY = "measurements"
DEFERRED_FINDINGS_XCOM_KEY = "findings_before_deferral"


class MaintenanceCheckOperator(BaseOperator):
    """Base for check operators.

    Subclasses implement `collect_findings`. The findings are pushed to XCom (key ``findings``)
    before the verdict, so the run report sees them even when the task fails. A P1 or P2 finding
    fails the task with :class:`ChecksFailedError`, which does not retry: the window is fixed by the
    run, so a retry would measure the same thing. Transient AWS errors (throttling, timeouts, an
    unreachable endpoint) raise normally and use the task's retries; errors a retry cannot heal (no
    credentials, access denied, a resource that does not exist) fail at once with
    :class:`PermanentAwsError`.

    :param aws_conn_id: Airflow connection for AWS credentials.
    :param region_name: AWS region; None uses the connection's.
    :param page_size: page size for the fleet listings (None: the API's default); tests use it to
        prove a check follows every page.
    :param troubleshoot: the platform config, to diagnose failing findings with the guide's
        troubleshooting (solemate_maintenance.troubleshooting); None: no diagnosis.
    """

    template_fields: Sequence[str] = ("aws_conn_id", "region_name")
    ui_color = "#e8f4ea"

    def __init__(self, *, aws_conn_id: str | None = "aws_default", region_name: str | None = None,
                 page_size: int | None = None, troubleshoot: PlatformConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.page_size = page_size
        self.troubleshoot = troubleshoot

    @cached_property
    def metrics_hook(self) -> CloudWatchMetricsHook:
        # Provider hooks import boto3: imported on first use, not when the DAG file is parsed.
        from solemate_maintenance.hooks.cloudwatch import CloudWatchMetricsHook

        return CloudWatchMetricsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    def client(self, client_type: str, region: str | None = None) -> Any:
        """A boto3 client through the provider's AwsBaseHook, in `region` (default: the task's region)."""
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=self.aws_conn_id, region_name=region or self.region_name,
                           client_type=client_type).conn

    def report_store(self, bucket: str, prefix: str) -> ReportStore:
        """The reports bucket through this task's AWS connection and region (charts, caches, summaries)."""
        from solemate_maintenance.report_store import ReportStore

        return ReportStore(bucket=bucket, prefix=prefix, aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    def pages(self, client: Any, operation: str, *, max_page: int | None = None,
              **kwargs: Any) -> Iterable[dict[str, Any]]:
        """Every page of a listing, through botocore's paginator: calls grow with pages, not resources.

        `max_page`: the API's largest page, for listings whose default page is smaller (SSM's
        DescribeParameters serves 10 unless asked for up to 50)."""
        size = self.page_size or max_page
        paginator = client.get_paginator(operation)
        # Some listings page only by token (SNS ListTopics): botocore refuses a page size for them.
        config = {"PageSize": size} if size and getattr(paginator, "_limit_key", None) else {}
        yield from paginator.paginate(**kwargs, PaginationConfig=config)

    @property
    def lookback_minutes(self) -> int | None:
        """How far back the check's metrics reach; None for a check of live state only."""
        return getattr(getattr(self, "thresholds", None), "lookback_minutes", None)

    def checked_window(self, context: Any) -> TimeWindow | None:
        lookback = self.lookback_minutes
        return TimeWindow.ending_at_run(context, lookback) if lookback else None

    def diagnose(self, context: Any, findings: list[Finding], window: TimeWindow | None) -> None:
        """The guide's troubleshooting for the failing findings (a few API calls each; none when all is well)."""
        if self.troubleshoot is None or not any(f.is_failing for f in findings):
            return
        from airflow.sdk.timezone import utcnow

        from solemate_maintenance.run_facts import RunFacts
        from solemate_maintenance.troubleshooting import Session, aws_clients, diagnose_findings

        config = self.troubleshoot
        if not RunFacts.from_context(context, page_max_age_hours=config.alerts.page_max_age_hours,
                                     now=utcnow()).may_page:
            return  # a past date: AWS can only describe today, which would explain the wrong day
        checked = window or TimeWindow(utcnow() - timedelta(hours=1), utcnow())
        clients = aws_clients(self.aws_conn_id, self.region_name)
        diagnose_findings(lambda: Session(client_factory=clients, config=config, window=checked), findings)

    @abstractmethod
    def collect_findings(self, context: Any) -> Iterable[Finding]:
        """Measure and judge. Return every finding, `ok` ones included: they document what was checked."""

    def execute(self, context: Any) -> dict[str, int]:
        def produced() -> Iterable[Finding]:
            # Called inside record_findings' error handling, even if collect_findings is no generator.
            yield from self.collect_findings(context)

        return self.record_findings(context, produced())

    def record_findings(self, context: Any, produced: Iterable[Finding]) -> dict[str, int]:
        """Push `produced` to XCom and fail on P1/P2: the same for `execute` and for a check that
        resumes after a deferral (its `execute_complete` passes the findings it makes then; those it
        made before deferring are kept and come first)."""
        from solemate_maintenance.notifiers.delivery import register_connection_secrets

        register_connection_secrets(self.aws_conn_id)
        from airflow.sdk.exceptions import TaskDeferred

        window = self.checked_window(context)
        if window is not None:
            context["ti"].xcom_push(key=WINDOW_XCOM_KEY, value=window.as_dict())
        # Findings made before a deferral of this try (XComs last across deferrals, not across tries).
        findings = [Finding(**f) for f in context["ti"].xcom_pull(task_ids=self.task_id,
                                                                   key=DEFERRED_FINDINGS_XCOM_KEY) or []]
        try:
            for finding in produced:
                findings.append(finding)
        except TaskDeferred:
            # The check resumes in a new call (often a new process): what it found so far goes with it.
            context["ti"].xcom_push(key=DEFERRED_FINDINGS_XCOM_KEY, value=[f.model_dump(mode="json") for f in findings])
            raise
        except Exception as exc:
            cause = classify(exc)
            failing = [f for f in findings if f.is_failing]
            if failing:
                # What was already found must not be lost: a P1 seen before AWS stopped answering is
                # exactly what on-call needs (and it pages), not a "could not run" folded elsewhere.
                stopped = Finding(check=TASK_ERROR_CHECK, resource=self.task_id, status=Status.CRITICAL,
                                  severity=Severity.P2,
                                  summary=f"check stopped part-way: {cause.title if cause else type(exc).__name__}",
                                  details={"error": trim(scrub(f"{type(exc).__name__}: {exc}"), 300)})
                findings.append(stopped)
                context["ti"].xcom_push(key=FINDINGS_XCOM_KEY, value=[f.model_dump(mode="json") for f in findings])
                context["ti"].xcom_push(key=INCOMPLETE_XCOM_KEY, value=True)
                raise ChecksFailedError([*failing, stopped]) from exc
            if cause is not None and not cause.retryable:
                raise PermanentAwsError(cause, exc) from exc
            raise
        self.diagnose(context, findings, window)
        context["ti"].xcom_push(key=FINDINGS_XCOM_KEY, value=[f.model_dump(mode="json") for f in findings])
        for finding in findings:
            level = self.log.warning if finding.is_problem else self.log.info
            level("[%s] %s %s: %s", finding.severity or finding.status.value, finding.check, finding.resource,
                  finding.summary)
        failing = [f for f in findings if f.is_failing]
        if failing:
            raise ChecksFailedError(failing)
        return {status.value: sum(f.status is status for f in findings) for status in Status}
