-- Sessions waiting on a lock, how long, and the sessions blocking them (pg_blocking_pids), with the
-- blockers' statements. Literals are replaced by ? (a statement may carry personal data).
SELECT waiting.pid,
       coalesce(nullif(waiting.application_name, ''), waiting.usename) AS client,
       extract(epoch FROM now() - coalesce(waiting.state_change, waiting.query_start))::float8 AS seconds,
       left(regexp_replace(regexp_replace(waiting.query, '''[^'']*''', '''?''', 'g'), '\s+', ' ', 'g'), 160) AS query,
       blocker.pid AS blocker_pid,
       coalesce(nullif(blocker.application_name, ''), blocker.usename) AS blocker_client,
       blocker.state AS blocker_state,
       left(regexp_replace(regexp_replace(blocker.query, '''[^'']*''', '''?''', 'g'), '\s+', ' ', 'g'), 160)
           AS blocker_query
FROM pg_stat_activity AS waiting
JOIN LATERAL unnest(pg_blocking_pids(waiting.pid)) AS blocking(pid) ON true
JOIN pg_stat_activity AS blocker ON blocker.pid = blocking.pid
WHERE waiting.wait_event_type = 'Lock'
ORDER BY seconds DESC;
