"""Delivering alerts through the providers' notifiers: Slack, SNS (paging) and e-mail.

Messages go through ``SlackWebhookNotifier``, ``SnsNotifier`` and ``SmtpNotifier``, built fresh per
message and called through ``notify()`` directly, so exception text that happens to contain ``{{ }}``
is sent as it is instead of being rendered as a template.

A channel that is down never raises out of here: the task's own outcome must stay visible. Every
attempt is returned as a :class:`Delivery`:

* ``delivered``; ``failed`` (refused, HTTP error: tried twice); ``unknown`` (timed out: Slack may
  well have received it, so it is *not* retried, which could post it twice);
* ``skipped`` when the task's delivery time budget is spent, so that a channel stalling on every
  message cannot multiply the run's time.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, model_validator

from solemate_maintenance.config import Alerts
from solemate_maintenance.redaction import ensure_log_masking, scrub, trim

log = logging.getLogger(__name__)

ALERT_DELIVERIES_XCOM_KEY = "alert_deliveries"


class Delivery(BaseModel):
    kind: str  # "failure", "cause", "digest"
    channel: str  # "slack:<conn_id>", "sns" or "email"
    ok: bool
    outcome: str = "delivered"  # delivered | failed | unknown | skipped
    error: str | None = None
    task_id: str | None = None
    seconds: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _outcome_from_ok(cls, data: Any) -> Any:
        # Reports written before `outcome` existed only say ok true/false.
        if isinstance(data, dict) and "outcome" not in data and "ok" in data:
            data = {**data, "outcome": "delivered" if data["ok"] else "failed"}
        return data

    @property
    def arrived(self) -> bool:
        """Delivered, or timed out after sending (it may well have arrived): never send it again."""
        return self.outcome in ("delivered", "unknown")


# Seconds spent delivering, per run, in this process. Under a real executor each task is its own
# process and tasks overlap; under `airflow dags test` they run one after another in one process,
# where stalls would add up.
_SPENT_BY_RUN: dict[str, float] = {}


class DeliveryBudget:
    """Wall-clock budget for a run's deliveries (alerts.delivery_budget_seconds).

    ``for_run`` subtracts what the run already spent: this process's own account (tasks run one
    after another under ``airflow dags test``) or ``spent_elsewhere`` (the longest any other task
    spent: under an executor they ran side by side), whichever is larger. ``floor`` keeps room for
    one last message (the digest).
    """

    def __init__(self, seconds: float, run_id: str | None = None) -> None:
        self.deadline = time.monotonic() + seconds
        self.run_id = run_id

    @classmethod
    def for_run(cls, seconds: float, run_id: str, *, spent_elsewhere: float = 0.0, floor: float = 0.0
                ) -> DeliveryBudget:
        left = seconds - max(_SPENT_BY_RUN.get(run_id, 0.0), spent_elsewhere)
        return cls(max(left, floor), run_id)

    @property
    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def charge(self, seconds: float) -> None:
        if self.run_id is not None:
            _SPENT_BY_RUN[self.run_id] = _SPENT_BY_RUN.get(self.run_id, 0.0) + seconds


def _timed_out(exc: BaseException) -> bool:
    """True for a read timeout (the request went out; the answer did not come back).

    urllib wraps failures while connecting and sending in URLError (nothing arrived: "failed"), but
    raises a read timeout as a bare TimeoutError.
    """
    from urllib.error import URLError

    current: BaseException | None = exc
    for _ in range(10):
        if current is None or isinstance(current, URLError):
            return False
        if isinstance(current, TimeoutError) or type(current).__name__ == "ReadTimeoutError":
            return True
        current = current.__cause__ or current.__context__
    return False


RETRY_PAUSE_SECONDS = 1.0


def _deliver(kind: str, channel: str, notifier: Callable[[], Any], context: Any,
             budget: DeliveryBudget | None) -> Delivery:
    """Send; a refused or failed send is tried once more, a timed-out one is not (it may have arrived)."""
    started = time.monotonic()
    try:
        return _attempt_twice(kind, channel, notifier, context, budget, started)
    finally:
        if budget is not None:
            budget.charge(time.monotonic() - started)


def _attempt_twice(kind: str, channel: str, notifier: Callable[[], Any], context: Any,
                   budget: DeliveryBudget | None, started: float) -> Delivery:
    delivery: Delivery | None = None
    for attempt in (1, 2):
        if budget is not None and budget.remaining <= 0:
            log.warning("%s alert via %s skipped: the task's delivery time budget is spent", kind, channel)
            skipped = "not attempted: delivery time budget spent (earlier messages stalled)"
            return delivery or Delivery(kind=kind, channel=channel, ok=False, outcome="skipped", error=skipped)
        try:
            notifier().notify(context)
        except Exception as exc:  # a channel being down must not mask the run's real outcome
            error = trim(scrub(f"{type(exc).__name__}: {exc}"), 300)
            outcome = "unknown" if _timed_out(exc) else "failed"
            delivery = Delivery(kind=kind, channel=channel, ok=False, outcome=outcome, error=error,
                                seconds=round(time.monotonic() - started, 2))
            if outcome == "unknown":
                log.warning("%s alert via %s timed out (it may have arrived; not re-sent): %s", kind, channel, error)
                return delivery
            log.warning("%s alert via %s not delivered (attempt %s of 2): %s", kind, channel, attempt, error)
            if attempt == 1:
                time.sleep(min(RETRY_PAUSE_SECONDS, budget.remaining if budget else RETRY_PAUSE_SECONDS))
            continue
        log.info("%s alert delivered via %s", kind, channel)
        return Delivery(kind=kind, channel=channel, ok=True, seconds=round(time.monotonic() - started, 2))
    assert delivery is not None
    return delivery


def _timeout(alerts: Alerts, budget: DeliveryBudget | None) -> int:
    if budget is None:
        return alerts.slack_timeout_seconds
    return max(1, min(alerts.slack_timeout_seconds, int(budget.remaining)))


def send_slack(*, kind: str, conn_id: str, text: str, attachments: list[dict], alerts: Alerts, context: Any,
               budget: DeliveryBudget | None = None) -> Delivery:
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    register_connection_secrets(conn_id)
    # No slack_sdk retry handlers: on retry slack_sdk logs "Going to retry the same request: POST
    # <full webhook URL>" through the hook's structlog logger, token included. _deliver retries instead.
    return _deliver(kind, f"slack:{conn_id}", lambda: SlackWebhookNotifier(
        slack_webhook_conn_id=conn_id, text=scrub(text), attachments=scrub(attachments),
        timeout=_timeout(alerts, budget), retry_handlers=[]), context, budget)


def send_sns(*, kind: str, topic_arn: str, subject: str, message: str, aws_conn_id: str | None, context: Any,
             budget: DeliveryBudget | None = None) -> Delivery:
    from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

    # SNS subjects are limited to 100 characters.
    return _deliver(kind, "sns", lambda: SnsNotifier(
        aws_conn_id=aws_conn_id, target_arn=topic_arn, subject=trim(scrub(subject), 100),
        message=scrub(message)), context, budget)


def send_email(*, kind: str, to: list[str], subject: str, html: str, alerts: Alerts, context: Any,
               budget: DeliveryBudget | None = None) -> Delivery:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    register_connection_secrets(alerts.smtp_conn_id)
    return _deliver(kind, "email", lambda: SmtpNotifier(
        to=to, subject=scrub(subject), html_content=scrub(html), smtp_conn_id=alerts.smtp_conn_id),
        context, budget)


# The guide's severities as PagerDuty's.
PAGERDUTY_SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}


def send_pagerduty(*, kind: str, conn_id: str, action: str, dedup_key: str, summary: str, severity: str,
                   source: str, custom_details: dict[str, Any], links: list[dict[str, str]], context: Any,
                   budget: DeliveryBudget | None = None) -> Delivery:
    """Events API v2 through the provider's PagerdutyNotifier: trigger, acknowledge or resolve, always
    with the incident's dedup key, so PagerDuty keeps one incident and its own escalation."""
    from airflow.providers.pagerduty.notifications.pagerduty import PagerdutyNotifier

    register_connection_secrets(conn_id)
    return _deliver(kind, "pagerduty", lambda: PagerdutyNotifier(
        summary=trim(scrub(summary), 1024), severity=PAGERDUTY_SEVERITY.get(severity, "error"), source=source,
        action=action, dedup_key=dedup_key, custom_details=scrub(custom_details), links=links,
        pagerduty_events_conn_id=conn_id), context, budget)


def connection_exists(conn_id: str) -> bool:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def slack_channel_for(severity: Any, alerts: Alerts) -> str:
    """P1 goes to the critical channel when that connection exists; everything else to the default."""
    if str(severity) == "P1" and connection_exists(alerts.slack_critical_conn_id):
        return alerts.slack_critical_conn_id
    return alerts.slack_conn_id


# -- secrets on every console -------------------------------------------------------------------
_SECRET_EXTRA_KEYS = ("password", "secret", "token", "key", "webhook", "aws_secret_access_key", "session")


def secret_forms(value: str) -> set[str]:
    """A secret and the encodings it travels in: URL-encoded (both styles) and base64."""
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value),
             base64.b64encode(value.encode()).decode()}
    if "/" in value:  # a webhook token T.../B.../secret: its last part alone is the secret
        forms.add(value.rsplit("/", 1)[1])
    return {form for form in forms if len(form) >= 6}


def register_secrets(*values: str | None) -> None:
    """Tell Airflow's masker about secrets (every form), so no log line prints them."""
    from airflow.sdk.log import mask_secret

    ensure_log_masking()
    for value in values:
        if value and len(value) >= 6:
            for form in secret_forms(value):
                mask_secret(form)


def register_connection_secrets(conn_id: str | None) -> None:
    """Register a connection's password, AWS keys and secret-looking extras with the masker."""
    if not conn_id:
        return
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # an absent connection has no secrets; its user reports that elsewhere
        return
    values = [conn.password]
    if conn.conn_type == "aws":
        values.append(conn.login)  # the access key id
    extra = conn.extra_dejson if isinstance(conn.extra_dejson, dict) else {}
    values += list(_secret_values(extra))
    register_secrets(*values)


def _secret_values(extra: Any, depth: int = 0) -> list[str]:
    """String values under secret-looking keys, at any depth (e.g. session_kwargs.aws_secret_access_key)."""
    found: list[str] = []
    if depth > 5:
        return found
    if isinstance(extra, dict):
        for key, value in extra.items():
            if isinstance(value, str) and any(s in str(key).lower() for s in _SECRET_EXTRA_KEYS):
                found.append(value)
            elif isinstance(value, dict | list):
                found += _secret_values(value, depth + 1)
    elif isinstance(extra, list):
        for item in extra:
            found += _secret_values(item, depth + 1)
    return found
