"""Least privilege, proven by what the DAGs actually did: every AWS operation the end-to-end runs
made (recorded through botocore's event hooks by sandbox/aws_calls.py, in this process and in every
process of the real Airflow) is checked against the policies in include/iam/ its DAG is attached to.

It runs after every other end-to-end test (marker ``after_the_runs``); alone it has nothing to judge
and says so."""

from __future__ import annotations

from collections import defaultdict

import pytest

from sandbox.aws_calls import recorded
from solemate_maintenance import iam
from solemate_maintenance.config import PlatformConfig, load_config
from tests.iam_policy import action_of, allowed, is_read_only

pytestmark = [pytest.mark.e2e, pytest.mark.after_the_runs]

# The sandbox hands Airflow an AKIA… key (the identity the policies are for); its own seeding and the
# tests' checks sign with "testing".
AIRFLOW_IDENTITY = "AKIA"
# What a read-only DAG may still write: its own reports, status metrics, dashboard and alarm, the P1
# page, asking IAM to build the credential report, and CloudFormation to detect drift (which changes
# nothing, but IAM does not name it Describe). Named by the read-only policy's statements.
READ_ONLY_WRITES = {"s3:PutObject", "cloudwatch:PutMetricData", "cloudwatch:PutDashboard",
                    "cloudwatch:PutMetricAlarm", "sns:Publish", "iam:GenerateCredentialReport", "logs:StartQuery",
                    "logs:StopQuery", "cloudformation:DetectStackDrift"}


def sandbox_config() -> PlatformConfig:
    """The names the DAGs used: the shipped config's, plus the P1 topic the sandbox configures."""
    from moto.core import DEFAULT_ACCOUNT_ID

    from sandbox.platform import SNS_TOPIC

    config = load_config()
    topic = f"arn:aws:sns:{config.regions.primary}:{DEFAULT_ACCOUNT_ID}:{SNS_TOPIC}"
    return config.model_copy(update={"alerts": config.alerts.model_copy(update={"sns_topic_arn": topic})})


@pytest.fixture(scope="module")
def policies() -> dict[str, dict]:
    config = sandbox_config()
    return {name: iam.render(name, config) for name in iam.policy_names()}


@pytest.fixture(scope="module")
def events(aws_call_log) -> list[dict]:
    """Calls signed with the DAGs' identity and the tags their describes showed, in order."""
    made = [e for e in recorded(aws_call_log)
            if "observed_tags" in e or e.get("key_kind") == AIRFLOW_IDENTITY]
    if not any("operation" in e for e in made):
        pytest.fail(f"no AWS call was recorded in {aws_call_log}: this test judges the end-to-end runs, "
                    "run it with them (make test, or pytest tests/e2e)")
    return made


@pytest.fixture(scope="module")
def calls(events) -> list[dict]:
    return [e for e in events if "operation" in e]


def _identifier(call: dict) -> str:
    params = call["params"]
    return (params.get("DBInstanceIdentifier") or params.get("TargetDBInstanceIdentifier")
            or params.get("ResourceName", "").rpartition(":db:")[2])


def policies_for(call: dict) -> list[str]:
    """A task's calls: its DAG's policies. Outside tasks: the component's (the API server's dashboard,
    the triggerer's waits); the standalone process itself, its children's."""
    if call["dag_id"]:
        return iam.attachments()[call["dag_id"]]
    component = (call.get("component") or "").replace("_", "-")
    return iam.component_policies().get(component, ["readonly"])


def test_every_recorded_call_is_allowed_by_the_policies_of_its_dag(events, policies):
    # A resource's tags as the DAG could know them at the time: from the call that created it, or
    # from what describing it showed (for aws:ResourceTag conditions).
    tags: dict[str, dict[str, str]] = defaultdict(dict)
    refused = set()
    for event in events:
        if "observed_tags" in event:
            for identifier, seen in event["observed_tags"].items():
                tags[identifier] = seen
            continue
        names = policies_for(event)
        ok, why = allowed(event, [policies[n] for n in names], tags.get(_identifier(event), {}))
        if not ok:
            refused.add(f"{event['dag_id'] or event['component']}.{event['task_id']}: {why} (policies {names})")
        created = {t["Key"]: t["Value"] for t in event["params"].get("Tags") or [] if isinstance(t, dict)}
        if created and _identifier(event):
            tags[_identifier(event)] = {**tags[_identifier(event)], **created}
    assert not refused, "calls the shipped policies do not allow:\n" + "\n".join(sorted(refused))


def test_a_read_only_dag_makes_no_mutating_call_beyond_its_own_artifacts(calls):
    attached = iam.attachments()
    read_only_dags = {dag_id for dag_id, names in attached.items() if names == ["readonly"]}
    assert {"weekly_review", "monthly_review"} <= read_only_dags
    mutating = sorted({f"{c['dag_id']}.{c['task_id']}: {action_of(c)}" for c in calls
                       if (c["dag_id"] in read_only_dags or c["dag_id"] is None)
                       and not is_read_only(action_of(c)) and action_of(c) not in READ_ONLY_WRITES})
    assert not mutating, "read-only DAGs changed something:\n" + "\n".join(mutating)


def test_the_runs_covered_every_dag_and_the_mutating_work(calls):
    """The proof is only as wide as the runs: every DAG ran, and the restore, the drill and the
    failover made their scoped, mutating calls (so their policies were really exercised)."""
    by_dag = defaultdict(set)
    for call in calls:
        by_dag[call["dag_id"]].add(action_of(call))
    assert set(iam.attachments()) <= set(by_dag), sorted(set(iam.attachments()) - set(by_dag))
    assert {"rds:RestoreDBInstanceToPointInTime", "rds:DeleteDBInstance"} <= by_dag["weekly_backup_verification"]
    assert "rds:DeleteDBInstance" in by_dag["dr_drill"]
    assert "route53:ChangeResourceRecordSets" in by_dag["dr_failover"]
