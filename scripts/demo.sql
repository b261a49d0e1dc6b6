\pset footer off
\echo
\echo '== CREATE EXTENSION pg_trickle'
CREATE EXTENSION pg_trickle;
SELECT pgtrickle.version() AS library_version,
       (SELECT extversion FROM pg_extension WHERE extname = 'pg_trickle') AS sql_version,
       current_setting('shared_preload_libraries') AS preloaded;

\echo '== the catalog'
SELECT c.relname AS catalog_table, count(a.attnum) AS columns
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'pgtrickle'::regnamespace AND c.relkind = 'r'
 GROUP BY c.relname ORDER BY 1;
SELECT * FROM pgtrickle.pgt_schema_version;

\echo '== settings'
SELECT name, setting, unit, context FROM pg_settings WHERE name LIKE 'pg\_trickle.%' ORDER BY name;

\echo '== durations'
SELECT d AS duration, pgtrickle.parse_duration_seconds(d) AS seconds
  FROM unnest(ARRAY['30s', '5m', '1h30m', '2d', '1w']) AS d;
\echo 'and a bad one:'
\set ON_ERROR_STOP 0
SELECT pgtrickle.parse_duration_seconds('5 minutes');
\set ON_ERROR_STOP 1
