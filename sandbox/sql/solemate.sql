-- A small SoleMate schema with data: what the health round trip and the restore tests query.
CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE products (
    id          bigserial PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    price_cents integer NOT NULL CHECK (price_cents > 0),
    stock       integer NOT NULL DEFAULT 0
);
CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id),
    status      text NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
    total_cents integer NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE TABLE order_items (
    order_id    bigint NOT NULL REFERENCES orders(id),
    product_id  bigint NOT NULL REFERENCES products(id),
    quantity    integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
CREATE TABLE payments (
    id          bigserial PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES orders(id),
    status      text NOT NULL CHECK (status IN ('succeeded', 'failed', 'refunded')),
    amount_cents integer NOT NULL,
    created_at  timestamptz NOT NULL
);

INSERT INTO users (email, created_at)
SELECT 'customer' || g || '@example.com', timestamp '2026-01-01' + g * interval '1 hour'
FROM generate_series(1, 200) g;

INSERT INTO products (sku, name, price_cents, stock)
SELECT 'SHOE-' || lpad(g::text, 4, '0'), 'Sneaker model ' || g, 4999 + g * 100, 50 + g % 20
FROM generate_series(1, 40) g;

INSERT INTO orders (user_id, status, total_cents, created_at)
SELECT 1 + g % 200, (ARRAY['paid', 'shipped', 'pending', 'cancelled'])[1 + g % 4], 0,
       timestamp '2026-06-01' + g * interval '37 minutes'
FROM generate_series(1, 1000) g;

INSERT INTO order_items (order_id, product_id, quantity)
SELECT o.id, 1 + (o.id * 7) % 40, 1 + o.id % 3 FROM orders o;

UPDATE orders o SET total_cents = s.total
FROM (SELECT oi.order_id, sum(oi.quantity * p.price_cents) AS total
      FROM order_items oi JOIN products p ON p.id = oi.product_id GROUP BY oi.order_id) s
WHERE s.order_id = o.id;

INSERT INTO payments (order_id, status, amount_cents, created_at)
SELECT id, CASE WHEN id % 50 = 0 THEN 'failed' ELSE 'succeeded' END, total_cents, created_at + interval '1 minute'
FROM orders WHERE status <> 'pending';
