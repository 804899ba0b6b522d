"""The failover runbook's steps against moto (mock_aws, with the sandbox's DR region and patches).

Every AWS call the steps make is recorded (botocore's own call path, the request still goes to moto):
the gate makes none, and running every step a second time, as clearing the tasks does, changes
nothing: no mutating call at all.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.client
import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from solemate_maintenance import dr
from solemate_maintenance.config import load_config
from solemate_maintenance.findings import ChecksFailedError
from solemate_maintenance.operators.dr.failover import FailoverAssessmentOperator, FailoverGateOperator
from solemate_maintenance.operators.dr.failover_steps import (
    FailoverApplicationOperator,
    FailoverDatabaseOperator,
    FailoverDnsSwitchOperator,
    FailoverInfrastructureOperator,
    FailoverMonitoringOperator,
    FailoverValidationOperator,
)
from tests.helpers import ANCHOR

REPO = Path(__file__).resolve().parents[2]

READ_ONLY = ("Describe", "List", "Get", "Validate", "Head")


@dataclass
class SharedTaskInstance:
    """XComs shared between the steps of one run, as Airflow keeps them."""

    task_id: str = "step"
    dag_id: str = "dr_failover"
    run_id: str = "manual__2026-11-27T03:00:00+00:00"
    try_number: int = 1
    log_url: str = "http://localhost:8080/dags/dr_failover/runs/manual/tasks/step"
    store: dict[tuple[str, str], Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.store[(self.task_id, key)] = value

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.store.get((task_ids, key))


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    """Every AWS operation made, as 'service:Operation'."""
    made: list[str] = []
    original = botocore.client.BaseClient._make_api_call

    def recording(self, operation_name, api_params):
        made.append(f"{self.meta.service_model.service_name}:{operation_name}")
        return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    return made


def mutating(made: list[str]) -> list[str]:
    return [c for c in made if not c.split(":", 1)[1].startswith(READ_ONLY)]


def run(operator: Any, ti: SharedTaskInstance, params: dict | None = None) -> dict:
    """Execute like Airflow: on a deferral, wait for what the trigger waits for, then resume."""
    ti.task_id = operator.task_id
    context = {"ti": ti, "params": params or {}, "logical_date": ANCHOR, "data_interval_end": ANCHOR,
               "dag_run": None}
    call, args = operator.execute, (context,)
    for _ in range(10):
        try:
            call(*args)
            return {f["check"]: f for f in ti.store.get((operator.task_id, "findings"), [])}
        except ChecksFailedError:
            return {f["check"]: f for f in ti.store.get((operator.task_id, "findings"), [])}
        except TaskDeferred as deferred:
            time.sleep(3.2)  # the sandbox's restores and tasks take seconds
            call = getattr(operator, deferred.method_name)
            args = (context, {"status": "success"})
    raise AssertionError(f"{operator.task_id} kept deferring")


@pytest.fixture
def steps():
    config = load_config()
    recovery = config.disaster_recovery
    common = {"recovery": recovery, "primary_region": config.regions.primary, "region_name": config.regions.dr}
    services = [s.name for s in config.resources.ecs.services]
    return [
        FailoverAssessmentOperator(task_id="failover_assessment", database=config.resources.rds.instance_id,
                                   services=services, health_endpoint="http://127.0.0.1:9/health", **common),
        FailoverInfrastructureOperator(task_id="failover_infrastructure", environment="production", **common),
        FailoverDatabaseOperator(task_id="failover_database", database=config.resources.rds.instance_id, **common),
        FailoverApplicationOperator(task_id="failover_application", cluster=config.resources.ecs.cluster,
                                    services={s.name: s.min_tasks for s in config.resources.ecs.services}, **common),
        FailoverDnsSwitchOperator(task_id="failover_dns", **common),
        FailoverValidationOperator(task_id="failover_validation", services=services,
                                   **{**common, "recovery": recovery.model_copy(update={"dr_health_endpoint": None})}),
        FailoverMonitoringOperator(task_id="failover_monitoring", services=services, environment="production",
                                   **common),
    ]


@pytest.mark.parametrize(("allowed", "params", "says"), [
    (False, {"confirm": "production", "reason": "region outage INC-42"}, "allow_failover is false"),
    (True, {"confirm": "prod", "reason": "region outage INC-42"}, "'confirm' must be the environment name"),
    (True, {"confirm": "production", "reason": "   "}, "'reason' must say why"),
    (True, {}, "'confirm' must be the environment name 'production' (got 'None')"),
])
def test_gate_refuses_with_one_line_and_no_aws_call(platform, calls, allowed, params, says):
    gate = FailoverGateOperator(task_id="failover_gate", environment="production", allowed=allowed)
    with pytest.raises(AirflowFailException) as refused:
        run(gate, SharedTaskInstance(), params)
    message = str(refused.value)
    assert message.startswith("Failover refused, nothing was changed: ") and says in message
    assert "\n" not in message
    assert calls == []
    assert gate.retries == 0  # a refusal is a decision, not a flake


def test_gate_lets_a_confirmed_allowed_run_through(platform, calls):
    gate = FailoverGateOperator(task_id="failover_gate", environment="production", allowed=True)
    ti = SharedTaskInstance()
    ti.task_id = gate.task_id
    request = gate.execute({"ti": ti, "params": {"confirm": " production ", "reason": "us-east-1 outage, INC-42"}})
    assert request["reason"] == "us-east-1 outage, INC-42" and calls == []


def test_the_runbook_fails_over_and_a_second_pass_changes_nothing(platform, calls, steps):
    before = platform.dr.failover_records()
    assert before["PRIMARY"].startswith("production-alb")
    ti = SharedTaskInstance()
    results = {step.task_id: run(step, ti) for step in steps}
    assert results["failover_assessment"]["failover.assessment.primary"]["status"] == "warning"  # unreachable
    assert results["failover_infrastructure"]["failover.infrastructure"]["summary"].startswith("stack created")
    database = results["failover_database"]["failover.database"]
    assert database["status"] == "ok" and "min of data lost" in database["summary"]
    assert "solemate-backend x2" in results["failover_application"]["failover.application"]["summary"]
    assert platform.dr.failover_records() == {"PRIMARY": platform.dr.dr_alb_dns, "SECONDARY": before["SECONDARY"]}
    assert {f["status"] for f in results["failover_validation"].values()} == {"ok", "skipped"}
    # Database CPU and connections, and one per service; notifying the DR stack's topic.
    monitoring = results["failover_monitoring"]["failover.monitoring"]["summary"]
    assert monitoring.startswith("3 alarms in place") and "solemate-production-dr-alarms" in monitoring
    first_changes = mutating(calls)
    assert {c.split(":")[1] for c in first_changes} >= {"CreateStack", "RestoreDBInstanceToPointInTime",
                                                        "UpdateService", "ChangeResourceRecordSets",
                                                        "PutMetricAlarm"}
    rds = platform._client("rds", "us-west-2")
    [instance] = rds.describe_db_instances(DBInstanceIdentifier="production-postgres-dr")["DBInstances"]
    assert instance["DeletionProtection"] is True and not instance.get("PubliclyAccessible")

    calls.clear()
    again = {step.task_id: run(step, ti) for step in steps}  # every task cleared and run again
    changed_again = [c for c in mutating(calls) if not c.endswith(":PutMetricAlarm")]
    assert changed_again == [], f"a second pass changed things: {changed_again}"
    assert "(no change)" in again["failover_infrastructure"]["failover.infrastructure"]["summary"]
    assert "(no change)" in again["failover_application"]["failover.application"]["summary"]
    assert again["failover_dns"]["failover.dns"]["summary"].endswith("(no change)")
    # Alarms are written by name: the same alarms, not more of them.
    alarms = platform._client("cloudwatch", "us-west-2").describe_alarms()["MetricAlarms"]
    assert len(alarms) == len(ti.store[("failover_monitoring", "measurements")]["alarms"])


def test_database_step_refuses_an_instance_it_did_not_create(platform, calls, steps):
    rds = platform._client("rds", "us-west-2")
    rds.create_db_instance(DBInstanceIdentifier="production-postgres-dr", Engine="postgres",
                           DBInstanceClass="db.t3.micro", AllocatedStorage=20, MasterUsername="someone",
                           MasterUserPassword="not-ours-123")
    database = next(s for s in steps if s.task_id == "failover_database")
    findings = run(database, SharedTaskInstance())
    assert findings["failover.database"]["severity"] == "P1"
    assert "this runbook did not create" in findings["failover.database"]["summary"]
    assert not [c for c in mutating(calls) if c != "rds:CreateDBInstance"]


def test_refusal_text_for_the_ui():
    assert dr.failover_refusal(confirm="production", reason="INC-42", environment="production", allowed=True) is None


def test_a_later_failover_refuses_the_stale_copy_an_earlier_one_left(platform, calls, steps):
    database = next(s for s in steps if s.task_id == "failover_database")
    first = run(database, SharedTaskInstance(run_id="manual__2026-08-01T00:00:00+00:00"))
    assert first["failover.database"]["status"] == "ok"
    calls.clear()
    later = run(database, SharedTaskInstance())  # another incident, months later
    assert later["failover.database"]["severity"] == "P1"
    assert "restored by an earlier failover (manual__2026-08-01T00:00:00+00:00" in later["failover.database"]["summary"]
    assert mutating(calls) == []


def test_application_step_never_scales_the_dr_services_down(platform, calls, steps):
    ecs = platform._client("ecs", "us-west-2")
    ecs.update_service(cluster="production-cluster-dr", service="solemate-backend", desiredCount=6)  # autoscaled
    time.sleep(2.2)
    calls.clear()
    application = next(s for s in steps if s.task_id == "failover_application")
    findings = run(application, SharedTaskInstance())
    assert "solemate-backend x6" in findings["failover.application"]["summary"]
    assert [c for c in mutating(calls) if c.endswith("UpdateService")] == []


def test_an_alias_primary_record_is_switched_as_an_alias(platform, steps):
    route53 = platform._client("route53")
    zone = route53.list_hosted_zones_by_name(DNSName="solemate.example.")["HostedZones"][0]["Id"].rsplit("/", 1)[-1]
    primary_alb = platform._client("elbv2").describe_load_balancers()["LoadBalancers"][0]
    records = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    cname = next(r for r in records if r.get("Failover") == "PRIMARY")
    alias = {"Name": cname["Name"], "Type": "A", "SetIdentifier": "primary-a", "Failover": "PRIMARY",
             "HealthCheckId": cname["HealthCheckId"],
             "AliasTarget": {"HostedZoneId": primary_alb["CanonicalHostedZoneId"], "DNSName": primary_alb["DNSName"],
                             "EvaluateTargetHealth": True}}
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": alias}]})
    dns = next(s for s in steps if s.task_id == "failover_dns")
    findings = run(dns, SharedTaskInstance())
    assert findings["failover.dns"]["status"] == "ok"
    after = {(r["Type"], r.get("SetIdentifier")): r for r in route53.list_resource_record_sets(
        HostedZoneId=zone)["ResourceRecordSets"] if r.get("Failover") == "PRIMARY"}
    switched = after[("A", "primary-a")]
    assert switched["AliasTarget"]["DNSName"].rstrip(".") == platform.dr.dr_alb_dns
    assert "ResourceRecords" not in switched or not switched["ResourceRecords"]
    assert switched["HealthCheckId"] == cname["HealthCheckId"]
    assert after[("CNAME", "primary")]["ResourceRecords"] == [{"Value": platform.dr.dr_alb_dns}]  # both switched


def test_a_stack_whose_update_rolled_back_is_in_place(platform, steps, monkeypatch):
    from solemate_maintenance.operators.dr import failover_steps as dr_failover

    infrastructure = next(s for s in steps if s.task_id == "failover_infrastructure")
    run(infrastructure, SharedTaskInstance())
    original = dr_failover.FailoverInfrastructureOperator._stack
    monkeypatch.setattr(dr_failover.FailoverInfrastructureOperator, "_stack", staticmethod(
        lambda cf, name: {**original(cf, name), "StackStatus": "UPDATE_ROLLBACK_COMPLETE"}))
    again = run(infrastructure, SharedTaskInstance())
    assert again["failover.infrastructure"]["status"] == "ok" and "(no change)" in again["failover.infrastructure"][
        "summary"]
    monkeypatch.setattr(dr_failover.FailoverInfrastructureOperator, "_stack", staticmethod(
        lambda cf, name: {**original(cf, name), "StackStatus": "ROLLBACK_COMPLETE"}))
    broken = run(infrastructure, SharedTaskInstance())["failover.infrastructure"]
    assert broken["severity"] == "P1" and "delete the stack" in broken["summary"]


@pytest.mark.parametrize(("dag_file", "gate_id", "conf", "says"), [
    ("dr_drill", "dr_drill_gate", {"component": ["static_assets"]}, "unknown param 'component'"),
    ("dr_drill", "dr_drill_gate", {"reason": "\u200b"}, "'reason' must say why"),
    ("dr_failover", "failover_gate", {"confirm": "production", "Reason": "db down"}, "unknown param 'Reason'"),
])
def test_a_gate_refuses_what_airflow_merged_into_the_params(dag_file, gate_id, conf, says):
    """Airflow copies every conf key into the run's params (dag_run_conf_overrides_params): the gates judge
    against the params the DAG declares, through Airflow's own merge, as a real run does."""
    import importlib.util
    from types import SimpleNamespace

    from airflow.sdk import DAG
    from airflow.sdk.definitions.param import process_params

    from solemate_maintenance.findings import RunRefused

    spec = importlib.util.spec_from_file_location(f"test_{dag_file}", REPO / "dags" / f"{dag_file}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = next(value for value in vars(module).values() if isinstance(value, DAG))
    gate = dag.get_task(gate_id)
    params = process_params(dag, gate, conf, suppress_exception=False)
    assert set(conf) <= set(params)  # Airflow merged the misspelt key: params alone cannot tell
    with pytest.raises(RunRefused, match=re.escape(says)):
        gate.execute({"params": params, "dag_run": SimpleNamespace(conf=conf), "dag": dag,
                      "ti": SimpleNamespace(run_id="manual__x")})
