"""The shape both watches share: judge the time since the previous watch, advance the incident
record, announce what changed, once.

A watch task does not fail on what it finds (an incident is announced by its own messages, opened
once and resolved once); it fails when it cannot measure, and then the next watch covers the gap.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk.timezone import utcnow

from solemate_maintenance.config import PlatformConfig
from solemate_maintenance.findings import Severity
from solemate_maintenance.incidents import (
    Announcement,
    IncidentRecord,
    IncidentStore,
    Observation,
    apply_observations,
    escalate,
    prune,
)
from solemate_maintenance.run_facts import RunFacts
from solemate_maintenance.window import TimeWindow, run_end

COVERAGE_XCOM_KEY = "coverage"


class IncidentWatchOperator(BaseOperator):
    """Base for the watches. Subclasses implement :meth:`observe` for a window.

    The window starts where the previous successful watch ended (so no gap goes unwatched), at most
    ``max_window_minutes`` back (the report names what was left out); a run whose window the record
    already covers (a retry after the record was written, a cleared run, a slower racer) announces
    nothing new. Backfills and past dates are refused: the watch is about now, the daily checks cover
    past days.

    :param config: the platform config.
    :param interval_minutes: the schedule's interval (the first watch's window).
    :param max_window_minutes: how far back a watch reaches after a gap.
    """

    template_fields: Sequence[str] = ("aws_conn_id", "region_name")
    ui_color = "#fdf2d0"
    # Checks of live state that report only what is wrong now (a lock wait, a long transaction): an open
    # incident of one of them that a watch no longer sees is resolved.
    live_checks: frozenset[str] = frozenset()
    # The watch that pages the next on-call contact for an unacknowledged P1 (the 15-minute one).
    escalates: bool = False

    def __init__(self, *, config: PlatformConfig, interval_minutes: int, max_window_minutes: int,
                 aws_conn_id: str | None = "aws_default", region_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.interval_minutes = interval_minutes
        self.max_window_minutes = max_window_minutes
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    @abstractmethod
    def observe(self, context: Any, window: TimeWindow, record: IncidentRecord) -> list[Observation]:
        """Measure the window; one observation per judged problem, healthy ones included."""

    def open_severity(self) -> Severity:
        """Problems at this severity or worse open an incident."""
        return Severity(self.config.watch.open_severity)

    def remember(self, record: IncidentRecord) -> None:
        """Put what the next watch needs into the record (called inside the conditional write)."""

    def escalations(self, record: IncidentRecord, window_end: datetime, run_id: str) -> list[Announcement]:
        """Page the next on-call contact for unacknowledged P1s past their response time. Severities
        PagerDuty handles escalate there, by its own policies, not twice."""
        alerts = self.config.alerts
        chain = alerts.on_call.chain()
        if len(chain) < 2:
            return []
        in_pagerduty = set(alerts.pagerduty.severities) if alerts.pagerduty else set()
        # PagerDuty escalates by its own policies, but only an alert it received: with a wrong key or the
        # service down, our chain still pages.
        received = {a.incident_id for a in record.announcements
                    if any(d.get("channel") == "pagerduty" and d.get("outcome") in ("delivered", "unknown")
                           for d in a.deliveries)}
        return escalate(record, window_end=window_end, run_id=run_id, contacts=len(chain),
                        response=timedelta(minutes=alerts.severities["P1"].response_minutes),
                        skip=lambda incident: incident.severity.value in in_pagerduty and incident.id in received)

    def with_diagnosis(self, observations: list[Observation], record: IncidentRecord,
                       window: TimeWindow) -> list[Observation]:
        """Diagnose the problems about to open an incident or get worse (a few API calls each, at most
        MAX_DIAGNOSES_PER_RUN); problems already open, and healthy ones, cost nothing."""
        from dataclasses import replace

        from solemate_maintenance.troubleshooting import (
            MAX_DIAGNOSES_PER_RUN,
            Session,
            aws_clients,
            case_for,
            diagnose,
        )

        wanted = []
        for seen in observations:
            if seen.severity is None or seen.first_bad is None or seen.severity > self.open_severity() \
                    or case_for(seen.check) is None:
                continue
            current = record.open_incident(seen.key)
            if current is None or seen.severity < current.severity:
                wanted.append(seen)
        if not wanted:
            return observations
        baseline = (record.memory.get("database_watch") or {}).get("statements")
        diagnosed: dict[str, Any] = {}
        # Problems of one resource share a diagnosis ("production-alb/solemate-backend" healthy and
        # unhealthy targets): asked once.
        asked: dict[tuple[Any, str], Any] = {}
        for seen in sorted(wanted, key=lambda o: o.severity):
            same = (case_for(seen.check), seen.resource.split(" (", 1)[0])
            if same not in asked:
                if len(asked) >= MAX_DIAGNOSES_PER_RUN:
                    continue
                session = Session(client_factory=aws_clients(self.aws_conn_id, self.region_name),
                                  config=self.config, window=window, statement_baseline=baseline)
                asked[same] = diagnose(session, seen.check, seen.resource)
            diagnosed[seen.key] = asked[same]
        return [replace(o, diagnosis=diagnosed[o.key]) if o.key in diagnosed else o for o in observations]

    def client(self, client_type: str) -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, client_type=client_type).conn

    def store(self) -> IncidentStore:
        return IncidentStore.for_config(self.config, aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    def window(self, record: IncidentRecord, watch: str, end: datetime) -> tuple[TimeWindow, dict[str, Any]]:
        """The window to judge and what it covers, in words for the report."""
        watched = record.watched_until.get(watch)
        cap = timedelta(minutes=self.max_window_minutes)
        if watched is not None and watched >= end:
            start = end - timedelta(minutes=self.interval_minutes)
            return TimeWindow(start, end), {"already_watched": True, "note": (
                f"already watched up to {watched.isoformat()}: measured again, nothing announced anew")}
        if watched is None:
            start, note = end - timedelta(minutes=self.interval_minutes), "first watch: one interval"
        elif end - watched > cap:
            start = end - cap
            note = (f"gap since the previous watch ({watched.isoformat()}) exceeds {self.max_window_minutes} min: "
                    f"{watched.isoformat()} → {start.isoformat()} was not watched (the daily checks cover it)")
        else:
            start, note = watched, "since the previous watch"
        return TimeWindow(start, end), {"already_watched": False, "note": note,
                                        "unwatched_gap": [watched.isoformat(), start.isoformat()]
                                        if watched is not None and start > watched else None}

    def execute(self, context: Any) -> dict[str, Any]:
        from solemate_maintenance.notifiers.delivery import register_connection_secrets

        register_connection_secrets(self.aws_conn_id)
        facts = RunFacts.from_context(context, page_max_age_hours=self.config.alerts.page_max_age_hours, now=utcnow())
        if not facts.may_page:
            raise AirflowSkipException(
                f"{facts.kind or 'not a live run'}: the watch judges the present and never pages for the past; "
                "daily_maintenance covers past days (backfill that instead)")
        ti = context["ti"]
        store = self.store()
        record, _ = store.read()
        window, coverage = self.window(record, ti.dag_id, run_end(context))
        self.log.info("Watching %s → %s (%s)", window.start.isoformat(), window.end.isoformat(), coverage["note"])
        observations = self.observe(context, window, record)
        if not coverage["already_watched"]:
            observations = self.with_diagnosis(observations, record, window)
        watch = self.config.watch

        def advance(current: IncidentRecord) -> list[Announcement]:
            seen = {o.key for o in observations}
            gone = [Observation(key=i.key, check=i.check, resource=i.resource, severity=None, summary="no longer seen",
                                period=timedelta(minutes=self.interval_minutes))
                    for i in current.incidents.values() if i.is_open and i.check in self.live_checks
                    and i.key not in seen]
            claimed = apply_observations(current, [*observations, *gone], watch=ti.dag_id, run_id=ti.run_id,
                                         window_end=window.end, open_severity=self.open_severity(),
                                         reminder=timedelta(hours=watch.reminder_hours))
            if current.watched_until.get(ti.dag_id) == window.end and not coverage["already_watched"]:
                # This run advanced the record: its readings (e.g. the database's counters) are the newest.
                self.remember(current)
                if self.escalates:
                    claimed += self.escalations(current, window.end, ti.run_id)
            prune(current, window.end, timedelta(days=watch.keep_resolved_days))
            return claimed

        record, claimed = store.update(advance)
        from solemate_maintenance.operators.watch.announce import Announcer

        announcer = Announcer(config=self.config, store=store, watch=ti.dag_id, context=context,
                              may_page=facts.may_page, run_id=ti.run_id,
                              run_url=str(getattr(ti, "log_url", "") or "").split("/tasks/", 1)[0],
                              window=(window.start, window.end), aws_conn_id=self.aws_conn_id)
        sent = announcer.deliver(record, window.end)
        problems = [o for o in observations if o.severity is not None]
        result = {
            "window": window.as_dict(), "coverage": coverage,
            "observed": len(observations), "without_data": sorted(o.key for o in observations if not o.has_data),
            "problems": [{"key": o.key, "severity": o.severity.value, "summary": o.summary} for o in problems],
            "open_incidents": sorted(i.id for i in record.incidents.values() if i.is_open),
            "claimed": [f"{a.kind.value}:{a.incident_id}" for a in claimed], "announced": sent,
        }
        ti.xcom_push(key=COVERAGE_XCOM_KEY, value=coverage)
        self.log.info("Watch result: %s", json.dumps(result, default=str))
        return result
