"""Daily configuration backup: ECS task definitions, and the metadata of secrets and parameters.

Never a secret value: this module calls ``ListSecrets`` and ``DescribeParameters`` only (no
``GetSecretValue``, no ``GetParameter(s)``, no decryption); the unit tests record every AWS call to
prove it. Each logical date has its own prefix; the files are written with a manifest of SHA-256
checksums, and a re-run of the same date writes only when what it captured differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from solemate_maintenance.aws_errors import error_code
from solemate_maintenance.config import ConfigBackup, EcsService
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.window import run_end

# What a secret's metadata may carry into the backup: nothing else of ListSecrets' answer is kept.
SECRET_FIELDS = ("ARN", "Name", "Description", "KmsKeyId", "RotationEnabled", "RotationLambdaARN", "RotationRules",
                 "LastRotatedDate", "LastChangedDate", "LastAccessedDate", "NextRotationDate", "CreatedDate",
                 "PrimaryRegion", "OwningService", "Tags")
PARAMETER_FIELDS = ("Name", "ARN", "Type", "KeyId", "LastModifiedDate", "LastModifiedUser", "Description", "Version",
                    "Tier", "Policies", "DataType")


def _json(value: Any) -> bytes:
    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return (obj if obj.tzinfo else obj.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
        raise TypeError(f"not serialisable: {type(obj).__name__}")

    return json.dumps(value, indent=2, sort_keys=True, default=default).encode() + b"\n"


class _KeptEarlierBackup(Exception):
    pass


def _without_environment_values(definition: dict[str, Any]) -> dict[str, Any]:
    """Plain environment variables often carry credentials (a DATABASE_URL with its password): keep
    their names, never their values (a changed value makes a new revision, which the backup shows)."""
    copied = json.loads(_json(definition))
    for container in copied.get("containerDefinitions", []):
        for variable in container.get("environment", []):
            if "value" in variable:
                variable["value"] = "<not backed up>"
    return copied


class ConfigBackupOperator(MaintenanceCheckOperator):
    """Back up the platform's configuration to the reports bucket, under the run's date.

    ``<reports prefix>/<backup prefix>/<YYYY-MM-DD>/``: ``ecs/<family>-<revision>.json`` for every
    task definition the services run (their deployments' revisions), ``secrets-manager.json`` and
    ``ssm-parameters.json`` (metadata), and ``manifest.json`` with each file's SHA-256 and size.
    A secret with rotation on whose next rotation is overdue is P3; rotation off is P4.

    :param cluster: the ECS cluster; :param services: its services.
    :param bucket: reports bucket; :param reports_prefix: the reports' prefix.
    :param settings: the `config_backup` section of the platform config.
    """

    template_fields = (*MaintenanceCheckOperator.template_fields, "cluster", "bucket")

    def __init__(self, *, cluster: str, services: Sequence[EcsService], bucket: str, reports_prefix: str,
                 settings: ConfigBackup | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster
        self.services = [s.name for s in services]
        self.bucket = bucket
        self.reports_prefix = reports_prefix.strip("/")
        self.settings = settings or ConfigBackup()

    def backup_prefix(self, moment: datetime) -> str:
        parts = [self.reports_prefix, self.settings.prefix.strip("/"), f"{moment:%Y-%m-%d}"]
        return "/".join(p for p in parts if p)

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        now = run_end(context)
        files: dict[str, bytes] = {}
        task_definitions, missing = self._task_definitions()
        for definition in task_definitions:
            files[f"ecs/{definition['taskDefinition']['family']}-{definition['taskDefinition']['revision']}.json"] = \
                _json(definition)
        secrets = self._secrets()
        parameters = self._parameters()
        files["secrets-manager.json"] = _json(secrets)
        files["ssm-parameters.json"] = _json(parameters)
        prefix = self.backup_prefix(now)
        try:
            written = self._write(prefix, files, context)
            state = "backed up" if written else "unchanged since this date's backup"
        except _KeptEarlierBackup as kept:
            written, state = False, (f"not written: the backup captured at {kept} for this past date is kept "
                                     "(today's configuration differs from it)")
        summary = (f"{len(task_definitions)} task definition(s), {len(secrets)} secret(s) and {len(parameters)} "
                   f"parameter(s) (metadata only) {state}: s3://{self.bucket}/{prefix}/")
        yield Finding(check="config_backup.written", resource=f"s3://{self.bucket}/{prefix}/", status=Status.OK,
                      summary=summary, details={"files": sorted(files), "written": written})
        for service in missing:
            yield Finding(check="config_backup.task_definition", resource=f"{self.cluster}/{service}",
                          status=Status.WARNING, severity=Severity.P3,
                          summary="service not found: its task definition was not backed up",
                          details={"fix": "check resources.ecs.services in the platform config"})
        yield from self._rotation(secrets, now)
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": f"Configuration backup: s3://{self.bucket}/{prefix}/ ({len(files)} files)",
            "location": f"s3://{self.bucket}/{prefix}/", "files": len(files), "written": written})

    def _task_definitions(self) -> tuple[list[dict[str, Any]], list[str]]:
        ecs = self.client("ecs")
        arns: list[str] = []
        found: set[str] = set()
        for start in range(0, len(self.services), 10):  # DescribeServices takes at most 10 services
            try:
                response = ecs.describe_services(cluster=self.cluster, services=self.services[start:start + 10])
            except ecs.exceptions.ClusterNotFoundException:
                return [], list(self.services)
            for service in response["services"]:
                found.add(service["serviceName"])
                for arn in [service.get("taskDefinition"), *(d.get("taskDefinition") for d in
                                                             service.get("deployments", []))]:
                    if arn and arn not in arns:
                        arns.append(arn)
        definitions = []
        for arn in arns:  # one call per revision in use: there is no batch describe
            response = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
            definitions.append({"taskDefinition": _without_environment_values(response["taskDefinition"]),
                                "tags": response.get("tags", [])})
        return definitions, [s for s in self.services if s not in found]

    def _secrets(self) -> list[dict[str, Any]]:
        client = self.client("secretsmanager")
        prefixes = self.settings.secret_name_prefixes
        kwargs = {"Filters": [{"Key": "name", "Values": list(prefixes)}]} if prefixes else {}
        found = []
        for page in self.pages(client, "list_secrets", max_page=100, **kwargs):
            for secret in page["SecretList"]:
                if prefixes and not any(secret["Name"].startswith(p) for p in prefixes):
                    continue  # the API's name filter also matches words inside names
                found.append({k: secret[k] for k in SECRET_FIELDS if k in secret})
        return sorted(found, key=lambda s: s["Name"])

    def _parameters(self) -> list[dict[str, Any]]:
        ssm = self.client("ssm")
        prefixes = self.settings.ssm_path_prefixes
        filters = [{"Key": "Name", "Option": "BeginsWith", "Values": list(prefixes)}] if prefixes else []
        found = [{k: p[k] for k in PARAMETER_FIELDS if k in p}
                 for page in self.pages(ssm, "describe_parameters", max_page=50, ParameterFilters=filters)
                 for p in page["Parameters"]]
        return sorted(found, key=lambda p: p["Name"])

    def _write(self, prefix: str, files: dict[str, bytes], context: Any) -> bool:
        """Write the files and their manifest unless this date's backup already holds the same content."""
        s3 = self.client("s3")
        entries = {name: {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
                   for name, body in files.items()}
        manifest_key = f"{prefix}/manifest.json"
        try:
            existing = json.loads(s3.get_object(Bucket=self.bucket, Key=manifest_key)["Body"].read())
        except Exception as exc:
            # Without s3:ListBucket, S3 answers a missing key with 403 instead of 404.
            if error_code(exc) not in ("NoSuchKey", "404", "AccessDenied", "403"):
                raise
            existing = None
        if existing and existing.get("files") == entries:
            return False
        captured_at = datetime.now(UTC)  # a wall-clock fact: when this copy was taken, whatever the run's date
        if existing and captured_at - run_end(context) > timedelta(hours=24):
            # A backfill or late re-run describes today's configuration, not that date's: the backup
            # taken on the day is the better record and is kept.
            raise _KeptEarlierBackup(existing.get("captured_at", "its day"))
        for name, body in files.items():
            s3.put_object(Bucket=self.bucket, Key=f"{prefix}/{name}", Body=body, ChecksumAlgorithm="SHA256",
                          ContentType="application/json")
        manifest = {"files": entries, "dag_id": context["ti"].dag_id, "run_id": context["ti"].run_id,
                    "checked_date": run_end(context).isoformat(), "captured_at": captured_at.isoformat(),
                    "note": "metadata only: no secret or parameter value is ever read"}
        s3.put_object(Bucket=self.bucket, Key=manifest_key, Body=_json(manifest), ContentType="application/json")
        return True

    def _rotation(self, secrets: list[dict[str, Any]], now: datetime) -> Iterable[Finding]:
        grace = timedelta(hours=self.settings.rotation_grace_hours)
        overdue, off = [], []
        for secret in secrets:
            if not secret.get("RotationEnabled"):
                off.append(secret["Name"])
                continue
            due = secret.get("NextRotationDate")
            if due is None and secret.get("RotationRules", {}).get("AutomaticallyAfterDays"):
                last = secret.get("LastRotatedDate") or secret.get("CreatedDate")
                due = last + timedelta(days=secret["RotationRules"]["AutomaticallyAfterDays"]) if last else None
            if due is not None:
                due = due if due.tzinfo else due.replace(tzinfo=UTC)
                if due + grace < now:
                    last = secret.get("LastRotatedDate")
                    overdue.append({"name": secret["Name"], "due": due.isoformat(),
                                    "last_rotated": last.isoformat() if isinstance(last, datetime) else "never"})
        for item in overdue:
            yield Finding(check="secrets.rotation_overdue", resource=item["name"], status=Status.WARNING,
                          severity=Severity.P3, summary=f"rotation overdue since {item['due'][:16]} "
                                                        f"(last rotated {item['last_rotated'][:16]})",
                          details={**item, "fix": "check the rotation Lambda's logs, then rotate the secret "
                                                  "(aws secretsmanager rotate-secret --secret-id …)"})
        if off:
            yield Finding(check="secrets.rotation_off", resource="secrets", status=Status.WARNING, severity=Severity.P4,
                          summary=f"{len(off)} secret(s) without rotation: {', '.join(off[:5])}"
                                  + (" …" if len(off) > 5 else ""), details={"secrets": off[:50]})
        if not overdue and not off:
            yield Finding(check="secrets.rotation", resource="secrets", status=Status.OK,
                          summary=f"{len(secrets)} secret(s) rotating on schedule")
