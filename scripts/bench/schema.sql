-- pg_trickle benchmark: data set and result tables.
-- psql variables: :orders, :customers.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION IF NOT EXISTS pg_trickle;

DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;
-- client-side (psql \timing) time of one statement
CREATE TABLE bench.timing  (scenario text, step text, rep int, ms float8);
-- the refresh history row written by a timed refresh
CREATE TABLE bench.hist    (scenario text, step text, rep int, action text, delta_rows bigint,
                            rows_inserted bigint, rows_deleted bigint, server_ms float8, reason text);
-- stream table vs fresh evaluation of its query (EXCEPT ALL both ways)
CREATE TABLE bench.checks  (scenario text, step text, mismatches bigint);
-- pgbench results and the scheduler's refreshes during each run
CREATE TABLE bench.pgbench (setup text, clients int, round int, tps float8, latency_ms float8);
CREATE TABLE bench.sched   (clients int, round int, refreshes bigint, failed bigint,
                            mean_ms float8, max_ms float8, delta_rows bigint, actions text);
-- pg_stat_activity of the pgbench sessions, sampled every 0.2 s
CREATE TABLE bench.waits   (setup text, clients int, wait text, sessions bigint);

DROP TABLE IF EXISTS orders, customers CASCADE;
CREATE TABLE customers (
    id     int PRIMARY KEY,
    name   text NOT NULL,
    region text NOT NULL
);
CREATE TABLE orders (
    id          bigint PRIMARY KEY,
    customer_id int NOT NULL,
    amount      numeric(12,2) NOT NULL,
    status      text NOT NULL,
    created_at  timestamptz NOT NULL
);

SELECT setseed(0.42);
INSERT INTO customers
SELECT i, 'customer ' || i, 'region_' || lpad((i % 10)::text, 2, '0')
  FROM generate_series(1, :customers) i;
INSERT INTO orders
SELECT i,
       1 + floor(random() * :customers)::int,
       round((random() * 1000)::numeric, 2),          -- uniform 0..1000: amount > 900 selects ~10%
       (ARRAY['new', 'paid', 'shipped', 'done'])[1 + floor(random() * 4)::int],
       timestamptz '2025-01-01' + random() * interval '365 days'
  FROM generate_series(1, :orders) i;
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
VACUUM ANALYZE customers;
VACUUM ANALYZE orders;
SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM customers) AS customers,
       pg_size_pretty(pg_total_relation_size('orders')) AS orders_size;
