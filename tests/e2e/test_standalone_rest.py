"""A script's (or the UI's) view of daily_maintenance through the official REST client: unpause it,
trigger it for a chosen logical date, wait, read the run's report; a conf the DAG's form refuses is
HTTP 400 and creates no run. (The three-day backfill is test_standalone_backfill.py, the DR forms
test_standalone_dr.py: the same running Airflow.)"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TRIGGERED_DAY as DAY  # later than the backfilled days

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_trigger_daily_for_a_logical_date_and_read_its_report(standalone):
    import airflow_client.client as client

    standalone.sandbox.seed_days({DAY: {"rds_high_cpu"}})
    api = standalone.client()
    dags, runs, task_instances = client.DAGApi(api), client.DagRunApi(api), client.TaskInstanceApi(api)
    dags.patch_dag("daily_maintenance", client.DAGPatchBody(is_paused=False))
    assert dags.get_dag("daily_maintenance").is_paused is False
    run = runs.trigger_dag_run("daily_maintenance", client.TriggerDAGRunPostBody(logical_date=DAY, conf={}))
    assert run.logical_date == DAY and run.run_type.value == "manual"

    def finished() -> bool:
        return runs.get_dag_run("daily_maintenance", run.dag_run_id).state.value in ("success", "failed")

    standalone.wait_for(finished, 420, f"daily_maintenance {run.dag_run_id}")
    # A P2 finding fails the run (the verdict task), and the report says which and why.
    assert runs.get_dag_run("daily_maintenance", run.dag_run_id).state.value == "failed"
    states = {ti.task_id: ti.state.value for ti in
              task_instances.get_task_instances("daily_maintenance", run.dag_run_id).task_instances}
    assert states["report"] == "success" and states["run_verdict"] == "failed"
    report = standalone.report(run.dag_run_id)
    assert report["run_id"] == run.dag_run_id and report["logical_date"] == DAY.isoformat()
    problems = {f["check"] for f in report["findings"] if f["status"] in ("warning", "critical")}
    assert problems == {"rds.cpu_utilization"}


def test_a_conf_the_form_refuses_is_http_400_and_creates_no_run(standalone):
    import airflow_client.client as client
    from airflow_client.client.exceptions import ApiException

    runs = client.DagRunApi(standalone.client())
    before = runs.get_dag_runs("dr_failover").total_entries
    with pytest.raises(ApiException) as refused:
        runs.trigger_dag_run("dr_failover", client.TriggerDAGRunPostBody(
            logical_date=None, conf={"confirm": "production" * 10, "reason": "drill"}))
    assert refused.value.status == 400 and "confirm" in str(refused.value.body)
    assert runs.get_dag_runs("dr_failover").total_entries == before
