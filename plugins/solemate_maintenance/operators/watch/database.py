"""`DatabaseWatchOperator`: the guide's hourly database optimisation recommendations, read-only.

Through ``platform_db`` (a read-only session with a statement timeout): the statements whose mean time
grew most since the previous hour (``pg_stat_statements`` deltas, the counters kept in the incident
record), connections per service against the guide's 100, long transactions, and sessions waiting on a
lock with what blocks them. Each finding carries its recommendation. Without pg_stat_statements the
rest still runs and a finding says how to enable it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from solemate_maintenance.config import REPO_ROOT, Upper
from solemate_maintenance.findings import Severity, Status, classify
from solemate_maintenance.incidents import IncidentRecord, Observation
from solemate_maintenance.operators.watch.base import IncidentWatchOperator
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.window import TimeWindow

SQL = {"watch": REPO_ROOT / "include" / "sql" / "db_watch", "review": REPO_ROOT / "include" / "sql" / "db_maintenance"}
STATEMENT_TIMEOUT_MS = 10_000
# Counters of at most this many statements (the most expensive) are kept from one hour to the next.
MAX_STATEMENTS = 200
MEMORY_KEY = "database_watch"
ENABLE_PG_STAT_STATEMENTS = (
    "add pg_stat_statements to shared_preload_libraries (RDS: the DB parameter group), reboot in the maintenance "
    "window, then run CREATE EXTENSION pg_stat_statements; in the database")


def _sql(kind: str, name: str) -> str:
    return (SQL[kind] / f"{name}.sql").read_text()


class DatabaseWatchOperator(IncidentWatchOperator):
    """Hourly database analysis. Statement regressions are P3 recommendations (announced once, as
    incidents at ``watch.database.open_severity``); connections, long transactions and lock waits are
    P3 at warning and P2 at critical."""

    live_checks = frozenset({"db.lock_wait", "db.long_transaction", "db.connections_per_service"})

    def open_severity(self) -> Severity:
        return Severity(self.config.watch.database.open_severity)

    def observe(self, context: Any, window: TimeWindow, record: IncidentRecord) -> list[Observation]:
        from solemate_maintenance.hooks.postgres import read_only_connection

        self._counters: dict[str, list[float]] | None = None
        # Unreachable: the task fails, and retries.
        conn = read_only_connection(self.config.resources.rds.db_conn_id, STATEMENT_TIMEOUT_MS)
        try:
            self._conn = conn
            return [*self._statements(window, record), *self._connections(window), *self._long_transactions(window),
                    *self._lock_waits(window)]
        finally:
            conn.close()

    def remember(self, record: IncidentRecord) -> None:
        if self._counters is not None:
            record.memory[MEMORY_KEY] = {"statements": self._counters}

    # -- the parts -------------------------------------------------------------------------------------
    def _rows(self, kind: str, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        from solemate_maintenance.hooks.postgres import rows

        return rows(self._conn, _sql(kind, name), params)

    def _observation(self, check: str, resource: str, severity: Severity | None, summary: str, window: TimeWindow,
                     *, since: datetime | None = None, label: str = "", step: str = "", peak: float | None = None,
                     unit: str = "") -> Observation:
        # Live state: seen now; resolved when a later watch no longer sees it (one interval later).
        seen = window.end
        return Observation(
            key=f"{check}|{resource}", check=check, resource=resource, severity=severity, summary=summary,
            label=label, first_bad=(since or seen) if severity else None, last_bad=seen if severity else None,
            still_bad=severity is not None, peak=peak, peak_at=seen if severity else None, unit=unit,
            next_step=step, period=timedelta(minutes=self.interval_minutes))

    def _statements(self, window: TimeWindow, record: IncidentRecord) -> list[Observation]:
        database, limits = self.config.resources.rds.instance_id, self.config.watch.database
        if not self._rows("review", "statements_available")[0]["available"]:
            return [self._observation("db.statements", database, Severity.P4,
                                      "statement analysis off: pg_stat_statements is not installed; "
                                      + ENABLE_PG_STAT_STATEMENTS, window, label="pg_stat_statements",
                                      step=ENABLE_PG_STAT_STATEMENTS)]
        try:
            rows = self._rows("watch", "statement_counters", {"limit": MAX_STATEMENTS})
        except Exception as exc:  # the view exists but the library is not preloaded
            return [self._observation("db.statements", database, Severity.P4,
                                      f"pg_stat_statements cannot be read ({trim(scrub(str(exc)), 120)}); "
                                      f"{ENABLE_PG_STAT_STATEMENTS}", window, label="pg_stat_statements",
                                      step=ENABLE_PG_STAT_STATEMENTS)]
        before = (record.memory.get(MEMORY_KEY) or {}).get("statements") or {}
        counters: dict[str, list[float]] = {}
        grown = []
        for row in rows:
            calls, total = float(row["calls"]), float(row["total_ms"])
            previous = before.get(row["queryid"])
            hour_mean = None
            if previous and calls > previous[0] and total >= previous[1]:
                hour_mean = (total - previous[1]) / (calls - previous[0])
                baseline = previous[2] if len(previous) > 2 and previous[2] else previous[1] / max(previous[0], 1)
                if baseline and hour_mean >= limits.min_mean_ms:
                    growth = 100 * (hour_mean - baseline) / baseline
                    if growth >= limits.mean_time_growth_percent:
                        grown.append((growth, hour_mean, baseline, calls - previous[0], row))
            counters[row["queryid"]] = [calls, total, hour_mean or (previous[2] if previous and len(previous) > 2
                                                                     else total / max(calls, 1))]
        self._counters = counters
        observations = []
        worst = sorted(grown, key=lambda g: g[0], reverse=True)[:limits.top_statements]
        for growth, mean, baseline, calls, row in worst:
            step = (f"Run EXPLAIN (ANALYZE, BUFFERS) on it with typical parameters; look for a sequential scan on a "
                    f"large table (a missing index), a changed plan after ANALYZE, or lock waits. Statement: "
                    f"{row['query']}")
            observations.append(self._observation(
                "db.statement_regression", f"{database}/queryid {row['queryid']}", Severity.P3,
                f"statement {row['queryid']} takes {mean:.0f} ms on average this hour, was {baseline:.0f} ms "
                f"(+{growth:.0f} %, {calls:.0f} calls): {row['query'][:120]}", window,
                label="statement mean time", step=step, peak=round(mean, 1), unit="ms"))
        # Statements seen before that no longer grew: healthy observations resolve their recommendation.
        for queryid in before:
            if queryid not in {g[4]["queryid"] for g in grown}:
                observations.append(self._observation("db.statement_regression", f"{database}/queryid {queryid}",
                                                      None, "back to its usual time", window))
        return observations

    def _connections(self, window: TimeWindow) -> list[Observation]:
        limit = self.config.checks.database.max_connections_per_service
        threshold = Upper(warning=0.8 * limit, critical=limit)
        observations = []
        for row in self._rows("review", "connections"):
            status = classify(float(row["connections"]), threshold)
            severity = {Status.OK: None, Status.WARNING: Severity.P3, Status.CRITICAL: Severity.P2}[status]
            observations.append(self._observation(
                "db.connections_per_service", f"{self.config.resources.rds.instance_id}/{row['client']}", severity,
                f"{row['client']} holds {row['connections']} connections (the guide's ceiling per service: {limit}; "
                f"server max_connections {row['max_connections']})", window, label="connections per service",
                step="Lower the service's pool size per task, or put RDS Proxy in front of the database; check for a "
                     "connection leak if the count only grows.", peak=float(row["connections"]), unit="connections"))
        return observations

    def _long_transactions(self, window: TimeWindow) -> list[Observation]:
        threshold = self.config.checks.database.long_transaction_minutes
        observations = []
        for row in self._rows("review", "long_transactions", {"minutes": threshold.warning}):
            minutes = float(row["minutes"])
            severity = Severity.P2 if minutes >= threshold.critical else Severity.P3
            observations.append(self._observation(
                "db.long_transaction", f"{self.config.resources.rds.instance_id}/pid {row['pid']}", severity,
                f"transaction of {row['client']} (pid {row['pid']}, {row['state']}) open for {minutes:.0f} min: "
                f"{row['query']}", window, since=window.end - timedelta(minutes=minutes),
                label="long transaction", peak=minutes, unit="min",
                step=f"Ask the owner of {row['client']}; if it is stuck, end it with SELECT "
                     f"pg_terminate_backend({row['pid']}); it holds locks and stops vacuum."))
        return observations

    def _lock_waits(self, window: TimeWindow) -> list[Observation]:
        threshold = self.config.watch.database.lock_wait_seconds
        observations = []
        for row in self._rows("watch", "lock_waits"):
            seconds = float(row["seconds"] or 0)
            status = classify(seconds, threshold)
            if status is Status.OK:
                continue
            severity = Severity.P2 if status is Status.CRITICAL else Severity.P3
            observations.append(self._observation(
                "db.lock_wait", f"{self.config.resources.rds.instance_id}/pid {row['pid']}", severity,
                f"{row['client']} (pid {row['pid']}) waits {seconds:.0f} s for a lock held by {row['blocker_client']} "
                f"(pid {row['blocker_pid']}, {row['blocker_state']}: {row['blocker_query']})", window,
                since=window.end - timedelta(seconds=seconds), label="lock wait", peak=round(seconds), unit="s",
                step=f"The blocker is pid {row['blocker_pid']} ({row['blocker_client']}): if it is idle in "
                     f"transaction or stuck, end it with SELECT pg_terminate_backend({row['blocker_pid']}); then find "
                     "why it held the lock (a transaction left open by the application)."))
        return observations
