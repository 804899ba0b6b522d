-- Tables in the restored database's public schema (compared with restore_test.required_tables).
SELECT table_name
FROM information_schema.tables
WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
ORDER BY table_name;
