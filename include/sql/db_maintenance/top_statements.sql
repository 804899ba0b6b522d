-- The statements that cost the most database time since the statistics were last reset.
-- Query text needs pg_read_all_stats (RDS: grant rds_superuser's pg_monitor to the read-only role).
SELECT queryid::text, left(regexp_replace(query, '\s+', ' ', 'g'), 200) AS query, calls,
       round(total_exec_time::numeric, 1) AS total_ms, round(mean_exec_time::numeric, 2) AS mean_ms, rows
FROM pg_stat_statements
ORDER BY total_exec_time DESC
LIMIT %(limit)s::int;
