-- Indexes PostgreSQL itself marks unusable (a failed concurrent build, a broken restore).
SELECT i.indexrelid::regclass::text AS index_name, i.indrelid::regclass::text AS table_name
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relnamespace = 'public'::regnamespace AND NOT (i.indisvalid AND i.indisready)
ORDER BY 1;
