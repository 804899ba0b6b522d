"""High database CPU or connections (the guide's "High database CPU"), and Redis memory pressure.

Database: the instance (Performance Insights on? a read replica?), Performance Insights' top SQL by
load when it is on, and through ``platform_db`` (read-only, with a statement timeout) the statements
that used the most time since the hourly database watch's counters, and connections against
``max_connections``.

Redis: the cluster's parameter group and its ``maxmemory-policy`` (what evictions mean depends on it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from solemate_maintenance.config import REPO_ROOT
from solemate_maintenance.troubleshooting import Notes, Session

TOP_STATEMENTS = 3
STATEMENT_TIMEOUT_MS = 5_000
STATEMENT_COUNTERS = REPO_ROOT / "include" / "sql" / "db_watch" / "statement_counters.sql"
CONNECTIONS_SQL = ("SELECT count(*)::int AS connections, current_setting('max_connections')::int AS max_connections "
                   "FROM pg_stat_activity")


def load(session: Session, check: str, resource: str, notes: Notes) -> None:
    rds = session.config.resources.rds
    instance_id = resource.split("/", 1)[0] or rds.instance_id
    facts: dict[str, Any] = {}

    def instance() -> None:
        db = session.call("rds", "describe_db_instances", DBInstanceIdentifier=instance_id)["DBInstances"][0]
        facts["instance"] = db
        replicas = db.get("ReadReplicaDBInstanceIdentifiers") or []
        notes.add(f"instance {instance_id}: {db.get('DBInstanceClass')}, Multi-AZ {db.get('MultiAZ')}, "
                  f"read replicas: {', '.join(replicas) or 'none'}")
        if not db.get("PerformanceInsightsEnabled"):
            notes.add("Performance Insights is off (the guide runs it on): no top SQL by load from AWS")
            notes.advise(f"Enable Performance Insights on {instance_id} (Modify > Monitoring; no reboot) so the "
                         "next alert names the SQL by load.")
        if check == "rds.cpu_utilization" and not replicas:
            notes.advise("With no read replica every read hits the primary: move read-heavy queries (reports, "
                         "search) to a replica if the load is reads.")

    def top_sql() -> None:
        db = facts.get("instance") or {}
        if not db.get("PerformanceInsightsEnabled"):
            return
        window = session.window
        answer = session.call("pi", "describe_dimension_keys", ServiceType="RDS", Identifier=db["DbiResourceId"],
                              StartTime=max(window.start, window.end - timedelta(hours=3)), EndTime=window.end,
                              Metric="db.load.avg", GroupBy={"Group": "db.sql_tokenized", "Limit": TOP_STATEMENTS})
        for key in answer.get("Keys", [])[:TOP_STATEMENTS]:
            statement = key.get("Dimensions", {}).get("db.sql_tokenized.statement", "?")
            notes.add(f"top SQL by load (Performance Insights): {key.get('Total', 0):.2f} average active sessions: "
                      f"{statement[:160]}")

    def statements() -> None:
        from solemate_maintenance.hooks.postgres import read_only_connection, rows

        conn = read_only_connection(rds.db_conn_id, STATEMENT_TIMEOUT_MS)
        try:
            counts = rows(conn, CONNECTIONS_SQL)[0]
            share = 100 * counts["connections"] / max(counts["max_connections"], 1)
            notes.add(f"connections: {counts['connections']} of max_connections {counts['max_connections']} "
                      f"({share:.0f} %)")
            if share >= 80:
                notes.advise("Connections are near max_connections: lower the services' pool sizes or put RDS "
                             "Proxy in front of the database.")
            if not rows(conn, "SELECT to_regclass('pg_stat_statements') IS NOT NULL AS available")[0]["available"]:
                notes.add("pg_stat_statements is not installed: no top statements from the database")
                return
            counters = rows(conn, STATEMENT_COUNTERS.read_text(), {"limit": 200})
        finally:
            conn.close()
        baseline = session.statement_baseline or {}
        used = []
        for row in counters:
            before = baseline.get(row["queryid"]) or [0.0, 0.0]
            calls, total = float(row["calls"]) - before[0], float(row["total_ms"]) - before[1]
            if calls > 0 and total > 0:
                used.append((total, calls, row))
        used.sort(key=lambda u: u[0], reverse=True)
        since = "since the hourly database watch" if baseline else "since the statistics were last reset"
        for total, calls, row in used[:TOP_STATEMENTS]:
            notes.add(f"statement {row['queryid']}: {total / 1000:.1f} s in {calls:.0f} calls ({total / calls:.1f} ms "
                      f"each) {since}: {row['query'][:160]}")
        if used:
            notes.advise(f"Run EXPLAIN (ANALYZE, BUFFERS) on statement {used[0][2]['queryid']} (it used the most "
                         "time): look for a sequential scan on a large table (add the index) or a plan that changed.")

    notes.step("the instance (rds:DescribeDBInstances)", instance)
    notes.step("top SQL by load (pi:DescribeDimensionKeys)", top_sql)
    notes.step("statements and connections (platform_db)", statements)


def redis_memory(session: Session, check: str, resource: str, notes: Notes) -> None:
    cluster_id = resource.split("/", 1)[0] or session.config.resources.elasticache.cluster_id
    facts: dict[str, Any] = {}

    def cluster() -> None:
        found = session.call("elasticache", "describe_cache_clusters", CacheClusterId=cluster_id)["CacheClusters"][0]
        facts["group"] = (found.get("CacheParameterGroup") or {}).get("CacheParameterGroupName")
        notes.add(f"cluster {cluster_id}: {found.get('CacheNodeType')}, {found.get('NumCacheNodes')} node(s), "
                  f"parameter group {facts['group'] or 'unknown'}")

    def policy() -> None:
        if not facts.get("group"):
            return
        parameters = session.call("elasticache", "describe_cache_parameters",
                                  CacheParameterGroupName=facts["group"])["Parameters"]
        value = next((p.get("ParameterValue") for p in parameters if p.get("ParameterName") == "maxmemory-policy"),
                     None)
        notes.add(f"maxmemory-policy: {value or 'unknown'}")
        if value and value.startswith("noeviction"):
            notes.advise("With noeviction, writes fail when memory is full: scale the node type now.")
        else:
            notes.advise("Keys are being evicted under memory pressure: set TTLs on the biggest key families or "
                         "scale the node type; evicted sessions or carts log users out.")

    notes.step("the cluster (elasticache:DescribeCacheClusters)", cluster)
    notes.step("the memory policy (elasticache:DescribeCacheParameters)", policy)
