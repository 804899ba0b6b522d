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
from solemate_maintenance.window import TimeWindow, run_end

# CloudWatch accepts datapoints up to two weeks old.
MAX_METRIC_AGE = timedelta(days=14)
SEVERITIES = ("P1", "P2", "P3", "P4")


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
        cloudwatch = self.client("cloudwatch")
        fired: dict[str, list[datetime]] = defaultdict(list)
        for page in self.pages(cloudwatch, "describe_alarm_history", max_page=100, HistoryItemType="StateUpdate",
                               AlarmTypes=["MetricAlarm", "CompositeAlarm"],  # default: metric alarms only
                               StartDate=window.start, EndDate=window.end, ScanBy="TimestampAscending"):
            for item in page["AlarmHistoryItems"]:
                if self._new_state(item) == "ALARM":
                    stamp = item["Timestamp"]
                    # botocore gives CloudWatch's timestamps in the worker's local zone.
                    fired[item["AlarmName"]].append(stamp.astimezone(UTC) if stamp.tzinfo else
                                                    stamp.replace(tzinfo=UTC))
        names = sorted(fired)
        now_state: dict[str, dict[str, Any]] = {}
        for start in range(0, len(names), 100):  # DescribeAlarms takes at most 100 names
            response = cloudwatch.describe_alarms(AlarmNames=names[start:start + 100],
                                                  AlarmTypes=["MetricAlarm", "CompositeAlarm"])
            for alarm in [*response.get("MetricAlarms", []), *response.get("CompositeAlarms", [])]:
                now_state[alarm["AlarmName"]] = alarm
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

    @staticmethod
    def _new_state(item: dict[str, Any]) -> str | None:
        try:
            return json.loads(item.get("HistoryData") or "{}").get("newState", {}).get("stateValue")
        except ValueError:
            summary = item.get("HistorySummary", "")
            return "ALARM" if summary.endswith("to ALARM") else None


class MaintenanceStatusOperator(MaintenanceCheckOperator):
    """Publish the run's status to CloudWatch and keep its dashboard and dead-man's alarm.

    Runs after the report whatever happened (``ALL_DONE``). Metrics (dimensions Environment, DagId):
    ``Findings`` per ``Severity``, ``FailedChecks``, ``ReportWritten``, timestamped at the checked
    date (within CloudWatch's two weeks), and ``Heartbeat`` = 1 at the time of publishing, only for a
    live run whose report was written: a backfill must not silence the dead-man's switch. The
    dashboard and the alarm are written only when they differ from what is there (idempotent).

    :param report_task_id: the report task; :param environment: the environment name.
    :param status: the `maintenance_status` section; :param alerts: for the SNS topic and paging age.
    """

    def __init__(self, *, report_task_id: str = "report", environment: str, status: MaintenanceStatus,
                 alerts: Alerts, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.report_task_id = report_task_id
        self.environment = environment
        self.status = status
        self.alerts = alerts

    def alarm_name(self, dag_id: str) -> str:
        return f"{self.status.dashboard_name}-{self.environment}-{dag_id}-heartbeat-missing"

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        ti = context["ti"]
        dag_id = ti.dag_id
        states = ti.get_task_states(dag_id=dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        checks = self._check_tasks()
        report = ti.xcom_pull(task_ids=self.report_task_id) or {}
        report_ok = states.get(self.report_task_id) == "success" and bool(report)
        failed = [t for t in checks if states.get(t) in FAILED_STATES]
        # Wall-clock facts: whether this run is live (a backfill must not reset the heartbeat), and
        # whether its date is still inside the two weeks CloudWatch accepts data points for.
        now = datetime.now(UTC)
        facts = RunFacts.from_context(context, page_max_age_hours=self.alerts.page_max_age_hours, now=now)
        cloudwatch = self.client("cloudwatch")
        dimensions = [{"Name": "Environment", "Value": self.environment}, {"Name": "DagId", "Value": dag_id}]
        checked = run_end(context)
        data: list[dict[str, Any]] = []
        published: list[str] = []
        if now - checked <= MAX_METRIC_AGE - timedelta(minutes=5):
            severity = (report.get("totals") or {}).get("severity", {})
            if report_ok:
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
            published.append("heartbeat")
        else:
            published.append("no heartbeat: " + ("the report was not written" if not report_ok
                                                 else "not a live run (" + facts.paging_note + ")"))
        for start in range(0, len(data), 1000):
            cloudwatch.put_metric_data(Namespace=self.status.namespace, MetricData=data[start:start + 1000])
        dashboard_changed = self._ensure_dashboard(cloudwatch, dag_id)
        alarm_changed = self._ensure_alarm(cloudwatch, dimensions, dag_id)
        if not self.alerts.sns_topic_arn:
            yield Finding(check="maintenance.heartbeat_alarm", resource=self.alarm_name(dag_id), status=Status.WARNING,
                          severity=Severity.P4,
                          summary="the dead-man's alarm has no action: nobody is told when the heartbeat stops",
                          details={"fix": "set alerts.sns_topic_arn (the topic the alarm notifies)"})
        yield Finding(check="maintenance.status_published", resource=f"{self.status.namespace}/{dag_id}",
                      status=Status.OK, summary="; ".join(published),
                      details={"failed_checks": failed, "report_written": report_ok,
                               "dashboard": self.status.dashboard_name, "dashboard_updated": dashboard_changed,
                               "alarm": self.alarm_name(dag_id), "alarm_updated": alarm_changed})

    def _check_tasks(self) -> list[str]:
        report = self.dag.get_task(self.report_task_id)
        return sorted(report.upstream_task_ids)

    def dashboard_body(self, dag_id: str) -> dict[str, Any]:
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
            widget(f"Heartbeat (alarm after {self.status.heartbeat_max_gap_hours} h without) — {dag_id}",
                   [[ns, "Heartbeat", "Environment", env, "DagId", dag_id]], 6, 0, stat="Sum", period=3600),
            widget(f"Report written — {dag_id}", [[ns, "ReportWritten", "Environment", env, "DagId", dag_id]], 6, 12),
        ]}

    def _ensure_dashboard(self, cloudwatch: Any, dag_id: str) -> bool:
        # One dashboard per environment, a row of widgets per DAG; other DAGs' widgets are kept.
        name = f"{self.status.dashboard_name}-{self.environment}"
        ours = self.dashboard_body(dag_id)["widgets"]
        try:
            current = json.loads(cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])
        except Exception as exc:
            if error_code(exc) not in ("ResourceNotFound", "DashboardNotFoundError"):
                raise
            current = {"widgets": []}
        titles = {w["properties"]["title"] for w in ours}
        others = [w for w in current.get("widgets", []) if w.get("properties", {}).get("title") not in titles
                  and not str(w.get("properties", {}).get("title", "")).endswith(f"— {dag_id}")]
        offset = max((w.get("y", 0) + w.get("height", 0) for w in others), default=0)
        placed = [{**w, "y": w["y"] + offset} for w in ours]
        body = {"widgets": [*others, *placed]}
        if [w for w in current.get("widgets", []) if w.get("properties", {}).get("title") in titles] == placed:
            return False
        cloudwatch.put_dashboard(DashboardName=name, DashboardBody=json.dumps(body, sort_keys=True))
        return True

    def _ensure_alarm(self, cloudwatch: Any, dimensions: list[dict[str, str]], dag_id: str) -> bool:
        hours = self.status.heartbeat_max_gap_hours
        actions = [self.alerts.sns_topic_arn] if self.alerts.sns_topic_arn else []
        wanted = {
            "AlarmName": self.alarm_name(dag_id),
            "AlarmDescription": (f"No successful {dag_id} run in {self.environment} for {hours} h: Airflow or the "
                                 "DAG is down, paused or failing before its report. Check the scheduler and the "
                                 "DAG's recent runs in the Airflow UI."),
            "Namespace": self.status.namespace, "MetricName": "Heartbeat", "Dimensions": dimensions,
            "Statistic": "Sum", "Period": 3600, "EvaluationPeriods": hours, "DatapointsToAlarm": hours,
            "Threshold": 1.0, "ComparisonOperator": "LessThanThreshold", "TreatMissingData": "breaching",
            "ActionsEnabled": bool(actions), "AlarmActions": actions, "OKActions": actions,
        }
        existing = cloudwatch.describe_alarms(AlarmNames=[wanted["AlarmName"]], AlarmTypes=["MetricAlarm"])
        current = (existing.get("MetricAlarms") or [None])[0]
        if current and all(current.get(k) == v for k, v in wanted.items() if k != "Dimensions") and \
                sorted((d["Name"], d["Value"]) for d in current.get("Dimensions", [])) == \
                sorted((d["Name"], d["Value"]) for d in dimensions):
            return False
        cloudwatch.put_metric_alarm(**wanted)
        return True
