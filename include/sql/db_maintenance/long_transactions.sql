-- Transactions open longer than the threshold: they hold locks and stop vacuum from removing dead rows.
SELECT pid, usename, coalesce(nullif(application_name, ''), usename) AS client, state,
       round(extract(epoch FROM now() - xact_start) / 60, 1) AS minutes,
       left(regexp_replace(query, '\s+', ' ', 'g'), 200) AS query
FROM pg_stat_activity
WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
  AND now() - xact_start > %(minutes)s::float8 * interval '1 minute'
ORDER BY xact_start;
