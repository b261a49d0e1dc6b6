\pset footer off
\set ON_ERROR_STOP 1
\echo
\echo '== blue-green: a new revenue query deployed while a reader keeps reading revenue_by_region'
\echo '-- the green: revenue now counts every order, with returns as their own column'
SELECT pgtrickle.create_green('revenue_by_region', query => $$
  SELECT c.region, count(*) AS orders,
         sum(CASE WHEN o.status = 'paid' THEN o.amount ELSE 0 END) AS revenue,
         max(o.amount) AS largest,
         sum(CASE WHEN o.status = 'returned' THEN o.amount ELSE 0 END) AS returned
    FROM orders o JOIN customers c ON c.id = o.customer_id
   GROUP BY c.region$$) AS green;
\echo '-- writes keep coming; blue and green both consume them from the same change buffers'
INSERT INTO orders
SELECT 8000 + i, 1 + (i * 17) % 200, ((i * 53) % 400) + 0.25, 'paid' FROM generate_series(1, 500) i;
UPDATE orders SET status = 'returned' WHERE id BETWEEN 8000 AND 8100;
\echo '-- converged means the green holds every change the blue holds (neither has refreshed yet):'
SELECT green_name, status, converged, pending_changes, reason FROM pgtrickle.green_status('revenue_by_region');
SELECT pg_sleep(2);
\echo '-- two seconds later the scheduler has refreshed both:'
SELECT green_name, status, converged, pending_changes, frontier_lag, blue_rows, green_rows
  FROM pgtrickle.green_status('revenue_by_region');
\echo '-- promotion: one transaction, two renames; the old table is kept as revenue_by_region__pgt_retired'
SELECT stream_table, action, detail FROM pgtrickle.promote_all_green();
SELECT region, orders, revenue, returned FROM revenue_by_region ORDER BY region;
\echo '-- top_regions reads revenue_by_region by name, and follows it (one full refresh):'
SELECT pg_sleep(2);
SELECT region, revenue FROM top_regions ORDER BY region;
SELECT name, status, refresh_mode FROM pgtrickle.pgt_status() ORDER BY name;
\echo '-- the retired table can be swapped back (rollback_green) until it is dropped:'
SELECT pgtrickle.drop_retired('revenue_by_region') AS dropped;
