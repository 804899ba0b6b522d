-- Live and dead tuples per table and when it was last vacuumed and analyzed (by hand or by autovacuum).
SELECT schemaname, relname AS table_name, n_live_tup, n_dead_tup,
       greatest(last_vacuum, last_autovacuum) AS last_vacuum,
       greatest(last_analyze, last_autoanalyze) AS last_analyze
FROM pg_stat_user_tables
ORDER BY n_dead_tup DESC, relname;
