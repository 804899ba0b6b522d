"""The restore test: request a real restore, wait for it without holding a worker, validate it with SQL,
measure RTO and RPO, and always delete what was created.

Four tasks share one instance identifier derived from the DAG and the logical date
(:func:`solemate_maintenance.restore.instance_id`):

* ``RestoreRequestOperator`` (the setup): restores by point in time or from the newest snapshot
  into a tagged, private, small instance; a retry or a re-run finds the instance and reuses it.
* ``RestoreValidationOperator``: defers on the Amazon provider's ``RdsDbAvailableTrigger`` until
  the instance is available (the deadline counts from the restore request, so a retry never extends
  it), then runs the checks in ``include/sql/restore_validation`` against the restored endpoint.
* ``RestoreCleanupOperator`` (the teardown): deletes the instance without a final snapshot and defers
  on ``RdsDbDeletedTrigger`` until it is gone; refuses anything not tagged as this run's copy.
* ``RestoreJanitorOperator``: deletes copies earlier runs left behind once past their expiry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from airflow.sdk.timezone import utcnow

from solemate_maintenance import restore
from solemate_maintenance.config import RestoreTest
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.run_facts import format_instant as _stamp
from solemate_maintenance.window import run_end

RESTORE_XCOM_KEY = "restore"
MAX_REWAITS = 3
# A restore that reached one of these will not become available by waiting longer.
FAILED_INSTANCE_STATES = frozenset({"failed", "incompatible-restore", "incompatible-parameters", "incompatible-network",
                                    "storage-full", "deleting", "inaccessible-encryption-credentials"})


def _minutes(delta: timedelta) -> float:
    return round(delta.total_seconds() / 60, 2)


def _aws_error(exc: Exception) -> tuple[str, str]:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    return str(error.get("Code") or type(exc).__name__), trim(scrub(str(error.get("Message") or exc)), 300)


class _RestoreTask(MaintenanceCheckOperator):
    """What the restore tasks share: the instance they are about and the RDS client."""

    template_fields = (*MaintenanceCheckOperator.template_fields, "source_db_instance_identifier")

    def __init__(self, *, source_db_instance_identifier: str, settings: RestoreTest, environment: str = "",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source_db_instance_identifier = source_db_instance_identifier
        self.settings = settings
        self.environment = environment

    @cached_property
    def rds_hook(self) -> Any:
        from airflow.providers.amazon.aws.hooks.rds import RdsHook

        return RdsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    @property
    def rds(self) -> Any:
        return self.rds_hook.conn

    def target_id(self, context: Any) -> str:
        return restore.instance_id(self.settings.instance_prefix, context["ti"].dag_id, run_end(context))

    def describe(self, identifier: str) -> dict[str, Any] | None:
        try:
            return self.rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
        except self.rds.exceptions.DBInstanceNotFoundFault:
            return None

    def _trigger_kwargs(self, identifier: str, seconds: float) -> dict[str, Any]:
        poll = self.settings.poll_seconds
        return {"db_identifier": identifier, "waiter_delay": poll,
                "waiter_max_attempts": max(1, math.ceil(seconds / poll)), "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name, "response": {}, "db_type": "instance"}


class RestoreRequestOperator(_RestoreTask):
    """Request the restore (the setup task). Creates at most one instance per DAG and logical date.

    Point in time (default): to the run's logical date, or to the latest restorable time when that is
    earlier (a live run). Latest snapshot: the newest automated snapshot taken before the logical
    date. A checked date outside the restore window is reported as skipped, not attempted.

    :param source_db_instance_identifier: the production instance.
    :param settings: the `restore_test` section of the platform config.
    :param environment: written as a tag on the instance.
    """

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        target = self.target_id(context)
        existing = self.describe(target)
        if existing is not None and existing["DBInstanceStatus"] == "deleting":
            # An earlier attempt's copy is still being deleted: wait (without a worker), then restore anew.
            from airflow.providers.amazon.aws.triggers.rds import RdsDbDeletedTrigger

            self.log.info("%s is still being deleted by an earlier attempt; waiting before restoring", target)
            self.defer(trigger=RdsDbDeletedTrigger(**self._trigger_kwargs(target, self.settings.delete_timeout_minutes
                                                                          * 60)),
                       method_name="resume_after_deletion")
        if existing is not None:
            yield from self._reuse(context, existing)
            return
        yield from self._request(context, target)

    def resume_after_deletion(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, int]:
        return self.record_findings(context, self._after_deletion(context, event))

    def _after_deletion(self, context: Any, event: dict[str, Any] | None) -> Iterable[Finding]:
        target = self.target_id(context)
        if (event or {}).get("status") != "success" and self.describe(target) is not None:
            yield Finding(check="restore.request", resource=target, status=Status.CRITICAL, severity=Severity.P2,
                          summary="an earlier attempt's copy is still being deleted; the restore was not requested",
                          details={"event": trim(scrub(str(event)), 300)})
            return
        yield from self._request(context, target)

    def _reuse(self, context: Any, instance: dict[str, Any]) -> Iterable[Finding]:
        target = instance["DBInstanceIdentifier"]
        reasons = restore.why_not_ephemeral(instance, prefix=self.settings.instance_prefix,
                                            source=self.source_db_instance_identifier)
        if reasons:
            yield Finding(check="restore.request", resource=target, status=Status.CRITICAL, severity=Severity.P2,
                          summary=f"an instance named {target} exists but is not this test's copy: "
                                  f"{'; '.join(reasons)}", details={"reasons": reasons})
            return
        tags = restore.tags_of(instance)
        run_id = context["ti"].run_id
        # This run now owns it: its teardown deletes it, and a janitor leaves it alone until the new expiry.
        expires = utcnow() + timedelta(hours=self.settings.expiry_hours)
        self.rds.add_tags_to_resource(ResourceName=instance["DBInstanceArn"], Tags=[
            {"Key": restore.TAG_RUN, "Value": restore.tag_value(run_id)},
            {"Key": restore.TAG_EXPIRES, "Value": restore.tag_value(expires.isoformat(timespec="seconds"))}])
        info = {"instance": target, "restore_type": tags.get(restore.TAG_RESTORE_TYPE),
                "restore_point": tags.get(restore.TAG_RESTORE_POINT),
                "requested_at": tags.get(restore.TAG_REQUESTED), "reused": True}
        context["ti"].xcom_push(key=RESTORE_XCOM_KEY, value=info)
        yield Finding(check="restore.request", resource=target, status=Status.OK,
                      summary=f"reusing the copy an earlier attempt requested at {info['requested_at']} "
                              f"({instance['DBInstanceStatus']}); no second restore", details=info)

    def _restore_point(self, context: Any) -> tuple[datetime | None, str | None, Finding | None]:
        """(point, snapshot id, problem): where to restore to, or why it cannot be done."""
        source = self.source_db_instance_identifier
        checked = run_end(context)
        if self.settings.method == "latest_snapshot":
            paginator = self.rds.get_paginator("describe_db_snapshots")
            snapshots = [s for page in paginator.paginate(DBInstanceIdentifier=source, SnapshotType="automated")
                         for s in page["DBSnapshots"] if s.get("Status") == "available"
                         and s.get("SnapshotCreateTime") and s["SnapshotCreateTime"] <= checked]
            if not snapshots:
                return None, None, Finding(check="restore.request", resource=source, status=Status.CRITICAL,
                                           severity=Severity.P2,
                                           summary=f"no automated snapshot taken before {_stamp(checked)} to restore")
            newest = max(snapshots, key=lambda s: s["SnapshotCreateTime"])
            return newest["SnapshotCreateTime"], newest["DBSnapshotIdentifier"], None
        window = restore.restore_window(self.rds, source)
        if window is None:
            return None, None, Finding(check="restore.request", resource=source, status=Status.CRITICAL,
                                       severity=Severity.P2,
                                       summary="no restore window: automated backups are off or not yet taken, "
                                               "so point-in-time restore is impossible")
        earliest, latest = window["EarliestTime"], window["LatestTime"]
        if checked < earliest:
            return None, None, Finding(
                check="restore.request", resource=source, status=Status.SKIPPED,
                summary=f"the checked date {_stamp(checked)} is before the restore window (earliest "
                        f"{_stamp(earliest)}): a restore to it is impossible; nothing restored",
                details={"earliest": _stamp(earliest), "latest": _stamp(latest)})
        return min(checked, latest), None, None

    def _submit(self, target: str, point: datetime | None, snapshot: str | None, common: dict[str, Any]) -> None:
        if snapshot:
            self.rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=target, DBSnapshotIdentifier=snapshot,
                                                          **common)
        else:
            self.rds.restore_db_instance_to_point_in_time(
                SourceDBInstanceIdentifier=self.source_db_instance_identifier, TargetDBInstanceIdentifier=target,
                RestoreTime=point, **common)

    def _request(self, context: Any, target: str) -> Iterable[Finding]:
        point, snapshot, problem = self._restore_point(context)
        if problem is not None:
            yield problem
            return
        ti = context["ti"]
        requested_at = utcnow()
        restore_type = "snapshot" if snapshot else "point_in_time"
        common: dict[str, Any] = {
            "DBInstanceClass": self.settings.instance_class, "PubliclyAccessible": False, "MultiAZ": False,
            "DeletionProtection": False, "CopyTagsToSnapshot": False, "AutoMinorVersionUpgrade": False,
            "Tags": restore.creation_tags(
                source=self.source_db_instance_identifier, dag_id=ti.dag_id, run_id=ti.run_id,
                requested_at=requested_at, expires_at=requested_at + timedelta(hours=self.settings.expiry_hours),
                restore_point=point, restore_type=restore_type, environment=self.environment)}
        if self.settings.db_subnet_group:
            common["DBSubnetGroupName"] = self.settings.db_subnet_group
        if self.settings.vpc_security_group_ids:
            common["VpcSecurityGroupIds"] = list(self.settings.vpc_security_group_ids)
        self.log.info("Restoring %s (%s to %s) into %s", self.source_db_instance_identifier, restore_type,
                      _stamp(point), target)
        try:
            self._submit(target, point, snapshot, common)
        except Exception as exc:
            from botocore.exceptions import ClientError

            from solemate_maintenance.aws_errors import classify

            if not isinstance(exc, ClientError):
                raise  # a timeout or a dropped connection: the retry finds (and reuses) what AWS created
            appeared = self.describe(target)
            if appeared is not None:
                # AWS had accepted the request (botocore retried a lost response into 'already exists').
                yield from self._reuse(context, appeared)
                return
            cause = classify(exc)
            if cause is not None and cause.retryable:
                raise  # throttling and the like: the task's retries
            code, message = _aws_error(exc)
            yield Finding(check="restore.request", resource=target, status=Status.CRITICAL, severity=Severity.P2,
                          summary=f"AWS refused the restore: {code}: {message}",
                          details={"error_code": code, "restore_type": restore_type, "restore_point": _stamp(point)})
            return
        info = {"instance": target, "restore_type": restore_type, "restore_point": point.isoformat() if point else None,
                "snapshot": snapshot, "requested_at": requested_at.isoformat(), "reused": False}
        ti.xcom_push(key=RESTORE_XCOM_KEY, value=info)
        yield Finding(check="restore.request", resource=target, status=Status.OK,
                      summary=f"restore requested: {restore_type.replace('_', '-')} to {_stamp(point)}"
                              f"{' from ' + snapshot if snapshot else ''}", details=info)



class RestoreCleanupOperator(_RestoreTask):
    """Delete the restored instance (the teardown): no final snapshot, then wait (deferred) until it is gone.

    Refuses (a P2 finding naming every reason; nothing deleted) when the instance is not tagged as this
    run's ephemeral copy of the source database: a wrong name in a config must never delete production.
    """

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        target = self.target_id(context)
        instance = self.describe(target)
        if instance is None:
            context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={"deleted": [], "created": []})
            yield Finding(check="restore.cleanup", resource=target, status=Status.OK,
                          summary="nothing to delete: no restored instance exists")
            return
        refused = restore.why_not_ephemeral(instance, prefix=self.settings.instance_prefix,
                                            source=self.source_db_instance_identifier, run_id=context["ti"].run_id)
        if refused:
            yield Finding(check="restore.cleanup.refused", resource=target, status=Status.CRITICAL,
                          severity=Severity.P2,
                          summary=f"refused to delete {target}: {'; '.join(refused)}. Nothing was deleted",
                          details={"reasons": refused})
            return
        if instance["DBInstanceStatus"] != "deleting":
            self.log.info("Deleting %s (no final snapshot)", target)
            self.rds.delete_db_instance(DBInstanceIdentifier=target, SkipFinalSnapshot=True,
                                        DeleteAutomatedBackups=True)
        from airflow.providers.amazon.aws.triggers.rds import RdsDbDeletedTrigger

        self.defer(trigger=RdsDbDeletedTrigger(**self._trigger_kwargs(target, self.settings.delete_timeout_minutes
                                                                      * 60)),
                   method_name="resume_when_deleted")

    def resume_when_deleted(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, int]:
        return self.record_findings(context, self._after_delete(context, event))

    def _after_delete(self, context: Any, event: dict[str, Any] | None) -> Iterable[Finding]:
        target = self.target_id(context)
        remaining = self.describe(target)
        if remaining is not None:
            yield Finding(check="restore.cleanup", resource=target, status=Status.CRITICAL, severity=Severity.P2,
                          summary=f"deletion requested but the instance is still {remaining['DBInstanceStatus']!r} "
                                  f"after {self.settings.delete_timeout_minutes:g} min: check it in the RDS console "
                                  "(the janitor retries after its expiry)",
                          details={"trigger": trim(scrub(str((event or {}).get("message", ""))), 300)})
            return
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={"deleted": [target], "created": [target]})
        yield Finding(check="restore.cleanup", resource=target, status=Status.OK,
                      summary="restored instance deleted (no final snapshot)")


class RestoreJanitorOperator(_RestoreTask):
    """Delete restore copies earlier runs left behind, once past their expiry tag; report each one.

    Only instances that pass the same guard as the teardown (prefix, purpose, ephemeral and source
    tags, no deletion protection) are touched. Waits (deferred) until the deletions are done.
    """

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        now = utcnow()
        deleting: list[str] = []
        seen = False
        for instance in self._earlier_copies(context):
            seen = True
            yield self._consider(instance, now, deleting)  # kept across the deferral by the base class
        if deleting:
            self._wait_for(deleting[0])
        if not seen:
            yield Finding(check="restore.janitor", resource=self.settings.instance_prefix, status=Status.OK,
                          summary="no restore copies left behind by earlier runs")

    def _earlier_copies(self, context: Any) -> Iterable[dict[str, Any]]:
        own = self.target_id(context)
        for page in self.rds.get_paginator("describe_db_instances").paginate():
            for instance in page["DBInstances"]:
                identifier = instance["DBInstanceIdentifier"]
                if identifier != own and identifier.startswith(self.settings.instance_prefix + "-"):
                    yield instance

    def _consider(self, instance: dict[str, Any], now: datetime, deleting: list[str]) -> Finding:
        identifier = instance["DBInstanceIdentifier"]
        tags = restore.tags_of(instance)
        reasons = restore.why_not_ephemeral(instance, prefix=self.settings.instance_prefix,
                                            source=self.source_db_instance_identifier)
        if reasons:
            return Finding(check="restore.janitor", resource=identifier, status=Status.WARNING, severity=Severity.P3,
                           summary=f"named like a restore copy but not provably one, left alone: {'; '.join(reasons)}",
                           details={"reasons": reasons})
        expires = restore.parse_time(tags.get(restore.TAG_EXPIRES))
        owner = tags.get(restore.TAG_RUN, "?")
        if expires is not None and expires > now:
            return Finding(check="restore.janitor", resource=identifier, status=Status.OK,
                           summary=f"copy of run {owner} not expired yet (expires {_stamp(expires)}): left alone")
        if instance["DBInstanceStatus"] != "deleting":
            self.rds.delete_db_instance(DBInstanceIdentifier=identifier, SkipFinalSnapshot=True,
                                        DeleteAutomatedBackups=True)
        deleting.append(identifier)
        return Finding(check="restore.janitor", resource=identifier, status=Status.WARNING, severity=Severity.P3,
                       summary=f"deleted a restore copy left behind by run {owner} (expired {_stamp(expires)})",
                       details={"owner_run": owner, "requested_at": tags.get(restore.TAG_REQUESTED),
                                "expired_at": _stamp(expires)})

    def _wait_for(self, identifier: str) -> None:
        from airflow.providers.amazon.aws.triggers.rds import RdsDbDeletedTrigger

        self.defer(trigger=RdsDbDeletedTrigger(**self._trigger_kwargs(identifier,
                                                                      self.settings.delete_timeout_minutes * 60)),
                   method_name="resume_when_deleted")

    def resume_when_deleted(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, int]:
        # What is still being deleted is read from AWS again, not carried in the deferral's kwargs.
        still = [i["DBInstanceIdentifier"] for i in self._earlier_copies(context) if i["DBInstanceStatus"] == "deleting"
                 and not restore.why_not_ephemeral(i, prefix=self.settings.instance_prefix,
                                                   source=self.source_db_instance_identifier)]
        if still and (event or {}).get("status") == "success":
            self._wait_for(still[0])
        return self.record_findings(context, (
            Finding(check="restore.janitor", resource=identifier, status=Status.CRITICAL, severity=Severity.P2,
                    summary=f"deletion of a left-behind copy not confirmed within "
                            f"{self.settings.delete_timeout_minutes:g} min: check the RDS console")
            for identifier in still))
