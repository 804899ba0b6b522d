"""The sandbox starts on free loopback ports and leaves no process or temp directory behind."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import psutil
import pytest
import requests

from sandbox.world import Sandbox


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_sandbox_lifecycle_leaves_nothing_behind():
    with Sandbox() as world:
        workdir = world.workdir
        ports = [world.moto_port, world.slack.port, world.health.port]
        postgres_pid = world.postgres.server.get_pid()
        assert all(port_open(p) for p in ports)
        assert psutil.pid_exists(postgres_pid)
        assert requests.get(world.health.health_url, timeout=5).status_code == 200
        env = world.env()
        assert env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{world.moto_port}"
        assert set(env) >= {"AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW_CONN_PLATFORM_DB", "AIRFLOW_CONN_SLACK_ALERTS",
                            "MAINTENANCE_CONFIG"}
    assert not workdir.exists()
    assert not any(port_open(p) for p in ports)
    assert not psutil.pid_exists(postgres_pid) or psutil.Process(postgres_pid).status() == psutil.STATUS_ZOMBIE


@pytest.fixture(scope="module")
def world():
    with Sandbox() as sandbox:
        yield sandbox


def test_unknown_problem_is_refused_before_anything_changes(world):
    with pytest.raises(ValueError, match="unknown sandbox problems: \\['typo'\\]"):
        world.seed(datetime(2026, 11, 20, 2, tzinfo=UTC), {"typo"})


def _max_rds_cpu(world, end):
    response = world.client("cloudwatch").get_metric_data(
        MetricDataQueries=[{"Id": "cpu", "MetricStat": {"Metric": {
            "Namespace": "AWS/RDS", "MetricName": "CPUUtilization",
            "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": world.config.resources.rds.instance_id}]},
            "Period": 300, "Stat": "Maximum"}}],
        StartTime=end - timedelta(hours=1), EndTime=end)
    return max(response["MetricDataResults"][0]["Values"])


def test_several_days_each_with_their_own_problems(world):
    days = [datetime(2026, 11, d, 2, tzinfo=UTC) for d in (20, 21, 22)]
    world.seed_days({days[0]: {"rds_high_cpu"}, days[1]: set(), days[2]: {"rds_high_cpu", "endpoint_down"}})
    assert [_max_rds_cpu(world, d) > 90 for d in days] == [True, False, True]
    assert requests.get(world.health.health_url, timeout=5).status_code == 503  # the latest day's live state


def test_live_state_problems_only_on_the_latest_day(world):
    with pytest.raises(ValueError, match="state problems describe the live platform"):
        world.seed_days({datetime(2026, 11, 20, 2, tzinfo=UTC): {"ecs_under_desired"},
                         datetime(2026, 11, 21, 2, tzinfo=UTC): set()})


def test_smtp_sink_accepts_only_its_own_password(world):
    import smtplib

    with smtplib.SMTP("127.0.0.1", world.smtp.port, timeout=5) as smtp:
        smtp.login("maintenance", world.smtp_password)
    with smtplib.SMTP("127.0.0.1", world.smtp.port, timeout=5) as smtp, \
            pytest.raises(smtplib.SMTPAuthenticationError):
        smtp.login("maintenance", "wrong-password")


def test_every_secret_is_distinctive(world):
    secrets = world.secrets()
    assert len(secrets) == len(set(secrets)) >= 9
    assert all(len(s) >= 12 and s not in ("testing", "password") for s in secrets)


def test_a_second_sandbox_in_the_same_process_starts_from_an_empty_aws():
    """moto's backends are process-global: modules that each start a sandbox must not collide."""
    anchor = datetime(2026, 11, 20, 2, tzinfo=UTC)
    for _ in range(2):
        with Sandbox() as sandbox:
            sandbox.seed(anchor)
            assert len(sandbox.client("elbv2").describe_target_groups()["TargetGroups"]) == 1


def test_boto3_sessions_in_a_sandbox_process_share_one_parsed_copy_of_botocores_data():
    """sandbox/client_speedups.py: every client the provider's hooks build (one session each) reads
    the same parsed service models instead of parsing the JSON again."""
    import boto3

    from sandbox import client_speedups

    client_speedups.install()
    first, second = boto3.session.Session(), boto3.session.Session()
    loader = first._session.get_component("data_loader")
    assert loader is second._session.get_component("data_loader")
    assert loader.load_service_model("s3", "service-2") is second._session.get_component(
        "data_loader").load_service_model("s3", "service-2")


def test_the_hooks_user_agent_names_the_calling_operator_as_the_provider_does():
    """sandbox/client_speedups.py: the frame walk finds the same caller as the provider's
    inspect.stack() (kept as the reference), including none at all."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

    from sandbox import client_speedups

    client_speedups.install()

    def reference(target: str) -> str | None:  # the provider's own implementation
        import inspect

        frames = [f for f in inspect.stack() if f.function == target]
        return type(frames[0][0].f_locals["self"]).__name__ if frames else None

    class SomeOperator:
        def execute(self):
            return (AwsGenericHook._find_operator_class_name("execute"), reference("execute"),
                    AwsGenericHook._find_operator_class_name("poke"), reference("poke"))

    fast, slow, no_poke, no_poke_reference = SomeOperator().execute()
    assert fast == slow == "SomeOperator" and no_poke is None and no_poke_reference is None
