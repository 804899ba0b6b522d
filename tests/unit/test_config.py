"""A broken config names the file, the key path and the reason, on one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from solemate_maintenance.config import DEFAULT_CONFIG_PATH, ConfigError, load_config, parse_config

SHIPPED = DEFAULT_CONFIG_PATH.read_text()


def test_shipped_config_describes_the_platform():
    config = load_config(DEFAULT_CONFIG_PATH)
    assert config.regions.primary == "us-east-1" and config.regions.dr == "us-west-2"
    assert config.resources.ecs.services[0].name == "solemate-backend"
    assert (config.resources.ecs.services[0].min_tasks, config.resources.ecs.services[0].max_tasks) == (2, 20)
    assert config.kpis.response_time_p95_ms == 500 and config.kpis.availability_percent == 99.9
    assert config.disaster_recovery.allow_failover is False  # destructive things are off by default


def edited(path: tuple, value) -> str:
    raw = yaml.safe_load(SHIPPED)
    node = raw
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return yaml.safe_dump(raw)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(SHIPPED.replace("regions:\n", "regions:\n  - broken\n", 1),
                     "platform.yaml: (YAML syntax) line", id="yaml-syntax"),
        pytest.param(edited(("reports", "bucket"), KeyError),
                     "platform.yaml: reports.bucket: required key is missing", id="missing-key"),
        pytest.param(edited(("resources", "ecs", "services", 0, "min_tasks"), "two"),
                     "platform.yaml: resources.ecs.services[0].min_tasks: Input should be a valid integer", id="wrong-type"),
        pytest.param(edited(("checks", "rds", "cpu_percnt"), {"warning": 1, "critical": 2}),
                     "platform.yaml: checks.rds.cpu_percnt: unknown key (misspelt?)", id="unknown-key"),
        pytest.param(edited(("checks", "ecs", "cpu_percent"), {"warning": 70, "critical": 180}),
                     "platform.yaml: checks.ecs.cpu_percent.critical: Input should be less than or equal to 100 (got 180)",
                     id="out-of-range"),
        pytest.param(edited(("checks", "ecs", "cpu_percent"), {"warning": 90, "critical": 80}),
                     "platform.yaml: checks.ecs.cpu_percent: warning (90.0) must not exceed critical (80.0)",
                     id="thresholds-inverted"),
        pytest.param(edited(("regions", "dr"), "us-weast-2"),
                     "platform.yaml: regions.dr: unknown AWS region 'us-weast-2'", id="unknown-region"),
        pytest.param(edited(("alerts", "severities"), {"P1": {"description": "x", "color": "#ff0000"}}),
                     "platform.yaml: alerts.severities: missing severity levels: P2, P3, P4", id="missing-severity"),
    ],
)
def test_config_errors_are_one_clear_line(text, expected):
    with pytest.raises(ConfigError) as excinfo:
        parse_config(text, "platform.yaml")
    message = str(excinfo.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_unreadable_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: \(file\) cannot be read"):
        load_config(tmp_path / "missing.yaml")


def test_env_var_selects_the_file(tmp_path, monkeypatch):
    other = tmp_path / "staging.yaml"
    other.write_text(SHIPPED.replace("environment: production", "environment: staging"))
    monkeypatch.setenv("MAINTENANCE_CONFIG", str(other))
    assert load_config().environment == "staging"


def test_edited_file_is_read_again(tmp_path):
    path = tmp_path / "platform.yaml"
    path.write_text(SHIPPED)
    assert load_config(path).environment == "production"
    path.write_text(SHIPPED.replace("environment: production", "environment: prod-eu"))
    import os

    os.utime(path, (1, 1))  # a different mtime even within the filesystem's timestamp resolution
    assert load_config(path).environment == "prod-eu"


def test_broken_config_is_one_import_error_line_in_airflow(tmp_path):
    """What the Airflow UI shows: the DAG file's import error ends with file, key and reason."""
    broken = tmp_path / "platform.yaml"
    broken.write_text(edited(("checks", "rds", "cpu_percent"), {"warning": 70, "critical": 150}))
    script = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder='dags')\n"
        "print(repr(list(bag.import_errors.values())))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    env = {**__import__("os").environ, "MAINTENANCE_CONFIG": str(broken),
           "PYTHONPATH": f"{repo / 'plugins'}:{repo}"}
    result = subprocess.run([sys.executable, "-c", script], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    errors = eval(result.stdout.strip().splitlines()[-1])  # noqa: S307 - our own repr output
    assert len(errors) == 1
    last_line = errors[0].strip().splitlines()[-1]
    assert last_line == (f"solemate_maintenance.config.ConfigError: {broken}: checks.rds.cpu_percent.critical: "
                         "Input should be less than or equal to 100 (got 150)")
