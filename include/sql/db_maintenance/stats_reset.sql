-- Since when the usage statistics (index scans, dead tuples) have been counted: their reset, or else
-- the server's start (statistics do not survive a crash or a failover).
SELECT coalesce(stats_reset, pg_postmaster_start_time()) AS stats_since,
       stats_reset IS NULL AS since_server_start
FROM pg_stat_database WHERE datname = current_database();
