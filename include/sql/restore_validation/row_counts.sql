-- The tables restore_test.required_tables names (min_rows sets their floors) that are present in the public
-- schema, each with the query that counts its rows exactly; a missing table is the table check's finding.
-- The count queries are built here, the name quoted by the server (format), and run one by one by the
-- validation task, as for foreign keys: the validation user is read-only and creates nothing.
-- The doubled percent sign is the driver's escape for a literal one (the table list is a bound parameter;
-- no single percent sign may appear anywhere in this file, comments included).
SELECT t.table_name::text AS table_name,
       format('SELECT count(*) FROM public.%%I', t.table_name) AS count_query
FROM information_schema.tables t
WHERE t.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND t.table_name = ANY(%(tables)s)
ORDER BY 1;
