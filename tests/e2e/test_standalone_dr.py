"""DR from the UI's side: a real Airflow (`airflow standalone`) driven with the official REST client,
as an on-call operator does it: the drill with a form's conf, a form Airflow refuses, and the
failover through its human approval step, rejected and then approved.

Every AWS request the runs make reaches the sandbox's moto server, which logs them: a refused
failover makes none, a rejected one changes nothing after the gate.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

FINAL = {"success", "failed"}


def _api(standalone):
    import airflow_client.client as client

    api = standalone.client()
    return client, client.DagRunApi(api), client.TaskInstanceApi(api), client.DAGApi(api)


def trigger(standalone, dag_id: str, conf: dict) -> str:
    client, runs, _, dags = _api(standalone)
    dags.patch_dag(dag_id, client.DAGPatchBody(is_paused=False))
    run = runs.trigger_dag_run(dag_id, client.TriggerDAGRunPostBody(conf=conf, logical_date=None))
    return run.dag_run_id


def wait_for_run(standalone, dag_id: str, run_id: str, seconds: int = 420) -> str:
    _, runs, _, _ = _api(standalone)
    state: dict[str, str] = {}

    def done() -> bool:
        state["now"] = str(runs.get_dag_run(dag_id, run_id).state.value)
        return state["now"] in FINAL

    standalone.wait_for(done, seconds, f"{dag_id} run {run_id} to finish")
    return state["now"]


def task_states(standalone, dag_id: str, run_id: str) -> dict[str, str]:
    return dict(standalone.query("SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
                                 dag_id, run_id))


def report(standalone, dag_id: str, run_id: str) -> dict:
    s3 = standalone.sandbox.client("s3")
    key = f"{standalone.sandbox.config.reports.prefix}/{dag_id}/{run_id}/report.json"
    return json.loads(s3.get_object(Bucket=standalone.sandbox.config.reports.bucket, Key=key)["Body"].read())


def respond_at_the_gate(standalone, run_id: str, choice: str) -> None:
    """Wait until the approval task is parked, a few seconds more (a response right after parking can
    race the scheduler), then answer through the HITL endpoint as the UI's Required Actions page does."""
    client, runs, task_instances, _ = _api(standalone)

    def parked() -> bool:
        if str(runs.get_dag_run("dr_failover", run_id).state.value) in FINAL:
            pytest.fail(f"the run ended before the gate: {task_states(standalone, 'dr_failover', run_id)}")
        return task_states(standalone, "dr_failover", run_id).get("approve_dns_switch") == "awaiting_input"

    standalone.wait_for(parked, 300, "the approval task to wait for input")
    # Airflow 3.3 races here: if the answer re-queues the task before the scheduler has handled the
    # executor's "success" event of the parked attempt, it marks the task failed ("finished with
    # state success, but the task instance's state attribute is queued"). Answer only after that event.
    handled = (f"Received executor event with state success for task instance TaskInstanceKey(dag_id='dr_failover', "
               f"task_id='approve_dns_switch', run_id='{run_id}'")
    standalone.wait_for(lambda: handled in standalone.log_path.read_text(errors="replace"), 120,
                        "the scheduler to handle the parked attempt's end")
    time.sleep(2)
    detail = task_instances.get_hitl_detail("dr_failover", run_id, "approve_dns_switch", -1)
    assert detail.options == ["Approve", "Reject"] and "Switch www.solemate.example. to us-west-2?" in detail.subject
    task_instances.update_hitl_detail("dr_failover", run_id, "approve_dns_switch", -1,
                                      client.UpdateHITLDetailPayload(chosen_options=[choice]))


def remove_failover_copy(standalone) -> None:
    """What on-call does with the database a rejected (or finished) failover restored: delete it, since
    a later failover must not switch users to its stale data (the runbook refuses to)."""
    rds = standalone.sandbox.client("rds", "us-west-2")
    kept = standalone.sandbox.config.disaster_recovery.failover_instance_id
    try:
        rds.modify_db_instance(DBInstanceIdentifier=kept, DeletionProtection=False, ApplyImmediately=True)
        rds.delete_db_instance(DBInstanceIdentifier=kept, SkipFinalSnapshot=True)
    except rds.exceptions.DBInstanceNotFoundFault:
        return

    def gone() -> bool:
        try:
            rds.describe_db_instances(DBInstanceIdentifier=kept)
        except rds.exceptions.DBInstanceNotFoundFault:
            return True
        return False

    standalone.wait_for(gone, 60, f"{kept} to be deleted")


@pytest.fixture(scope="module", autouse=True)
def fail_back_afterwards(standalone):
    """The other modules sharing this Airflow expect a DR region with no restored instance."""
    yield
    remove_failover_copy(standalone)


@pytest.fixture
def live_world(standalone):
    standalone.sandbox.seed(datetime.now(UTC).replace(second=0, microsecond=0))  # also resets the DNS records
    standalone.sandbox.slack.clear()
    return standalone


def test_drill_triggered_with_a_form_measures_every_component(live_world):
    standalone = live_world
    run_id = trigger(standalone, "dr_drill", {"components": ["database", "application", "static_assets",
                                                             "complete_system"],
                                              "region": "us-west-2", "reason": "quarterly game day"})
    state = wait_for_run(standalone, "dr_drill", run_id)
    assert state == "success", sorted((s, t) for t, s in task_states(standalone, "dr_drill", run_id).items()
                                      if s != "success")
    scorecard = report(standalone, "dr_drill", run_id)["measurements"]["dr_scorecard"]
    assert {r["component"]: r["verdict"] for r in scorecard["components"]} == {
        "Database": "met", "Application": "met", "Static assets": "met", "Complete system": "met"}
    assert scorecard["reason"] == "quarterly game day" and scorecard["left"] == []
    # The waits ran in the triggerer: the restore copy and the test task are gone, nothing is left.
    assert standalone.sandbox.client("rds", "us-west-2").describe_db_instances()["DBInstances"] == []
    assert standalone.sandbox.postgres.restored_databases() == []


def test_a_bad_form_is_refused_with_400_and_creates_no_run(live_world):
    client, runs, _, _ = _api(live_world)
    before = runs.get_dag_runs("dr_drill").total_entries
    for conf in ({"components": ["database", "mainframe"]}, {"region": "us-wset-2"}, {"reason": ""}):
        with pytest.raises(client.ApiException) as refused:
            runs.trigger_dag_run("dr_drill", client.TriggerDAGRunPostBody(conf=conf, logical_date=None))
        assert refused.value.status == 400, conf
    assert runs.get_dag_runs("dr_drill").total_entries == before


def test_failover_with_a_wrong_confirmation_stops_in_the_gate_and_calls_no_aws(live_world):
    standalone = live_world
    mark = standalone.sandbox.aws_requests.mark()
    run_id = trigger(standalone, "dr_failover", {"confirm": "prod", "reason": "testing the gate"})
    assert wait_for_run(standalone, "dr_failover", run_id) == "failed"
    states = task_states(standalone, "dr_failover", run_id)
    assert states["failover_gate"] == "failed"
    assert {s for t, s in states.items() if t != "failover_gate"} == {"upstream_failed"}
    made = standalone.sandbox.aws_requests.since(mark)
    assert [r for r in made if r.mutating] == [], made  # nothing changed, not even a report written
    # At most the failure alert's look for an earlier alert of the same problem (an S3 read).
    assert {(r.service, r.operation.split(" ")[0]) for r in made} <= {("s3", "GET"), ("s3", "HEAD")}
    # One "[Refused]" message saying what to fix: not an incident, no severity, never a page.
    alerts = [m["payload"]["text"] for m in standalone.sandbox.slack.messages()]
    assert any(text.startswith("[Refused] production: dr_failover did not start") for text in alerts), alerts


def test_failover_rejected_at_the_gate_leaves_dns_untouched(live_world):
    standalone = live_world
    before = standalone.sandbox.platform.dr.failover_records()
    run_id = trigger(standalone, "dr_failover", {"confirm": "production", "reason": "game day: rejection path"})
    respond_at_the_gate(standalone, run_id, "Reject")
    mark = standalone.sandbox.aws_requests.mark()
    assert wait_for_run(standalone, "dr_failover", run_id) == "success"
    states = task_states(standalone, "dr_failover", run_id)
    assert states["failover_dns"] == "skipped" and states["failover_monitoring"] == "skipped"
    assert standalone.sandbox.platform.dr.failover_records() == before
    after_gate = [r for r in standalone.sandbox.aws_requests.since(mark) if r.mutating]
    # After the gate only the end message (SNS) and the report (S3) write anything.
    assert {(r.service, r.operation.split(" ")[0]) for r in after_gate} <= {("sns", "Publish"), ("s3", "PUT")}
    texts = [m["payload"]["text"] for m in standalone.sandbox.slack.messages()]
    assert any("DR FAILOVER REJECTED at the DNS gate" in t for t in texts), texts
    assert not any("COMPLETE" in t for t in texts)


def test_failover_approved_switches_dns_to_the_dr_region(live_world):
    standalone = live_world
    sandbox = standalone.sandbox
    stale = trigger(standalone, "dr_failover", {"confirm": "production", "reason": "INC-4242, stale copy present"})
    assert wait_for_run(standalone, "dr_failover", stale) == "failed"  # the rejected run's copy is too old
    [refusal] = [f for f in report(standalone, "dr_failover", stale)["findings"] if f["check"] == "failover.database"]
    assert refusal["severity"] == "P1" and "restored by an earlier failover" in refusal["summary"]
    assert task_states(standalone, "dr_failover", stale)["approve_dns_switch"] == "upstream_failed"
    remove_failover_copy(standalone)  # what the STOPPED message tells on-call to do, then trigger again
    sandbox.slack.clear()  # from here on, the approved run's messages only
    run_id = trigger(standalone, "dr_failover", {"confirm": "production", "reason": "us-east-1 outage INC-4242"})
    respond_at_the_gate(standalone, run_id, "Approve")
    assert wait_for_run(standalone, "dr_failover", run_id) == "success", task_states(standalone, "dr_failover", run_id)
    records = sandbox.platform.dr.failover_records()
    assert records["PRIMARY"] == sandbox.platform.dr.dr_alb_dns
    restored = sandbox.client("rds", "us-west-2").describe_db_instances(
        DBInstanceIdentifier=sandbox.config.disaster_recovery.failover_instance_id)["DBInstances"][0]
    assert restored["DBInstanceStatus"] == "available"
    texts = [m["payload"]["text"] for m in sandbox.slack.messages()]
    for stage in ("DR FAILOVER STARTED", "DR FAILOVER awaiting approval", "DR FAILOVER COMPLETE"):
        assert any(stage in t for t in texts), (stage, texts)
    # Each step's update between them: the channel is the failover's incident log.
    steps = [t.split(" — ", 1)[1].split(" (", 1)[0] for t in texts if t.startswith("🔧 production: DR failover")]
    assert sorted(steps) == ["1/6 DR infrastructure ready", "2/6 database restored in the DR region",
                             "3/6 application running in the DR region", "4/6 DNS switched",
                             "5/6 DR region validated", "6/6 monitoring in place"], texts
    incident_log = report(standalone, "dr_failover", run_id)
    checks = {f["check"]: f["status"] for f in incident_log["findings"]}
    assert checks["failover.dns"] == "ok" and checks["failover.validation.dns"] == "ok"
    assert "DR FAILOVER COMPLETE" in incident_log["measurements"]["notify_end"]["headline"]
    [decision] = [f for f in incident_log["findings"] if f["check"] == "failover.approval"]
    assert decision["summary"] == "approved by admin", decision
