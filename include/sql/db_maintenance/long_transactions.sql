-- Client transactions open longer than the threshold: they hold locks and stop vacuum from removing
-- dead rows. Only client backends: autovacuum and replication senders run long by design. Literals
-- in the statement are replaced by ? (a statement may carry personal data or a password).
SELECT pid, usename, coalesce(nullif(application_name, ''), usename) AS client, state,
       round(extract(epoch FROM now() - xact_start) / 60, 1) AS minutes,
       left(regexp_replace(regexp_replace(query, '''[^'']*''', '''?''', 'g'), '\s+', ' ', 'g'), 200) AS query
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND xact_start IS NOT NULL AND pid <> pg_backend_pid()
  AND now() - xact_start > %(minutes)s::float8 * interval '1 minute'
ORDER BY xact_start;
