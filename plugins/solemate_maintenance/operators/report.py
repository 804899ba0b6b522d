"""The end of every maintenance run: the report, the digest, and the run's verdict.

Exactly once: a retry of the report task never re-sends what was already delivered for the run.
Each delivery is recorded in S3 beside the report (``deliveries/<clear number>-<kind>.json``) and a
retry skips what is recorded. When S3 itself is failing, the digest goes out only from the try that
will not be retried (a permanent error, or the last try), carrying every finding instead of a link.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, TriggerRule
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.timezone import utcnow

from solemate_maintenance.aws_errors import ErrorCause, classify
from solemate_maintenance.config import Alerts
from solemate_maintenance.findings import TASK_ERROR_CHECK, Severity, Status
from solemate_maintenance.notifiers.delivery import (
    ALERT_DELIVERIES_XCOM_KEY,
    Delivery,
    DeliveryBudget,
    send_email,
    send_slack,
    slack_channel_for,
)
from solemate_maintenance.notifiers.failure import COMMON_CAUSE_XCOM_KEY, FailureAlreadyAnnounced
from solemate_maintenance.notifiers.messages import cause_message, digest_message
from solemate_maintenance.operators.base import (
    FINDINGS_XCOM_KEY,
    INCOMPLETE_XCOM_KEY,
    MEASUREMENTS_XCOM_KEY,
    WINDOW_XCOM_KEY,
)
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.report import (
    ReportedFinding,
    RunReport,
    mark_already_alerted,
    mark_known_incidents,
    mark_lifecycle,
    render_markdown,
    totals,
)
from solemate_maintenance.report_store import ReportStore
from solemate_maintenance.run_facts import RunFacts, format_instant

FAILED_STATES = {"failed", "upstream_failed"}
# What the report task delivered in its last try: run_verdict sends what a failed report did not.
DELIVERED_XCOM_KEY = "delivered"
FINISHED_STATES = {"success", "failed", "upstream_failed", "skipped", "removed"}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class PublishReportOperator(BaseOperator):
    """Collect the findings of every upstream check, compare with the previous run, publish.

    Writes ``<prefix>/<dag_id>/<run_id>/report.json`` and ``report.md``, the same under
    ``<prefix>/<dag_id>/by-logical-date/<date>/`` (the report for a date is one predictable key,
    whatever the run id), updates ``latest.json`` unless a newer date already did (backfills do not
    roll it back), sends one alert per common cause and one digest to Slack (and e-mail). Runs
    whatever happened upstream (``ALL_DONE``).

    The comparison is with the previous logical date's report. When that run is still going (a
    backfill runs several dates at once), the task defers until its report is written, at most
    ``previous_report_wait_minutes``; after that the report says the comparison was impossible
    instead of calling every problem new.

    :param bucket: S3 bucket for reports.
    :param prefix: key prefix inside the bucket.
    :param environment: environment name shown in the report and the digest.
    :param alerts: the `alerts` section of the platform config.
    :param previous_report_wait_minutes: how long to wait for the previous date's report.
    :param poll_seconds: how often to look while waiting (the worker slot is free meanwhile).
    :param also_collect: task ids to report on that are not direct upstream tasks (setup tasks).
    :param incident_key: the watch's incident record in the bucket: the report lists the incidents of
        its window, and a problem the watch already announced is "ongoing since", not new.
    """

    template_fields: Sequence[str] = ("bucket", "prefix", "aws_conn_id", "region_name")
    ui_color = "#e6eefc"

    def __init__(self, *, bucket: str, prefix: str = "reports", environment: str, alerts: Alerts,
                 aws_conn_id: str | None = "aws_default", region_name: str | None = None,
                 previous_report_wait_minutes: int = 60, poll_seconds: int = 30,
                 also_collect: Sequence[str] = (), incident_key: str | None = None,
                 trigger_rule: str = TriggerRule.ALL_DONE, **kwargs: Any) -> None:
        super().__init__(trigger_rule=trigger_rule, **kwargs)
        self.incident_key = incident_key
        # Tasks reported on though not directly upstream: setup tasks, whose direct downstream Airflow
        # requires to be ALL_SUCCESS (the report is ALL_DONE). They finish before their teardown does.
        self.also_collect = list(also_collect)
        self.bucket = bucket
        self.prefix = prefix
        self.environment = environment
        self.alerts = alerts
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.previous_report_wait_minutes = previous_report_wait_minutes
        self.poll_seconds = poll_seconds

    @cached_property
    def store(self) -> ReportStore:
        return ReportStore(bucket=self.bucket, prefix=self.prefix, aws_conn_id=self.aws_conn_id,
                           region_name=self.region_name)

    def check_task_ids(self) -> list[str]:
        return sorted(self.upstream_task_ids | set(self.also_collect))

    # -- entry points ------------------------------------------------------------------------------
    def execute(self, context: Any) -> dict[str, Any]:
        return self._report(context, polls=0)

    def execute_complete(self, context: Any, event: Any = None, polls: int = 0, **_: Any) -> dict[str, Any]:
        """Resumed after waiting for the previous date's report."""
        return self._report(context, polls=polls)

    def _report(self, context: Any, polls: int) -> dict[str, Any]:
        from solemate_maintenance.notifiers.delivery import register_connection_secrets

        register_connection_secrets(self.aws_conn_id)
        facts = self._facts(context)
        previous, comparison = self._previous_report(context, facts, polls, wait=True)
        report = self.build_report(context, facts, previous, comparison)
        self.publish(context, facts, report)
        return {"report_uri": report.report_uri, "totals": report.totals, "failed_tasks": report.failed_tasks,
                "fingerprint": report.fingerprint}

    def _facts(self, context: Any) -> RunFacts:
        return RunFacts.from_context(context, page_max_age_hours=self.alerts.page_max_age_hours, now=utcnow())

    # -- the previous run ----------------------------------------------------------------------------
    def _wait_deadline(self, context: Any) -> datetime:
        # From the run's start, not the try's: a retry (or a resumed wait) never extends the wait.
        started = getattr(context.get("dag_run"), "start_date", None) or utcnow()
        return started + timedelta(minutes=self.previous_report_wait_minutes)

    def _previous_report(self, context: Any, facts: RunFacts, polls: int, *, wait: bool) -> tuple[
            RunReport | None, dict[str, Any]]:
        ti = context["ti"]
        if facts.logical_date_source == "run_after":
            return None, {"status": "impossible",
                          "reason": "the run has no logical date, so there is no previous date to compare with"}
        previous_run = ti.get_previous_dagrun()
        if previous_run is None:
            return None, {"status": "first_run"}
        state = ti.get_task_states(dag_id=ti.dag_id, run_ids=[previous_run.run_id],
                                   task_ids=[self.task_id]).get(previous_run.run_id, {}).get(self.task_id)
        run_state = str(getattr(getattr(previous_run, "state", None), "value", getattr(previous_run, "state", "")))
        if state not in FINISHED_STATES and run_state not in ("success", "failed"):
            if run_state == "queued":
                # Queued behind this run (a backfill running backwards, a cleared past run waiting for
                # a slot): it cannot finish while this run holds the slot, so waiting would only stall.
                return None, {"status": "impossible", "previous_run_id": previous_run.run_id,
                              "reason": f"the previous run {previous_run.run_id} is queued behind this one"}
            now, deadline = utcnow(), self._wait_deadline(context)
            if wait and now < deadline:
                from airflow.providers.standard.triggers.temporal import DateTimeTrigger

                # Back off (30 s, 60 s, ... 5 min): each look costs a worker start.
                interval = timedelta(seconds=min(self.poll_seconds * 2 ** min(polls, 10), 300))
                self.log.info("Waiting for the previous run %s to finish its report (task %s), until %s at most",
                              previous_run.run_id, state, deadline.isoformat())
                self.defer(trigger=DateTimeTrigger(moment=min(now + interval, deadline)),
                           method_name="execute_complete", kwargs={"polls": polls + 1},
                           timeout=deadline - now + timedelta(minutes=10))
            return None, {"status": "impossible", "previous_run_id": previous_run.run_id,
                          "reason": f"the previous run {previous_run.run_id} had not finished its report "
                                    f"(task {state or 'not started'}) within {self.previous_report_wait_minutes} "
                                    "min of this run's start"}
        try:
            previous = self.store.read_report(self.store.run_key(ti.dag_id, previous_run.run_id), log=self.log)
        except Exception as exc:  # S3 itself failing is handled (and reported) when this report is written
            return None, {"status": "impossible", "previous_run_id": previous_run.run_id,
                          "reason": f"the previous report could not be read: {trim(scrub(str(exc)), 200)}"}
        if previous is None:
            return None, {"status": "impossible", "previous_run_id": previous_run.run_id,
                          "reason": f"the previous run {previous_run.run_id} left no readable report "
                                    f"(its report task: {state or 'none'})"}
        return previous, {"status": "compared", "previous_run_id": previous_run.run_id}

    # -- building --------------------------------------------------------------------------------------
    def build_report(self, context: Any, facts: RunFacts, previous: RunReport | None,
                     comparison: dict[str, Any], *, refreshed: bool = False) -> RunReport:
        ti, dag_run = context["ti"], context["dag_run"]
        check_tasks = self.check_task_ids()
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        collected = _Collected.from_xcom(ti, check_tasks, states)
        marked, resolved = mark_lifecycle(collected.findings, previous, collected.reporting,
                                          comparable=comparison.get("status") != "impossible")
        earlier = self._earlier_report_for_date(facts)
        earlier_runs: list[str] = []
        if earlier is not None:
            marked = mark_already_alerted(marked, earlier)
            earlier_runs = list(dict.fromkeys([*earlier.earlier_runs_for_date, earlier.run_id]))
        incidents, incident_record = self._incidents(context, collected.windows)
        marked = mark_known_incidents(marked, incidents)
        run_key = self.store.run_key(ti.dag_id, ti.run_id)
        date_key = self.store.date_key(ti.dag_id, facts.logical_date) if facts.logical_date else ""
        run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
        return RunReport(
            dag_id=ti.dag_id, run_id=ti.run_id, run_type=str(run_type),
            logical_date=_iso(facts.logical_date),
            data_interval_start=_iso(context.get("data_interval_start")),
            data_interval_end=_iso(context.get("data_interval_end")),
            environment=self.environment, facts=facts.as_dict(), checked_label=facts.date_label,
            windows=collected.windows, windows_label=_windows_label(collected.windows, facts),
            clear_number=facts.clear_number,
            task_states={t: states.get(t) for t in check_tasks},
            findings=marked, resolved=resolved,
            previous_run_id=previous.run_id if previous else None, comparison=comparison,
            earlier_runs_for_date=earlier_runs,
            totals=totals(marked, resolved),
            failed_tasks=[t for t in check_tasks if states.get(t) in FAILED_STATES],
            common_causes=collected.causes,
            alert_deliveries=collected.deliveries,
            report_uri=self.store.uri(run_key), report_url=self.store.browse_url(run_key),
            by_date_uri=self.store.uri(date_key) if date_key else "",
            airflow_url=str(getattr(ti, "log_url", "") or "").split("/tasks/", 1)[0],
            refreshed_after_rerun=refreshed,
            fingerprint=collected.fingerprint,
            measurements=collected.measurements,
            incidents=[_incident_summary(i) for i in incidents], incident_record=incident_record,
        )

    def _incidents(self, context: Any, windows: dict[str, dict[str, str]]) -> tuple[list[Any], str]:
        """The watch's incidents overlapping the report's window (its checks' widest window, else the
        data interval, else the day before the run)."""
        if not self.incident_key:
            return [], ""
        from solemate_maintenance.incidents import IncidentStore
        from solemate_maintenance.window import run_end

        end = run_end(context)
        starts = [datetime.fromisoformat(w["start"]) for w in windows.values()]
        interval_start = context.get("data_interval_start")
        start = min(starts) if starts else interval_start if interval_start and interval_start < end else \
            end - timedelta(days=1)
        store = IncidentStore(s3_client=self.store.s3.conn, bucket=self.bucket, key=self.incident_key,
                              environment=self.environment)
        try:
            record, etag = store.read()
        except Exception as exc:  # the report matters more than the incident list
            reason = trim(scrub(f"{type(exc).__name__}: {exc}"), 200)
            self.log.warning("The incident record %s could not be read: %s", store.uri, reason)
            return [], f"unreadable: {reason}"
        return record.between(start, end), "read" if etag else "none"

    def _earlier_report_for_date(self, facts: RunFacts) -> RunReport | None:
        try:
            return self.store.earlier_report_for_date(facts, log=self.log)
        except Exception as exc:  # S3 trouble shows up (and is handled) when the report is written
            self.log.warning("Could not read the earlier report for %s: %s", facts.date_label,
                             trim(scrub(str(exc)), 200))
            return None

    # -- publishing ------------------------------------------------------------------------------------
    def publish(self, context: Any, facts: RunFacts, report: RunReport, *, ledger_suffix: str = "") -> None:
        ti = context["ti"]
        self._delivered: list[str] = []
        try:
            self._write(report)
        except Exception as exc:
            cause = classify(exc)
            last_try = ti.try_number > (getattr(ti, "max_tries", 0) or 0)
            if (cause is None or cause.retryable) and not last_try:
                self.log.warning("Report not written (%s); the retry writes it, then sends the digest", exc)
                raise
            report.write_error = trim(scrub(f"{type(exc).__name__}: {exc}"), 300) + \
                (f" — {cause.hint}" if cause else "")
            self.log.error("The report could not be written to %s: %s", report.report_uri, report.write_error)
        budget = self._budget(ti, report)
        for cause in report.common_causes:
            self._deliver_once(context, facts, report, cause_kind(cause),
                               lambda c=cause: self._send_cause(context, facts, c, budget))
        title, attachments = digest_message(report, {k: v.color for k, v in self.alerts.severities.items()})
        self._deliver_once(context, facts, report, "digest" + ledger_suffix, lambda: [send_slack(
            kind="digest", conn_id=self.alerts.slack_conn_id, text=title, attachments=attachments,
            alerts=self.alerts, context=context, budget=budget)])
        if self.alerts.digest_email:
            # Another channel: its own attempt even when a stalled Slack spent the budget.
            self._deliver_once(context, facts, report, "email" + ledger_suffix, lambda: [send_email(
                kind="digest", to=self.alerts.digest_email, subject=title.split(" ", 1)[1],
                html=f"<pre>{html.escape(scrub(render_markdown(report)))}</pre>", alerts=self.alerts,
                context=context, budget=self._budget(ti, report))])
        if report.write_error:
            message = (f"The run report could not be written to {report.report_uri}: {report.write_error}. The "
                       "digest carried the findings instead; no check failed because of this.")
            digest_out = any(d.kind == "digest" and d.arrived for d in report.alert_deliveries)
            # The digest already says so; a failure alert would repeat it. Without a digest, alert.
            raise FailureAlreadyAnnounced(message) if digest_out else AirflowFailException(message)
        try:
            self._write(report)  # again, now with the deliveries
        except Exception as exc:  # the report and the messages are out; only the delivery record is missing
            self.log.warning("Report written, but not updated with its deliveries: %s", trim(scrub(str(exc)), 200))
        self.log.info("Report: %s (%s)", report.report_url, json.dumps(report.totals["status"]))

    def _budget(self, ti: Any, report: RunReport) -> DeliveryBudget:
        # What the checks' alerts already spent counts against the run's budget (they ran side by
        # side: the longest of them); the message keeps room for one attempt whatever happened before.
        per_task: dict[str, float] = {}
        for d in report.alert_deliveries:
            if d.task_id != self.task_id:
                per_task[d.task_id or ""] = per_task.get(d.task_id or "", 0.0) + d.seconds
        return DeliveryBudget.for_run(self.alerts.delivery_budget_seconds, ti.run_id,
                                      spent_elsewhere=max(per_task.values(), default=0.0),
                                      floor=self.alerts.slack_timeout_seconds)

    def _send_cause(self, context: Any, facts: RunFacts, cause: dict[str, Any], budget: DeliveryBudget) -> list[
            Delivery]:
        severity, title, attachments = cause_message(ErrorCause.from_dict(cause), cause["errors"], self.alerts,
                                                     self.environment, facts, cause["log_urls"])
        return [send_slack(kind="cause", conn_id=slack_channel_for(severity, self.alerts), text=title,
                           attachments=attachments, alerts=self.alerts, context=context, budget=budget)]

    def _deliver_once(self, context: Any, facts: RunFacts, report: RunReport, kind: str, send: Any) -> None:
        ti = context["ti"]
        key = self.store.ledger_key(ti.dag_id, ti.run_id, facts.clear_number, kind)
        if not report.write_error:
            try:
                done = self.store.read_json(key)
            except Exception:
                done = None
            if done:
                self.log.info("%s already delivered for this run (try %s); not sent again", kind, done.get("try"))
                report.alert_deliveries += [Delivery.model_validate(d) for d in done.get("deliveries", [])]
                self._delivered.append(kind)
                return
        deliveries = [d.model_copy(update={"task_id": self.task_id}) for d in send()]
        report.alert_deliveries += deliveries
        if not any(d.arrived for d in deliveries):
            return  # nothing arrived: a retry may try again
        self._delivered.append(kind)
        try:  # survives this try's failure (XCom is cleared only when a new try starts)
            ti.xcom_push(key=DELIVERED_XCOM_KEY, value=self._delivered)
        except Exception:
            self.log.warning("Could not record the %s delivery in XCom", kind)
        if report.write_error:
            return  # S3 is failing: no ledger, and this try is the last
        try:
            self.store.write(key, json.dumps({"try": ti.try_number,
                                              "deliveries": [d.model_dump() for d in deliveries]}))
        except Exception as exc:
            self.log.warning("Could not record the %s delivery: %s", kind, trim(scrub(str(exc)), 200))

    def _write(self, report: RunReport) -> None:
        payload = json.dumps(scrub(report.model_dump(mode="json")), indent=2, sort_keys=True)
        markdown = scrub(render_markdown(report))
        run_key = self.store.run_key(report.dag_id, report.run_id)
        self.store.write(run_key, payload)
        self.store.write(run_key.replace(".json", ".md"), markdown)
        if report.logical_date:
            date_key = self.store.date_key(report.dag_id, datetime.fromisoformat(report.logical_date))
            self.store.write(date_key, payload)
            self.store.write(date_key.replace(".json", ".md"), markdown)
        self._update_latest(report, payload)

    def _update_latest(self, report: RunReport, payload: str) -> None:
        """latest.json follows the newest logical date; best effort (the run's own report is written)."""
        from solemate_maintenance.report_store import ObjectNotReadable

        latest_key = self.store.latest_key(report.dag_id)
        try:
            try:
                text = self.store.read_text(latest_key)
                latest = RunReport.model_validate_json(text) if text else None
            except ObjectNotReadable:
                # Missing, or not readable: only a live run may then write it (a backfill must not
                # roll it back on a guess).
                if report.facts.get("run_kind", "live") != "live":
                    self.log.warning("latest.json not readable; left alone by this past-date run")
                    return
                latest = None
            except ValueError:
                latest = None  # corrupt: replace it
            if latest is None or (latest.logical_date or "") <= (report.logical_date or ""):
                self.store.write(latest_key, payload)
            else:
                self.log.info("latest.json kept: it belongs to the newer date %s", latest.logical_date)
        except Exception as exc:
            self.log.warning("latest.json not updated: %s", trim(scrub(str(exc)), 200))


def _incident_summary(incident: Any) -> dict[str, Any]:
    return {"id": incident.id, "check": incident.check, "resource": incident.resource,
            "severity": incident.severity.value, "label": incident.label, "summary": incident.summary,
            "started_at": incident.started_at.isoformat(),
            "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
            "peak": incident.peak, "peak_at": incident.peak_at.isoformat() if incident.peak_at else None,
            "unit": incident.unit}


def cause_kind(cause: dict[str, Any]) -> str:
    return f"cause-{cause['key'].replace(':', '-')}"


def _windows_label(windows: dict[str, dict[str, str]], facts: RunFacts) -> str:
    if not windows:
        return "live state at run time"
    minutes = sorted({int((datetime.fromisoformat(w["end"]) - datetime.fromisoformat(w["start"])).total_seconds()
                          // 60) for w in windows.values()})
    span = f"{minutes[0]} min" if len(minutes) == 1 else f"{minutes[0]}–{minutes[-1]} min"
    return f"metric windows end {format_instant(facts.logical_date)}, look-back {span}; live state at run time"


class _Collected:
    """What the check tasks left in XCom: findings, windows, deliveries and common causes."""

    def __init__(self) -> None:
        self.findings: list[ReportedFinding] = []
        self.reporting: set[str] = set()
        self.deliveries: list[Delivery] = []
        self.windows: dict[str, dict[str, str]] = {}
        self.causes: list[dict[str, Any]] = []
        self.measurements: dict[str, dict[str, Any]] = {}
        self.fingerprint = ""

    @classmethod
    def from_xcom(cls, ti: Any, tasks: list[str], states: dict[str, str | None]) -> _Collected:
        collected = cls()
        causes: dict[str, dict[str, Any]] = {}
        digest = hashlib.sha256()
        for task_id in tasks:
            pushed = ti.xcom_pull(task_ids=task_id, key=FINDINGS_XCOM_KEY)
            digest.update(json.dumps([task_id, states.get(task_id), pushed], sort_keys=True, default=str).encode())
            window = ti.xcom_pull(task_ids=task_id, key=WINDOW_XCOM_KEY)
            if window:
                collected.windows[task_id] = window
            measured = ti.xcom_pull(task_ids=task_id, key=MEASUREMENTS_XCOM_KEY)
            if measured:
                collected.measurements[task_id] = measured
            cause = ti.xcom_pull(task_ids=task_id, key=COMMON_CAUSE_XCOM_KEY) \
                if states.get(task_id) in FAILED_STATES else None
            if pushed is not None:
                if not ti.xcom_pull(task_ids=task_id, key=INCOMPLETE_XCOM_KEY):
                    collected.reporting.add(task_id)  # only a complete check can resolve earlier problems
                collected.findings += [ReportedFinding(**item, task_id=task_id) for item in pushed]
            elif states.get(task_id) == "upstream_failed":
                # Never ran: the task it depends on failed and carries the alert and the finding.
                collected.findings.append(ReportedFinding(
                    check=TASK_ERROR_CHECK, resource=task_id, status=Status.SKIPPED, task_id=task_id,
                    summary="not run: a task it depends on failed (see that task's findings)"))
            elif states.get(task_id) in FAILED_STATES:
                # No findings and failed: the check itself broke. Say so rather than show nothing.
                summary = (f"check could not run: {cause['title']}" if cause else
                           f"check did not complete (task {states.get(task_id)}); see the task log")
                collected.findings.append(ReportedFinding(
                    check=TASK_ERROR_CHECK, resource=task_id, status=Status.CRITICAL, severity=Severity.P2,
                    task_id=task_id, summary=summary))
            if cause:
                group = causes.setdefault(cause["key"], {**ErrorCause.from_dict(cause).as_dict(),
                                                         "tasks": [], "errors": {}, "log_urls": {}})
                group["tasks"].append(task_id)
                group["errors"][task_id] = cause["error"]
                group["log_urls"][task_id] = cause["log_url"]
            for item in ti.xcom_pull(task_ids=task_id, key=ALERT_DELIVERIES_XCOM_KEY) or []:
                collected.deliveries.append(Delivery.model_validate(item))
        collected.causes = list(causes.values())
        collected.fingerprint = digest.hexdigest()[:16]
        return collected


class RunVerdictOperator(PublishReportOperator):
    """The run's last task: make the report describe the final state, then fail the run if needed.

    Airflow judges a run by its leaf tasks, and the report (which always runs) succeeds even when
    checks failed; this task fails the run then, naming what failed. It also catches the UI's usual
    recovery, "clear only failed tasks": the failed checks run again but the report (which had
    succeeded) does not, so this task rebuilds the report and sends an updated digest whenever the
    checks changed after the report was written. It carries no alert of its own.

    :param report_task_id: the report task of the DAG.
    """

    ui_color = "#fbe3e3"

    def __init__(self, *, report_task_id: str = "report", **kwargs: Any) -> None:
        kwargs["trigger_rule"] = TriggerRule.ALL_DONE
        kwargs["retries"] = 0
        kwargs["on_failure_callback"] = None
        super().__init__(**kwargs)
        self.report_task_id = report_task_id

    def check_task_ids(self) -> list[str]:
        return sorted((self.upstream_task_ids | set(self.also_collect)) - {self.report_task_id})

    def execute(self, context: Any) -> None:
        ti = context["ti"]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        checks = self.check_task_ids()
        report_state = states.get(self.report_task_id)
        published = ti.xcom_pull(task_ids=self.report_task_id) or {}
        if report_state == "success":
            current = _Collected.from_xcom(ti, checks, states).fingerprint
            if published.get("fingerprint") != current:
                self.log.info("Checks changed after the report was written (a re-run): rebuilding the report")
                facts = self._facts(context)
                previous, comparison = self._previous_report(context, facts, 0, wait=False)
                self.publish(context, facts, self.build_report(context, facts, previous, comparison, refreshed=True),
                             ledger_suffix=f"-refresh-{current}")
            else:
                self.log.info("The report describes the final state of the checks")
        elif report_state != "skipped":
            self._send_causes_the_report_did_not(context, ti, checks, states)
        failed_checks = [t for t in checks if states.get(t) in FAILED_STATES]
        problems = []
        if failed_checks:
            problems.append(f"check(s) failed: {', '.join(failed_checks)}")
        if report_state in FAILED_STATES:
            problems.append(f"the report task {report_state} (the digest names why; the checks themselves "
                            f"{'also failed' if failed_checks else 'all passed'})")
        if problems:
            raise AirflowFailException("The run failed: " + "; ".join(problems) + ". See the alerts and the report.")

    def _send_causes_the_report_did_not(self, context: Any, ti: Any, checks: list[str],
                                        states: dict[str, str | None]) -> None:
        """Checks that failed on a common cause sent no alert of their own: if the report did not
        get to send it (it crashed, or was killed), send it from here."""
        causes = _Collected.from_xcom(ti, checks, states).causes
        delivered = set(ti.xcom_pull(task_ids=self.report_task_id, key=DELIVERED_XCOM_KEY) or [])
        missing = [c for c in causes if cause_kind(c) not in delivered]
        if not missing:
            return
        facts = self._facts(context)
        budget = DeliveryBudget.for_run(self.alerts.delivery_budget_seconds, ti.run_id,
                                        floor=self.alerts.slack_timeout_seconds)
        for cause in missing:
            self.log.warning("The report task did not send the alert for %s; sending it now", cause["title"])
            self._send_cause(context, facts, cause, budget)
