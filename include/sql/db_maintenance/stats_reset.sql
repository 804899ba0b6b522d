-- Since when the usage statistics (index scans, dead tuples) have been counted: their reset, or else
-- the server's start (statistics do not survive a crash or a failover). How long that is, on the
-- server's own clock: a worker whose clock is off must not make young statistics look old.
SELECT coalesce(stats_reset, pg_postmaster_start_time()) AS stats_since,
       stats_reset IS NULL AS since_server_start,
       extract(epoch FROM now() - coalesce(stats_reset, pg_postmaster_start_time()))::float AS counted_seconds
FROM pg_stat_database WHERE datname = current_database();
