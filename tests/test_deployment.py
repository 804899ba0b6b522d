"""The deployment files, checked without Docker or Kubernetes (neither runs here nor in CI):
docker-compose.yaml against the Compose specification and against what the DAGs need, the Dockerfile
against the pins, .env.example for completeness and for secrets, helm-values.yaml against Airflow's
own configuration options."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from solemate_maintenance.config import load_config

REPO = Path(__file__).resolve().parents[1]
# Options of providers the official image ships and this venv does not install (none since the Celery
# provider is pinned in requirements.txt: its options are checked like Airflow's own).
IMAGE_ONLY_SECTIONS: set[str] = set()
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
                    "airflow-triggerer"}


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
               str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    pairs = {}
    for number, line in enumerate((REPO / ".env.example").read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", line), f".env.example line {number} is not NAME=value: {line}"
            name, value = line.split("=", 1)
            assert name not in pairs, f".env.example sets {name} twice"
            pairs[name] = value
    return pairs


def test_the_compose_file_follows_the_compose_specification(tmp_path):
    result = check_jsonschema(REPO / "docker-compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    # The validator does reject a file that breaks the specification (a health check with no test list).
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text("services:\n  airflow-worker:\n    image: x\n    healthcheck:\n      test: 5\n      retries: many\n")
    refused = check_jsonschema(broken)
    assert refused.returncode != 0 and "airflow-worker" in refused.stdout + refused.stderr


def test_the_services_are_the_official_celery_shape_with_health_checks(compose):
    services = compose["services"]
    assert set(services) == AIRFLOW_SERVICES | {"postgres", "redis", "airflow-init"}
    for name in AIRFLOW_SERVICES | {"postgres", "redis"}:
        check = services[name].get("healthcheck", {})
        assert check.get("test") and check.get("retries"), f"{name} has no health check"
    commands = {name: services[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands == {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                        "airflow-dag-processor": "dag-processor", "airflow-worker": "celery worker",
                        "airflow-triggerer": "triggerer"}
    for name in AIRFLOW_SERVICES:
        needs = services[name]["depends_on"]
        assert needs["airflow-init"]["condition"] == "service_completed_successfully", name
        assert needs["postgres"]["condition"] == needs["redis"]["condition"] == "service_healthy", name
    # Workers fetch their task tokens from the api-server: they wait for it to be healthy.
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    init = services["airflow-init"]["environment"]
    assert init["_AIRFLOW_DB_MIGRATE"] == "true" and init["_AIRFLOW_WWW_USER_CREATE"] == "true"


def test_every_airflow_service_runs_our_image_with_our_code_mounted_and_celery(compose):
    for name in AIRFLOW_SERVICES | {"airflow-init"}:
        service = compose["services"][name]
        assert service["build"] == "." and service["image"].startswith("${SOLEMATE_IMAGE:-solemate-maintenance"), name
        mounts = {volume.split(":")[1] for volume in service["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= mounts, name
        environment = service["environment"]
        assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert environment["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://"), name
        assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://"), name
        assert environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    # The mounted folders exist where the compose file expects them (relative to the file).
    for folder in ("dags", "plugins", "include"):
        assert (REPO / folder).is_dir()


def airflow_has_option(section: str, key: str) -> bool:
    from airflow.configuration import conf

    return key in conf.configuration_description.get(section, {}).get("options", {})


def test_every_setting_the_compose_file_gives_airflow_is_a_real_option(compose):
    environment = compose["x-airflow-common"]["environment"]
    for name in environment:
        if name.startswith("AIRFLOW__"):
            section, key = name.removeprefix("AIRFLOW__").lower().split("__", 1)
            assert section in IMAGE_ONLY_SECTIONS or airflow_has_option(section, key), f"{name}: Airflow has no [{section}] {key}"


def test_every_connection_and_setting_the_dags_read_is_wired_from_the_env_file(compose, env_example):
    config = load_config()
    conn_ids = {"aws_default", config.resources.rds.db_conn_id, config.restore_test.conn_id,
                config.alerts.slack_conn_id, config.alerts.slack_critical_conn_id, config.alerts.smtp_conn_id}
    needed = {f"AIRFLOW_CONN_{conn_id.upper()}" for conn_id in conn_ids} | {"MAINTENANCE_CONFIG"}
    for name in AIRFLOW_SERVICES | {"airflow-init"}:
        environment = compose["services"][name]["environment"]
        missing = needed - set(environment)
        assert not missing, f"{name} does not get {sorted(missing)}"
        for variable in needed:
            assert re.fullmatch(rf"\$\{{{variable}(:[-?].*)?\}}", environment[variable]), \
                f"{name}: {variable} is not taken from .env: {environment[variable]}"
    # Every variable the compose file interpolates ($$ is the container shell's) is in .env.example, so `cp .env.example .env` names them all.
    interpolated = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", (REPO / "docker-compose.yaml").read_text()))
    assert interpolated - {"SOLEMATE_IMAGE"} <= set(env_example), sorted(interpolated - set(env_example))
    # Required ones fail `docker compose up` with their name while unset.
    required = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):\?set \1 in \.env\}", (REPO / "docker-compose.yaml").read_text()))
    assert {"AIRFLOW_CONN_PLATFORM_DB", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET"} <= required


def test_airflow_housekeeping_reaches_the_metadata_database_the_deployment_uses(compose):
    environment = compose["x-airflow-common"]["environment"]
    connection = json.loads(environment[f"AIRFLOW_CONN_{load_config().airflow_housekeeping.metadata_conn_id.upper()}"])
    assert connection["extra"]["sql_alchemy_conn"] == environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def test_the_env_example_holds_no_secret(env_example):
    secret_names = [name for name in env_example if re.search(r"PASSWORD|SECRET|FERNET|KEY$", name)]
    assert {"AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_DB_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET"} <= set(secret_names)
    assert all(env_example[name] == "" for name in secret_names), "a secret has a value in .env.example"
    for name, value in env_example.items():
        # Passwords inside connection URIs and JSON are placeholders, never values.
        for password in re.findall(r'://[^:/@]+:([^@]*)@|"password": "([^"]*)"', value):
            assert "REPLACE_ME" in "".join(password), f"{name} carries a password in .env.example"
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()
    # The AWS connection carries no keys: the host's role signs the calls.
    aws = env_example["AIRFLOW_CONN_AWS_DEFAULT"]
    assert "login" not in aws and "password" not in aws and "aws_secret_access_key" not in aws


def test_the_image_is_the_pinned_airflow_with_our_pins_and_code():
    dockerfile = (REPO / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    [pinned] = re.findall(r"^apache-airflow==(\S+)", (REPO / "requirements.txt").read_text(), re.M)
    assert base == f"apache/airflow:{pinned}"
    assert re.search(r"pip install .*-r \S*requirements\.txt -c \S*constraints\.txt", dockerfile)
    for folder in ("dags", "plugins", "include"):
        assert re.search(rf"^COPY .*{folder}/ /opt/airflow/{folder}/$", dockerfile, re.M), folder
    # The image installs what a deployment runs, not the sandbox or the test tools.
    runtime = (REPO / "requirements.txt").read_text()
    assert "moto" not in runtime and "pytest" not in runtime and "pgserver" not in runtime
    # Every requirement is pinned, in both files.
    for path in ("requirements.txt", "requirements-dev.txt"):
        for line in (REPO / path).read_text().splitlines():
            if line and not line.startswith(("#", "-r ")):
                assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line), f"{path}: {line} is not pinned"


def _pins(path: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / path).read_text().splitlines():
        if line and not line.startswith(("#", "-r ")):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version
    return pins


def test_what_the_image_installs_resolves_with_the_constraints_and_each_pin_agrees():
    """The image installs requirements.txt with constraints.txt; the tests' venv is the same set plus the
    sandbox and test tools, installed the same way. So: pip finds no conflict in it (celery 5.7's kombu
    once needed another `packaging` than Airflow's), every distribution in it is locked in constraints.txt
    at the version installed, and requirements.txt agrees with the lock."""
    import importlib.metadata

    checked = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    locked = _pins("constraints.txt")
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if name in ("pip", "setuptools", "wheel"):
            continue
        assert locked.get(name) == dist.version, f"{name} {dist.version} is installed but constraints.txt says " \
                                                 f"{locked.get(name)}"
    for name, version in {**_pins("requirements.txt"), **_pins("requirements-dev.txt")}.items():
        assert locked[name] == version, f"{name}: requirements say {version}, constraints.txt {locked[name]}"
    assert "apache-airflow-providers-celery" in _pins("requirements.txt")  # the deployment's executor


def test_the_helm_values_use_real_chart_keys_and_airflow_options():
    from importlib import import_module

    values = yaml.safe_load((REPO / "helm-values.yaml").read_text())
    [base] = re.findall(r"^FROM apache/airflow:(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert values["airflowVersion"] == base  # the chart picks components (api-server, dag-processor) by it
    assert values["executor"] in ("CeleryExecutor", "KubernetesExecutor")
    # Shared secrets come from Secrets the platform team keeps: a generated one changes on every render.
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values[key], key
    assert values["data"]["metadataSecretName"] and values["postgresql"]["enabled"] is False
    assert values["triggerer"]["replicas"] >= 2
    assert values["images"]["airflow"]["repository"] == "solemate-maintenance"
    for section, options in values["config"].items():
        for key in options:
            assert airflow_has_option(section, key), f"helm-values.yaml: Airflow has no [{section}] {key}"
    module, _, name = values["config"]["secrets"]["backend"].rpartition(".")
    assert hasattr(import_module(module), name)  # the secrets backend exists in our pins
    assert values["config"]["logging"]["remote_log_conn_id"] == "aws_default"
    assert not re.search(r"(password|secret_key|fernet_key)\s*:\s*\S", (REPO / "helm-values.yaml").read_text(), re.I)
