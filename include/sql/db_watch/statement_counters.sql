-- pg_stat_statements' cumulative counters, for the hour's deltas (the watch keeps the previous ones).
-- Constants are normalised to $n by pg_stat_statements; literals it keeps are replaced by ? here.
SELECT queryid::text,
       left(regexp_replace(regexp_replace(query, '''[^'']*''', '''?''', 'g'), '\s+', ' ', 'g'), 200) AS query,
       calls, total_exec_time::float8 AS total_ms
FROM pg_stat_statements
ORDER BY total_exec_time DESC
LIMIT %(limit)s::int;
