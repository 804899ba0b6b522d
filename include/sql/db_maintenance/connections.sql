-- Client connections per service (application_name, else the user) and the server's limit.
SELECT coalesce(nullif(application_name, ''), usename, 'unknown') AS client, count(*) AS connections,
       current_setting('max_connections')::int AS max_connections
FROM pg_stat_activity
WHERE backend_type = 'client backend'
GROUP BY 1
ORDER BY 2 DESC;
