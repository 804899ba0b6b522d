-- Every single-column foreign key in the public schema, with the query that counts its orphaned rows
-- (rows whose key points at nothing). A consistent restore has none; lost pages or a broken backup
-- show up here. The count queries are built here, identifiers quoted by the server (format %I / regclass),
-- and run one by one by the validation task: the validation user is read-only and creates nothing.
SELECT c.conname AS constraint_name,
       c.conrelid::regclass::text AS child_table,
       a.attname AS child_column,
       c.confrelid::regclass::text AS parent_table,
       format('SELECT count(*) FROM %s ch WHERE ch.%I IS NOT NULL '
              'AND NOT EXISTS (SELECT 1 FROM %s p WHERE p.%I = ch.%I)',
              c.conrelid::regclass, a.attname, c.confrelid::regclass, af.attname, a.attname) AS count_query
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = c.confkey[1]
WHERE c.contype = 'f' AND cardinality(c.conkey) = 1 AND c.connamespace = 'public'::regnamespace
ORDER BY 2, 3;
