-- The newest business event in the restored data; the restore point minus this is the data RPO.
SELECT greatest((SELECT max(created_at) FROM orders), (SELECT max(created_at) FROM payments)) AS newest;
