"""The weekly database review: what the database itself says about its health, read-only.

Top statements (pg_stat_statements), unused indexes, dead tuples and vacuum/analyze, transaction-ID
wraparound, long transactions and connections. Recommendations go to the report; nothing is changed
(the session is read-only and every statement has a timeout).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from solemate_maintenance.config import REPO_ROOT, DatabaseMaintenanceCheck
from solemate_maintenance.findings import Finding, Severity, Status, classify, measurement, threshold_finding
from solemate_maintenance.hooks.postgres import read_only_connection, rows
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.redaction import scrub, trim

SQL_DIR = REPO_ROOT / "include" / "sql" / "db_maintenance"
MB = 1024 * 1024
# PostgreSQL refuses writes when the oldest transaction ID is this old (2^31 minus a safety margin).
XID_WRAPAROUND = 2**31
PG_STAT_STATEMENTS_FIX = (
    "add pg_stat_statements to shared_preload_libraries (RDS: the instance's DB parameter group), reboot in "
    "the maintenance window, then run CREATE EXTENSION pg_stat_statements; in the database")
STATEMENT_TIMEOUT_MS = 30_000


def _sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def _mb(size_bytes: int) -> float:
    return round(size_bytes / MB, 1)


class DatabaseMaintenanceOperator(MaintenanceCheckOperator):
    """Review the platform database through a read-only connection; recommend, never change.

    :param db_conn_id: the read-only Postgres connection (``platform_db``); a missing connection
        is a *skipped* finding that says so.
    :param db_instance_identifier: the RDS instance, named in the findings.
    :param thresholds: the ``checks.database`` section of the platform config.
    """

    template_fields: Sequence[str] = (*MaintenanceCheckOperator.template_fields, "db_conn_id")

    def __init__(self, *, db_conn_id: str, db_instance_identifier: str, thresholds: DatabaseMaintenanceCheck,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.db_conn_id = db_conn_id
        self.db_instance_identifier = db_instance_identifier
        self.thresholds = thresholds

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        database = self.db_instance_identifier
        try:
            BaseHook.get_connection(self.db_conn_id)
        except AirflowNotFoundException:
            yield Finding(check="db.connection", resource=database, status=Status.SKIPPED,
                          summary=f"database review skipped: connection {self.db_conn_id!r} is not defined",
                          details={"conn_id": self.db_conn_id})
            return
        try:
            # Read-only by construction, and bounded: a review must never block the application.
            conn = read_only_connection(self.db_conn_id, STATEMENT_TIMEOUT_MS)
        except Exception as exc:  # the driver's error names host and user, never the password (scrubbed anyway)
            yield Finding(check="db.connection", resource=database, status=Status.CRITICAL, severity=Severity.P2,
                          summary=f"cannot connect to the database for its weekly review ({type(exc).__name__})",
                          details={"error": trim(scrub(str(exc)), 300), "conn_id": self.db_conn_id})
            return
        try:
            review = _Review(conn, self.thresholds, database)
            yield from review.run()
        finally:
            conn.close()
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value=review.measurements())


class _Review:
    """One review over one connection; collects the report's tables as it goes."""

    def __init__(self, conn: Any, thresholds: DatabaseMaintenanceCheck, database: str) -> None:
        self.conn = conn
        self.thresholds = thresholds
        self.database = database
        self.tables: dict[str, dict[str, Any]] = {}
        self.recommendations: list[list[str]] = []
        self.headline: list[str] = []

    def query(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return rows(self.conn, _sql(name), params)

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.tables[title] = {"columns": columns, "rows": rows}

    def run(self) -> Iterable[Finding]:
        reset = self.query("stats_reset")[0]
        self.stats_since = reset["stats_since"]
        self.counted_days = int(max(0.0, float(reset["counted_seconds"] or 0)) // 86400)
        self.since = (f"{_when(self.stats_since)}"
                      + (" (the server's start)" if reset["since_server_start"] else " (statistics reset)"))
        yield from self.statements()
        yield from self.unused_indexes()
        yield from self.table_health()
        yield from self.xid_age()
        if self.query("can_see_other_sessions")[0]["allowed"]:
            yield from self.long_transactions()
            yield from self.connections()
        else:
            grant = "GRANT pg_monitor TO <the platform_db user>"
            self.recommendations.append(["monitoring role", grant])
            yield Finding(check="db.monitoring_role", resource=self.database, status=Status.WARNING,
                          severity=Severity.P3,
                          summary="long transactions and connections not checked: the platform_db user cannot see "
                                  f"other sessions (no pg_read_all_stats); fix: {grant}")

    def measurements(self) -> dict[str, Any]:
        self.table("Recommendations (nothing was changed)", ["for", "recommendation"], self.recommendations)
        return {"headline": "Database: " + "; ".join(self.headline), "statistics_since": self.since,
                "tables": self.tables}

    # -- the parts ---------------------------------------------------------------------------------
    def statements(self) -> Iterable[Finding]:
        check, limits = "db.statements", self.thresholds
        available = self.query("statements_available")[0]["available"]
        reason = "the pg_stat_statements extension is not installed"
        if available:
            try:
                rows = self.query("top_statements", {"limit": limits.top_statements})
            except Exception as exc:
                # 55000 object_not_in_prerequisite_state: created, but not in shared_preload_libraries.
                if _sqlstate(exc) != "55000":
                    raise
                reason = "pg_stat_statements is installed but not loaded (shared_preload_libraries)"
                available = False
        if not available:
            self.headline.append("top statements unknown (no pg_stat_statements)")
            self.recommendations.append(["top statements", PG_STAT_STATEMENTS_FIX])
            yield Finding(check=check, resource=self.database, status=Status.WARNING, severity=Severity.P3,
                          summary=f"top statements cannot be measured: {reason}; fix: {PG_STAT_STATEMENTS_FIX}",
                          details={"fix": PG_STAT_STATEMENTS_FIX})
            return
        self.table(f"Top statements by total time (since {self.since})",
                   ["queryid", "calls", "total ms", "mean ms", "rows", "query"],
                   [[r["queryid"], r["calls"], float(r["total_ms"]), float(r["mean_ms"]), r["rows"], r["query"]]
                    for r in rows])
        slow = [r for r in rows if float(r["mean_ms"]) >= limits.slow_statement_mean_ms]
        for r in slow:
            self.recommendations.append([f"statement {r['queryid']}",
                                         "EXPLAIN (ANALYZE, BUFFERS) it on a restored copy; look for a missing "
                                         "index or a plan change"])
            yield Finding(check=check, resource=f"{self.database}/query {r['queryid']}", status=Status.WARNING,
                          severity=Severity.P3,
                          summary=f"slow statement: mean {float(r['mean_ms']):.0f} ms over {r['calls']} calls "
                                  f"(limit {limits.slow_statement_mean_ms:.0f} ms): {trim(r['query'], 120)}",
                          details={"queryid": r["queryid"], "calls": r["calls"], "mean_ms": float(r["mean_ms"]),
                                   "total_ms": float(r["total_ms"])})
        self.headline.append(f"{len(slow)} slow statement(s)")
        if not slow:
            yield Finding(check=check, resource=self.database, status=Status.OK,
                          summary=f"top {len(rows)} statements all under {limits.slow_statement_mean_ms:.0f} ms mean")

    def unused_indexes(self) -> Iterable[Finding]:
        rows = self.query("unused_indexes")
        big = [r for r in rows if r["size_bytes"] >= self.thresholds.unused_index_min_mb * MB]
        counted_days = self.counted_days
        if big and counted_days < self.thresholds.unused_index_min_stats_days:
            # A few days of statistics (after a failover or a reset) make every rarely used index look unused.
            self.table(f"Unused indexes (no scan since {self.since})", ["index", "table", "size MB"],
                       [[f"{r['schemaname']}.{r['index_name']}", r["table_name"], _mb(r["size_bytes"])] for r in rows])
            self.headline.append(f"unused indexes not judged ({counted_days} days of statistics)")
            yield Finding(check="db.unused_index", resource=self.database, status=Status.SKIPPED,
                          summary=f"{len(big)} index(es) without a scan, but statistics only cover {counted_days} "
                                  f"days (since {self.since}); judged after "
                                  f"{self.thresholds.unused_index_min_stats_days} days")
            return
        self.table(f"Unused indexes (no scan since {self.since})", ["index", "table", "size MB"],
                   [[f"{r['schemaname']}.{r['index_name']}", r["table_name"], _mb(r["size_bytes"])] for r in rows])
        for r in big:
            name = f"{r['schemaname']}.{r['index_name']}"
            self.recommendations.append([name, f"DROP INDEX CONCURRENTLY {name}; (after checking read replicas and "
                                               "monthly jobs do not use it)"])
            yield Finding(check="db.unused_index", resource=f"{self.database}/{name}", status=Status.WARNING,
                          severity=Severity.P4,
                          summary=f"index {name} on {r['table_name']} ({_mb(r['size_bytes'])} MB) has not been "
                                  f"scanned since {self.since}; it still costs every write",
                          details={"size_bytes": r["size_bytes"], "table": r["table_name"]})
        total = sum(r["size_bytes"] for r in big)
        self.headline.append(f"{len(big)} unused index(es) ({_mb(total)} MB)")
        if not big:
            yield Finding(check="db.unused_index", resource=self.database, status=Status.OK,
                          summary=f"no unused index of {self.thresholds.unused_index_min_mb:g} MB or more")

    def table_health(self) -> Iterable[Finding]:
        limits = self.thresholds
        rows = self.query("table_health")
        shown, bloated = [], 0
        for r in rows:
            live, dead = r["n_live_tup"], r["n_dead_tup"]
            ratio = 100 * dead / (live + dead) if live + dead else 0.0
            name = f"{r['schemaname']}.{r['table_name']}"
            shown.append([name, live, dead, round(ratio, 1), _when(r["last_vacuum"]), _when(r["last_analyze"])])
            status = classify(ratio, limits.dead_tuple_percent) if dead >= limits.min_dead_tuples else Status.OK
            if status is not Status.OK:
                bloated += 1
                self.recommendations.append([name, f"VACUUM (ANALYZE) {name}; and check why autovacuum falls "
                                                   "behind (long transactions, autovacuum_vacuum_scale_factor)"])
                yield Finding(check="db.dead_tuples", resource=f"{self.database}/{name}", status=status,
                              severity=Severity.P3 if status is Status.CRITICAL else Severity.P4,
                              summary=f"{name}: {ratio:.0f} % dead tuples ({dead} dead, {live} live), last vacuum "
                                      f"{_when(r['last_vacuum'])}",
                              metrics={"dead_tuple_percent": measurement(ratio, "%", limits.dead_tuple_percent)})
            elif r["last_analyze"] is None and live >= limits.min_dead_tuples:
                self.recommendations.append([name, f"ANALYZE {name}; (the planner has no statistics for it)"])
                yield Finding(check="db.analyze", resource=f"{self.database}/{name}", status=Status.WARNING,
                              severity=Severity.P4, summary=f"{name} ({live} rows) has never been analyzed")
        self.table("Tables by dead tuples", ["table", "live", "dead", "dead %", "last vacuum", "last analyze"],
                   shown[:25])
        self.headline.append(f"{bloated} table(s) need VACUUM")
        if not bloated:
            yield Finding(check="db.dead_tuples", resource=self.database, status=Status.OK,
                          summary=f"no table above {limits.dead_tuple_percent.warning:g} % dead tuples")

    def xid_age(self) -> Iterable[Finding]:
        rows = self.query("xid_age")
        oldest = rows[0] if rows else {"datname": "?", "xid_age": None}
        age = oldest["xid_age"]
        self.headline.append(f"oldest XID age {age:,} ({100 * age / XID_WRAPAROUND:.1f} % of wraparound)"
                             if age is not None else "XID age unknown")
        finding = threshold_finding(check="db.xid_age", resource=f"{self.database}/{oldest['datname']}",
                                    label="transaction-ID age", metric="xid_age", value=age, unit="xids",
                                    threshold=self.thresholds.xid_age, warning_severity=Severity.P3,
                                    critical_severity=Severity.P2)
        if finding.is_problem:
            self.recommendations.append([oldest["datname"], f"VACUUM (FREEZE) the oldest tables of "
                                                            f"{oldest['datname']} before it nears wraparound"])
        yield finding

    def long_transactions(self) -> Iterable[Finding]:
        limit = self.thresholds.long_transaction_minutes
        rows = self.query("long_transactions", {"minutes": limit.warning})
        self.table("Long-running transactions", ["pid", "client", "state", "minutes", "query"],
                   [[r["pid"], r["client"], r["state"], float(r["minutes"]), r["query"]] for r in rows])
        for r in rows:
            minutes = float(r["minutes"])
            status = classify(minutes, limit)
            yield Finding(check="db.long_transaction", resource=f"{self.database}/{r['client']}", status=status,
                          severity=Severity.P2 if status is Status.CRITICAL else Severity.P3,
                          summary=f"transaction open {minutes:.0f} min (pid {r['pid']}, {r['client']}, "
                                  f"{r['state']}): {trim(r['query'] or '', 100)}",
                          details={"pid": r["pid"], "user": r["usename"]},
                          metrics={"minutes": measurement(minutes, "min", limit)})
        self.headline.append(f"{len(rows)} long transaction(s)")
        if not rows:
            yield Finding(check="db.long_transaction", resource=self.database, status=Status.OK,
                          summary=f"no transaction open {limit.warning:g} min or longer")

    def connections(self) -> Iterable[Finding]:
        limits = self.thresholds
        rows = self.query("connections")
        total = sum(r["connections"] for r in rows)
        maximum = rows[0]["max_connections"] if rows else None
        self.table("Connections by service", ["client", "connections"], [[r["client"], r["connections"]] for r in rows])
        if maximum:
            percent = 100 * total / maximum
            self.headline.append(f"connections {total}/{maximum}")
            yield threshold_finding(check="db.connections", resource=self.database,
                                    label=f"{total} of {maximum} connections in use:", metric="percent",
                                    value=percent, unit="%", threshold=limits.connections_percent,
                                    warning_severity=Severity.P3, critical_severity=Severity.P2)
        for r in rows:
            if r["connections"] > limits.max_connections_per_service:
                yield Finding(check="db.connections_per_service", resource=f"{self.database}/{r['client']}",
                              status=Status.WARNING, severity=Severity.P3,
                              summary=f"{r['client']} holds {r['connections']} connections, above the guide's "
                                      f"{limits.max_connections_per_service} per service: check its pool size")


def _when(moment: Any) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, psycopg 3 (`sqlstate`) or psycopg2 (`pgcode`)."""
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
