"""The sandbox world: a moto server seeded with the SoleMate platform, plus the local servers.

Airflow reaches it only through standard mechanisms: ``AWS_ENDPOINT_URL`` (honoured by boto3 and
so by every provider hook) and ``AIRFLOW_CONN_*`` connections. Production code has no sandbox branch.

    with Sandbox() as sb:
        sb.seed(anchor, problems={"rds_high_cpu"})
        env = sb.env()          # for a subprocess, or os.environ.update(env)
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import string
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import yaml
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer

from sandbox import client_speedups, moto_monitoring, moto_patches, moto_rds, request_log
from sandbox.platform import SNS_TOPIC, Platform
from sandbox.postgres import EmbeddedPostgres
from sandbox.servers import HealthEndpoint, SlackSink, SmtpSink, free_port
from sandbox.tls import PUBLIC_NAME, PrivateCa, TlsEndpoint
from solemate_maintenance.config import DEFAULT_CONFIG_PATH, PlatformConfig


class Sandbox:
    """Start/stop the whole local world. Everything lives under one temp dir removed on stop."""

    def __init__(self, config_path: Path = DEFAULT_CONFIG_PATH, slack_critical: bool = False,
                 restore_seconds: float = 3.0, restore_timeout_minutes: float = 0.5, allow_failover: bool = False,
                 history_days: int = 36, mutating_queue: str | None = None) -> None:
        """``mutating_queue``: the config's ``workers.mutating_queue`` (a Celery Airflow's)."""
        self.history_days = history_days
        self.mutating_queue = mutating_queue
        self.base_config_path = config_path
        self.allow_failover = allow_failover
        self.slack_critical = slack_critical
        self.restore_seconds = restore_seconds
        self.restore_timeout_minutes = restore_timeout_minutes
        self.workdir = Path(tempfile.mkdtemp(prefix="solemate-sandbox-"))
        self._started: list[Any] = []
        self.platform: Platform | None = None
        self._clients: dict[tuple[str, str, str], Any] = {}

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Sandbox:
        try:
            moto_patches.apply()
            client_speedups.install()
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            self.moto_port = free_port()
            self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
            self.moto.start()
            self._started.append(self.moto)
            self.aws_requests = request_log.install(self.moto)
            # moto's backends live in this process, shared by every server and mock started in it: a
            # sandbox starts from an empty AWS, whatever an earlier one in the same process left.
            self._reset_moto()
            self.slack = SlackSink(self.workdir / "slack.jsonl").start()
            self._started.append(self.slack)
            self.health = HealthEndpoint().start()
            self._started.append(self.health)
            self.dr_health = HealthEndpoint().start()  # the DR region's load balancer, for dr_failover
            self._started.append(self.dr_health)
            # The public HTTPS endpoint, serving a certificate from the sandbox's own CA.
            self.ca = PrivateCa(self.workdir)
            self.tls = TlsEndpoint(self.workdir).start()
            self._started.append(self.tls)
            # Distinctive values for every secret that reaches Airflow, so that the end-to-end scans
            # can search for them (and their encodings) in everything a run prints, sends or writes.
            self.aws_access_key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits)
                                                      for _ in range(16))
            self.aws_secret_access_key = secrets.token_urlsafe(30)
            self.smtp_password = "smtp-" + secrets.token_urlsafe(12)
            self.smtp = SmtpSink(self.workdir / "mail.jsonl", login="maintenance", password=self.smtp_password).start()
            self._started.append(self.smtp)
            self.postgres = EmbeddedPostgres(self.workdir).start()
            self._started.append(self.postgres)
            # Business activity around now, so that a restore's newest row says how much data it lost.
            now = datetime.now(UTC)
            self.postgres.seed_activity(now - timedelta(days=10), now + timedelta(days=1))
            # RDS restores land in the embedded server, taking restore_seconds to become available.
            self.restores.reset()
            self.restores.data = self.postgres
            self.restores.restore_seconds = self.restore_seconds
            self.slack_token = "T0SANDBOX/B0SANDBOX/" + secrets.token_hex(12)
            self.slack_critical_token = "T0SANDBOX/B0CRITICAL/" + secrets.token_hex(12)
            self.config_path = self._write_config()
            self.config = PlatformConfig.model_validate(yaml.safe_load(self.config_path.read_text()))
        except BaseException:
            self.stop()
            raise
        return self

    def _reset_moto(self) -> None:
        import requests

        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=30).raise_for_status()
        moto_monitoring.reset()  # what the patches stage lives beside moto's backends

    @property
    def restores(self) -> moto_rds.RestoreBehaviour:
        """How the sandbox's RDS restores behave (timing, faults) and every restore requested."""
        return moto_rds.BEHAVIOUR

    def stop(self) -> None:
        self.restores.data = None
        self.restores.reset()
        if getattr(self, "moto", None) is not None and self.moto in self._started:
            try:
                self._reset_moto()  # leave no AWS state behind for the next sandbox or test
            except Exception:
                pass
        for component in reversed(self._started):
            try:
                component.stop()
            except Exception:  # keep stopping the rest; nothing may be left behind
                pass
        self._started.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- how Airflow reaches it ----------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def env(self) -> dict[str, str]:
        region = self.config.regions.primary
        slack = {"conn_type": "slackwebhook", "host": f"{self.slack.url}/services", "password": self.slack_token}
        env = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            # Airflow uses the aws_default connection's keys (below), not the environment's.
            "AWS_EC2_METADATA_DISABLED": "true",  # never look for an instance role off this machine
            "AWS_DEFAULT_REGION": region,
            "MAINTENANCE_CONFIG": str(self.config_path),
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({
                "conn_type": "aws", "login": self.aws_access_key_id, "password": self.aws_secret_access_key,
                "extra": {"region_name": region}}),
            "AIRFLOW_CONN_PLATFORM_DB": json.dumps(self.postgres.connection),
            "AIRFLOW_CONN_RESTORE_TEST_DB": json.dumps(self.postgres.restore_connection),
            "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(slack),
            "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps({
                "conn_type": "smtp", "host": "127.0.0.1", "port": self.smtp.port, "login": "maintenance",
                "password": self.smtp_password,
                "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "maintenance@solemate.example"}}),
        }
        if self.slack_critical:
            critical = {**slack, "host": f"{self.slack.url}/critical", "password": self.slack_critical_token}
            env["AIRFLOW_CONN_SLACK_CRITICAL"] = json.dumps(critical)
        return env

    def secrets(self) -> list[str]:
        """Values that must never appear in anything a run prints, sends or writes."""
        return [self.slack_token, self.slack_token.rsplit("/", 1)[1], self.slack_critical_token,
                self.slack_critical_token.rsplit("/", 1)[1], self.postgres.password, self.db_master_password,
                self.aws_access_key_id, self.aws_secret_access_key, self.smtp_password,
                self.postgres.validator_password,
                *(self.platform.estate.secret_values if self.platform else [])]

    def _write_config(self) -> Path:
        raw = yaml.safe_load(self.base_config_path.read_text())
        raw["resources"]["alb"]["health_endpoint"] = self.health.health_url
        raw["alerts"]["digest_email"] = ["platform-ops@solemate.example"]
        raw.setdefault("monthly_summary", {})["recipients"] = ["leadership@solemate.example"]
        # The SQL round trip includes connecting; on a busy 2-core test machine running three DAG runs
        # at once that alone passed 200 ms. The threshold is about RDS, not this machine.
        raw["checks"].setdefault("rds", {})["query_latency_ms"] = {"warning": 2000, "critical": 5000}
        # moto answers a Logs Insights query at once: look again soon, not after the 2 s AWS needs.
        raw["checks"].setdefault("security", {})["poll_seconds"] = 0.2
        # The embedded server started seconds ago: its usage statistics are as old as it is.
        raw["checks"].setdefault("database", {})["unused_index_min_stats_days"] = 0
        raw.setdefault("checks", {}).setdefault("certificates", {})["endpoints"] = [
            {"host": "127.0.0.1", "port": self.tls.port, "server_name": PUBLIC_NAME,
             "ca_bundle": str(self.ca.bundle_path)}]
        raw["alerts"]["sns_topic_arn"] = f"arn:aws:sns:{raw['regions']['primary']}:{DEFAULT_ACCOUNT_ID}:{SNS_TOPIC}"
        # Drift detection answers in a second here.
        raw.setdefault("monitoring", {}).setdefault("drift", {})["poll_seconds"] = 1
        # Restores take seconds here, not minutes: look often, give up soon.
        raw.setdefault("restore_test", {}).update({
            "poll_seconds": 1, "restore_timeout_minutes": self.restore_timeout_minutes, "delete_timeout_minutes": 1})
        recovery = raw.setdefault("disaster_recovery", {})
        recovery.update({"allow_failover": self.allow_failover, "dr_health_endpoint": self.dr_health.health_url,
                         "failover_timeout_minutes": 1})
        recovery.setdefault("drill", {}).update({
            "poll_seconds": 1, "restore_timeout_minutes": self.restore_timeout_minutes, "task_timeout_minutes": 1,
            "delete_timeout_minutes": 1})
        raw.setdefault("workers", {})["mutating_queue"] = self.mutating_queue
        path = self.workdir / "platform.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    def client(self, service: str, region: str | None = None) -> Any:
        # One client per service and region: creating one costs ~60 ms, and a seed asks for dozens.
        key = (service, region or self.config.regions.primary, self.endpoint_url)
        if key not in self._clients:
            self._clients[key] = boto3.client(service, endpoint_url=self.endpoint_url, region_name=key[1],
                                              aws_access_key_id="testing", aws_secret_access_key="testing")
        return self._clients[key]

    # -- the platform --------------------------------------------------------------------------
    def seed(self, anchor: datetime, problems: frozenset[str] | set[str] = frozenset()) -> None:
        """Create the platform (once), then metrics for the 8 days up to `anchor`, with `problems`."""
        self.seed_days({anchor: problems})

    def seed_days(self, days: dict[datetime, frozenset[str] | set[str]], history_days: int | None = None) -> None:
        """Several days at once, each logical date with its own problems (see Platform.seed_days);
        `history_days`: how far back the hourly metrics reach from now on (a monthly backfill needs months)."""
        if self.platform is None:
            self.platform = Platform(self.config, self.client, self.health, tls=self.tls, ca=self.ca,
                                     history_days=self.history_days)
            self.platform.create()
        self.platform.seed_days(days, history_days)
        self.postgres.apply_review_problems(days[max(days)])

    def stage(self, episodes: list[tuple[str, datetime, datetime]]) -> None:
        """Timed problems on the seeded metrics, e.g. ("rds_cpu", 12:00, 15:00) (sandbox.metrics.EPISODES)."""
        self.platform.stage(episodes)

    @property
    def alb_dimension(self) -> str:
        return self.platform.alb_dimension

    @property
    def db_master_password(self) -> str:
        return self.platform.db_master_password


def sandbox_env_for_subprocess(sandbox: Sandbox, airflow_home: Path) -> dict[str, str]:
    """The full environment for an Airflow CLI process run against the sandbox."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, **sandbox.env()}
    env.update(airflow_env(airflow_home, repo))
    return env


def airflow_env(airflow_home: Path, repo: Path) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(repo / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join([str(repo / "plugins"), str(repo)]),
    }
