"""The end of every maintenance run: the report, the digest, and the run's verdict."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import BaseOperator, TriggerRule
from airflow.sdk.exceptions import AirflowFailException

from solemate_maintenance.config import Alerts
from solemate_maintenance.findings import Severity, Status
from solemate_maintenance.notifiers.slack import ALERT_DELIVERIES_XCOM_KEY, Delivery, send_email, send_slack
from solemate_maintenance.operators.base import FINDINGS_XCOM_KEY
from solemate_maintenance.redaction import scrub
from solemate_maintenance.report import (
    ReportedFinding,
    RunReport,
    digest_message,
    mark_lifecycle,
    render_markdown,
    totals,
)

FAILED_STATES = {"failed", "upstream_failed"}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class PublishReportOperator(BaseOperator):
    """Collect the findings of every upstream check, compare with the previous run, publish.

    Writes ``s3://<bucket>/<prefix>/<dag_id>/<run_id>/report.json`` and ``report.md``, updates
    ``<prefix>/<dag_id>/latest.json`` unless a newer run already did (backfills do not roll it back),
    and sends one digest to Slack (and by e-mail to ``alerts.digest_email``). Runs whatever happened
    upstream (``ALL_DONE``).

    :param bucket: S3 bucket for reports.
    :param prefix: key prefix inside the bucket.
    :param environment: environment name shown in the report and the digest.
    :param alerts: the `alerts` section of the platform config (digest channel and colours).
    """

    template_fields: Sequence[str] = ("bucket", "prefix", "aws_conn_id")
    ui_color = "#e6eefc"

    def __init__(self, *, bucket: str, prefix: str = "reports", environment: str, alerts: Alerts,
                 aws_conn_id: str | None = "aws_default", trigger_rule: str = TriggerRule.ALL_DONE,
                 **kwargs: Any) -> None:
        super().__init__(trigger_rule=trigger_rule, **kwargs)
        self.bucket = bucket
        self.prefix = prefix
        self.environment = environment
        self.alerts = alerts
        self.aws_conn_id = aws_conn_id

    @cached_property
    def s3(self) -> S3Hook:
        return S3Hook(aws_conn_id=self.aws_conn_id)

    def _key(self, *parts: str) -> str:
        return "/".join([self.prefix.strip("/"), *parts])

    def _read_report(self, key: str) -> RunReport | None:
        if not self.s3.check_for_key(key, bucket_name=self.bucket):
            return None
        try:
            return RunReport.model_validate_json(self.s3.read_key(key, bucket_name=self.bucket))
        except ValueError as exc:
            # An unreadable old report must not cost us today's: compare with nothing instead.
            self.log.warning("Ignoring unreadable report s3://%s/%s: %s", self.bucket, key, exc)
            return None

    def execute(self, context: Any) -> dict[str, Any]:
        ti, dag_run = context["ti"], context["dag_run"]
        check_tasks = sorted(self.upstream_task_ids)
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        findings, reporting, deliveries = self._collect(ti, check_tasks, states)

        previous_run = ti.get_previous_dagrun()
        previous = self._read_report(self._key(ti.dag_id, previous_run.run_id, "report.json")) \
            if previous_run else None
        marked, resolved = mark_lifecycle(findings, previous, reporting)

        report_key = self._key(ti.dag_id, ti.run_id, "report.json")
        run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
        report = RunReport(
            dag_id=ti.dag_id, run_id=ti.run_id, run_type=str(run_type),
            logical_date=_iso(context.get("logical_date")),
            data_interval_start=_iso(context.get("data_interval_start")),
            data_interval_end=_iso(context.get("data_interval_end")),
            environment=self.environment,
            task_states={t: states.get(t) for t in check_tasks},
            findings=marked, resolved=resolved,
            previous_run_id=previous.run_id if previous else None,
            totals=totals(marked, resolved),
            failed_tasks=[t for t in check_tasks if states.get(t) in FAILED_STATES],
            alert_deliveries=deliveries,
            report_uri=f"s3://{self.bucket}/{report_key}",
        )
        # Publish before notifying: if S3 fails, the retry must not have sent a digest already.
        self._publish(report, report_key)
        title, attachments = digest_message(report, {k: v.color for k, v in self.alerts.severities.items()})
        digest = send_slack(kind="digest", conn_id=self.alerts.slack_conn_id, text=title,
                            attachments=attachments, alerts=self.alerts, context=context)
        report.alert_deliveries.append(digest.model_copy(update={"task_id": self.task_id}))
        if self.alerts.digest_email:
            email = send_email(kind="digest", to=self.alerts.digest_email, subject=title.split(" ", 1)[1],
                               html=f"<pre>{html.escape(render_markdown(report))}</pre>", alerts=self.alerts,
                               context=context)
            report.alert_deliveries.append(email.model_copy(update={"task_id": self.task_id}))
        self._publish(report, report_key)  # again, now with the digest deliveries
        self.log.info("Report: %s (%s)", report.report_uri, json.dumps(report.totals["status"]))
        return {"report_uri": report.report_uri, "totals": report.totals, "failed_tasks": report.failed_tasks}

    def _collect(self, ti: Any, tasks: list[str], states: dict[str, str | None]) -> tuple[
            list[ReportedFinding], set[str], list[Delivery]]:
        findings: list[ReportedFinding] = []
        reporting: set[str] = set()
        deliveries: list[Delivery] = []
        for task_id in tasks:
            pushed = ti.xcom_pull(task_ids=task_id, key=FINDINGS_XCOM_KEY)
            if pushed is not None:
                reporting.add(task_id)
                findings += [ReportedFinding(**item, task_id=task_id) for item in pushed]
            elif states.get(task_id) in FAILED_STATES:
                # No findings and failed: the check itself broke. Say so rather than show nothing.
                findings.append(ReportedFinding(
                    check="maintenance.task_error", resource=task_id, status=Status.CRITICAL,
                    severity=Severity.P2, task_id=task_id,
                    summary=f"check did not complete (task {states.get(task_id)}); see the task log",
                ))
            for item in ti.xcom_pull(task_ids=task_id, key=ALERT_DELIVERIES_XCOM_KEY) or []:
                deliveries.append(Delivery.model_validate(item))
        return findings, reporting, deliveries

    def _publish(self, report: RunReport, report_key: str) -> None:
        body = scrub(report.model_dump(mode="json"))
        payload = json.dumps(body, indent=2, sort_keys=True)
        self.s3.load_string(payload, key=report_key, bucket_name=self.bucket, replace=True)
        self.s3.load_string(scrub(render_markdown(report)), key=report_key.replace(".json", ".md"),
                            bucket_name=self.bucket, replace=True)
        latest_key = self._key(report.dag_id, "latest.json")
        latest = self._read_report(latest_key)
        if latest is None or (latest.logical_date or "") <= (report.logical_date or ""):
            self.s3.load_string(payload, key=latest_key, bucket_name=self.bucket, replace=True)
        else:
            self.log.info("latest.json kept: it belongs to the newer run %s", latest.run_id)


class FailRunOnCheckFailureOperator(BaseOperator):
    """Fail the DAG run when any check failed.

    Airflow decides a run's state from its leaf tasks, and the report (a leaf that always runs)
    succeeds even when checks failed. This watcher fires only when an upstream task failed and
    carries no alert of its own: the failed checks have already alerted.
    """

    ui_color = "#fbe3e3"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ONE_FAILED)
        kwargs["retries"] = 0
        kwargs["on_failure_callback"] = None
        super().__init__(**kwargs)

    def execute(self, context: Any) -> None:
        raise AirflowFailException("One or more maintenance checks failed; see the run report and alerts.")
