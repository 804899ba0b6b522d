"""AWS Backup APIs moto 5.2.5 lacks: selections, recovery points, backup jobs and copy jobs.

moto answers 404 to ``ListRecoveryPointsByBackupVault``, ``ListBackupJobs`` and ``ListCopyJobs``
(no URL rule) and 500 to ``ListBackupSelections`` (no handler). This adds the URL rules (with the
trailing slash botocore sends), handlers that answer as AWS documents them (filters included), and
``seed_*`` functions the sandbox uses to describe a backup history. State lives on the backend, so
moto's reset clears it.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from moto.backup import urls as backup_urls
from moto.backup.exceptions import ResourceNotFoundException
from moto.backup.models import BackupBackend, backup_backends
from moto.backup.responses import BackupResponse

_ROUTES = {
    "{0}/backup-vaults/(?P<name>[^/]+)/recovery-points/$": BackupResponse.dispatch,
    "{0}/backup-jobs/$": BackupResponse.dispatch,
    "{0}/copy-jobs/$": BackupResponse.dispatch,
}


def _state(backend: BackupBackend) -> dict[str, Any]:
    if not hasattr(backend, "_sandbox_state"):
        backend._sandbox_state = {"selections": {}, "recovery_points": {}, "backup_jobs": [], "copy_jobs": []}
    return backend._sandbox_state


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _parse_time(value: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- seeding (the sandbox's side) ---------------------------------------------------------------------
def seed_selection(backend: BackupBackend, plan_id: str, name: str, resources: list[str]) -> str:
    if plan_id not in backend.plans:
        raise ResourceNotFoundException(msg=f"Backup plan {plan_id} not found")
    selection_id = str(uuid.uuid4())
    _state(backend)["selections"].setdefault(plan_id, {})[selection_id] = {
        "SelectionId": selection_id, "BackupPlanId": plan_id, "CreationDate": _epoch(datetime.now(UTC)),
        "IamRoleArn": f"arn:aws:iam::{backend.account_id}:role/service-role/AWSBackupDefaultServiceRole",
        "BackupSelection": {"SelectionName": name, "Resources": resources,
                            "IamRoleArn": f"arn:aws:iam::{backend.account_id}:role/service-role/"
                                          "AWSBackupDefaultServiceRole"}}
    return selection_id


def seed_recovery_point(backend: BackupBackend, vault: str, resource_arn: str, created: datetime, *,
                        plan_id: str = "", rule_id: str = "", status: str = "COMPLETED",
                        source_arn: str | None = None, delete_after_days: int | None = None) -> str:
    arn = f"arn:aws:rds:{backend.region_name}:{backend.account_id}:snapshot:awsbackup:job-{uuid.uuid4().hex[:16]}"
    point = {"RecoveryPointArn": arn, "BackupVaultName": vault,
             "BackupVaultArn": f"arn:aws:backup:{backend.region_name}:{backend.account_id}:backup-vault:{vault}",
             "ResourceArn": resource_arn, "ResourceType": "RDS", "Status": status,
             "CreationDate": _epoch(created), "CompletionDate": _epoch(created) + 600,
             "CreatedBy": {"BackupPlanId": plan_id, "BackupRuleId": rule_id}, "IsEncrypted": True}
    if source_arn:
        point["SourceBackupVaultArn"] = source_arn
    if delete_after_days:
        point["Lifecycle"] = {"DeleteAfterDays": delete_after_days}
    _state(backend)["recovery_points"].setdefault(vault, []).append(point)
    return arn


def seed_backup_job(backend: BackupBackend, vault: str, resource_arn: str, created: datetime, state: str,
                    *, plan_id: str = "", rule_id: str = "", message: str = "") -> None:
    _state(backend)["backup_jobs"].append({
        "BackupJobId": str(uuid.uuid4()), "BackupVaultName": vault, "ResourceArn": resource_arn,
        "ResourceType": "RDS", "State": state, "StatusMessage": message, "CreationDate": _epoch(created),
        "CreatedBy": {"BackupPlanId": plan_id, "BackupRuleId": rule_id}})


def seed_copy_job(backend: BackupBackend, source_vault_arn: str, destination_vault_arn: str, resource_arn: str,
                  created: datetime, state: str, *, message: str = "") -> None:
    _state(backend)["copy_jobs"].append({
        "CopyJobId": str(uuid.uuid4()), "SourceBackupVaultArn": source_vault_arn,
        "DestinationBackupVaultArn": destination_vault_arn, "ResourceArn": resource_arn, "ResourceType": "RDS",
        "State": state, "StatusMessage": message, "CreationDate": _epoch(created)})


# -- the API (moto's side) ----------------------------------------------------------------------------
def _query(response: BackupResponse, name: str) -> str | None:
    values = response.querystring.get(name)
    return values[0] if values else None


def _created_between(response: BackupResponse, items: list[dict]) -> list[dict]:
    after, before = _query(response, "createdAfter"), _query(response, "createdBefore")
    if after:
        items = [i for i in items if i["CreationDate"] >= _parse_time(after).timestamp()]
    if before:
        items = [i for i in items if i["CreationDate"] <= _parse_time(before).timestamp()]
    return items


def _plan_id_from_path(response: BackupResponse) -> str:
    return response.path.split("/plans/", 1)[1].split("/", 1)[0]


def create_backup_selection(self: BackupResponse) -> str:
    plan_id = _plan_id_from_path(self)
    selection = json.loads(self.body)["BackupSelection"]
    selection_id = seed_selection(self.backup_backend, plan_id, selection["SelectionName"],
                                  selection.get("Resources", []))
    return json.dumps({"SelectionId": selection_id, "BackupPlanId": plan_id,
                       "CreationDate": _epoch(datetime.now(UTC))})


def list_backup_selections(self: BackupResponse) -> str:
    plan_id = _plan_id_from_path(self)
    if plan_id not in self.backup_backend.plans:
        raise ResourceNotFoundException(msg=f"Backup plan {plan_id} not found")
    selections = _state(self.backup_backend)["selections"].get(plan_id, {}).values()
    listed = [{k: v for k, v in s.items() if k != "BackupSelection"}
              | {"SelectionName": s["BackupSelection"]["SelectionName"]} for s in selections]
    return json.dumps({"BackupSelectionsList": listed})


def get_backup_selection(self: BackupResponse) -> str:
    plan_id = _plan_id_from_path(self)
    selection_id = self.path.rstrip("/").rsplit("/", 1)[1]
    selection = _state(self.backup_backend)["selections"].get(plan_id, {}).get(selection_id)
    if selection is None:
        raise ResourceNotFoundException(msg=f"Backup selection {selection_id} not found")
    return json.dumps(selection)


def list_recovery_points_by_backup_vault(self: BackupResponse) -> str:
    vault = self.path.split("/backup-vaults/", 1)[1].split("/", 1)[0]
    if vault not in self.backup_backend.vaults:
        raise ResourceNotFoundException(msg=f"Backup vault {vault} not found")
    points = list(_state(self.backup_backend)["recovery_points"].get(vault, []))
    if resource := _query(self, "resourceArn"):
        points = [p for p in points if p["ResourceArn"] == resource]
    if plan := _query(self, "backupPlanId"):
        points = [p for p in points if p["CreatedBy"].get("BackupPlanId") == plan]
    return json.dumps({"RecoveryPoints": _created_between(self, points)})


def list_backup_jobs(self: BackupResponse) -> str:
    jobs = list(_state(self.backup_backend)["backup_jobs"])
    if resource := _query(self, "resourceArn"):
        jobs = [j for j in jobs if j["ResourceArn"] == resource]
    if state := _query(self, "state"):
        jobs = [j for j in jobs if j["State"] == state]
    if vault := _query(self, "backupVaultName"):
        jobs = [j for j in jobs if j["BackupVaultName"] == vault]
    return json.dumps({"BackupJobs": _created_between(self, jobs)})


def list_copy_jobs(self: BackupResponse) -> str:
    jobs = list(_state(self.backup_backend)["copy_jobs"])
    if resource := _query(self, "resourceArn"):
        jobs = [j for j in jobs if j["ResourceArn"] == resource]
    if state := _query(self, "state"):
        jobs = [j for j in jobs if j["State"] == state]
    if destination := _query(self, "destinationVaultArn"):
        jobs = [j for j in jobs if j["DestinationBackupVaultArn"] == destination]
    return json.dumps({"CopyJobs": _created_between(self, jobs)})


def backend(account_id: str, region: str) -> BackupBackend:
    return backup_backends[account_id][region]


def apply() -> None:
    """Install the routes and handlers (idempotent); before any moto server or mock starts."""
    backup_urls.url_paths.update(_ROUTES)
    for handler in (create_backup_selection, list_backup_selections, get_backup_selection,
                    list_recovery_points_by_backup_vault, list_backup_jobs, list_copy_jobs):
        setattr(BackupResponse, handler.__name__, handler)
