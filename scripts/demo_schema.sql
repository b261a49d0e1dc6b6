\pset footer off
\set ON_ERROR_STOP 1
\echo
\echo '== schema changes of sources'
\echo '-- a safe change: a column added to orders; every stream table carries on'
ALTER TABLE orders ADD COLUMN channel text NOT NULL DEFAULT 'web';
SELECT pgtrickle.create_stream_table('orders_by_channel',
  $$SELECT channel, count(*) AS orders FROM orders GROUP BY channel$$, '1s');
\echo '-- a rename: customers.region becomes customers.area; the stored queries follow it'
ALTER TABLE customers RENAME COLUMN region TO area;
INSERT INTO orders (id, customer_id, amount, status, channel)
SELECT 9000 + i, 1 + i % 200, 10 + i, 'paid', 'shop' FROM generate_series(1, 50) i;
SELECT pg_sleep(2);
SELECT name, status, refresh_mode FROM pgtrickle.pgt_status() ORDER BY name;
SELECT regexp_replace(defining_query, '\s+', ' ', 'g') AS revenue_by_region_query
  FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'revenue_by_region';
SELECT channel, orders FROM orders_by_channel ORDER BY channel;
\echo '-- an unsafe change, looked at first in a transaction that is rolled back:'
BEGIN;
ALTER TABLE orders DROP COLUMN channel;
SELECT source, change, decision, effect FROM pgtrickle.schema_diff('orders_by_channel');
ROLLBACK;
\echo '-- and done for real: orders_by_channel stops with its reason, the others carry on'
ALTER TABLE orders DROP COLUMN channel;
SELECT name, status FROM pgtrickle.pgt_status() ORDER BY name;
\x on
SELECT last_error FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'orders_by_channel';
\x off
