-- Transaction-ID age per database: PostgreSQL stops accepting writes near 2^31 to avoid wraparound.
SELECT datname, age(datfrozenxid)::bigint AS xid_age
FROM pg_database
WHERE datallowconn
ORDER BY xid_age DESC;
