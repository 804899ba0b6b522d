-- Whether the amcheck extension is installed in the restored database.
SELECT extversion FROM pg_extension WHERE extname = 'amcheck';
