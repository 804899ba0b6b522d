-- B-tree structure check of every index in the public schema (amcheck; run only where it is installed).
SELECT c.relname AS index_name, bt_index_check(c.oid) IS NULL AS checked
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_am am ON am.oid = c.relam
-- Plain (not partitioned, not temporary) valid B-tree indexes: bt_index_check refuses the others.
WHERE am.amname = 'btree' AND c.relkind = 'i' AND c.relpersistence <> 't'
  AND c.relnamespace = 'public'::regnamespace AND i.indisvalid
ORDER BY 1;
