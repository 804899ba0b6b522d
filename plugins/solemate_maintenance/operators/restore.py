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
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk.timezone import utcnow

from solemate_maintenance import restore
from solemate_maintenance.config import Backups, RestoreTest
from solemate_maintenance.findings import Finding, Measurement, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.run_facts import format_instant as _stamp
from solemate_maintenance.window import run_end

REPO_ROOT = Path(__file__).resolve().parents[3]
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


class RestoreValidationOperator(_RestoreTask):
    """Wait for the restored instance (deferred), validate its data with SQL, measure RTO and RPO.

    RTO: from the restore request to the validation passing, against ``database_rto_minutes``.
    Data RPO: the restore point minus the newest business timestamp in the restored data, against
    ``database_rpo_minutes``. Row counts are compared with the previous restore test's.

    :param policy: the `backups` section (RTO and RPO targets).
    :param request_task_id: the restore request task (its XCom says whether a restore was made).
    :param reports: the reports bucket and prefix, where earlier restore tests' measurements are read.
    The validation user and password come from ``settings.conn_id``; host and port from AWS.
    """

    headline_label = "Restore test"

    def __init__(self, *, policy: Backups, request_task_id: str = "restore_request",
                 reports: dict[str, Any] | None = None, rto_target_minutes: int | None = None,
                 rpo_target_minutes: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy
        self.request_task_id = request_task_id
        self.reports = reports or {}
        # The DR drill reuses the validation against the DR table's database targets.
        self.rto_target = rto_target_minutes or policy.database_rto_minutes
        self.rpo_target = rpo_target_minutes or policy.database_rpo_minutes

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        target = self.target_id(context)
        instance = self.describe(target)
        if instance is None:
            yield from self._nothing_restored(context, target)
            return
        yield from self._wait_or_validate(context, instance)

    def _wait_or_validate(self, context: Any, instance: dict[str, Any], event: dict[str, Any] | None = None,
                          rewaits: int = 0) -> Iterable[Finding]:
        target = instance["DBInstanceIdentifier"]
        requested_at = restore.parse_time(restore.tags_of(instance).get(restore.TAG_REQUESTED)) or utcnow()
        status = instance["DBInstanceStatus"]
        if status != "available":
            remaining = requested_at + timedelta(minutes=self.settings.restore_timeout_minutes) - utcnow()
            # A trigger that keeps failing (e.g. the triggerer lacks permissions) must not loop until the deadline.
            if remaining.total_seconds() > 0 and status not in FAILED_INSTANCE_STATES and rewaits < MAX_REWAITS:
                from airflow.providers.amazon.aws.triggers.rds import RdsDbAvailableTrigger

                # Also after a trigger gave up early (a triggerer restart, an AWS error): the deadline
                # counts from the request, so waiting again never extends it.
                self.log.info("%s is %s; waiting up to %.1f min without holding a worker slot", target, status,
                              remaining.total_seconds() / 60)
                self.defer(trigger=RdsDbAvailableTrigger(**self._trigger_kwargs(target, remaining.total_seconds())),
                           method_name="resume_when_available",
                           kwargs={"rewaits": rewaits + (1 if event is not None else 0)})
            yield self._not_available(target, instance, requested_at, event)
            return
        yield from self._validate(context, instance, requested_at)

    def resume_when_available(self, context: Any, event: dict[str, Any] | None = None, rewaits: int = 0
                              ) -> dict[str, int]:
        return self.record_findings(context, self._after_wait(context, event, rewaits))

    def _after_wait(self, context: Any, event: dict[str, Any] | None, rewaits: int) -> Iterable[Finding]:
        target = self.target_id(context)
        instance = self.describe(target)
        if instance is None:
            yield Finding(check="restore.available", resource=target, status=Status.CRITICAL, severity=Severity.P2,
                          summary="the restored instance disappeared while it was being waited for")
            return
        yield from self._wait_or_validate(context, instance, event, rewaits)

    def _nothing_restored(self, context: Any, target: str) -> Iterable[Finding]:
        info = context["ti"].xcom_pull(task_ids=self.request_task_id, key=RESTORE_XCOM_KEY)
        if info:
            yield Finding(check="restore.available", resource=target, status=Status.CRITICAL, severity=Severity.P2,
                          summary="the restore was requested but the instance does not exist (deleted by someone "
                                  "else, or AWS dropped the request)")
        else:
            yield Finding(check="restore.validation", resource=target, status=Status.SKIPPED,
                          summary="nothing to validate: no restore was made (see restore_request)")

    def _not_available(self, target: str, instance: dict[str, Any], requested_at: datetime,
                       event: dict[str, Any] | None = None) -> Finding:
        waited = _minutes(utcnow() - requested_at)
        return Finding(check="restore.available", resource=target, status=Status.CRITICAL, severity=Severity.P2,
                       summary=f"restored instance not available {waited:.1f} min after the request (status "
                               f"{instance['DBInstanceStatus']!r}, limit {self.settings.restore_timeout_minutes:g} "
                               f"min); RTO target {self.rto_target} min missed",
                       details={"status": instance["DBInstanceStatus"], "requested_at": _stamp(requested_at),
                                "trigger": trim(scrub(str((event or {}).get("message", ""))), 300)},
                       metrics={"rto_minutes": Measurement(value=None, unit="min",
                                                           critical=self.rto_target,
                                                           bad_when="above")})

    # -- validation ---------------------------------------------------------------------------------------
    def _sql(self, name: str) -> str:
        return (REPO_ROOT / self.settings.validation_sql_dir / f"{name}.sql").read_text()

    def _hook(self, instance: dict[str, Any]) -> Any:
        from airflow.providers.postgres.hooks.postgres import PostgresHook
        from airflow.sdk import BaseHook, Connection

        from solemate_maintenance.notifiers.delivery import register_connection_secrets

        register_connection_secrets(self.settings.conn_id)
        credentials = BaseHook.get_connection(self.settings.conn_id)
        endpoint = instance.get("Endpoint") or {}
        database = credentials.schema or instance.get("DBName") or "postgres"
        connection = Connection(conn_id=self.settings.conn_id, conn_type="postgres", host=endpoint.get("Address"),
                                port=endpoint.get("Port"), login=credentials.login, password=credentials.password,
                                schema=database, extra=credentials.extra)
        return PostgresHook(postgres_conn_id=self.settings.conn_id, connection=connection, database=database)

    def _validate(self, context: Any, instance: dict[str, Any], requested_at: datetime) -> Iterable[Finding]:
        target = instance["DBInstanceIdentifier"]
        tags = restore.tags_of(instance)
        restore_point = restore.parse_time(tags.get(restore.TAG_RESTORE_POINT))
        available_after = _minutes(utcnow() - requested_at)
        yield Finding(check="restore.available", resource=target, status=Status.OK,
                      summary=f"available {available_after:.1f} min after the request")
        earlier = self._earlier_tests(context)
        results, counts, newest, rpo_unmeasured = self._check_copy(target, instance, earlier)
        yield from results
        passed = not any(f.is_failing for f in results)
        finished = utcnow()
        rto = _minutes(finished - requested_at) if passed else None
        data_rpo = _minutes(restore_point - newest) if restore_point and newest else None
        yield from self._rpo_finding(target, restore_point, newest, data_rpo, rpo_unmeasured)
        yield self._rto_finding(target, rto)
        self._record(context, target, tags, restore_point, requested_at, available_after, rto, data_rpo, counts,
                     passed, earlier)

    def _tables(self, hook: Any, target: str) -> list[Finding]:
        present = {row[0] for row in hook.get_records(self._sql("tables"))}
        missing = [t for t in self.settings.required_tables if t not in present]
        if missing:
            return [Finding(check="restore.tables", resource=target, status=Status.CRITICAL, severity=Severity.P2,
                            summary=f"required tables missing: {', '.join(missing)}",
                            details={"missing": missing, "present": sorted(present)[:50]})]
        return [Finding(check="restore.tables", resource=target, status=Status.OK,
                        summary=f"all {len(self.settings.required_tables)} required tables present")]

    def _check_copy(self, target: str, instance: dict[str, Any], earlier: list[dict[str, Any]]
                    ) -> tuple[list[Finding], dict[str, int], datetime | None, str]:
        """The validation queries, each in its own try (each opens its own connection): a missing table
        is its own finding and must not hide what the other checks say of the rest of the copy.
        Returns the findings, the row counts, the newest business row and why the data RPO is unmeasured."""
        results: list[Finding] = []

        def step(what: str, check: Any) -> Any:
            try:
                return check()
            except Exception as exc:
                results.append(self._query_failed(target, what, exc))
                return None

        hook = step("connecting to the restored copy", lambda: self._hook(instance))
        tables = step("listing the tables", lambda: self._tables(hook, target)) if hook else None
        if tables is None:  # a copy that cannot be listed (connection, rights) can be asked nothing else
            return results, {}, None, "the restored copy could not be queried"
        results += tables
        counts = step("counting rows", lambda: self._count_rows(hook)) or {}
        results += self._row_counts(target, counts, earlier)
        results += step("checking foreign keys", lambda: self._foreign_keys(hook, target)) or []
        results += step("checking indexes", lambda: self._indexes(hook, target)) or []
        try:
            row = hook.get_first(self._sql("newest_business_timestamp"))
        except Exception as exc:
            return results, counts, None, (f"the newest-business-row query failed ({type(exc).__name__}: "
                                           f"{trim(scrub(str(exc)), 120)})")
        newest = row[0] if row else None
        if newest is not None and newest.tzinfo is None:
            newest = newest.replace(tzinfo=UTC)  # a `timestamp without time zone` column: stored as UTC
        return results, counts, newest, "no business rows or no restore point"

    def _query_failed(self, target: str, what: str, exc: Exception) -> Finding:
        return Finding(check="restore.validation", resource=target, status=Status.CRITICAL, severity=Severity.P2,
                       summary=f"validation failed while {what}: {type(exc).__name__}: {trim(scrub(str(exc)), 200)}",
                       details={"conn_id": self.settings.conn_id, "step": what})

    def _count_rows(self, hook: Any) -> dict[str, int]:
        """Exact row counts of the required tables that are present (a missing one is restore.tables')."""
        rows = hook.get_records(self._sql("row_counts"), parameters={"tables": list(self.settings.required_tables)})
        return {table: int(hook.get_first(count_query)[0]) for table, count_query in rows}

    def _row_counts(self, target: str, counts: dict[str, int], earlier: list[dict[str, Any]]) -> list[Finding]:
        # The newest earlier test that passed: a failed one's counts are no baseline.
        previous = next((e["row_counts"] for e in earlier if e.get("validation") == "passed" and e.get("row_counts")),
                        {})
        findings = []
        for table, count in sorted(counts.items()):
            floor = self.settings.min_rows.get(table)
            before = previous.get(table)
            drop = round(100 * (before - count) / before, 1) if before else None
            details = {"rows": count, "floor": floor, "previous_test": before}
            if floor is not None and count < floor:
                findings.append(Finding(check="restore.row_count", resource=f"{target}/{table}",
                                        status=Status.CRITICAL, severity=Severity.P2,
                                        summary=f"{table}: {count} rows, below the floor of {floor}", details=details))
            elif drop is not None and drop > self.settings.max_row_drop_percent:
                findings.append(Finding(check="restore.row_count", resource=f"{target}/{table}",
                                        status=Status.CRITICAL, severity=Severity.P2,
                                        summary=f"{table}: {count} rows, {drop:g} % fewer than the previous restore "
                                                f"test ({before}); limit {self.settings.max_row_drop_percent:g} %",
                                        details=details))
            else:
                findings.append(Finding(check="restore.row_count", resource=f"{target}/{table}", status=Status.OK,
                                        summary=f"{table}: {count} rows"
                                                + (f" (previous test {before})" if before is not None else ""),
                                        details=details))
        return findings

    def _foreign_keys(self, hook: Any, target: str) -> list[Finding]:
        rows = hook.get_records(self._sql("orphaned_foreign_keys"))
        broken = []
        for constraint, child, column, parent, count_query in rows:
            orphaned = int(hook.get_first(count_query)[0])
            if orphaned:
                broken.append((constraint, child, column, parent, orphaned))
        if broken:
            lines = [f"{child}.{column} -> {parent}: {n} orphaned rows" for _, child, column, parent, n in broken]
            return [Finding(check="restore.foreign_keys", resource=target, status=Status.CRITICAL,
                            severity=Severity.P2, summary=f"orphaned rows: {'; '.join(lines[:5])}",
                            details={"constraints": lines})]
        return [Finding(check="restore.foreign_keys", resource=target, status=Status.OK,
                        summary=f"{len(rows)} foreign keys checked, no orphaned rows")]

    def _indexes(self, hook: Any, target: str) -> list[Finding]:
        findings = []
        invalid = hook.get_records(self._sql("invalid_indexes"))
        if invalid:
            findings.append(Finding(check="restore.indexes", resource=target, status=Status.CRITICAL,
                                    severity=Severity.P2,
                                    summary=f"{len(invalid)} invalid indexes: {', '.join(r[0] for r in invalid[:5])}"))
        else:
            findings.append(Finding(check="restore.indexes", resource=target, status=Status.OK,
                                    summary="every index valid and ready"))
        if not hook.get_records(self._sql("amcheck_installed")):
            findings.append(Finding(check="restore.amcheck", resource=target, status=Status.SKIPPED,
                                    summary="amcheck is not installed in the database: B-tree structure not "
                                            "verified (CREATE EXTENSION amcheck in production to enable it)"))
            return findings
        try:
            checked = hook.get_records(self._sql("amcheck_btree"))
        except Exception as exc:  # amcheck raises on the first corrupt index, or when it may not run
            code = getattr(exc, "pgcode", None) or getattr(getattr(exc, "__cause__", None), "pgcode", None)
            if code in ("XX001", "XX002"):  # data_corrupted, index_corrupted
                findings.append(Finding(check="restore.amcheck", resource=target, status=Status.CRITICAL,
                                        severity=Severity.P2,
                                        summary=f"amcheck found a damaged index: {trim(scrub(str(exc)), 200)}"))
            elif code == "42501":
                findings.append(Finding(check="restore.amcheck", resource=target, status=Status.SKIPPED,
                                        summary=f"amcheck not run: the {self.settings.conn_id} user may not execute "
                                                "bt_index_check (GRANT EXECUTE ON FUNCTION bt_index_check(regclass) "
                                                "to it in production)"))
            else:
                findings.append(Finding(check="restore.amcheck", resource=target, status=Status.WARNING,
                                        severity=Severity.P3,
                                        summary=f"amcheck could not run: {trim(scrub(str(exc)), 200)}"))
            return findings
        findings.append(Finding(check="restore.amcheck", resource=target, status=Status.OK,
                                summary=f"amcheck verified {len(checked)} B-tree indexes"))
        return findings

    def _rpo_finding(self, target: str, restore_point: datetime | None, newest: datetime | None,
                     data_rpo: float | None, unmeasured: str) -> Iterable[Finding]:
        target_minutes = self.rpo_target
        metrics = {"data_rpo_minutes": Measurement(value=data_rpo, unit="min", warning=target_minutes,
                                                   bad_when="above")}
        details = {"restore_point": _stamp(restore_point), "newest_business_row": _stamp(newest)}
        if data_rpo is None:
            yield Finding(check="restore.data_rpo", resource=target, status=Status.WARNING, severity=Severity.P3,
                          summary=f"data RPO not measured: {unmeasured}", details=details,
                          metrics=metrics)
        elif data_rpo > target_minutes:
            yield Finding(check="restore.data_rpo", resource=target, status=Status.WARNING, severity=Severity.P3,
                          summary=f"data RPO {data_rpo:.1f} min: the newest business row is {data_rpo:.1f} min "
                                  f"older than the restore point (target {target_minutes} min)",
                          details=details, metrics=metrics)
        else:
            yield Finding(check="restore.data_rpo", resource=target, status=Status.OK,
                          summary=f"data RPO {data_rpo:.1f} min (target {target_minutes} min)", details=details,
                          metrics=metrics)

    def _rto_finding(self, target: str, rto: float | None) -> Finding:
        goal = self.rto_target
        metrics = {"rto_minutes": Measurement(value=rto, unit="min", warning=goal, bad_when="above")}
        if rto is None:
            return Finding(check="restore.rto", resource=target, status=Status.SKIPPED,
                           summary="RTO not measured: the restored data did not pass validation", metrics=metrics)
        if rto > goal:
            return Finding(check="restore.rto", resource=target, status=Status.WARNING, severity=Severity.P3,
                           summary=f"RTO {rto:.1f} min from request to validated data, target {goal} min",
                           metrics=metrics)
        return Finding(check="restore.rto", resource=target, status=Status.OK,
                       summary=f"RTO {rto:.1f} min from request to validated data (target {goal} min)",
                       metrics=metrics)

    # -- measurements and history ----------------------------------------------------------------------
    def _earlier_tests(self, context: Any) -> list[dict[str, Any]]:
        """Earlier runs' measurements of this task, newest first (read once per validation)."""
        if not self.reports:
            return []
        from solemate_maintenance.report_store import ReportStore

        store = ReportStore(bucket=self.reports["bucket"], prefix=self.reports.get("prefix", "reports"),
                            aws_conn_id=self.aws_conn_id, region_name=self.region_name)
        try:
            reports = store.reports_before(context["ti"].dag_id, run_end(context), limit=6, log=self.log)
        except Exception as exc:  # history is a comparison, not the test: say so and go on
            self.log.warning("Earlier restore tests could not be read: %s", trim(scrub(str(exc)), 200))
            return []
        return [{"logical_date": r.logical_date, **r.measurements[self.task_id]}
                for r in reports if r.measurements.get(self.task_id)]

    def _record(self, context: Any, target: str, tags: dict[str, str], point: datetime | None,
                requested_at: datetime, available_after: float, rto: float | None, data_rpo: float | None,
                counts: dict[str, int], passed: bool, earlier: list[dict[str, Any]]) -> None:
        trend = [{"logical_date": e.get("logical_date"), "rto_minutes": e.get("rto_minutes"),
                  "data_rpo_minutes": e.get("data_rpo_minutes")} for e in earlier]
        rto_text = f"RTO {rto:.1f} min" if rto is not None else "RTO not achieved"
        rpo_text = f"data RPO {data_rpo:.1f} min" if data_rpo is not None else "data RPO not measured"
        headline = (f"{self.headline_label} ({tags.get(restore.TAG_RESTORE_TYPE, '?').replace('_', '-')} to "
                    f"{_stamp(point)}): validation {'passed' if passed else 'FAILED'}; "
                    f"{rto_text} (target {self.rto_target}); {rpo_text} "
                    f"(target {self.rpo_target})")
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": headline, "instance": target, "restore_type": tags.get(restore.TAG_RESTORE_TYPE),
            "restore_point": tags.get(restore.TAG_RESTORE_POINT), "requested_at": requested_at.isoformat(),
            "available_after_minutes": available_after, "rto_minutes": rto,
            "rto_target_minutes": self.rto_target, "data_rpo_minutes": data_rpo,
            "rpo_target_minutes": self.rpo_target, "validation": "passed" if passed else "failed",
            "row_counts": counts, "trend": trend})


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
