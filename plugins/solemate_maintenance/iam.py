"""The IAM policies a deployment attaches (include/iam/*.json), filled in from the platform's config.

The JSON files name deployment-specific things (the reports bucket, the restore copies' prefix, the
P1 topic...) as ``${name}`` placeholders; IAM's own policy variables (``${aws:username}``) are left
alone. Print them filled in for your config with::

    python -m solemate_maintenance.iam [--config include/config/platform.yaml] [--out DIR]

``include/iam/attachments.json`` says which policy each DAG needs; one role for all the workers
gets them all, or route the mutating DAGs to a queue whose workers have their own role
(``workers.mutating_queue`` in the platform config; ``changes_aws`` says which DAGs go there).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from solemate_maintenance.config import PlatformConfig, load_config
from solemate_maintenance.incidents import incident_key

POLICY_DIR = Path(__file__).resolve().parents[2] / "include" / "iam"
_PLACEHOLDER = re.compile(r"\$\{([a-z_]+)\}")


def placeholders(config: PlatformConfig) -> dict[str, str | list[str]]:
    recovery = config.disaster_recovery
    classes = config.log_lifecycle.classes.values()
    return {
        "environment": config.environment,
        "reports_bucket": config.reports.bucket,
        "reports_prefix": config.reports.prefix,
        # The continuous watch's incident record (the dashboard writes acknowledgements into it).
        "incident_record": incident_key(config),
        "primary_region": config.regions.primary,
        "dr_region": config.regions.dr,
        "source_instance_id": config.resources.rds.instance_id,
        "restore_instance_prefix": config.restore_test.instance_prefix,
        "drill_instance_prefix": recovery.drill.instance_prefix,
        "failover_instance_id": recovery.failover_instance_id,
        "dr_cluster": recovery.cluster,
        # RDS uses the subnet group named "default" when none is given.
        "restore_db_subnet_group": config.restore_test.db_subnet_group or "default",
        "drill_db_subnet_group": recovery.drill.db_subnet_group or "default",
        "failover_db_subnet_group": recovery.failover_db_subnet_group or "default",
        # Route 53's normalised form: lower case, no final dot.
        "record_name": recovery.record_name.rstrip(".").lower(),
        "dr_stack_name": recovery.stack_name,
        "metric_namespace": config.maintenance_status.namespace,
        "dashboard_name": config.maintenance_status.dashboard_name,
        # No topic configured: the statement names one that cannot exist, rather than every topic.
        "alerts_topic_arn": config.alerts.sns_topic_arn or "arn:aws:sns:*:*:no-p1-topic-configured",
        # Lists fill a whole JSON value: "Resource": "${log_group_arns}".
        "log_group_arns": sorted({f"arn:aws:logs:*:*:log-group:{pattern}"
                                  for c in classes for pattern in c.log_groups}),
        "archive_bucket_arns": sorted({f"arn:aws:s3:::{c.archive.bucket}" for c in classes if c.archive}),
        # The guide's alarms (monitoring.alarms), their per-service/target-group parts as wildcards.
        "policy_alarm_arns": sorted({"arn:aws:cloudwatch:*:*:alarm:" + re.sub(r"\{[a-z_]+\}", "*", alarm.name)
                                     for alarm in config.monitoring.alarms}),
        "asset_bucket_arns": sorted({arn for pair in recovery.asset_buckets
                                     for bucket in (pair.source_bucket, pair.replica_bucket)
                                     for arn in (f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*")}),
    }


def policy_names() -> list[str]:
    return sorted(p.stem for p in POLICY_DIR.glob("*.json") if p.stem != "attachments")


def attachments() -> dict[str, list[str]]:
    """DAG id -> the policies its tasks need."""
    return json.loads((POLICY_DIR / "attachments.json").read_text())["dags"]


READ_ONLY_POLICY = "readonly"


def dag_policies(dag_id: str, config: PlatformConfig) -> list[str]:
    """The policies `dag_id`'s tasks need with this config: log-retention only while the daily run
    enforces retention (``log_lifecycle.enforce``), reports-lifecycle only while it enforces the reports
    bucket's lifecycle (``reports.lifecycle.enforce``), monitoring-enforcement only while it enforces the
    alarms (``monitoring.enforce``); without them the run only reads the settings."""
    gated = {"log-retention": config.log_lifecycle.enforce, "monitoring-enforcement": config.monitoring.enforce,
             "reports-lifecycle": config.reports.lifecycle.enforce}
    return [name for name in attachments()[dag_id] if gated.get(name, True)]


def changes_aws(dag_id: str, config: PlatformConfig) -> bool:
    """Whether `dag_id` needs a policy beyond read-only, and so runs on ``workers.mutating_queue``."""
    return any(name != READ_ONLY_POLICY for name in dag_policies(dag_id, config))


def component_policies() -> dict[str, list[str]]:
    """Airflow component -> the policies it needs for the calls it makes outside any task (the API
    server reads the reports for the dashboard; the triggerer runs the deferred waits)."""
    return json.loads((POLICY_DIR / "attachments.json").read_text())["components"]


def render(name: str, config: PlatformConfig) -> dict[str, Any]:
    path = POLICY_DIR / f"{name}.json"
    values = placeholders(config)

    def value_of(match: re.Match) -> str | list[str]:
        if match.group(1) not in values:
            raise KeyError(f"{path}: unknown placeholder ${{{match.group(1)}}}; known: {sorted(values)}")
        return values[match.group(1)]

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: fill(value) for key, value in node.items()}
        if isinstance(node, list):
            return [fill(value) for value in node]
        if isinstance(node, str):
            if (whole := _PLACEHOLDER.fullmatch(node)) and isinstance(value_of(whole), list):
                return value_of(whole)
            return _PLACEHOLDER.sub(lambda match: str(value_of(match)), node)
        return node

    return fill(json.loads(path.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the IAM policies filled in from the platform config.")
    parser.add_argument("--config", type=Path, default=None, help="platform config (default: MAINTENANCE_CONFIG)")
    parser.add_argument("--out", type=Path, default=None, help="write <name>.json files here instead of printing")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    for name in policy_names():
        document = json.dumps(render(name, config), indent=2)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{name}.json").write_text(document + "\n")
        else:
            print(f"# {name}\n{document}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
