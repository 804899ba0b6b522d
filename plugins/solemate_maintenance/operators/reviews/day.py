"""The operator's day: the guide's 9 AM and 6 PM checklists as one message each, with the Monday
(the weekend) and Friday (the week) roll-ups as modes of them.

A review re-runs no check. It reads what the DAGs already found (their reports in the reports
bucket), the incident record, and a few AWS listings that no report keeps (alarm history, AWS Backup
jobs). A source it cannot read is named in the message, which still goes out with the rest.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from solemate_maintenance.config import PlatformConfig
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.report import RunReport
from solemate_maintenance.report_store import ObjectArchived, ObjectNotReadable, ReportStore
from solemate_maintenance.schedules import Schedule, scheduled_dags
from solemate_maintenance.window import TimeWindow, as_utc, run_end

ReviewKind = Literal["morning", "evening"]
DAILY = "daily_maintenance"
# The KPIs have a section of their own (with their trend).
HEALTH_TASKS = ("application_health", "ecs_services", "rds_health", "elasticache_health", "business_metrics")
SECURITY_TASKS = ("security_events", "open_security_groups")
MONITORING_TASKS = ("alarms", "notification_paths", "overview_dashboard", "auto_scaling", "pending_updates",
                    "log_pipeline", "application_errors", "log_lifecycle", "reports_lifecycle")
KPI_TASK = "performance_kpis"
# The daily run is due every 24 h; a latest report older than this is not "last night's".
DAILY_STALE = timedelta(hours=26)


class SourceMissing(Exception):
    """A source the review reads is not there or cannot be read; the message names it."""


@dataclass
class Line:
    text: str
    link: str | None = None
    # Shown before the text and decides the order: "P1".."P4", "MISSING", "FAILED"...
    flag: str = ""
    # What the link opens, as the message names it.
    link_label: str = "report"


@dataclass
class Section:
    title: str
    lines: list[Line] = field(default_factory=list)
    # What the section was built from (a report's date, "incident record", "AWS Backup").
    source: str = ""


@dataclass
class Review:
    kind: ReviewKind
    mode: str  # "" | "monday" | "friday"
    title: str
    window: TimeWindow
    sections: list[Section] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "mode": self.mode, "title": self.title, "window": self.window.as_dict(),
                "sections": [{"title": s.title, "source": s.source,
                              "lines": [{"flag": ln.flag, "text": ln.text, "link": ln.link,
                                         "link_label": ln.link_label} for ln in s.lines]}
                             for s in self.sections],
                "missing": self.missing}


@dataclass(frozen=True)
class Kpi:
    value: float
    unit: str
    target: float | None
    low_is_bad: bool

    def missed(self, value: float) -> bool:
        if self.target is None:
            return False
        return value <= self.target if self.low_is_bad else value >= self.target


def _kpi_name(metric: str) -> str:
    return metric.removesuffix("_ms").removesuffix("_percent").replace("_", " ")


def review_window(kind: ReviewKind, fire: datetime, config: PlatformConfig) -> tuple[TimeWindow, str]:
    """What a review due at `fire` covers, and its mode.

    Morning: since the evening review before it; on Monday since Friday's (the weekend). Evening: the
    team's day up to now; on Friday the roll-up also looks back a week."""
    reviews = config.reviews
    zone = ZoneInfo(reviews.timezone)
    local = datetime.fromtimestamp(fire.timestamp(), zone)  # not Airflow's pendulum: plain arithmetic
    mode = {0: "monday", 4: "friday"}.get(local.weekday(), "")
    # A team that reviews every day has seen its weekend already: Monday is a day like the others.
    mode = mode if (kind, mode) in (("morning", "monday"), ("evening", "friday")) and \
        not (mode == "monday" and reviews.days == "every-day") else ""
    if kind == "morning":
        # Since the evening review before (Friday's on a Monday, as the evening review skips weekends).
        start = previous_evening_review(local, config)
    else:
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return TimeWindow(as_utc(start), local.astimezone(UTC)), mode


def previous_evening_review(moment: datetime, config: PlatformConfig) -> datetime:
    reviews = config.reviews
    evening = Schedule("evening_review", reviews.cron("evening"), reviews.timezone)
    earlier = evening.fires(moment - timedelta(days=4), moment)
    return earlier[-1] if earlier else moment - timedelta(hours=24)


def _local(moment: datetime, zone: ZoneInfo, *, date: bool = False) -> str:
    shown = moment.astimezone(zone)
    return shown.strftime("%a %d %b %H:%M") if date else shown.strftime("%H:%M")


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _severity_rank(line: Line) -> tuple[int, str]:
    order = {"FAILED": 0, "MISSING": 0, "DID NOT RUN": 0, "P1": 1, "P2": 2, "P3": 3, "P4": 4, "NEW": 5}
    return order.get(line.flag, 9), line.text


class DayReviewOperator(MaintenanceCheckOperator):
    """Build, store and send one review (``review``: morning or evening).

    Stored as ``review.json`` and ``review.md`` under the review's date in the reports bucket; sent to
    Slack (``alerts.slack_conn_id``) and e-mailed (``reviews.email``, else ``alerts.digest_email``)
    once per date: a retry or a cleared run sends again only when the review changed, marked
    "updated". A backfill stores the review and sends nothing. The task fails only when it cannot
    store the review; a DAG that did not run is a P3 finding of the review, not a failed review.

    :param review: ``morning`` or ``evening``.
    :param config: the platform config.
    """

    template_fields: Sequence[str] = (*MaintenanceCheckOperator.template_fields,)
    ui_color = "#e6eefc"

    def __init__(self, *, review: ReviewKind, config: PlatformConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if review not in ("morning", "evening"):
            raise ValueError(f"review must be morning or evening, not {review!r}")
        self.review = review
        self.config = config

    def checked_window(self, context: Any) -> TimeWindow:
        return review_window(self.review, run_end(context), self.config)[0]

    # -- sources ---------------------------------------------------------------------------------------

    @cached_property
    def store(self) -> ReportStore:
        # A review reads the same daily reports for several sections: each is fetched once.
        return ReportStore(bucket=self.config.reports.bucket, prefix=self.config.reports.prefix,
                           aws_conn_id=self.aws_conn_id, region_name=self.region_name, cache_reads=True)

    def _daily_reports(self, end: datetime, count: int) -> list[RunReport]:
        """The daily reports for dates before `end`, newest first."""
        try:
            reports = self.store.reports_before(DAILY, end + timedelta(seconds=1), limit=count, log=self.log)
        except Exception as exc:
            raise SourceMissing(f"{DAILY} reports: cannot list them ({_error(exc)})") from exc
        return reports

    def _last_daily(self, end: datetime) -> RunReport:
        reports = self._daily_reports(end, 1)
        archived = [key for key in self.store.archived if f"/{DAILY}/" in key]
        if not reports:
            raise SourceMissing(f"{DAILY} report: none stored before {end:%Y-%m-%d %H:%M} UTC"
                                + (f" ({len(archived)} in Glacier)" if archived else ""))
        report = reports[0]
        if report.logical_date and end - as_utc(datetime.fromisoformat(report.logical_date)) > DAILY_STALE:
            # Shown, but named: last night's run did not happen or did not finish.
            self._stale = f"{DAILY}: the latest report is from {report.checked_label}, not last night's"
        return report

    def _incidents(self, window: TimeWindow) -> list[Any]:
        from solemate_maintenance.incidents import IncidentStore

        try:
            record, _ = IncidentStore.for_config(self.config, aws_conn_id=self.aws_conn_id,
                                                 region_name=self.region_name).read()
        except Exception as exc:
            raise SourceMissing(f"incident record: {_error(exc)}") from exc
        self._record = record
        return record.between(window.start, window.end)

    # -- sections --------------------------------------------------------------------------------------

    def _incident_section(self, window: TimeWindow, title: str) -> Section:
        from solemate_maintenance.incidents import incident_key

        zone = ZoneInfo(self.config.reviews.timezone)
        link = self.store.browse_url(incident_key(self.config))
        lines = []
        for incident in self._incidents(window):
            # As things stood at the review's time (a review of a past day must not know the future).
            resolved = incident.resolved_at if incident.resolved_at and incident.resolved_at <= window.end else None
            acknowledged = incident.acknowledged_at if incident.acknowledged_at and \
                incident.acknowledged_at <= window.end else None
            lasted = _duration((resolved or window.end) - incident.started_at)
            state = (f"resolved {_local(resolved, zone, date=True)} after {lasted}" if resolved
                     else f"STILL OPEN, for {lasted}")
            taken = (f"; acknowledged by {incident.acknowledged_by} after "
                     f"{_duration(acknowledged - incident.responding_since)}" if acknowledged else
                     "" if resolved else "; not acknowledged")
            lines.append(Line(f"{incident.label or incident.check} on {incident.resource}: {incident.summary} — "
                              f"from {_local(incident.started_at, zone, date=True)}, {state}{taken}",
                              link, incident.severity.value, "incident record"))
        lines.sort(key=_severity_rank)
        if not lines:
            lines.append(Line(f"none between {_local(window.start, zone, date=True)} and "
                              f"{_local(window.end, zone, date=True)}", link, link_label="incident record"))
        return Section(title, lines, "incident record")

    def _alarm_section(self, window: TimeWindow, live: bool = True) -> Section:
        from solemate_maintenance.operators.monitoring.cloudwatch_status import alarms_fired

        zone = ZoneInfo(self.config.reviews.timezone)
        try:
            fired, now = alarms_fired(self, window)
        except Exception as exc:
            raise SourceMissing(f"CloudWatch alarm history: {_error(exc)}") from exc
        region = self.region_name or self.config.regions.primary
        lines = []
        for name, times in sorted(fired.items(), key=lambda item: item[1][0]):
            state = now.get(name, {}).get("StateValue", "deleted")
            # A past date's review does not know how the alarm stood then: today's state would mislead.
            shown = f"; now {state}" if live else ""
            lines.append(Line(
                f"{name}: went into ALARM {len(times)}×, first at {_local(times[0], zone, date=True)}{shown}",
                f"https://console.aws.amazon.com/cloudwatch/home?region={quote(region)}#alarmsV2:alarm/{quote(name)}",
                "P3" if live and state == "ALARM" else "P4", "alarm"))
        return Section("Alarms that fired", lines or [Line("no alarm went into ALARM")], "CloudWatch alarm history")

    def _backup_section(self, window: TimeWindow) -> Section:
        zone = ZoneInfo(self.config.reviews.timezone)
        region = self.region_name or self.config.regions.primary
        client = self.client("backup")
        try:
            jobs = [job for page in self.pages(client, "list_backup_jobs", ByCreatedAfter=window.start,
                                               ByCreatedBefore=window.end) for job in page.get("BackupJobs", [])]
        except Exception as exc:
            raise SourceMissing(f"AWS Backup jobs: {_error(exc)}") from exc
        lines = []
        for job in sorted(jobs, key=lambda j: (j.get("State") == "COMPLETED", j.get("CreationDate"))):
            state = job.get("State", "?")
            resource = str(job.get("ResourceArn", "?")).rsplit(":", 1)[-1]
            created = _local(as_utc(job["CreationDate"]), zone, date=True) if job.get("CreationDate") else "?"
            point = str(job.get("RecoveryPointArn") or "").rsplit(":", 1)[-1]
            why = f": {job['StatusMessage']}" if job.get("StatusMessage") and state != "COMPLETED" else ""
            lines.append(Line(
                f"{resource} into {job.get('BackupVaultName', '?')} at {created}: {state}{why}"
                + (f", recovery point {point}" if point and state == "COMPLETED" else ""),
                f"https://console.aws.amazon.com/backup/home?region={quote(region)}#/jobs/backup/details/"
                f"{quote(str(job.get('BackupJobId', '')))}",
                "" if state in ("COMPLETED", "RUNNING", "CREATED", "PENDING") else "FAILED", "job"))
        if not lines:
            lines.append(Line("no AWS Backup job started in this window", None, "MISSING"))
        return Section("Backups", lines, "AWS Backup")

    def _restore_line(self, end: datetime) -> Line | None:
        try:
            reports = self.store.reports_before("weekly_backup_verification", end, limit=1, log=self.log)
        except Exception as exc:
            self._missing.append(f"weekly_backup_verification reports: {_error(exc)}")
            return None
        if not reports:
            self._missing.append("weekly_backup_verification: no restore test stored yet")
            return None
        latest = reports[0]
        measured = latest.measurements.get("restore_validate") or {}
        failed = f"failed tasks: {', '.join(latest.failed_tasks)}" if latest.failed_tasks else ""
        told = "; ".join(part for part in (measured.get("headline"), failed) if part) or "passed"
        return Line(f"latest restore test ({latest.checked_label}): {told}", latest.report_url or None,
                    "FAILED" if latest.failed_tasks else "")

    def _findings_section(self, title: str, report: RunReport, tasks: Iterable[str], *, all_ok: str) -> Section:
        tasks = tuple(tasks)
        lines = sorted((Line(f"{f.check} {f.resource}: {f.summary}"
                             + (" (NEW)" if f.lifecycle == "new" else f" (ongoing since {f.incident_since[:16]})"
                                if f.incident_since else ""), report.report_url or None, f.severity.value)
                        for f in report.problems() if f.task_id in tasks and f.severity is not None),
                       key=_severity_rank)
        failed = [t for t in report.failed_tasks if t in tasks]
        lines += [Line(f"{task} did not finish: its checks are not in this review", report.report_url or None,
                       "FAILED") for task in failed]
        if not lines:
            checked = sum(f.task_id in tasks for f in report.findings)
            lines.append(Line(all_ok.format(checked=checked), report.report_url or None))
        return Section(title, lines, f"{report.dag_id} {report.checked_label}")

    def _health_section(self, report: RunReport) -> Section:
        section = self._findings_section("System health", report, HEALTH_TASKS,
                                         all_ok="all {checked} health checks passed")
        counts = report.totals.get("severity", {})
        problems = sum(counts.values())
        by_severity = ", ".join(f"{s}: {n}" for s, n in counts.items() if n)
        worst = f"{problems} problem(s) across all its checks ({by_severity})" if problems else "no problem at all"
        section.lines.insert(0, Line(f"daily run {report.checked_label}: {worst}"
                                     + (f"; failed tasks: {', '.join(report.failed_tasks)}" if report.failed_tasks
                                        else ""), report.report_url or None))
        return section

    @staticmethod
    def _kpi_values(report: RunReport) -> dict[str, Kpi]:
        return {metric: Kpi(float(measured.value), measured.unit, measured.warning, measured.bad_when == "below")
                for finding in report.findings if finding.task_id == KPI_TASK
                for metric, measured in finding.metrics.items() if measured.value is not None}

    def _kpi_section(self, title: str, reports: list[RunReport]) -> Section:
        """The newest report's KPIs against the average of the ones before it (newest first)."""
        if not reports:
            raise SourceMissing(f"{DAILY} reports: none readable for the KPIs")
        latest, before = reports[0], reports[1:]
        now = self._kpi_values(latest)
        earlier: dict[str, list[float]] = {}
        for report in before:
            for metric, kpi in self._kpi_values(report).items():
                earlier.setdefault(metric, []).append(kpi.value)
        lines = []
        for metric, kpi in sorted(now.items()):
            history = earlier.get(metric, [])
            average = sum(history) / len(history) if history else None
            trend = (f", {len(history)}-day average {average:.4g} {kpi.unit} ({_change(kpi.value, average)})"
                     if average is not None else ", no earlier days to compare")
            lines.append(Line(f"{_kpi_name(metric)}: {kpi.value:.4g} {kpi.unit}"
                              + (f" (target {kpi.target:g})" if kpi.target is not None else "") + trend,
                              latest.report_url or None, "P3" if kpi.missed(kpi.value) else ""))
        if not lines:
            lines.append(Line("the daily run measured no KPI", latest.report_url or None, "MISSING"))
        return Section(title, lines, f"{DAILY} {latest.checked_label} and {len(before)} before")

    def _automation_section(self, end: datetime) -> tuple[Section, list[Finding]]:
        """Every scheduled DAG due since the previous evening review (weekend runs on Monday; a run that
        review left to its grace included), up to the grace before now: did it run, did it pass."""
        grace = timedelta(minutes=self.config.reviews.run_grace_minutes)
        window = TimeWindow(as_utc(previous_evening_review(end, self.config)) - grace, end)
        zone = ZoneInfo(self.config.reviews.timezone)
        lines: list[Line] = []
        findings: list[Finding] = []
        airflow = str(self.config.alerts.airflow_url).rstrip("/") if self.config.alerts.airflow_url else None
        record = getattr(self, "_record", None)
        for dag_id, schedule in scheduled_dags(self.config).items():
            if dag_id == "evening_review":
                continue
            due = schedule.fires(window.start, end - grace)
            if not due:
                continue
            link = f"{airflow}/dags/{dag_id}" if airflow else None
            if schedule.record is None:
                line, finding = self._watch_progress(dag_id, due, record, zone, link)
            else:
                line, finding = self._runs(dag_id, schedule, due, zone, link)
            lines.append(line)
            findings += [finding] if finding else []
        return Section("Maintenance automation", sorted(lines, key=_severity_rank) or
                       [Line("no scheduled DAG was due since the last evening review")],
                       f"reports and the incident record, runs due since {_local(window.start, zone, date=True)}"), \
            findings

    def _watch_progress(self, dag_id: str, due: list[datetime], record: Any, zone: ZoneInfo,
                        link: str | None) -> tuple[Line, Finding | None]:
        if record is None:
            return Line(f"{dag_id}: unknown (the incident record could not be read)", link, "MISSING", "Airflow"), None
        watched = record.watched_until.get(dag_id)
        if watched is not None and as_utc(watched) >= due[-1]:
            return Line(f"{dag_id}: {len(due)} runs due, watching (last window ended "
                        f"{_local(as_utc(watched), zone)})", link, link_label="Airflow"), None
        since = f"since {_local(as_utc(watched), zone, date=True)}" if watched else "at all"
        summary = f"has not watched {since}: {len(due)} runs were due, the last at {_local(due[-1], zone)}"
        return (Line(f"{dag_id}: {summary}", link, "DID NOT RUN", "Airflow"),
                Finding(check="review.dag_not_run", resource=dag_id, status=Status.WARNING, severity=Severity.P3,
                        summary=summary, details={"fix": f"check the scheduler and {dag_id}'s runs in Airflow"}))

    def _runs(self, dag_id: str, schedule: Schedule, due: list[datetime], zone: ZoneInfo,
              link: str | None) -> tuple[Line, Finding | None]:
        missing, states = [], []
        report_link, label = link, "Airflow"
        for fire in due:
            key = self.store.date_key(dag_id, schedule.logical_date(fire), schedule.record or "report.json")
            try:
                text = self.store.read_text(key)
            except ObjectArchived:
                states.append("archived (in Glacier)")
                continue
            except ObjectNotReadable as exc:
                states.append(f"unreadable ({exc})")
                continue
            if text is None:
                missing.append(fire)
                continue
            if schedule.record != "report.json":
                states.append("ran")
                continue
            try:
                report = RunReport.model_validate_json(text)
            except ValueError:
                states.append("report unreadable")
                continue
            if report.report_url:
                report_link, label = report.report_url, "report"
            worst = report.worst_severity
            states.append(f"FAILED ({', '.join(report.failed_tasks)})" if report.failed_tasks
                          else f"passed with problems (worst {worst.value})" if worst else "passed")
        when = ", ".join(_local(f, zone) for f in due)
        if missing:
            summary = (f"did not run: due at {', '.join(_local(f, zone) for f in missing)} "
                       f"({zone.key}), no {schedule.record} stored")
            return (Line(f"{dag_id}: {summary}", link, "DID NOT RUN", "Airflow"),
                    Finding(check="review.dag_not_run", resource=dag_id, status=Status.WARNING,
                            severity=Severity.P3, summary=summary,
                            details={"fix": f"open {dag_id} in Airflow: is it paused, did the scheduler run it?"}))
        flag = "FAILED" if any(s.startswith("FAILED") for s in states) else \
            "P2" if any("worst P1" in s or "worst P2" in s for s in states) else ""
        return Line(f"{dag_id} (due {when}): {'; '.join(states)}", report_link, flag, label), None

    def _week_section(self, end: datetime) -> Section:
        """The Friday roll-up: each KPI over the week's daily runs (worst, average, days over target)."""
        reports = [r for r in self._daily_reports(end, 7)
                   if r.logical_date and end - as_utc(datetime.fromisoformat(r.logical_date)) <= timedelta(days=7)]
        if not reports:
            raise SourceMissing(f"{DAILY} reports of the week: none stored")
        series: dict[str, list[Kpi]] = {}
        for report in reports:
            for metric, kpi in self._kpi_values(report).items():
                series.setdefault(metric, []).append(kpi)
        lines = []
        for metric, kpis in sorted(series.items()):
            numbers = [k.value for k in kpis]
            first = kpis[0]
            worst = min(numbers) if first.low_is_bad else max(numbers)
            missed = sum(first.missed(v) for v in numbers)
            lines.append(Line(f"{_kpi_name(metric)}: worst {worst:.4g} {first.unit}, "
                              f"average {sum(numbers) / len(numbers):.4g} {first.unit}"
                              + (f", {missed} of {len(numbers)} days missed the target {first.target:g}"
                                 if first.target is not None else ""), reports[0].report_url or None,
                              "P3" if missed else ""))
        lines.append(Line(f"{len(reports)} of 7 daily runs reported this week", reports[0].report_url or None,
                          "" if len(reports) >= 7 else "MISSING"))
        return Section("The week's performance", lines, f"{DAILY}, {len(reports)} reports")

    def _pending_updates_section(self, report: RunReport) -> Section:
        table = (report.measurements.get("pending_updates") or {}).get("tables", {}).get("Pending updates")
        if "pending_updates" not in report.measurements:
            raise SourceMissing(f"pending updates: {DAILY} {report.checked_label} has no pending_updates result")
        rows = (table or {}).get("rows", [])
        lines = [Line(f"{row[0]}: {row[1]} ({row[2]}), deadline {row[3] or 'none set'}"
                      + (f", applied by {row[4]}" if len(row) > 4 and row[4] else ""),
                      report.report_url or None, "P3" if row[3] else "") for row in rows]
        return Section("Pending security updates", lines or [Line("none pending", report.report_url or None)],
                       f"{DAILY} {report.checked_label}")

    def _changes_section(self, latest: RunReport, end: datetime) -> Section:
        """What changed since last Friday: problems new since the daily run a week before, and gone."""
        week_ago = self._daily_reports(end - timedelta(days=7), 1)
        if not week_ago:
            raise SourceMissing(f"{DAILY} report of a week ago: none readable (nothing to compare with)")
        before = {f.key: f for f in week_ago[0].problems()}
        now = {f.key: f for f in latest.problems()}
        lines = sorted((Line(f"new: {f.check} {f.resource}: {f.summary}", latest.report_url or None,
                             f.severity.value if f.severity else "") for key, f in now.items() if key not in before),
                       key=_severity_rank)
        lines += [Line(f"gone: {f.check} {f.resource} (was {f.severity.value if f.severity else '?'})",
                       latest.report_url or None) for key, f in before.items() if key not in now]
        if not lines:
            lines.append(Line(f"no change in problems since {week_ago[0].checked_label}", latest.report_url or None))
        return Section("Changed since last Friday", lines,
                       f"{DAILY} {week_ago[0].checked_label} → {latest.checked_label}")

    # -- the review ------------------------------------------------------------------------------------

    def build(self, context: Any, *, live: bool = True) -> tuple[Review, list[Finding]]:
        """`live`: the review is about the present, so an alarm's state now belongs in it."""
        fire = run_end(context)
        window, mode = review_window(self.review, fire, self.config)
        zone = ZoneInfo(self.config.reviews.timezone)
        self._missing: list[str] = []
        self._stale: str | None = None
        findings: list[Finding] = []
        sections: list[Section] = []

        def add(build: Callable[[], Section | None], name: str) -> None:
            try:
                section = build()
            except SourceMissing as exc:
                self._missing.append(str(exc))
                return
            except Exception as exc:  # one unreadable source must not cost the review the others
                self.log.warning("review section %s could not be built", name, exc_info=True)
                self._missing.append(f"{name}: could not be built ({_error(exc)})")
                return
            if section is not None:
                sections.append(section)

        cached: dict[str, RunReport] = {}

        def daily() -> RunReport:
            if DAILY not in cached:
                cached[DAILY] = self._last_daily(fire)
            return cached[DAILY]

        label = {"morning": "Morning review", "evening": "Evening review"}[self.review]
        subtitle = {"monday": ": the weekend", "friday": ": and the week"}.get(mode, "")
        title = f"{label}{subtitle} — {_local(fire, zone, date=True)} {zone.key} ({self.config.environment})"
        trend_days = self.config.reviews.kpi_trend_days
        if self.review == "morning":
            add(lambda: self._incident_section(window, "Weekend incidents" if mode == "monday"
                                               else "Incidents since the evening review"), "incident record")
            add(lambda: self._alarm_section(window, live), "CloudWatch alarm history")

            def backups() -> Section:
                try:
                    section = self._backup_section(window)
                except Exception as exc:  # the restore test (from S3) is still worth its line
                    self._missing.append(str(exc) if isinstance(exc, SourceMissing) else
                                         f"AWS Backup jobs: {_error(exc)}")
                    section = Section("Backups", [], "the latest restore test")
                restore = self._restore_line(fire)
                if restore is not None:
                    section.lines.append(restore)
                return section if section.lines else None

            add(backups, "backups")
            add(lambda: self._health_section(daily()), "system health")
            add(lambda: self._kpi_section(f"KPIs against the {trend_days} days before",
                                          self._daily_reports(fire, trend_days + 1)), "KPIs")
            add(lambda: self._findings_section("Security", daily(), SECURITY_TASKS,
                                               all_ok="no security event or open port ({checked} checks)"), "security")
        else:
            add(lambda: self._incident_section(window, "Today's incidents"), "incident record")
            add(lambda: self._kpi_section("Today's KPIs (the latest daily run, against the days before)",
                                          self._daily_reports(fire, trend_days + 1)), "KPIs")

            def automation() -> Section:
                section, not_run = self._automation_section(fire)
                findings.extend(not_run)
                return section

            add(automation, "maintenance automation")
            add(lambda: self._findings_section("Monitoring health", daily(), MONITORING_TASKS,
                                               all_ok="all {checked} monitoring checks passed"), "monitoring health")
            if mode == "friday":
                add(lambda: self._week_section(fire), "the week's performance")
                add(lambda: self._pending_updates_section(daily()), "pending security updates")
                add(lambda: self._changes_section(daily(), fire), "changes since last Friday")
        if self._stale:
            self._missing.append(self._stale)
        archived = sorted(set(self.store.archived))
        if archived:
            self._missing.append(f"{len(archived)} report(s) in Glacier, left out: "
                                 + ", ".join(self.store.uri(k) for k in archived[:3]))
        review = Review(self.review, mode, title, window, sections, list(dict.fromkeys(self._missing)))
        findings += [Finding(check="review.source_missing", resource=trim(text.split(":", 1)[0], 120),
                             status=Status.WARNING, severity=Severity.P4, summary=trim(text, 300))
                     for text in review.missing]
        return review, findings

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        from airflow.sdk.timezone import utcnow

        from solemate_maintenance.run_facts import RunFacts

        facts = RunFacts.from_context(context, page_max_age_hours=self.config.alerts.page_max_age_hours,
                                      now=utcnow())
        review, findings = self.build(context, live=not facts.is_past and not facts.is_backfill)
        # What the review says, before the run-kind tag: a retry or a clear that finds the same is the same.
        digest = hashlib.sha256(render_markdown(review, self.config.reviews.max_lines).encode()).hexdigest()
        if facts.tag:
            review.title += facts.tag
        dag_id = context["ti"].dag_id
        logical = context.get("logical_date") or run_end(context)
        keys = {name: self.store.date_key(dag_id, logical, name)
                for name in ("review.json", "review.md", "review-sent.json")}
        markdown = render_markdown(review, self.config.reviews.max_lines)
        self.store.write(keys["review.json"], json.dumps(review.as_dict(), indent=1))
        self.store.write(keys["review.md"], markdown)
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": f"{review.title}: {sum(len(s.lines) for s in review.sections)} lines, "
                        f"{len(review.missing)} source(s) missing",
            "review_uri": self.store.uri(keys["review.md"]), "review_url": self.store.browse_url(keys["review.md"]),
            "sections": [s.title for s in review.sections], "missing": review.missing})
        yield from findings
        yield from self._send(review, digest, keys["review-sent.json"], facts, context)

    def _send(self, review: Review, digest: str, sent_key: str, facts: Any, context: Any) -> Iterable[Finding]:
        """Each channel once per date: a channel that already has this review is skipped, one that failed
        (or has an older version, then marked "updated") gets it."""
        from solemate_maintenance.notifiers.delivery import send_email, send_slack

        resource = f"{review.kind} review {review.window.end:%Y-%m-%d}"
        if facts.is_backfill:
            yield Finding(check="review.delivery", resource=resource, status=Status.SKIPPED,
                          summary="a backfill: the review is stored, not sent")
            return
        alerts = self.config.alerts
        recipients = self.config.reviews.email or alerts.digest_email
        sent: dict[str, Any] = self.store.read_json(sent_key) or {}
        lines = self.config.reviews.max_lines
        channels = {"slack": lambda title: send_slack(
            kind="review", conn_id=alerts.slack_conn_id, text=render_slack(review, lines, title), attachments=[],
            alerts=alerts, context=context)}
        if recipients:
            channels["email"] = lambda title: send_email(
                kind="review", to=recipients, subject=title,
                html=render_html(review, lines, title), alerts=alerts, context=context)
        else:
            yield Finding(check="review.delivery", resource=f"{resource} (email)", status=Status.SKIPPED,
                          summary="no e-mail recipients (reviews.email, alerts.digest_email)")
        for name, send in channels.items():
            before = sent.get(name) or {}
            if before.get("sha256") == digest:
                yield Finding(check="review.delivery", resource=f"{resource} ({name})", status=Status.OK,
                              summary=f"already sent at {before.get('at')}; unchanged, not sent again")
                continue
            updated = bool(before)
            delivery = send(("(updated) " if updated else "") + review.title)
            if not delivery.ok:
                yield Finding(check="review.delivery", resource=f"{resource} ({name})", status=Status.WARNING,
                              severity=Severity.P3, summary=f"not delivered by {name}: {delivery.error}; the review "
                                                            "is in the reports bucket, a re-run sends it")
                continue
            sent[name] = {"sha256": digest, "at": datetime.now(UTC).isoformat()}  # when it was sent: a wall-clock fact
            self.store.write(sent_key, json.dumps(sent))  # at once: a crash later must not resend this one
            yield Finding(check="review.delivery", resource=f"{resource} ({name})", status=Status.OK,
                          summary=f"{'updated review ' if updated else ''}sent by {name}")


def _change(value: float, average: float) -> str:
    if average == 0:
        return "average 0"
    return f"{100 * (value - average) / abs(average):+.0f} %"


def _error(exc: BaseException) -> str:
    from solemate_maintenance.aws_errors import error_code

    code = error_code(exc)
    return trim(scrub(f"{code or type(exc).__name__}: {exc}"), 200)


def _shown_lines(section: Section, max_lines: int) -> tuple[list[Line], int]:
    """The first lines (each section is built worst first) and how many more the stored review has."""
    return section.lines[:max_lines], max(0, len(section.lines) - max_lines)


def render_slack(review: Review, max_lines: int, title: str | None = None) -> str:
    def escape(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    parts = [f"*{escape(title or review.title)}*"]
    for section in review.sections:
        shown, more = _shown_lines(section, max_lines)
        parts.append(f"\n*{escape(section.title)}* _({escape(section.source)})_")
        for line in shown:
            flag = f"*{line.flag}* " if line.flag else ""
            text = escape(line.text)
            parts.append(f"• {flag}{text}" + (f" <{line.link}|{escape(line.link_label)}>" if line.link else ""))
        if more:
            parts.append(f"• … and {more} more in the stored review")
    if review.missing:
        parts.append("\n*Not available for this review*")
        parts += [f"• {escape(text)}" for text in review.missing]
    return "\n".join(parts)


def render_markdown(review: Review, max_lines: int) -> str:
    lines = [f"# {review.title}", "",
             f"Covers {review.window.start:%Y-%m-%d %H:%M} – {review.window.end:%Y-%m-%d %H:%M} UTC.", ""]
    for section in review.sections:
        lines += [f"## {section.title}", "", f"_From {section.source}._", ""]
        for line in section.lines:  # the stored review keeps every line
            flag = f"**{line.flag}** " if line.flag else ""
            lines.append(f"- {flag}{line.text}" + (f" ([{line.link_label}]({line.link}))" if line.link else ""))
        lines.append("")
    if review.missing:
        lines += ["## Not available for this review", ""] + [f"- {text}" for text in review.missing] + [""]
    return "\n".join(lines)


def render_html(review: Review, max_lines: int, title: str | None = None) -> str:
    parts = [f"<html><body style=\"font-family: sans-serif\"><h1>{html.escape(title or review.title)}</h1>"]
    for section in review.sections:
        shown, more = _shown_lines(section, max_lines)
        parts.append(f"<h2>{html.escape(section.title)}</h2><p><i>{html.escape(section.source)}</i></p><ul>")
        for line in shown:
            flag = f"<b>{html.escape(line.flag)}</b> " if line.flag else ""
            link = f" <a href=\"{html.escape(line.link)}\">{html.escape(line.link_label)}</a>" if line.link else ""
            parts.append(f"<li>{flag}{html.escape(line.text)}{link}</li>")
        if more:
            parts.append(f"<li>… and {more} more in the stored review</li>")
        parts.append("</ul>")
    if review.missing:
        parts.append("<h2>Not available for this review</h2><ul>")
        parts += [f"<li>{html.escape(text)}</li>" for text in review.missing]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)

