-- pg_trickle benchmark: the printed tables. Reads the bench.* tables filled by scripts/bench.sh.
\set ON_ERROR_STOP 1
\pset footer off
\pset null '-'

CREATE TEMP VIEW t AS
SELECT scenario, step,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS med,
       min(ms) AS lo, max(ms) AS hi, count(*) AS n
  FROM bench.timing GROUP BY scenario, step;

CREATE TEMP VIEW h AS
SELECT scenario, step,
       string_agg(DISTINCT action, '/') AS action,
       round(avg(delta_rows)) AS delta_rows,
       round(avg(rows_inserted + rows_deleted)) AS ins_del,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY server_ms)::numeric, 1) AS server_ms
  FROM bench.hist GROUP BY scenario, step;

\echo
\echo '== 1-2. Refresh time: REFRESH MATERIALIZED VIEW vs stream table refreshes (ms, client-side, median of n)'
\echo '   speedup = matview median / this median; action, delta_rows, ins_del (rows_inserted + rows_deleted) and server_ms (end_time - start_time) from pgt_refresh_history'
SELECT CASE t.scenario WHEN 'join_agg' THEN '1 join+aggregate'
                       WHEN 'filter'   THEN '2a filter'
                       WHEN 'agg'      THEN '2b aggregate' END AS query,
       CASE t.step WHEN 'matview'        THEN 'REFRESH MATERIALIZED VIEW'
                   WHEN 'st_full'        THEN 'stream table, FULL'
                   WHEN 'diff_none'      THEN 'DIFFERENTIAL, no change'
                   ELSE 'DIFFERENTIAL, ' || replace(substr(t.step, 6), 'pct', '%') || ' updated' END AS refresh,
       round(t.med::numeric, 1) AS median_ms,
       round(t.lo::numeric, 1) AS min_ms,
       round(t.hi::numeric, 1) AS max_ms,
       t.n,
       round((m.med / nullif(t.med, 0))::numeric, 1) AS speedup,
       h.action, h.delta_rows, h.ins_del, h.server_ms
  FROM t
  JOIN t m ON m.scenario = t.scenario AND m.step = 'matview'
  LEFT JOIN h ON h.scenario = t.scenario AND h.step = t.step
 WHERE t.scenario IN ('join_agg', 'filter', 'agg') AND t.step NOT LIKE 'upd_%'
 ORDER BY t.scenario = 'join_agg' DESC, t.scenario = 'filter' DESC,
          array_position(ARRAY['matview', 'st_full', 'diff_none', 'diff_0.1pct', 'diff_1pct', 'diff_10pct'], t.step);

\echo
\echo '== Summary: speedup of a DIFFERENTIAL refresh over REFRESH MATERIALIZED VIEW (goal for join+aggregate at 1%: >= 20x)'
SELECT s.scenario AS query,
       round(m.med::numeric, 1) AS matview_ms,
       round((m.med / d01.med)::numeric, 1) AS "speedup_0.1%",
       round((m.med / d1.med)::numeric, 1)  AS "speedup_1%",
       round((m.med / d10.med)::numeric, 1) AS "speedup_10%",
       CASE WHEN s.scenario = 'join_agg' THEN
            CASE WHEN m.med / d1.med >= 20 THEN 'met' ELSE 'NOT met' END END AS goal_20x_at_1pct
  FROM (VALUES ('join_agg', 1), ('filter', 2), ('agg', 3)) s(scenario, ord)
  JOIN t m   ON m.scenario   = s.scenario AND m.step   = 'matview'
  JOIN t d01 ON d01.scenario = s.scenario AND d01.step = 'diff_0.1pct'
  JOIN t d1  ON d1.scenario  = s.scenario AND d1.step  = 'diff_1pct'
  JOIN t d10 ON d10.scenario = s.scenario AND d10.step = 'diff_10pct'
 ORDER BY s.ord;

\echo
\echo '== UPDATE statements that produced the changes (ms, median; CDC trigger of the stream table active)'
SELECT scenario AS query, replace(substr(step, 5), 'pct', '%') AS updated,
       round(med::numeric, 1) AS median_ms, round(lo::numeric, 1) AS min_ms, round(hi::numeric, 1) AS max_ms, n
  FROM t WHERE step LIKE 'upd_%'
 ORDER BY scenario = 'join_agg' DESC, scenario = 'filter' DESC,
          array_position(ARRAY['upd_0.1pct', 'upd_1pct', 'upd_10pct'], step);

\echo
\echo '== 3. Single-row UPDATE throughput (pgbench -M prepared; tps = median of rounds; ratio = median over rounds of the ratio within the round)'
\echo '   none = no stream table; capture = the join+aggregate stream table without schedule (capture triggers only);'
\echo '   scheduled = the same stream table on a 1s schedule (capture + scheduler refreshing concurrently); goal: scheduled/none >= 0.67'
WITH r AS (
    SELECT p.clients, p.round, p.setup, p.tps, p.tps / n.tps AS ratio
      FROM bench.pgbench p
      JOIN bench.pgbench n ON n.clients = p.clients AND n.round = p.round AND n.setup = 'none'),
b AS (
    SELECT clients, setup,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY tps) AS tps,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ratio) AS ratio,
           string_agg(round(tps)::text, ' / ' ORDER BY round) AS all_rounds
      FROM r GROUP BY clients, setup)
SELECT n.clients,
       round(n.tps::numeric) AS tps_none,
       round(c.tps::numeric) AS tps_capture,
       round(w.tps::numeric) AS tps_scheduled,
       round(c.ratio::numeric, 2) AS "capture/none",
       round(w.ratio::numeric, 2) AS "scheduled/none",
       CASE WHEN w.ratio >= 0.67 THEN 'met' ELSE 'NOT met' END AS "goal >= 0.67x",
       n.all_rounds AS rounds_none, c.all_rounds AS rounds_capture, w.all_rounds AS rounds_scheduled
  FROM b n
  JOIN b c ON c.clients = n.clients AND c.setup = 'capture'
  JOIN b w ON w.clients = n.clients AND w.setup = 'scheduled'
 WHERE n.setup = 'none'
 ORDER BY n.clients;

\echo
\echo '== 3. Scaling of single-row writers: tps with 4 clients / tps with 1 client (median of the per-round ratios)'
WITH r AS (
    SELECT c1.setup, c1.round, c1.tps AS tps1, c4.tps AS tps4
      FROM bench.pgbench c1 JOIN bench.pgbench c4
        ON c4.setup = c1.setup AND c4.round = c1.round AND c1.clients = 1 AND c4.clients = 4)
SELECT setup,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY tps1)::numeric) AS tps_1_client,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY tps4)::numeric) AS tps_4_clients,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY tps4 / tps1)::numeric, 2) AS "4/1",
       string_agg(round((tps4 / tps1)::numeric, 2)::text, ' / ' ORDER BY round) AS per_round
  FROM r GROUP BY setup
 ORDER BY array_position(ARRAY['none', 'capture', 'scheduled'], setup);

\echo
\echo '== 3. Scheduler refreshes of the stream table during the pgbench runs'
SELECT clients, round, refreshes, failed, round(mean_ms::numeric, 1) AS mean_ms,
       round(max_ms::numeric, 1) AS max_ms, delta_rows, actions
  FROM bench.sched ORDER BY clients, round;

\echo
\echo '== 3. What the active pgbench sessions were doing (pg_stat_activity sampled every 0.2 s, % of session samples)'
SELECT setup, clients, wait, pct FROM (
SELECT setup, clients, wait,
       round(100.0 * sum(sessions) / sum(sum(sessions)) OVER (PARTITION BY setup, clients), 1) AS pct
  FROM bench.waits GROUP BY setup, clients, wait) w
 WHERE pct >= 1
 ORDER BY array_position(ARRAY['none', 'capture', 'scheduled'], setup), clients, pct DESC;

\echo
\echo '== 3. Batch UPDATE (one statement, contiguous ids; ms, median): no stream table vs the join+aggregate stream table'
SELECT substr(s.scenario, 7)::int AS rows_updated,
       round(n.med::numeric, 1) AS no_st_ms,
       round(w.med::numeric, 1) AS with_st_ms,
       round((w.med / n.med)::numeric, 2) AS "slowdown (with/without)",
       round((n.med / w.med)::numeric, 2) AS "throughput ratio",
       round(r.med::numeric, 1) AS following_refresh_ms,
       hr.action AS refresh_action
  FROM (SELECT DISTINCT scenario FROM bench.timing WHERE scenario LIKE 'batch_%') s
  JOIN t n ON n.scenario = s.scenario AND n.step = 'no_st'
  JOIN t w ON w.scenario = s.scenario AND w.step = 'with_st'
  LEFT JOIN t r ON r.scenario = s.scenario AND r.step = 'refresh'
  LEFT JOIN h hr ON hr.scenario = s.scenario AND hr.step = 'refresh'
 ORDER BY 1;

\echo
\echo '== 3. Server-side cost of a single-row UPDATE statement (DO block of 10,000 UPDATEs by id, no client round trips; median)'
SELECT substr(n.scenario, 6)::int AS statements,
       round(n.med::numeric, 1) AS no_st_ms, round(w.med::numeric, 1) AS with_st_ms,
       round((1000 * n.med / substr(n.scenario, 6)::int)::numeric, 1) AS no_st_us_per_stmt,
       round((1000 * w.med / substr(n.scenario, 6)::int)::numeric, 1) AS with_st_us_per_stmt,
       round((1000 * (w.med - n.med) / substr(n.scenario, 6)::int)::numeric, 1) AS capture_us_per_stmt,
       round((n.med / w.med)::numeric, 2) AS "throughput ratio"
  FROM t n JOIN t w ON w.scenario = n.scenario AND w.step = 'with_st'
 WHERE n.scenario LIKE 'loop_%' AND n.step = 'no_st';

\echo
\echo '== Correctness: stream table vs a fresh evaluation of its query (EXCEPT ALL both ways) after each series'
SELECT scenario, step, mismatches, CASE WHEN mismatches = 0 THEN 'ok' ELSE 'WRONG' END AS result
  FROM bench.checks ORDER BY scenario, step;
