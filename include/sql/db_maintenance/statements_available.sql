-- Whether pg_stat_statements can be read here: the view exists (CREATE EXTENSION was run). Reading it
-- still fails when the library is not in shared_preload_libraries; the operator reports that too.
SELECT to_regclass('pg_stat_statements') IS NOT NULL AS available;
