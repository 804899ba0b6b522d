-- Exact row counts of the key tables (restore_test.min_rows sets their floors). SoleMate's schema.
SELECT 'users' AS table_name, count(*) AS row_count FROM users
UNION ALL SELECT 'products', count(*) FROM products
UNION ALL SELECT 'orders', count(*) FROM orders
UNION ALL SELECT 'order_items', count(*) FROM order_items
UNION ALL SELECT 'payments', count(*) FROM payments;
