-- The statements that cost the most database time since the statistics were last reset.
-- Constants are normalised to $n by pg_stat_statements; literals it keeps (utility statements such as
-- ALTER ROLE ... PASSWORD) are replaced by ? here.
SELECT queryid::text,
       left(regexp_replace(regexp_replace(query, '''[^'']*''', '''?''', 'g'), '\s+', ' ', 'g'), 200) AS query,
       calls, round(total_exec_time::numeric, 1) AS total_ms, round(mean_exec_time::numeric, 2) AS mean_ms, rows
FROM pg_stat_statements
ORDER BY total_exec_time DESC
LIMIT %(limit)s::int;
