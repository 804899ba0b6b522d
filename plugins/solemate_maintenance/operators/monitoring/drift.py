"""CloudFormation drift of the platform's stacks (weekly): what changed by hand since the templates."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from solemate_maintenance.aws_errors import error_code
from solemate_maintenance.config import StackDrift
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.redaction import scrub, trim

DRIFTED = ["MODIFIED", "DELETED"]
# The detections a deferred task waits on: kept in XCom (which lasts across deferrals of a try), not
# only in the deferral's kwargs, which `dag.test()` replaces with the trigger's event.
DETECTIONS_XCOM_KEY = "drift_detections"
SHOWN_DIFFERENCES = 20


class StackDriftOperator(MaintenanceCheckOperator):
    """Start drift detection on every configured stack, wait for it (deferred: no worker slot held),
    then list the drifted resources and their properties, expected and actual.

    A drifted stack is P3 (the next deploy from the template reverts the hand change, or fails); a
    stack that does not exist is P3; a detection that failed is P4 with AWS's reason. Detection
    ids are kept in the deferral, so a resumed task reads the detections it started.
    """

    def __init__(self, *, drift: StackDrift, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drift = drift

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        cloudformation = self.client("cloudformation")
        detections: dict[str, str] = {}
        for stack in self.drift.stacks:
            try:
                detections[stack] = cloudformation.detect_stack_drift(StackName=stack)["StackDriftDetectionId"]
            except Exception as exc:
                if error_code(exc) != "ValidationError":
                    raise
                if "does not exist" in str(exc):
                    yield Finding(check="drift.stack", resource=stack, status=Status.WARNING, severity=Severity.P3,
                                  summary="the stack does not exist: its resources are not under CloudFormation",
                                  details={"fix": "correct monitoring.drift.stacks, or recreate the stack from its "
                                                  "template"})
                else:  # e.g. an update in progress: the other stacks are still checked
                    yield Finding(check="drift.stack", resource=stack, status=Status.WARNING, severity=Severity.P4,
                                  summary=f"drift detection could not start: {trim(scrub(str(exc)), 200)}",
                                  details={"fix": "the next run tries again (a stack being updated cannot be "
                                                  "checked)"})
        if not self.drift.stacks:
            yield Finding(check="drift.stack", resource="stacks", status=Status.SKIPPED,
                          summary="no stack configured (monitoring.drift.stacks)")
        yield from self._wait_or_judge(context, detections)

    def resume(self, context: Any, event: dict[str, Any] | None = None, detections: dict[str, str] | None = None
               ) -> dict[str, int]:
        detections = detections or context["ti"].xcom_pull(task_ids=self.task_id, key=DETECTIONS_XCOM_KEY) or {}
        return self.record_findings(context, self._wait_or_judge(context, detections, event))

    def _wait_or_judge(self, context: Any, detections: dict[str, str], event: dict[str, Any] | None = None
                       ) -> Iterable[Finding]:
        if event and event.get("status") != "success":
            raise RuntimeError(f"stack drift detection did not finish: {event.get('message')}")
        cloudformation = self.client("cloudformation")
        statuses = {stack: cloudformation.describe_stack_drift_detection_status(StackDriftDetectionId=detection)
                    for stack, detection in detections.items()}
        running = [s for s, status in statuses.items() if status["DetectionStatus"] == "DETECTION_IN_PROGRESS"]
        if running:
            from solemate_maintenance.triggers.waiters import StackDriftDetectedTrigger

            poll = self.drift.poll_seconds
            context["ti"].xcom_push(key=DETECTIONS_XCOM_KEY, value=detections)
            self.defer(trigger=StackDriftDetectedTrigger(
                detection_id=detections[running[0]], waiter_delay=poll,
                waiter_max_attempts=max(1, math.ceil(self.drift.timeout_minutes * 60 / poll)),
                aws_conn_id=self.aws_conn_id, region_name=self.region_name),
                method_name="resume", kwargs={"detections": detections})
        rows: list[list[str]] = []
        for stack, status in statuses.items():
            yield from self._judge(cloudformation, stack, status, rows)
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": (f"Stack drift: {len({r[0] for r in rows})} stack(s) drifted" if rows
                         else "Stack drift: the stacks match their templates"),
            "tables": {"Drifted resources": {"columns": ["stack", "resource", "property", "expected", "actual"],
                                             "rows": rows}} if rows else {}})

    def _judge(self, cloudformation: Any, stack: str, status: dict[str, Any], rows: list[list[str]]
               ) -> Iterable[Finding]:
        if status["DetectionStatus"] == "DETECTION_FAILED":
            # Failed means "some resources could not be checked": what was checked may still say
            # IN_SYNC, which must not read as "the whole stack is in sync".
            yield Finding(check="drift.detection", resource=stack, status=Status.WARNING, severity=Severity.P4,
                          summary=("drift detection incomplete: "
                                   f"{trim(scrub(status.get('DetectionStatusReason') or 'no reason given'), 300)}"),
                          details={"fix": "usually a resource type drift detection does not support, or a missing "
                                          "permission to describe it (detection uses the caller's permissions)"})
            if status.get("StackDriftStatus") in (None, "UNKNOWN"):
                return
        if status.get("StackDriftStatus") != "DRIFTED":
            yield Finding(check="drift.stack", resource=stack, status=Status.OK,
                          summary=f"in sync with its template ({status.get('StackDriftStatus', 'IN_SYNC')})")
            return
        drifts: list[dict[str, Any]] = []
        request: dict[str, Any] = {"StackName": stack, "StackResourceDriftStatusFilters": DRIFTED}
        while True:  # botocore has no paginator for it
            page = cloudformation.describe_stack_resource_drifts(**request)
            drifts += page["StackResourceDrifts"]
            if not page.get("NextToken"):
                break
            request["NextToken"] = page["NextToken"]
        described = []
        for drift in drifts:
            resource = f"{drift['LogicalResourceId']} ({drift['ResourceType']})"
            differences = drift.get("PropertyDifferences") or []
            if drift["StackResourceDriftStatus"] == "DELETED":
                rows.append([stack, resource, "(resource)", "exists", "deleted"])
                described.append(f"{drift['LogicalResourceId']} deleted")
            for difference in differences[:SHOWN_DIFFERENCES]:
                rows.append([stack, resource, difference["PropertyPath"], difference.get("ExpectedValue", ""),
                             difference.get("ActualValue", "")])
                described.append(f"{drift['LogicalResourceId']}{difference['PropertyPath']}: "
                                 f"{difference.get('ExpectedValue')} -> {difference.get('ActualValue')}")
        yield Finding(check="drift.stack", resource=stack, status=Status.WARNING, severity=Severity.P3,
                      summary=(f"{len(drifts)} resource(s) drifted from the template: " + "; ".join(described[:3])
                               + (" …" if len(described) > 3 else "")),
                      details={"drifted_resources": [d["LogicalResourceId"] for d in drifts],
                               "fix": "put the change into the template and deploy it, or revert it by hand; the "
                                      "next stack update otherwise reverts it"})
