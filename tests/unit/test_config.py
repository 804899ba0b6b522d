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


ALARM = {"name": "x-{service}-cpu", "severity": "warning", "namespace": "AWS/ECS", "metric": "CPUUtilization",
         "dimensions": {"ClusterName": "{cluster}", "ServiceName": "{service}"}, "threshold": 80,
         "comparison": "GreaterThanThreshold", "period_seconds": 300}


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
        pytest.param(edited(("alerts", "severities"), {"P5": {"description": "x", "color": "#ff0000"}}),
                     "platform.yaml: alerts.severities.P5.[key]: Input should be 'P1', 'P2', 'P3' or 'P4'",
                     id="unknown-severity"),
        pytest.param(edited(("log_lifecycle", "classes", "access", "cloudwatch_days"), 10),
                     "platform.yaml: log_lifecycle.classes.access.cloudwatch_days: CloudWatch Logs "
                     "accepts only 1, 3, 5, 7, 14, 30", id="log-retention-not-allowed"),
        pytest.param(edited(("log_lifecycle", "classes", "application", "archive", "transitions", 0, "after_days"), 7),
                     "platform.yaml: log_lifecycle.classes.application.archive.transitions[0]: S3 moves "
                     "objects to STANDARD_IA no sooner than 30 days", id="ia-too-soon"),
        pytest.param(edited(("log_lifecycle", "classes", "access", "archive", "expire_after_days"), "30"),
                     "platform.yaml: log_lifecycle.classes.access.archive.expire_after_days: Input should be a valid "
                     "integer", id="expiry-as-text"),
        pytest.param(edited(("config_backup", "secret_name_prefixes"), [f"p{i}/" for i in range(11)]),
                     "platform.yaml: config_backup.secret_name_prefixes: List should have at most 10 items",
                     id="too-many-secret-prefixes"),
        pytest.param(edited(("checks", "security", "open_ingress_allowed", 0, "ports"), [443, 70000]),
                     "platform.yaml: checks.security.open_ingress_allowed[0].ports[1]: Input should be less than or "
                     "equal to 65535", id="port-out-of-range"),
        # Safety prefixes: a throw-away prefix that covers a database that must live.
        pytest.param(edited(("restore_test", "instance_prefix"), "production"),
                     "platform.yaml: restore_test.instance_prefix: 'production' would name 'production-postgres' "
                     "(resources.rds.instance_id) a throw-away copy", id="restore-prefix-covers-production"),
        pytest.param(edited(("restore_test", "instance_prefix"), "production-postgres"),
                     "platform.yaml: restore_test.instance_prefix: 'production-postgres' would name "
                     "'production-postgres'", id="restore-prefix-is-production"),
        pytest.param(edited(("disaster_recovery", "drill", "instance_prefix"), "production-postgres"),
                     "platform.yaml: disaster_recovery.drill.instance_prefix: 'production-postgres' would name "
                     "'production-postgres'", id="drill-prefix-covers-production"),
        pytest.param(edited(("disaster_recovery", "failover_instance_id"), "dr-drill-kept"),
                     "platform.yaml: disaster_recovery.drill.instance_prefix: 'dr-drill' would name 'dr-drill-kept' "
                     "(disaster_recovery.failover_instance_id)", id="drill-prefix-covers-failover-db"),
        pytest.param(edited(("disaster_recovery", "drill", "instance_prefix"), "restore-test-dr"),
                     "platform.yaml: disaster_recovery.drill.instance_prefix: 'restore-test-dr' overlaps "
                     "restore_test.instance_prefix 'restore-test'", id="drill-and-restore-prefixes-overlap"),
        # Cross-field consistency.
        pytest.param(edited(("disaster_recovery", "record_name"), "www.notsolemate.example."),
                     "platform.yaml: disaster_recovery: record_name 'www.notsolemate.example.' is not in hosted_zone "
                     "'solemate.example.'", id="record-name-suffix-not-label"),
        pytest.param(edited(("log_lifecycle", "classes", "security", "archive"),
                            {"bucket": "solemate-logs-access", "expire_after_days": 730}),
                     "platform.yaml: log_lifecycle: classes 'access' and 'security' archive to the same place",
                     id="two-log-classes-one-archive"),
        pytest.param(edited(("log_lifecycle", "classes", "security", "log_groups"), ["/alb/*"]),
                     "platform.yaml: log_lifecycle: log group pattern '/alb/*' is in classes 'access' and 'security'",
                     id="one-pattern-two-classes"),
        pytest.param(edited(("log_lifecycle", "classes", "access", "archive"),
                            {"bucket": "solemate-maintenance-reports", "expire_after_days": 30}),
                     "platform.yaml: log_lifecycle.classes.access.archive: bucket 'solemate-maintenance-reports' "
                     "prefix '' covers the reports", id="log-expiry-would-delete-reports"),
        pytest.param(edited(("disaster_recovery", "asset_buckets"),
                            [{"source_bucket": "solemate-assets", "replica_bucket": "solemate-assets"}]),
                     "platform.yaml: disaster_recovery.asset_buckets[0]: source_bucket and replica_bucket are both",
                     id="asset-bucket-its-own-replica"),
        pytest.param(edited(("checks", "unused_resources", "prices", "ebs_gb_month"), {"gp3": -0.08}),
                     "platform.yaml: checks.unused_resources.prices.ebs_gb_month.gp3: Input should be greater than "
                     "or equal to 0", id="negative-price"),
        # On call: reachable contacts, the chain in order, Slack ids rather than names.
        pytest.param(edited(("alerts", "on_call"), {"primary": {"name": "Ana", "slack": "U0ANA1"},
                                                    "secondary": {"name": "Ben"}}),
                     "platform.yaml: alerts.on_call.secondary: contact 'Ben' has no slack, email or sns_topic_arn: "
                     "nobody could be reached", id="unreachable-contact"),
        pytest.param(edited(("alerts", "on_call"), {"secondary": {"name": "Ben", "email": "ben@solemate.example"}}),
                     "platform.yaml: alerts.on_call: a secondary or escalation contact needs a primary first",
                     id="secondary-without-primary"),
        pytest.param(edited(("alerts", "on_call"), {"primary": {"name": "Ana", "slack": "@ana"}}),
                     "platform.yaml: alerts.on_call.primary.slack: String should match pattern",
                     id="slack-name-instead-of-id"),
        pytest.param(edited(("alerts", "severities"), {"P1": {"response_minutes": 0}}),
                     "platform.yaml: alerts.severities.P1.response_minutes: Input should be greater than 0",
                     id="no-response-time"),
        pytest.param(edited(("alerts", "pagerduty"), {"severities": ["P5"]}),
                     "platform.yaml: alerts.pagerduty.severities[0]:", id="pagerduty-unknown-severity"),
        # Rules AWS itself enforces.
        pytest.param(edited(("backups", "rules", 0, "schedule"), "cron(0 2 * * * *)"),
                     "platform.yaml: backups.rules[0].schedule: 'cron(0 2 * * * *)': AWS needs '?' in exactly one "
                     "of day-of-month and day-of-week", id="cron-without-question-mark"),
        pytest.param(edited(("backups", "rules", 0, "schedule"), "cron(0/15 * * * ? *)"),
                     "platform.yaml: backups.rules[0].schedule: 'cron(0/15 * * * ? *)': AWS Backup runs a rule at "
                     "most once an hour", id="backup-more-than-hourly"),
        pytest.param(edited(("reports", "bucket"), "solemate..reports"),
                     "platform.yaml: reports.bucket: S3 bucket names cannot contain '..'", id="bucket-double-dot"),
        pytest.param(edited(("reports", "bucket"), "192.168.1.10"),
                     "platform.yaml: reports.bucket: S3 bucket names cannot look like an IP address",
                     id="bucket-ip-address"),
        pytest.param(edited(("log_lifecycle", "classes", "application", "archive", "transitions"),
                            [{"after_days": 30, "storage_class": "GLACIER"},
                             {"after_days": 120, "storage_class": "STANDARD_IA"}]),
                     "platform.yaml: log_lifecycle.classes.application.archive: S3 cannot move objects from GLACIER "
                     "to STANDARD_IA", id="transition-up-the-waterfall"),
        pytest.param(edited(("log_lifecycle", "classes", "application", "archive", "transitions"),
                            [{"after_days": 30, "storage_class": "STANDARD_IA"},
                             {"after_days": 45, "storage_class": "GLACIER"}]),
                     "platform.yaml: log_lifecycle.classes.application.archive: S3 keeps objects in STANDARD_IA at "
                     "least 30 days", id="ia-left-too-soon"),
        pytest.param(edited(("log_lifecycle", "classes", "application", "archive", "transitions"),
                            [{"after_days": 30, "storage_class": "ONEZONE_IA"},
                             {"after_days": 90, "storage_class": "GLACIER_IR"}]),
                     "platform.yaml: log_lifecycle.classes.application.archive: S3 cannot move objects from ONEZONE_IA "
                     "to GLACIER_IR", id="onezone-to-glacier-ir"),
        pytest.param(yaml.safe_dump({**yaml.safe_load(edited(("resources", "rds", "instance_id"), "Production-DB")),
                                     "restore_test": {**yaml.safe_load(SHIPPED)["restore_test"],
                                                      "instance_prefix": "production"}}),
                     "platform.yaml: restore_test.instance_prefix: 'production' would name 'Production-DB'",
                     id="prefix-covers-production-in-another-case"),
        pytest.param(yaml.safe_dump({**yaml.safe_load(SHIPPED), "reports": {"bucket": "solemate-logs-access",
                                                                           "prefix": "/reports"}}),
                     "platform.yaml: log_lifecycle.classes.access.archive: bucket 'solemate-logs-access' prefix '' "
                     "covers the reports (reports.prefix '/reports')", id="reports-prefix-with-slashes"),
        pytest.param(edited(("monitoring", "alarms"), [{**ALARM, "evaluation_periods": 300}]),
                     "platform.yaml: monitoring.alarms[0]: alarm 'x-{service}-cpu': period x "
                     "evaluation_periods is 90000 s; CloudWatch evaluates at most 7 days, and at most one day for "
                     "periods under an hour", id="alarm-evaluates-too-long"),
        pytest.param(edited(("monitoring", "alarms"), [{**ALARM, "name": "x-cpu"}]),
                     "platform.yaml: monitoring.alarms[0]: alarm 'x-cpu': it becomes one alarm per "
                     "service, so its name must contain {service} too", id="per-service-alarm-with-one-name"),
        pytest.param(edited(("monitoring", "alarms"), [{**ALARM, "dimensions": {"ClusterName": "{clustr}"}}]),
                     "platform.yaml: monitoring.alarms[0]: alarm 'x-{service}-cpu': unknown "
                     "placeholder(s) ['clustr']", id="alarm-placeholder-typo"),
        pytest.param(edited(("monitoring", "alarms"), [{**ALARM, "statistic": "Mean"}]),
                     "platform.yaml: monitoring.alarms[0].statistic: 'Mean' is not a CloudWatch "
                     "statistic", id="alarm-statistic-unknown"),
        pytest.param(edited(("monitoring", "topics"), {"critical": {"topic": "c", "protocols": ["email"]}}),
                     "platform.yaml: monitoring: topics: no topic for the ['warning'] alarms",
                     id="alarm-severity-without-topic"),
        pytest.param(edited(("monitoring", "alarms"), [{**ALARM, "period_seconds": 45}]),
                     "platform.yaml: monitoring.alarms[0]: alarm 'x-{service}-cpu': CloudWatch accepts a "
                     "period of 10, 20, 30 or a multiple of 60 seconds, not 45", id="alarm-period-not-accepted"),
        pytest.param(edited(("reviews", "timezone"), "Europe/Berln"),
                     "platform.yaml: reviews.timezone: unknown time zone 'Europe/Berln' (an IANA name "
                     "such as Europe/Berlin)", id="review-timezone-typo"),
        pytest.param(edited(("reviews", "evening"), "08:30"),
                     "platform.yaml: reviews: morning 09:00 must be before evening 08:30",
                     id="review-evening-before-morning"),
        pytest.param(edited(("reviews", "morning"), "9:00"),
                     "platform.yaml: reviews.morning: String should match pattern", id="review-time-not-hh-mm"),
        pytest.param(edited(("config_backup", "prefix"), "daily_maintenance"),
                     "platform.yaml: config_backup.prefix: 'daily_maintenance' is where a DAG's reports live(s) in "
                     "the reports bucket", id="config-backup-prefix-is-a-dag-directory"),
        pytest.param(edited(("config_backup", "prefix"), ""),
                     "platform.yaml: config_backup.prefix: String should match pattern", id="config-backup-prefix-empty"),
        pytest.param(edited(("airflow_housekeeping", "retention_days"), {"xcom": 1}),
                     "platform.yaml: airflow_housekeeping.retention_days: xcom: retention must be a whole number of "
                     "days from 7 to 3650", id="metadata-retention-too-short"),
        pytest.param(edited(("airflow_housekeeping", "retention_days"), {"xcoms": 30}),
                     "platform.yaml: airflow_housekeeping.retention_days: 'xcoms' is not a table `airflow db clean` "
                     "cleans", id="metadata-retention-unknown-table"),
    ],
)
def test_config_errors_are_one_clear_line(text, expected):
    with pytest.raises(ConfigError) as excinfo:
        parse_config(text, "platform.yaml")
    message = str(excinfo.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_what_the_cross_field_rules_must_not_refuse():
    shipped = yaml.safe_load(SHIPPED)
    classes = shipped["log_lifecycle"]["classes"]
    # The reports bucket may hold a log archive beside the reports, under a prefix that is not theirs.
    classes["access"]["archive"] = {"bucket": shipped["reports"]["bucket"], "prefix": "reports-logs/",
                                    "expire_after_days": 30}
    # A class name with a hyphen, dotted bucket names, a prefix that merely starts like another word.
    classes["app-logs"] = {"log_groups": ["/app/*"], "cloudwatch_days": 30,
                           "archive": {"bucket": "logs.solemate.example", "expire_after_days": 60}}
    shipped["restore_test"]["instance_prefix"] = "restore-testing"
    shipped["disaster_recovery"]["record_name"] = shipped["disaster_recovery"]["hosted_zone"]
    config = parse_config(yaml.safe_dump(shipped), "platform.yaml")
    assert config.log_lifecycle.classes["access"].archive.prefix == "reports-logs/"


def test_a_cross_field_error_in_a_hyphenated_class_names_its_key():
    shipped = yaml.safe_load(SHIPPED)
    shipped["log_lifecycle"]["classes"]["app-logs"] = {
        "log_groups": ["/app/*"], "cloudwatch_days": 30,
        "archive": {"bucket": shipped["reports"]["bucket"], "expire_after_days": 60}}
    with pytest.raises(ConfigError, match=r"^platform\.yaml: log_lifecycle\.classes\.app-logs\.archive: bucket "):
        parse_config(yaml.safe_dump(shipped), "platform.yaml")


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
    dag_files = sorted((repo / "dags").glob("*.py"))
    assert len(errors) == len(dag_files) >= 2  # one per DAG file: each names the same file, key and reason
    for error in errors:
        assert error.strip().splitlines()[-1] == (
            f"solemate_maintenance.config.ConfigError: {broken}: checks.rds.cpu_percent.critical: "
            "Input should be less than or equal to 100 (got 150)")


def _write(tmp_path, data: bytes) -> Path:
    path = tmp_path / "platform.yaml"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(SHIPPED.replace("  rds:\n    lookback_minutes: 1440", "  rds:\n    lookback_minutes: yes"),
                     "platform.yaml: checks.rds.lookback_minutes: Input should be a valid integer (got True)",
                     id="bool-is-not-a-number"),
        pytest.param(SHIPPED.replace("  rds:\n    lookback_minutes: 1440", "  rds:\n    lookback_minutes: '60'"),
                     "platform.yaml: checks.rds.lookback_minutes: Input should be a valid integer (got '60')",
                     id="string-is-not-a-number"),
        pytest.param(edited(("checks", "rds", "cpu_percent"), {"warning": 70, "critical": float("nan")}),
                     "platform.yaml: checks.rds.cpu_percent.critical: Input should be a finite number",
                     id="nan-threshold"),
        pytest.param(edited(("checks", "rds", "connections"), {"warning": 400, "critical": float("inf")}),
                     "platform.yaml: checks.rds.connections.critical: Input should be a finite number",
                     id="inf-threshold"),
        pytest.param(SHIPPED + "reports:\n  bucket: somebody-elses-bucket\n",
                     "platform.yaml: reports: duplicate key (also at line", id="duplicate-top-level-key"),
        pytest.param(SHIPPED.replace("  prefix: reports\n", "  prefix: reports\n  bucket: other-bucket\n"),
                     "platform.yaml: reports.bucket: duplicate key (also at line", id="duplicate-nested-key"),
        pytest.param(edited(("resources", "ecs", "services"), [{"name": "web", "min_tasks": 1, "max_tasks": 2},
                                                             {"name": "web", "min_tasks": 2, "max_tasks": 4}]),
                     "platform.yaml: resources.ecs.services: service names must be unique; listed more than once: web",
                     id="duplicate-service-names"),
        pytest.param(SHIPPED.replace("  rds:\n    lookback_minutes: 1440", "  rds:\n    lookback_minutes: " + "9" * 5000),
                     "platform.yaml: checks.rds.lookback_minutes: cannot read value: number too large (line",
                     id="5000-digit-integer"),
        pytest.param("a: " + "[" * 5000 + "]" * 5000 + "\n",
                     "platform.yaml: (YAML structure) line 1: nested more than 20 levels deep", id="deep-nesting"),
        pytest.param(SHIPPED.replace("  rds:\n    lookback_minutes: 1440", "  rds:\n    lookback_minutes\u200b: 60"),
                     "platform.yaml: checks.rds.'lookback_minutes\\u200b': unknown key (misspelt?)",
                     id="invisible-character-in-key"),
        pytest.param(edited(("alerts", "severities"), {"P1": {"colour": "#ff0000"}}),
                     "platform.yaml: alerts.severities.P1.colour: unknown key (misspelt?)", id="severity-typo"),
    ],
)
def test_input_that_used_to_pass_or_crash_is_one_clear_line(text, expected):
    with pytest.raises(ConfigError) as excinfo:
        parse_config(text, "platform.yaml")
    message = str(excinfo.value)
    assert message.startswith(expected), message
    assert "\n" not in message and len(message) <= 2000


def test_non_utf8_byte_names_file_line_and_byte(tmp_path):
    path = _write(tmp_path, SHIPPED.replace("environment: production", "environment: pr\xe9d", 1).encode("latin-1"))
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert str(excinfo.value) == (f"{path}: (file encoding) line 4, column 16: byte 0xe9 is not UTF-8; "
                                  "save the file as UTF-8")


def test_huge_file_is_refused_before_parsing(tmp_path):
    data = SHIPPED.encode() + b"#" * (2 * 1024 * 1024)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError, match=rf"platform\.yaml: \(file\) is {len(data):,} bytes; a platform config is at most"):
        load_config(path)


def test_thousands_of_errors_make_one_short_line():
    services = [{"name": f"s{i}", "min_tasks": "x", "max_tasks": "y"} for i in range(10_000)]
    with pytest.raises(ConfigError) as excinfo:
        parse_config(edited(("resources", "ecs", "services"), services), "platform.yaml")
    message = str(excinfo.value)
    assert message.startswith("platform.yaml: resources.ecs.services[0].min_tasks: Input should be a valid integer")
    assert "… and 19995 more errors" in message and len(message) < 2000 and "\n" not in message


def test_severities_default_to_the_guide_and_override_per_field():
    raw = yaml.safe_load(SHIPPED)
    raw["alerts"].pop("severities", None)
    assert parse_config(yaml.safe_dump(raw), "x").alerts.severities["P1"].color == "#d00000"
    raw["alerts"]["severities"] = {"P1": {"color": "#ff0000"}}
    severities = parse_config(yaml.safe_dump(raw), "x").alerts.severities
    assert severities["P1"].color == "#ff0000"
    assert severities["P1"].description.startswith("Critical")  # kept from the default
    assert severities["P4"].color == "#439fe0"


def test_yaml_anchors_and_merge_keys_still_work():
    text = SHIPPED.replace("  rds:\n    lookback_minutes: 1440\n    cpu_percent: {warning: 70, critical: 80}",
                           "  rds:\n    lookback_minutes: 1440\n    cpu_percent: &cpu {warning: 60, critical: 80}")
    text = text.replace("  elasticache:\n    lookback_minutes: 1440\n    cpu_percent: {warning: 70, critical: 80}",
                        "  elasticache:\n    lookback_minutes: 1440\n    cpu_percent: {<<: *cpu, warning: 65}")
    config = parse_config(text, "x")
    assert config.checks.rds.cpu_percent.warning == 60
    assert (config.checks.elasticache.cpu_percent.warning, config.checks.elasticache.cpu_percent.critical) == (65, 80)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a: &x [*x]\n", "platform.yaml: a[0]: recursive alias", id="recursive-list-alias"),
        pytest.param("a: &x {k: *x}\n", "platform.yaml: a.k: recursive alias", id="recursive-map-alias"),
        pytest.param("a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                     "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                     "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
                     "platform.yaml: e[", id="alias-bomb"),
        pytest.param("environment: !!bool maybe\n", "platform.yaml: environment: cannot read value: bool value 'maybe' "
                     "is not valid", id="bad-bool-tag"),
        pytest.param("environment: !!int ''\n", "platform.yaml: environment: cannot read value: int value '' is not "
                     "valid", id="empty-int-tag"),
        pytest.param("environment: !!timestamp 2020\n", "platform.yaml: environment: cannot read value:",
                     id="bad-timestamp-tag"),
    ],
)
def test_hostile_yaml_is_one_clear_line_not_a_crash(text, expected):
    with pytest.raises(ConfigError) as excinfo:
        parse_config(text, "platform.yaml")
    message = str(excinfo.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_alias_bomb_is_refused_quickly():
    import time

    text = "a: &a [" + ",".join(["x"] * 10) + "]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(8))
    started = time.process_time()
    with pytest.raises(ConfigError, match="aliases expanding without end"):
        parse_config(text, "platform.yaml")
    assert time.process_time() - started < 5  # refused long before Airflow's 30 s import timeout


@pytest.mark.parametrize("tagged", ["!!set {a, b}", "!!omap [{a: 1}]", "!custom {a: 1}"])
def test_collection_tags_are_refused_not_silently_converted(tagged):
    with pytest.raises(ConfigError, match=r"platform\.yaml: environment: unsupported tag"):
        parse_config(f"environment: {tagged}\n", "platform.yaml")
