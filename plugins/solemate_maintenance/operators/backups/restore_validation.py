"""The restore test's validation: the restored copy answers SQL (tables, row counts, foreign keys,
indexes, amcheck), and the measured RTO and data RPO against the backup policy."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk.timezone import utcnow

from solemate_maintenance import restore
from solemate_maintenance.config import REPO_ROOT, Backups
from solemate_maintenance.findings import Finding, Measurement, Severity, Status
from solemate_maintenance.operators.backups.restore import (
    FAILED_INSTANCE_STATES,
    MAX_REWAITS,
    RESTORE_XCOM_KEY,
    _minutes,
    _RestoreTask,
)
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.run_facts import format_instant as _stamp
from solemate_maintenance.window import run_end


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
        counts = step("counting rows", lambda: self._count_rows(hook, target, results)) or {}
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

    def _count_rows(self, hook: Any, target: str, uncounted: list[Finding]) -> dict[str, int]:
        """Exact row counts of the required tables that are present (a missing one is restore.tables')."""
        rows = hook.get_records(self._sql("row_counts"), parameters={"tables": list(self.settings.required_tables)})
        counts: dict[str, int] = {}
        for table, count_query in rows:
            try:
                counts[table] = int(hook.get_first(count_query)[0])
            except Exception as exc:  # one table the user may not read must not hide the others' counts
                uncounted.append(self._query_failed(target, f"counting the rows of {table}", exc))
        return counts

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
