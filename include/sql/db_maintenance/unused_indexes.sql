-- Indexes never scanned since the statistics were reset, with their size. Unique and primary-key
-- indexes enforce constraints even when never read, so they are not candidates for removal.
SELECT s.schemaname, s.relname AS table_name, s.indexrelname AS index_name,
       pg_relation_size(s.indexrelid) AS size_bytes
FROM pg_stat_user_indexes s
JOIN pg_index i ON i.indexrelid = s.indexrelid
WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary AND i.indisvalid
ORDER BY size_bytes DESC;
