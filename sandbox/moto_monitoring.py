"""What the monitoring checks ask AWS and moto 5.2.5 cannot answer.

* CloudFormation drift detection (DetectStackDrift, DescribeStackDriftDetectionStatus,
  DescribeStackResourceDrifts): moto has none. A detection reports ``DETECTION_IN_PROGRESS`` on its
  first status call, as AWS does for a while, then the drift staged in ``STACK_DRIFTS``.
* RDS DescribePendingMaintenanceActions (moto has none): the actions staged in
  ``PENDING_MAINTENANCE`` per instance ARN; and ``PerformanceInsightsEnabled``, which moto drops
  from CreateDBInstance.
* ElastiCache DescribeUpdateActions (moto has none): the actions staged in ``UPDATE_ACTIONS``.
* Performance Insights (moto has no ``pi`` service at all): the moto *server* answers
  DescribeDimensionKeys for an instance with Performance Insights on, from ``PI_TOP_SQL``, and
  refuses it (as AWS does) for one without. Under ``mock_aws`` there is no such service.
* SNS: a subscription staged unconfirmed (its ``PendingConfirmation`` attribute ``"true"``) is
  listed as AWS lists it, with ``SubscriptionArn: PendingConfirmation``; moto confirms every one.
"""

from __future__ import annotations

import uuid
from typing import Any

from moto.cloudformation.responses import CloudFormationResponse
from moto.core.responses import ActionResult
from moto.elasticache.responses import ElastiCacheResponse
from moto.rds.exceptions import RDSClientError
from moto.rds.models import DBInstance
from moto.rds.responses import RDSResponse
from moto.sns.responses import SNSResponse

# stack name -> resource drifts as DescribeStackResourceDrifts reports them (empty or absent: in sync)
STACK_DRIFTS: dict[str, list[dict[str, Any]]] = {}
# instance ARN -> PendingMaintenanceActionDetails
PENDING_MAINTENANCE: dict[str, list[dict[str, Any]]] = {}
# UpdateActions entries (each with its CacheClusterId)
UPDATE_ACTIONS: list[dict[str, Any]] = []
# Performance Insights' top statements by load (db.sql_tokenized), for every PI-enabled instance.
PI_TOP_SQL: list[dict[str, Any]] = [
    {"Dimensions": {"db.sql_tokenized.statement": "SELECT * FROM orders WHERE customer_id = ? ORDER BY created_at "
                                                   "DESC", "db.sql_tokenized.id": "pi-orders-by-customer"},
     "Total": 0.42},
    {"Dimensions": {"db.sql_tokenized.statement": "SELECT sku, SUM(quantity) FROM order_items GROUP BY sku",
                    "db.sql_tokenized.id": "pi-items-by-sku"}, "Total": 0.17},
]
_DETECTIONS: dict[str, dict[str, Any]] = {}
_ORIGINAL: dict[str, Any] = {}


def reset() -> None:
    STACK_DRIFTS.clear()
    PENDING_MAINTENANCE.clear()
    UPDATE_ACTIONS.clear()
    _DETECTIONS.clear()


def _validation(message: str) -> Exception:
    from moto.cloudformation.exceptions import ValidationError

    return ValidationError(message=message)


def _stack(response: CloudFormationResponse, name: str) -> Any:
    stack = next((s for s in response.cloudformation_backend.stacks.values()
                  if name in (s.name, s.stack_id) and s.status != "DELETE_COMPLETE"), None)
    if stack is None:
        raise _validation(f"Stack with id {name} does not exist")
    return stack


def detect_stack_drift(self: CloudFormationResponse) -> ActionResult:
    stack = _stack(self, self._get_param("StackName"))
    detection = str(uuid.uuid4())
    _DETECTIONS[detection] = {"stack": stack, "polled": 0}
    return ActionResult({"StackDriftDetectionId": detection})


def describe_stack_drift_detection_status(self: CloudFormationResponse) -> ActionResult:
    from datetime import UTC, datetime

    detection = self._get_param("StackDriftDetectionId")
    if detection not in _DETECTIONS:
        raise _validation(f"Drift detection {detection} does not exist")
    state = _DETECTIONS[detection]
    state["polled"] += 1
    stack = state["stack"]
    result: dict[str, Any] = {"StackId": stack.stack_id, "StackDriftDetectionId": detection,
                              "Timestamp": datetime.now(UTC)}
    if state["polled"] == 1:
        result["DetectionStatus"] = "DETECTION_IN_PROGRESS"
    else:
        drifted = bool(STACK_DRIFTS.get(stack.name))
        result.update({"DetectionStatus": "DETECTION_COMPLETE",
                       "StackDriftStatus": "DRIFTED" if drifted else "IN_SYNC",
                       "DriftedStackResourceCount": len(STACK_DRIFTS.get(stack.name, []))})
    return ActionResult(result)


def describe_stack_resource_drifts(self: CloudFormationResponse) -> ActionResult:
    stack = _stack(self, self._get_param("StackName"))
    wanted = set(self._get_param("StackResourceDriftStatusFilters") or [])
    drifts = [{"StackId": stack.stack_id, "ResourceType": "AWS::Unknown", "PropertyDifferences": [], **d}
              for d in STACK_DRIFTS.get(stack.name, [])
              if not wanted or d["StackResourceDriftStatus"] in wanted]
    size = int(self._get_param("MaxResults") or 100)
    offset = int(self._get_param("NextToken") or 0)
    result: dict[str, Any] = {"StackResourceDrifts": drifts[offset:offset + size]}
    if offset + size < len(drifts):
        result["NextToken"] = str(offset + size)
    return ActionResult(result)


def describe_pending_maintenance_actions(self: RDSResponse) -> ActionResult:
    resource = self._get_param("ResourceIdentifier")
    if resource and not any(db.arn == resource for db in self.backend.databases.values()):
        raise RDSClientError("ResourceNotFoundFault", f"The resource {resource} could not be found")
    listed = [{"ResourceIdentifier": arn, "PendingMaintenanceActionDetails": actions}
              for arn, actions in PENDING_MAINTENANCE.items() if actions and (not resource or arn == resource)]
    return ActionResult({"PendingMaintenanceActions": listed})


def describe_update_actions(self: ElastiCacheResponse) -> ActionResult:
    clusters = set(self._get_param("CacheClusterIds") or [])
    groups = set(self._get_param("ReplicationGroupIds") or [])
    statuses = set(self._get_param("UpdateActionStatus") or [])
    found = [a for a in UPDATE_ACTIONS if (not clusters or a.get("CacheClusterId") in clusters)
             and (not groups or a.get("ReplicationGroupId") in groups)
             and (not statuses or a.get("UpdateActionStatus") in statuses)]
    size = int(self._get_param("MaxRecords") or 100)
    offset = int(self._get_param("Marker") or 0)
    result: dict[str, Any] = {"UpdateActions": found[offset:offset + size]}
    if offset + size < len(found):
        result["Marker"] = str(offset + size)
    return ActionResult(result)


def _subscriptions_listed(result: ActionResult) -> ActionResult:
    listed = []
    for subscription in result.result["Subscriptions"]:  # type: ignore[union-attr]
        pending = str(subscription.attributes.get("PendingConfirmation", "false")).lower() == "true"
        listed.append({"SubscriptionArn": "PendingConfirmation" if pending else subscription.arn,
                       "Owner": subscription.owner, "Protocol": subscription.protocol,
                       "Endpoint": subscription.endpoint, "TopicArn": subscription.topic.arn})
    return ActionResult({**result.result, "Subscriptions": listed})  # type: ignore[dict-item]


def list_subscriptions_by_topic(self: SNSResponse) -> ActionResult:
    return _subscriptions_listed(_ORIGINAL["list_subscriptions_by_topic"](self))


def list_subscriptions(self: SNSResponse) -> ActionResult:
    return _subscriptions_listed(_ORIGINAL["list_subscriptions"](self))


def _pi_answer(body: dict[str, Any], target: str) -> tuple[int, dict[str, Any]]:
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    if not target.endswith(".DescribeDimensionKeys"):
        return 400, {"__type": "InvalidArgumentException", "message": f"{target} is not in the sandbox"}
    enabled = [db for region in get_backend("rds")[DEFAULT_ACCOUNT_ID].values() for db in region.databases.values()
               if getattr(db, "performance_insights_enabled", False)]
    if not any(db.dbi_resource_id == body.get("Identifier") for db in enabled):
        return 400, {"__type": "InvalidArgumentException",
                     "message": f"Performance Insights is not enabled for {body.get('Identifier')}"}
    limit = int((body.get("GroupBy") or {}).get("Limit") or 10)
    return 200, {"AlignedStartTime": body.get("StartTime"), "AlignedEndTime": body.get("EndTime"),
                 "Keys": PI_TOP_SQL[:limit]}


def _pi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    import json as json_module

    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json_module.loads(environ["wsgi.input"].read(length) or b"{}")
    status, answer = _pi_answer(body, environ.get("HTTP_X_AMZ_TARGET", ""))
    start_response(f"{status} {'OK' if status == 200 else 'Bad Request'}",
                   [("Content-Type", "application/x-amz-json-1.1")])
    return [json_module.dumps(answer, default=str).encode()]


def _get_application(self: Any, environ: dict[str, Any]) -> Any:
    # botocore signs PI requests for the "pi" service: route them here, everything else to moto.
    if "/pi/aws4_request" in environ.get("HTTP_AUTHORIZATION", ""):
        return _pi_app
    return _ORIGINAL["get_application"](self, environ)


def _db_instance_init(self: DBInstance, *args: Any, **kwargs: Any) -> None:
    _ORIGINAL["db_init"](self, *args, **kwargs)
    self.performance_insights_enabled = bool(kwargs.get("enable_performance_insights", False))


def apply() -> None:
    """Install the patches (idempotent)."""
    if _ORIGINAL:
        return
    _ORIGINAL["list_subscriptions_by_topic"] = SNSResponse.list_subscriptions_by_topic
    _ORIGINAL["list_subscriptions"] = SNSResponse.list_subscriptions
    _ORIGINAL["db_init"] = DBInstance.__init__
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    _ORIGINAL["get_application"] = DomainDispatcherApplication.get_application
    DomainDispatcherApplication.get_application = _get_application  # type: ignore[method-assign]
    CloudFormationResponse.detect_stack_drift = detect_stack_drift  # type: ignore[attr-defined]
    CloudFormationResponse.describe_stack_drift_detection_status = describe_stack_drift_detection_status  # type: ignore[attr-defined]
    CloudFormationResponse.describe_stack_resource_drifts = describe_stack_resource_drifts  # type: ignore[attr-defined]
    RDSResponse.describe_pending_maintenance_actions = describe_pending_maintenance_actions  # type: ignore[attr-defined]
    ElastiCacheResponse.describe_update_actions = describe_update_actions  # type: ignore[attr-defined]
    SNSResponse.list_subscriptions_by_topic = list_subscriptions_by_topic  # type: ignore[method-assign]
    SNSResponse.list_subscriptions = list_subscriptions  # type: ignore[method-assign]
    DBInstance.__init__ = _db_instance_init  # type: ignore[method-assign]
