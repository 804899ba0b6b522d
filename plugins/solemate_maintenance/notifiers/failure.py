"""Task failure callback: one Slack message (plus an SMS page for a live P1) with what on-call needs."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseNotifier
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.timezone import utcnow

from solemate_maintenance.aws_errors import classify
from solemate_maintenance.config import Alerts, PlatformConfig, Reports
from solemate_maintenance.findings import TASK_ERROR_CHECK, ChecksFailedError, RunRefused, Severity
from solemate_maintenance.notifiers.delivery import (
    ALERT_DELIVERIES_XCOM_KEY,
    Delivery,
    DeliveryBudget,
    send_email,
    send_slack,
    send_sns,
    slack_channel_for,
)
from solemate_maintenance.notifiers.messages import blocks_as_html, failure_message, page_text, refusal_message
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.report_store import ReportStore
from solemate_maintenance.run_facts import RunFacts

log = logging.getLogger(__name__)

# A failure whose cause every check shares is not alerted per task: the report task sends one
# alert naming the cause and the affected tasks (see PublishReportOperator).
COMMON_CAUSE_XCOM_KEY = "common_cause"


class FailureAlreadyAnnounced(AirflowFailException):
    """A failure whose explanation already reached people (e.g. in the digest): no second alert."""


class MaintenanceFailureNotifier(BaseNotifier):
    """``on_failure_callback`` of every maintenance task.

    Airflow calls it only when the last try fails, so retries stay quiet. Build one per DAG with
    :func:`failure_notifier`; do not share instances between DAGs.
    """

    template_fields = ()

    def __init__(self, *, alerts: Alerts, environment: str, reports: Reports | None = None,
                 region_name: str | None = None, aws_conn_id: str | None = "aws_default",
                 incident_key: str | None = None) -> None:
        super().__init__()
        self.incident_key = incident_key
        self.alerts = alerts
        self.environment = environment
        self.reports = reports
        self.region_name = region_name
        self.aws_conn_id = aws_conn_id

    def notify(self, context: Any) -> None:
        ti, exception = context["ti"], context.get("exception")
        if isinstance(exception, FailureAlreadyAnnounced):
            log.info("%s failed; the explanation was already delivered, no separate alert: %s", ti.task_id, exception)
            return
        facts = RunFacts.from_context(context, page_max_age_hours=self.alerts.page_max_age_hours, now=utcnow())
        if isinstance(exception, RunRefused):  # bad input, not an incident: say what to fix, never page
            severity, title, attachments = refusal_message(context, self.alerts, self.environment, facts)
            budget = DeliveryBudget.for_run(self.alerts.delivery_budget_seconds, ti.run_id,
                                            floor=self.alerts.slack_timeout_seconds)
            delivery = send_slack(kind="failure", conn_id=slack_channel_for(severity, self.alerts), text=title,
                                  attachments=attachments, alerts=self.alerts, context=context, budget=budget)
            self._record(ti, ALERT_DELIVERIES_XCOM_KEY,
                         [delivery.model_copy(update={"task_id": ti.task_id}).model_dump()])
            return
        cause = classify(exception)
        if cause and cause.platform_wide and not isinstance(exception, ChecksFailedError) and _has_report(context):
            self._record(ti, COMMON_CAUSE_XCOM_KEY, {
                **cause.as_dict(), "error": trim(scrub(f"{type(exception).__name__}: {exception}"), 400),
                "log_url": ti.log_url})
            log.warning("%s failed on a platform-wide cause (%s): the run's report sends one alert for every "
                        "task it affected", ti.task_id, cause.title)
            return

        task = context.get("task")
        window = task.checked_window(context) if hasattr(task, "checked_window") else None
        findings = list(getattr(exception, "findings", None) or [])
        severities = {f.key: f.severity for f in findings if f.severity} or \
            {f"{TASK_ERROR_CHECK}|{ti.task_id}": Severity.P2}
        already = self._already_alerted_by(facts, ti, severities, window)
        paged_by = self._paged_in_this_run(context) if Severity.P1 in severities.values() else None
        severity, title, attachments = failure_message(context, self.alerts, self.environment, facts, utcnow(),
                                                       window=window, already_alerted_by=already)
        if severity == Severity.P1 and paged_by and not already and self.alerts.sns_topic_arn:
            attachments[0]["blocks"].insert(2, {"type": "section", "text": {"type": "mrkdwn", "text": (
                f":pager: *Not paged again*: `{paged_by}` of this run already paged on-call; this failure "
                "is part of the same incident unless its findings say otherwise.")}})
        budget = DeliveryBudget.for_run(self.alerts.delivery_budget_seconds, ti.run_id,
                                        floor=self.alerts.slack_timeout_seconds)
        deliveries = [send_slack(kind="failure", conn_id=slack_channel_for(severity, self.alerts), text=title,
                                 attachments=attachments, alerts=self.alerts, context=context, budget=budget)]
        if (severity.value in self.alerts.email_severities and self.alerts.digest_email and facts.may_page
                and not already):
            deliveries.append(send_email(kind="failure", to=list(self.alerts.digest_email), subject=title,
                                         html=blocks_as_html(attachments[0]["blocks"]), alerts=self.alerts,
                                         context=context, budget=budget))
        # SMS is for the guide's emergencies only; other P1s reach the critical channel and e-mail.
        emergency = [f.check for f in findings if f.severity == Severity.P1 and self.alerts.pages_by_sms(f.check)]
        if severity == Severity.P1 and self.alerts.sns_topic_arn:
            if not emergency:
                checks = ", ".join(sorted({f.check for f in findings if f.severity == Severity.P1})) or ti.task_id
                log.info("P1 not paged by SMS: %s is not an emergency (alerts.sms_checks)", checks)
                deliveries.append(Delivery(kind="failure", channel="sns", ok=False, outcome="skipped",
                                           error=f"not paged: {checks} is not one of alerts.sms_checks (emergencies)"))
            elif facts.may_page and not already and not paged_by:
                deliveries.append(send_sns(
                    kind="failure", topic_arn=self.alerts.sns_topic_arn, subject=title,
                    message=page_text(title, facts, findings, ti.log_url), aws_conn_id=self.aws_conn_id,
                    context=context, budget=budget))
            else:
                reason = (f"already paged by {already}" if already else
                          f"this run already paged (task {paged_by}); one page per run" if paged_by else
                          facts.paging_note)
                log.info("P1 not paged: %s", reason)
                deliveries.append(Delivery(kind="failure", channel="sns", ok=False, outcome="skipped",
                                           error=f"not paged: {reason}"))
        self._record(ti, ALERT_DELIVERIES_XCOM_KEY,
                     [d.model_copy(update={"task_id": ti.task_id}).model_dump() for d in deliveries])

    @staticmethod
    def _paged_in_this_run(context: Any) -> str | None:
        """The task of this run whose failure already paged, else None: one cause often fails several
        tasks (an image missing in DR fails readiness, the RTO and the scorecard); on-call needs one page,
        and the Slack alerts carry the rest."""
        ti = context["ti"]
        dag = getattr(context.get("task"), "dag", None) or context.get("dag")
        others = [task_id for task_id in getattr(dag, "task_ids", []) if task_id != ti.task_id]
        if not others:
            return None
        try:
            recorded = ti.xcom_pull(task_ids=others, key=ALERT_DELIVERIES_XCOM_KEY)
            for deliveries in recorded or []:
                for raw in deliveries if isinstance(deliveries, list) else []:
                    try:
                        delivery = Delivery.model_validate(raw)
                    except Exception:  # a record of another shape says nothing about a page
                        continue
                    # Only failure pages count: the failover's start and end pages are announcements.
                    if delivery.kind == "failure" and delivery.channel == "sns" and delivery.arrived:
                        return delivery.task_id or "another task"
        except Exception as exc:  # paging twice is better than not paging
            log.warning("Could not read this run's earlier deliveries: %s", trim(scrub(str(exc)), 200))
        return None

    def _already_alerted_by(self, facts: RunFacts, ti: Any, severities: dict[str, Severity],
                            window: Any = None) -> str | None:
        """The earlier run that already alerted these failing findings, else None.

        Either an earlier run for the same logical date (a re-run), or, for a live run, the previous
        run when it checked less than `page_max_age_hours` earlier and found the same problem (an
        ongoing incident, e.g. a manual re-check right after the 02:00 run paged). Only at the same
        severity or worse (P2 then P1 is an escalation), and a P1 only when that page was delivered.
        """
        if self.reports is None or facts.logical_date is None:
            return None
        # A short, single attempt: S3 being slow must not delay the alert it only annotates.
        store = ReportStore(bucket=self.reports.bucket, prefix=self.reports.prefix, aws_conn_id=self.aws_conn_id,
                            region_name=self.region_name, quick=True)
        try:
            earlier = store.earlier_report_for_date(facts)
            if earlier is not None and _repeats(earlier, ti.task_id, severities):
                return earlier.run_id
            if facts.may_page:
                previous = ti.get_previous_dagrun()
                previous_date = getattr(previous, "logical_date", None)
                if previous_date is not None and facts.logical_date - previous_date <= facts.page_max_age:
                    report = store.read_report(store.run_key(facts.dag_id, previous.run_id))
                    if report is not None and _repeats(report, ti.task_id, severities):
                        return report.run_id
            if self.incident_key and facts.may_page:
                since = window.start if window is not None else facts.logical_date - facts.page_max_age
                return self._announced_by_the_watch(store, facts, severities, since)
        except Exception as exc:  # the alert matters more than knowing it repeats
            log.warning("Could not read earlier reports for %s: %s", facts.date_label, trim(scrub(str(exc)), 200))
        return None

    def _announced_by_the_watch(self, store: ReportStore, facts: RunFacts, severities: dict[str, Severity],
                                since: Any) -> str | None:
        """The watch's incident that already announced every failing finding (at the same severity or
        worse, and its page delivered for a P1), else None."""
        from solemate_maintenance.incidents import IncidentStore, incident_for

        record, _ = IncidentStore(s3_client=store.s3.conn, bucket=self.reports.bucket, key=self.incident_key,
                                  environment=self.environment).read()
        known = record.between(since, facts.logical_date + facts.page_max_age)
        found = []
        for key, severity in severities.items():
            check, _, resource = key.partition("|")
            incident = incident_for(known, check, resource)
            if incident is None or incident.severity > severity:
                return None
            announced = [a for a in record.announcements if a.incident_id == incident.id]
            if severity == Severity.P1 and self.alerts.pages_by_sms(check) and not any(
                    d.get("channel") == "sns" and d.get("outcome") == "delivered" for a in announced
                    for d in a.deliveries):
                return None  # the watch did not page it: this alert must
            found.append(incident)
        first = min(found, key=lambda i: i.started_at)
        return f"the watch (incident {first.id}, since {first.started_at:%Y-%m-%d %H:%M} UTC)"

    @staticmethod
    def _record(ti: Any, key: str, value: Any) -> None:
        try:
            ti.xcom_push(key=key, value=value)
        except Exception:  # the report then shows "unknown"; never let bookkeeping hide the failure
            log.exception("Could not record %s for %s", key, ti.task_id)


def failure_notifier(config: PlatformConfig) -> MaintenanceFailureNotifier:
    """A fresh notifier for one DAG (notifier instances keep per-call state; never share them)."""
    from solemate_maintenance.incidents import incident_key

    return MaintenanceFailureNotifier(alerts=config.alerts, environment=config.environment, reports=config.reports,
                                      region_name=config.regions.primary, incident_key=incident_key(config))


def _has_report(context: Any) -> bool:
    """Whether the run has a report task to send one alert for a cause many tasks share. The watches have
    none: their task alerts for itself, or an unreachable AWS would go unannounced."""
    dag = getattr(context.get("task"), "dag", None) or context.get("dag")
    task_ids = getattr(dag, "task_ids", None)
    return task_ids is None or "report" in task_ids


def _repeats(earlier: Any, task_id: str, severities: dict[str, Severity]) -> bool:
    if not all(earlier.already_failing(key, severity) for key, severity in severities.items()):
        return False
    if Severity.P1 in severities.values():
        # The earlier run did not page (a backfill, or SNS failed): this one must.
        return any(d.channel == "sns" and d.task_id == task_id and d.arrived for d in earlier.alert_deliveries)
    return True
