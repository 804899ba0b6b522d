"""Record every AWS operation a process makes, through botocore's own event hooks, for the
least-privilege test (tests/e2e/test_iam_policies.py).

``install(path)`` adds two handlers to botocore's built-in list, so that every session created
afterwards (boto3's, the Amazon provider hooks', aiobotocore's in the triggerer) carries them:
``before-parameter-build`` keeps the call's parameters, ``before-call`` appends one JSON line per
operation: the DAG and task running it (Airflow's current context) or the Airflow component, the
service's IAM prefix, the operation, region, the kind of key that signs it (its first four
characters: the sandbox gives the DAGs an ``AKIA`` key and signs its own seeding with ``testing``),
and the parameters that name resources (never their other values: a password parameter must not
land in a file).

In ``airflow standalone`` the sandbox's ``airflow_local_settings.py`` calls
``install_from_environment()`` in every Airflow process (the task processes are forked from them).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ENV_VAR = "SOLEMATE_AWS_CALL_LOG"
_PARAMS = "solemate_recorded_params"
# Parameters that name what a call acts on; everything else is left out of the record.
_NAMING = ("Identifier", "Name", "Arn", "ARN", "Bucket", "Key", "Id", "Namespace", "Prefix")
_TAGS = ("Tags", "TagList", "TagSpecifications", "tags")
# ECS names its resources in lower case.
_NAMING_EXACT = ("cluster", "service", "services", "task", "tasks", "taskDefinition")
_installed: set[str] = set()


def _naming_params(params: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for name, value in params.items():
        if name == "ChangeBatch" and isinstance(value, dict):  # Route 53: which records, which actions
            changes = value.get("Changes", [])
            kept[name] = {"Actions": [c.get("Action") for c in changes],
                          "Names": [c.get("ResourceRecordSet", {}).get("Name") for c in changes]}
        elif name in _TAGS:
            kept[name] = value
        elif (name.endswith(_NAMING) or name in _NAMING_EXACT) and isinstance(value, str | int):
            kept[name] = value
        elif (name.endswith(_NAMING) or name in _NAMING_EXACT) and isinstance(value, list) \
                and all(isinstance(v, str) for v in value):
            kept[name] = value
    return kept


def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context[_PARAMS] = _naming_params(params)


def _running_task() -> tuple[str | None, str | None, str | None]:
    """The task whose execute() makes the call, from Airflow's current context (set only while a task
    runs, unlike the AIRFLOW_CTX_* variables, which dag.test leaves in the environment)."""
    try:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
        return ti.dag_id, ti.task_id, ti.run_id
    except Exception:
        return None, None, None


def _recorder(path: str, tasks_only: bool):
    def record(model: Any, context: dict[str, Any], request_signer: Any = None, **_: Any) -> None:
        dag_id, task_id, run_id = _running_task()
        if tasks_only and dag_id is None:
            return
        try:  # only the kind of key (AKIA: an IAM user's), never the key id itself
            key_kind = request_signer._credentials.access_key[:4]
        except (AttributeError, TypeError):
            key_kind = None
        line = {
            "dag_id": dag_id, "task_id": task_id, "run_id": run_id, "pid": os.getpid(),
            # The Airflow component (api-server, triggerer, ...) when no task runs the call.
            "component": sys.argv[1] if len(sys.argv) > 1 else None,
            "service": model.service_model.service_name,
            "signing_name": model.service_model.signing_name, "operation": model.name,
            "region": getattr(request_signer, "_region_name", None), "key_kind": key_kind,
            "params": context.get(_PARAMS, {}),
        }
        # One write per line with O_APPEND: lines from concurrent task processes never interleave.
        with open(path, "a") as log:
            log.write(json.dumps(line, default=str) + "\n")
    return record


def _tag_observer(path: str, tasks_only: bool):
    """What DescribeDBInstances showed of each instance's tags: the least-privilege test needs a
    resource's tags (aws:ResourceTag conditions) when the DAG deletes one it did not create."""
    def observe(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if tasks_only and _running_task()[0] is None:
            return
        seen = {i["DBInstanceIdentifier"]: {t["Key"]: t["Value"] for t in i.get("TagList", [])}
                for i in (parsed or {}).get("DBInstances", []) if "DBInstanceIdentifier" in i}
        if seen:
            with open(path, "a") as log:
                log.write(json.dumps({"observed_tags": seen}) + "\n")
    return observe


def install(path: Path | str, tasks_only: bool = False) -> None:
    """``tasks_only``: record only calls a running task makes (the test process: its own fixtures and
    the unit tests also call AWS, and are nobody's DAG)."""
    from botocore import handlers

    path = str(path)
    if path in _installed:
        return
    _installed.add(path)
    handlers.BUILTIN_HANDLERS.append(("before-parameter-build", _keep_params))
    handlers.BUILTIN_HANDLERS.append(("before-call", _recorder(path, tasks_only)))
    handlers.BUILTIN_HANDLERS.append(("after-call.rds.DescribeDBInstances", _tag_observer(path, tasks_only)))


def install_from_environment() -> None:
    if path := os.environ.get(ENV_VAR):
        install(path)


def recorded(path: Path | str) -> list[dict[str, Any]]:
    """The calls and tag observations, in the order they happened."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
