"""The platform database, read the one way every check reads it: through the Postgres provider's hook,
autocommit (no transaction held open between queries), every statement read-only and bounded."""

from __future__ import annotations

from typing import Any


def read_only_connection(conn_id: str, statement_timeout_ms: int) -> Any:
    """An open psycopg2 connection to `conn_id`; the caller closes it. Connection errors propagate."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from solemate_maintenance.notifiers.delivery import register_connection_secrets

    register_connection_secrets(conn_id)
    conn = PostgresHook(postgres_conn_id=conn_id).get_conn()
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cur.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
    except Exception:
        conn.close()
        raise
    return conn


def rows(conn: Any, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rows of one query as dicts keyed by column name."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        columns = [c.name for c in cur.description]
        return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
