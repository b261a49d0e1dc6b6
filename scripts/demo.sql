\pset footer off
\set ON_ERROR_STOP 1
\echo
\echo '== CREATE EXTENSION pg_trickle'
CREATE EXTENSION pg_trickle;
SELECT pgtrickle.version() AS library_version,
       (SELECT extversion FROM pg_extension WHERE extname = 'pg_trickle') AS sql_version,
       current_setting('shared_preload_libraries') AS preloaded;

\echo '== a small shop'
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, region text NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL REFERENCES customers,
                     amount numeric(10,2) NOT NULL, status text NOT NULL DEFAULT 'new');
INSERT INTO customers
SELECT i, 'customer ' || i, (ARRAY['north', 'south', 'east', 'west'])[1 + i % 4]
  FROM generate_series(1, 200) i;
INSERT INTO orders
SELECT i, 1 + (i * 7) % 200, ((i * 37) % 500) + 0.99, CASE WHEN i % 10 = 0 THEN 'returned' ELSE 'paid' END
  FROM generate_series(1, 5000) i;

\echo '== three stream tables, refreshed every second by the background scheduler'
-- join + aggregate
SELECT pgtrickle.create_stream_table('revenue_by_region',
  $$SELECT c.region, count(*) AS orders, sum(o.amount) AS revenue, max(o.amount) AS largest
      FROM orders o JOIN customers c ON c.id = o.customer_id
     WHERE o.status = 'paid' GROUP BY c.region$$, '1s');
-- filter
SELECT pgtrickle.create_stream_table('big_orders',
  $$SELECT o.id, o.customer_id, o.amount FROM orders o WHERE o.amount >= 490$$, '1s');
-- a stream table reading a stream table
SELECT pgtrickle.create_stream_table('top_regions',
  $$SELECT region, revenue FROM revenue_by_region WHERE revenue > 300000$$, '1s');
SELECT region, orders, revenue, largest FROM revenue_by_region ORDER BY region;
SELECT count(*) AS big_orders FROM big_orders;
SELECT region, revenue FROM top_regions ORDER BY region;

\echo '== a burst of writes: 2000 new orders, 500 returns, 300 deletes, customers moving region'
INSERT INTO orders
SELECT 5000 + i, 1 + (i * 13) % 200, ((i * 91) % 600) + 0.5, 'paid' FROM generate_series(1, 2000) i;
UPDATE orders SET status = 'returned' WHERE id % 13 = 0 AND status = 'paid' AND id <= 6500;
DELETE FROM orders WHERE id % 17 = 0 AND id <= 5100;
UPDATE customers SET region = 'north' WHERE id BETWEEN 1 AND 20;

\echo '-- right after the writes the stream tables still show the old state:'
SELECT region, orders, revenue FROM revenue_by_region ORDER BY region;
SELECT pg_sleep(3);
\echo '-- three seconds later the scheduler has applied only the changes:'
SELECT region, orders, revenue, largest FROM revenue_by_region ORDER BY region;
SELECT count(*) AS big_orders FROM big_orders;
SELECT region, revenue FROM top_regions ORDER BY region;

\echo '-- the same query evaluated from scratch agrees:'
SELECT c.region, count(*) AS orders, sum(o.amount) AS revenue, max(o.amount) AS largest
  FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.status = 'paid'
 GROUP BY c.region ORDER BY region;

\echo '== pgt_status() and the refresh history'
SELECT name, status, refresh_mode, schedule, is_populated, consecutive_errors,
       round(extract(epoch FROM staleness)::numeric, 1) AS staleness_s
  FROM pgtrickle.pgt_status() ORDER BY name;
SELECT h.action, h.initiated_by, h.rows_inserted, h.rows_deleted, h.delta_rows,
       round(h.duration_ms::numeric, 1) AS ms, h.reason
  FROM pgtrickle.get_refresh_history('revenue_by_region', 4) h;

\echo '== what DIFFERENTIAL cannot maintain is refused with the construct named'
\set ON_ERROR_STOP 0
SELECT pgtrickle.create_stream_table('ranked',
  $$SELECT id, rank() OVER (ORDER BY amount DESC) AS r FROM orders$$, NULL);
\set ON_ERROR_STOP 1
\echo '-- ... and AUTO falls back to FULL for it:'
SELECT pgtrickle.create_stream_table('ranked',
  $$SELECT id, rank() OVER (ORDER BY amount DESC) AS r FROM orders$$, NULL, 'AUTO');
SELECT property, left(value, 110) AS value FROM pgtrickle.explain_st('ranked')
 WHERE property IN ('maintenance', 'mode_chosen');

\echo '== settings'
SELECT name, setting, unit, context FROM pg_settings WHERE name LIKE 'pg\_trickle.%' ORDER BY name;
