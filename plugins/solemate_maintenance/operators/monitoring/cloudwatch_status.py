"""Maintenance status in CloudWatch, and the CloudWatch alarms that fired overnight.

* `OvernightAlarmsOperator` (a check): alarms that went into ALARM in the window before the run
  (the morning "review overnight alerts"), from the alarm history.
* `MaintenanceStatusOperator` (after the report): publishes findings per severity, failed checks
  and a heartbeat to ``SoleMate/Maintenance``, keeps a dashboard of them, and keeps an alarm that
  fires when the heartbeat stops: the dead-man's switch for the night Airflow itself is down and
  sends nothing.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import TriggerRule

from solemate_maintenance.aws_errors import error_code
from solemate_maintenance.config import Alerts, MaintenanceStatus
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.operators.report import FAILED_STATES
from solemate_maintenance.run_facts import RunFacts
from solemate_maintenance.window import TimeWindow, as_utc, run_end

# CloudWatch accepts datapoints up to two weeks old.
MAX_METRIC_AGE = timedelta(days=14)
SEVERITIES = ("P1", "P2", "P3", "P4")
# An alarm evaluates at most 7 days: a DAG whose heartbeats are further apart (weekly, monthly) is
# watched through its heartbeat's age, which the daily run publishes from the DAG's heartbeat record.
MAX_ALARM_HOURS = 7 * 24
HEARTBEAT_RECORD = "heartbeat.json"


def schedule_cadence(timetable: Any) -> timedelta | None:
    """The longest interval between two runs of a cron schedule (a monthly one: 31 days); None
    for a schedule that is not a cron expression."""
    # The task SDK's timetables carry `expression`; the scheduler's own, `_expression`.
    expression = getattr(timetable, "expression", None) or getattr(timetable, "_expression", None)
    if not isinstance(expression, str):
        return None
    from croniter import croniter

    # Any fixed start: 64 runs cover every interval of a monthly, weekly or finer schedule.
    runs = croniter(expression, datetime(2026, 1, 1, tzinfo=UTC))
    times = [runs.get_next(datetime) for _ in range(64)]
    return max(later - earlier for earlier, later in zip(times, times[1:], strict=False))


def heartbeat_alarm_shape(gap_hours: float) -> dict[str, Any]:
    """How an alarm notices a gap of `gap_hours` without a heartbeat, within CloudWatch's limits."""
    if gap_hours > MAX_ALARM_HOURS:
        # Published once a day by the daily run. Missing data is not breaching: when the daily run
        # stops, its own alarm fires and names it, instead of every weekly and monthly DAG's.
        return {"MetricName": "HeartbeatAgeHours", "Statistic": "Maximum", "Period": 86400, "EvaluationPeriods": 2,
                "DatapointsToAlarm": 1, "Threshold": float(gap_hours), "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching"}
    # Under an hour's periods CloudWatch evaluates one day at most; finer periods for short gaps.
    period = 300 if gap_hours < 3 else 3600
    periods = max(1, math.ceil(gap_hours * 3600 / period))
    return {"MetricName": "Heartbeat", "Statistic": "Sum", "Period": period, "EvaluationPeriods": periods,
            "DatapointsToAlarm": periods, "Threshold": 1.0, "ComparisonOperator": "LessThanThreshold",
            "TreatMissingData": "breaching"}


def _new_state(item: dict[str, Any]) -> str | None:
    try:
        return json.loads(item.get("HistoryData") or "{}").get("newState", {}).get("stateValue")
    except ValueError:
        summary = item.get("HistorySummary", "")
        return "ALARM" if summary.endswith("to ALARM") else None


def alarms_fired(operator: MaintenanceCheckOperator, window: TimeWindow
                 ) -> tuple[dict[str, list[datetime]], dict[str, dict[str, Any]]]:
    """The alarms that went into ALARM in `window` (their times, UTC), and each one as it is now
    (absent: deleted since)."""
    cloudwatch = operator.client("cloudwatch")
    fired: dict[str, list[datetime]] = defaultdict(list)
    for page in operator.pages(cloudwatch, "describe_alarm_history", max_page=100, HistoryItemType="StateUpdate",
                               AlarmTypes=["MetricAlarm", "CompositeAlarm"],  # default: metric alarms only
                               StartDate=window.start, EndDate=window.end, ScanBy="TimestampAscending"):
        for item in page["AlarmHistoryItems"]:
            if _new_state(item) == "ALARM":
                fired[item["AlarmName"]].append(as_utc(item["Timestamp"]))
    names = sorted(fired)
    now_state: dict[str, dict[str, Any]] = {}
    for start in range(0, len(names), 100):  # DescribeAlarms takes at most 100 names
        response = cloudwatch.describe_alarms(AlarmNames=names[start:start + 100],
                                              AlarmTypes=["MetricAlarm", "CompositeAlarm"])
        for alarm in [*response.get("MetricAlarms", []), *response.get("CompositeAlarms", [])]:
            now_state[alarm["AlarmName"]] = alarm
    return dict(fired), now_state


class OvernightAlarmsOperator(MaintenanceCheckOperator):
    """CloudWatch alarms that went into ALARM during the look-back (default: since the previous daily run).

    An alarm still in ALARM now is P3; one that recovered is P4 (it is in the digest so the morning
    review sees it). The digest's headline lists them.

    :param lookback_minutes: how far back to look (the schedule's interval).
    """

    def __init__(self, *, lookback_minutes: int = 24 * 60, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lookback = lookback_minutes

    @property
    def lookback_minutes(self) -> int:
        return self._lookback

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        window = TimeWindow.ending_at_run(context, self._lookback)
        fired, now_state = alarms_fired(self, window)
        names = sorted(fired)
        listed = []
        for name in names:
            times = sorted(fired[name])
            alarm = now_state.get(name, {})
            state = alarm.get("StateValue", "deleted")
            still = state == "ALARM"
            listed.append(f"{name} ({times[0]:%H:%M} UTC{', still in ALARM' if still else ''})")
            yield Finding(
                check="cloudwatch.overnight_alarm", resource=name,
                status=Status.WARNING, severity=Severity.P3 if still else Severity.P4,
                summary=(f"went into ALARM {len(times)}× since {window.start:%Y-%m-%d %H:%M} UTC, first at "
                         f"{times[0]:%H:%M} UTC; now {state}"),
                details={"times": [t.isoformat() for t in times], "state_now": state,
                         "reason": alarm.get("StateReason", ""), "metric": alarm.get("MetricName"),
                         "namespace": alarm.get("Namespace")})
        if not names:
            yield Finding(check="cloudwatch.overnight_alarm", resource="alarms", status=Status.OK,
                          summary=f"no alarm went into ALARM since {window.start:%Y-%m-%d %H:%M} UTC")
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": (f"Overnight alarms: {len(names)} went into ALARM — {'; '.join(listed[:5])}"
                         + (" …" if len(listed) > 5 else "")) if names else "Overnight alarms: none went into ALARM",
            "alarms": len(names)})



class MaintenanceStatusOperator(MaintenanceCheckOperator):
    """Publish the run's status to CloudWatch and keep its dashboard and dead-man's alarm.

    Runs last whatever happened (``ALL_DONE``). Metrics (dimensions Environment, DagId):
    ``Findings`` per ``Severity`` (with a report), ``FailedChecks``, ``ReportWritten``, timestamped
    at the checked date (within CloudWatch's two weeks), and ``Heartbeat`` = 1 at the time of
    publishing, only for a live run whose report was written (without a report task: whose tasks
    all succeeded): a backfill must not silence the dead-man's switch. The dashboard and the alarm
    are written only when they differ from what is there (idempotent).

    The alarm matches the DAG's cadence: it fires after ``heartbeat_max_gap_hours`` without a
    heartbeat (None: the schedule's longest interval plus ``heartbeat_grace_minutes``, at most one
    interval more). CloudWatch evaluates 7 days at most, so a weekly or monthly DAG keeps its last
    heartbeat in the reports bucket (``<dag>/heartbeat.json``) and its alarm watches
    ``HeartbeatAgeHours``, which the daily run publishes for every such DAG
    (``publish_heartbeat_ages``), with a finding when one is overdue.

    :param report_task_id: the report task (None: the DAG has none, e.g. the watches).
    :param environment: the environment name; :param status: the `maintenance_status` section;
    :param alerts: for the SNS topic and paging age; :param bucket, reports_prefix: the reports bucket.
    """

    def __init__(self, *, report_task_id: str | None = "report", environment: str, status: MaintenanceStatus,
                 alerts: Alerts, heartbeat_max_gap_hours: float | None = None, bucket: str | None = None,
                 reports_prefix: str = "", publish_heartbeat_ages: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.report_task_id = report_task_id
        self.environment = environment
        self.status = status
        self.alerts = alerts
        self.heartbeat_max_gap_hours = heartbeat_max_gap_hours
        self.bucket = bucket
        self.reports_prefix = reports_prefix
        self.publish_heartbeat_ages = publish_heartbeat_ages

    def alarm_name(self, dag_id: str) -> str:
        return f"{self.status.dashboard_name}-{self.environment}-{dag_id}-heartbeat-missing"

    def gap_hours(self) -> float:
        """Hours without a heartbeat after which the alarm fires."""
        if self.heartbeat_max_gap_hours is not None:
            return float(self.heartbeat_max_gap_hours)
        cadence = schedule_cadence(getattr(self.dag, "timetable", None)) if self.has_dag() else None
        if cadence is None:  # a schedule that is no cron expression: the daily's gap
            return float(self.status.heartbeat_max_gap_hours)
        # At least two missed runs for the watches (one late run is jitter, not an outage).
        grace = min(max(cadence, timedelta(minutes=30)), timedelta(minutes=self.status.heartbeat_grace_minutes))
        return (cadence + grace) / timedelta(hours=1)

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        ti = context["ti"]
        dag_id = ti.dag_id
        states = ti.get_task_states(dag_id=dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        checks = self._check_tasks()
        if self.report_task_id:
            report = ti.xcom_pull(task_ids=self.report_task_id) or {}
            report_ok = states.get(self.report_task_id) == "success" and bool(report)
        else:
            report, report_ok = {}, bool(checks) and all(states.get(t) == "success" for t in checks)
        failed = [t for t in checks if states.get(t) in FAILED_STATES]
        # Wall-clock facts: whether this run is live (a backfill must not reset the heartbeat), and
        # whether its date is still inside the two weeks CloudWatch accepts data points for.
        now = datetime.now(UTC)
        facts = RunFacts.from_context(context, page_max_age_hours=self.alerts.page_max_age_hours, now=now)
        cloudwatch = self.client("cloudwatch")
        dimensions = [{"Name": "Environment", "Value": self.environment}, {"Name": "DagId", "Value": dag_id}]
        checked = run_end(context)
        gap = self.gap_hours()
        data: list[dict[str, Any]] = []
        published: list[str] = []
        if now - checked <= MAX_METRIC_AGE - timedelta(minutes=5):
            severity = (report.get("totals") or {}).get("severity", {})
            if report_ok and self.report_task_id:
                data += [{"MetricName": "Findings", "Dimensions": [*dimensions, {"Name": "Severity", "Value": s}],
                          "Timestamp": checked, "Value": float(severity.get(s, 0)), "Unit": "Count"}
                         for s in SEVERITIES]
            data += [{"MetricName": "FailedChecks", "Dimensions": dimensions, "Timestamp": checked,
                      "Value": float(len(failed)), "Unit": "Count"},
                     {"MetricName": "ReportWritten", "Dimensions": dimensions, "Timestamp": checked,
                      "Value": 1.0 if report_ok else 0.0, "Unit": "Count"}]
            published.append(f"findings and failed checks at {checked:%Y-%m-%d %H:%M} UTC")
        else:
            published.append(f"no findings metrics: {checked:%Y-%m-%d} is older than CloudWatch's two weeks")
        heartbeat = report_ok and facts.may_page
        if heartbeat:
            data.append({"MetricName": "Heartbeat", "Dimensions": dimensions, "Timestamp": now, "Value": 1.0,
                         "Unit": "Count"})
            if gap > MAX_ALARM_HOURS:
                data.append({"MetricName": "HeartbeatAgeHours", "Dimensions": dimensions, "Timestamp": now,
                             "Value": 0.0, "Unit": "None"})
                self._store().write(self._store().key(dag_id, HEARTBEAT_RECORD), json.dumps(
                    {"dag_id": dag_id, "gap_hours": gap, "last_heartbeat": now.isoformat(), "run_id": ti.run_id}))
            published.append("heartbeat")
        else:
            why = "the report was not written" if self.report_task_id else f"failed: {', '.join(failed) or 'a task'}"
            published.append("no heartbeat: " + (why if not report_ok
                                                 else "not a live run (" + facts.paging_note + ")"))
        for start in range(0, len(data), 1000):
            cloudwatch.put_metric_data(Namespace=self.status.namespace, MetricData=data[start:start + 1000])
        overdue: list[Finding] = []
        if self.publish_heartbeat_ages and facts.may_page:
            # After this DAG's own heartbeat: a broken record of another DAG must not stop it.
            ages, overdue = self._heartbeat_ages(now, dag_id)
            if ages:
                cloudwatch.put_metric_data(Namespace=self.status.namespace, MetricData=ages)
        dashboard_changed = self._ensure_dashboard(cloudwatch, dag_id, gap)
        # An age alarm only once the DAG has a heartbeat record (the age it watches is published from it).
        alarm_changed = self._ensure_alarm(cloudwatch, dimensions, dag_id, gap) \
            if gap <= MAX_ALARM_HOURS or heartbeat else False
        yield from overdue
        if not self.alerts.sns_topic_arn:
            yield Finding(check="maintenance.heartbeat_alarm", resource=self.alarm_name(dag_id), status=Status.WARNING,
                          severity=Severity.P4,
                          summary="the dead-man's alarm has no action: nobody is told when the heartbeat stops",
                          details={"fix": "set alerts.sns_topic_arn (the topic the alarm notifies)"})
        yield Finding(check="maintenance.status_published", resource=f"{self.status.namespace}/{dag_id}",
                      status=Status.OK, summary="; ".join(published),
                      details={"failed_checks": failed, "report_written": report_ok,
                               "dashboard": self.status.dashboard_name, "dashboard_updated": dashboard_changed,
                               "alarm": self.alarm_name(dag_id), "alarm_updated": alarm_changed,
                               "alarm_after_hours": round(gap, 2)})

    def _store(self) -> Any:
        if not self.bucket:
            raise ValueError("a DAG whose heartbeats are over 7 days apart needs bucket= to keep its heartbeat record")
        return self.report_store(self.bucket, self.reports_prefix)

    def _heartbeat_ages(self, now: datetime, own_dag_id: str) -> tuple[list[dict[str, Any]], list[Finding]]:
        """HeartbeatAgeHours of every DAG that keeps a heartbeat record (weekly, monthly), and a
        finding for each one overdue: its own alarm fires too, but the daily report says which."""
        store = self._store()
        root = store.key("_").removesuffix("_")  # "<prefix>/", or "" without a prefix
        listing = store.s3.conn.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root,
                                                                         Delimiter="/")
        dag_ids = [p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for page in listing
                   for p in page.get("CommonPrefixes", [])]
        data, findings = [], []
        for dag_id in sorted(d for d in dag_ids if d != own_dag_id):
            try:
                record = store.read_json(store.key(dag_id, HEARTBEAT_RECORD))
                if not record or "last_heartbeat" not in record:
                    continue
                last = datetime.fromisoformat(record["last_heartbeat"])
                float(record.get("gap_hours", MAX_ALARM_HOURS))
            except (ValueError, TypeError, AttributeError) as exc:
                findings.append(Finding(
                    check="maintenance.heartbeat_overdue", resource=dag_id, status=Status.WARNING,
                    severity=Severity.P3, summary=f"its heartbeat record cannot be read: {type(exc).__name__}",
                    details={"fix": f"delete {store.key(dag_id, HEARTBEAT_RECORD)}; the DAG's next successful run "
                                    "writes it again"}))
                continue
            age = (now - last) / timedelta(hours=1)
            data.append({"MetricName": "HeartbeatAgeHours", "Timestamp": now, "Value": round(age, 2), "Unit": "None",
                         "Dimensions": [{"Name": "Environment", "Value": self.environment},
                                        {"Name": "DagId", "Value": dag_id}]})
            limit = float(record.get("gap_hours", MAX_ALARM_HOURS))
            if age > limit:
                findings.append(Finding(
                    check="maintenance.heartbeat_overdue", resource=dag_id, status=Status.WARNING,
                    severity=Severity.P3,
                    summary=(f"no successful {dag_id} run for {age / 24:.1f} days (last {last:%Y-%m-%d %H:%M} UTC; "
                             f"expected within {limit / 24:.1f} days)"),
                    details={"last_heartbeat": record["last_heartbeat"], "gap_hours": limit,
                             "fix": f"check that {dag_id} is unpaused and its recent runs in the Airflow UI"}))
            else:
                findings.append(Finding(check="maintenance.heartbeat_overdue", resource=dag_id, status=Status.OK,
                                        summary=f"last successful run {age / 24:.1f} days ago"))
        return data, findings

    def _check_tasks(self) -> list[str]:
        if self.report_task_id is None:
            return sorted(self.upstream_task_ids)
        report = self.dag.get_task(self.report_task_id)
        return sorted(report.upstream_task_ids)

    def dashboard_body(self, dag_id: str, gap_hours: float) -> dict[str, Any]:
        ns, env = self.status.namespace, self.environment
        region = self.region_name or "us-east-1"

        # Maximum, not Sum: a retried or cleared run publishes the same date's datapoint again.
        def widget(title: str, metrics: list[list[Any]], y: int, x: int, stat: str = "Maximum",
                   period: int = 86400) -> dict[str, Any]:
            return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6, "properties": {
                "title": title, "metrics": metrics, "stat": stat, "period": period, "region": region,
                "view": "timeSeries", "stacked": False}}

        return {"widgets": [
            widget(f"Findings by severity — {dag_id}",
                   [[ns, "Findings", "Environment", env, "DagId", dag_id, "Severity", s] for s in SEVERITIES], 0, 0),
            widget(f"Failed checks — {dag_id}", [[ns, "FailedChecks", "Environment", env, "DagId", dag_id]], 0, 12),
            widget(f"Heartbeat (alarm after {gap_hours:g} h without) — {dag_id}",
                   [[ns, "Heartbeat", "Environment", env, "DagId", dag_id]], 6, 0, stat="Sum", period=3600),
            widget(f"Report written — {dag_id}", [[ns, "ReportWritten", "Environment", env, "DagId", dag_id]], 6, 12),
        ]}

    def _ensure_dashboard(self, cloudwatch: Any, dag_id: str, gap_hours: float) -> bool:
        # One dashboard per environment, a row of widgets per DAG; other DAGs' widgets are kept.
        name = f"{self.status.dashboard_name}-{self.environment}"
        ours = self.dashboard_body(dag_id, gap_hours)["widgets"]
        try:
            current = json.loads(cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])
        except Exception as exc:
            if error_code(exc) not in ("ResourceNotFound", "DashboardNotFoundError"):
                raise
            current = {"widgets": []}
        def is_ours(widget: dict[str, Any]) -> bool:
            return str(widget.get("properties", {}).get("title", "")).endswith(f"— {dag_id}")

        mine = [w for w in current.get("widgets", []) if is_ours(w)]
        others = [w for w in current.get("widgets", []) if not is_ours(w)]
        # A DAG's row stays where it is (seven DAGs share the dashboard); a new one goes below the rest.
        offset = min((w.get("y", 0) for w in mine), default=None)
        if offset is None:
            offset = max((w.get("y", 0) + w.get("height", 0) for w in others), default=0)
        placed = [{**w, "y": w["y"] + offset} for w in ours]
        body = {"widgets": [*others, *placed]}

        def order(widgets: list[dict[str, Any]]) -> list[str]:
            return sorted(json.dumps(w, sort_keys=True) for w in widgets)

        if order(mine) == order(placed):
            return False
        cloudwatch.put_dashboard(DashboardName=name, DashboardBody=json.dumps(body, sort_keys=True))
        return True

    def _ensure_alarm(self, cloudwatch: Any, dimensions: list[dict[str, str]], dag_id: str, gap_hours: float) -> bool:
        actions = [self.alerts.sns_topic_arn] if self.alerts.sns_topic_arn else []
        shown = f"{gap_hours / 24:g} days" if gap_hours >= 48 else f"{gap_hours:g} h"
        wanted = {
            "AlarmName": self.alarm_name(dag_id),
            "AlarmDescription": (f"No successful {dag_id} run in {self.environment} for {shown}: Airflow or the "
                                 "DAG is down, paused or failing before its end. Check the scheduler and the "
                                 "DAG's recent runs in the Airflow UI."),
            "Namespace": self.status.namespace, "Dimensions": dimensions, **heartbeat_alarm_shape(gap_hours),
            "ActionsEnabled": bool(actions), "AlarmActions": actions,
            "OKActions": actions,
        }
        existing = cloudwatch.describe_alarms(AlarmNames=[wanted["AlarmName"]], AlarmTypes=["MetricAlarm"])
        current = (existing.get("MetricAlarms") or [None])[0]
        if current and all(current.get(k) == v for k, v in wanted.items() if k != "Dimensions") and \
                sorted((d["Name"], d["Value"]) for d in current.get("Dimensions", [])) == \
                sorted((d["Name"], d["Value"]) for d in dimensions):
            return False
        cloudwatch.put_metric_alarm(**wanted)
        return True
