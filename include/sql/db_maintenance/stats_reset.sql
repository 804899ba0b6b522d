-- Since when the usage statistics (index scans, dead tuples) have been counted.
SELECT stats_reset FROM pg_stat_database WHERE datname = current_database();
