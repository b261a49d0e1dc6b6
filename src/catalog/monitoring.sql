-- pg_trickle monitoring surface: pgt_status(), st_refresh_stats(),
-- get_refresh_history(), get_staleness(), slot_health(), check_cdc_health(),
-- and the views stream_tables_info and pg_stat_stream_tables.
--
-- Runs after catalog/schema.sql and after pgtrickle.parse_duration_seconds.
-- Works on PostgreSQL 15 to 18.
--
-- ---------------------------------------------------------------------------
-- Privacy design
-- ---------------------------------------------------------------------------
-- The catalog tables are not readable by PUBLIC, and a role must only see
-- the stream tables whose storage table it may SELECT (PRODUCT.md, "Who a
-- refresh runs as"). The test has to be made for the *calling* role, and a
-- SECURITY DEFINER function cannot do that: inside it current_user is the
-- function's owner, and session_user is wrong after SET ROLE.
--
-- So the row filter lives in views, not in SECURITY DEFINER functions.
-- A view (without security_invoker) reads the tables it names with its
-- owner's rights, while functions called in the view run as the user of the
-- view ("Access to tables referenced in the view is determined by
-- permissions of the view owner. However, functions called in the view are
-- treated the same as if they had been called directly from the query using
-- the view", CREATE VIEW). In the view, CURRENT_USER and has_table_privilege
-- are therefore those of the caller; information_schema works the same way.
--
--   * pgtrickle._pgt_visible_* are such views over the catalog, filtered with
--     _pgt_role_may_see(CURRENT_USER, pgt_relid). They are security_barrier
--     views, so a caller's own (leaky) function in a WHERE clause is never
--     run on rows the filter removed.
--   * The public views and functions are SECURITY INVOKER and read only those
--     views, so they show exactly what the caller may see. The SQL functions
--     have SQL-standard bodies (BEGIN ATOMIC), bound to their objects when
--     created, so the caller's search_path cannot redirect them.
--     get_refresh_history and get_staleness are PL/pgSQL without a SET
--     search_path on purpose: their `name` is resolved like a regclass, with
--     the caller's search_path; every object they use is schema-qualified.
--   * The only data not reachable through a catalog view is the content of
--     the change buffers (count and age of pending changes), which are closed
--     to PUBLIC. _pgt_change_buffer_stats is the one SECURITY DEFINER function
--     (SET search_path = pg_catalog, pg_temp). Since it cannot see its caller,
--     the caller names the role to answer for (check_cdc_health passes
--     CURRENT_USER), and the function accepts it only when the session user
--     could act as that role anyway (is that role, has its privileges, or may
--     SET ROLE to it); it then applies the same visibility rule to that role.
--     Nobody learns anything they could not learn by SET ROLE.
--
-- A stream table whose storage table no longer exists (has_table_privilege
-- on a dropped OID is NULL) is shown only to roles that may read the catalog
-- table itself (superusers, the extension owner): they could see it anyway.
-- ---------------------------------------------------------------------------

-- May role p_role see the stream table whose storage table is p_relid?
CREATE FUNCTION pgtrickle._pgt_role_may_see(p_role name, p_relid oid)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN COALESCE(
    pg_catalog.has_table_privilege(p_role, p_relid, 'SELECT'),
    pg_catalog.has_table_privilege(p_role, 'pgtrickle.pgt_stream_tables'::pg_catalog.regclass, 'SELECT'));
COMMENT ON FUNCTION pgtrickle._pgt_role_may_see(name, oid) IS
    'pg_trickle (internal): whether a role may see a stream table (SELECT on its storage table)';

-- Seconds in a schedule that is a duration ('30s', '1h 30m'); NULL for a cron
-- expression ('*/5 * * * *', '@hourly') and for NULL (manual refresh only).
CREATE FUNCTION pgtrickle._pgt_schedule_seconds(p_schedule text)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN p_schedule ~ '^[[:space:]]*([0-9]+[[:space:]]*[smhdw][[:space:]]*)+$'
    THEN pgtrickle.parse_duration_seconds(p_schedule)
END;
COMMENT ON FUNCTION pgtrickle._pgt_schedule_seconds(text) IS
    'pg_trickle (internal): seconds of a duration schedule, NULL for cron or manual';

-- ---------------------------------------------------------------------------
-- Catalog rows visible to the current role
-- ---------------------------------------------------------------------------

CREATE VIEW pgtrickle._pgt_visible_stream_tables WITH (security_barrier = true) AS
SELECT st.pgt_id,
       st.pgt_relid,
       st.pgt_name,
       st.pgt_schema,
       st.defining_query,
       st.schedule,
       pgtrickle._pgt_schedule_seconds(st.schedule) AS schedule_seconds,
       st.refresh_mode,
       st.status,
       st.is_populated,
       st.data_timestamp,
       pg_catalog.now() - st.data_timestamp AS staleness,
       st.last_refresh_at,
       st.consecutive_errors,
       st.needs_reinit,
       st.last_error,
       st.created_at,
       st.updated_at
  FROM pgtrickle.pgt_stream_tables st
 WHERE pgtrickle._pgt_role_may_see(CURRENT_USER, st.pgt_relid);
COMMENT ON VIEW pgtrickle._pgt_visible_stream_tables IS
    'pg_trickle (internal): stream tables the current role may see';

CREATE VIEW pgtrickle._pgt_visible_refresh_history WITH (security_barrier = true) AS
SELECT h.refresh_id,
       h.pgt_id,
       st.pgt_relid,
       st.pgt_schema,
       st.pgt_name,
       h.data_timestamp,
       h.start_time,
       h.end_time,
       (EXTRACT(epoch FROM h.end_time - h.start_time) * 1000)::float8 AS duration_ms,
       h.action,
       h.requested_action,
       h.status,
       h.initiated_by,
       h.rows_inserted,
       h.rows_deleted,
       h.delta_rows,
       h.reason,
       h.error_message
  FROM pgtrickle.pgt_refresh_history h
  JOIN pgtrickle.pgt_stream_tables st ON st.pgt_id = h.pgt_id
 WHERE pgtrickle._pgt_role_may_see(CURRENT_USER, st.pgt_relid);
COMMENT ON VIEW pgtrickle._pgt_visible_refresh_history IS
    'pg_trickle (internal): refresh history of the stream tables the current role may see';

CREATE VIEW pgtrickle._pgt_visible_dependencies WITH (security_barrier = true) AS
SELECT d.pgt_id,
       d.source_relid,
       d.source_type,
       d.cdc_mode,
       d.slot_name,
       d.decoder_confirmed_lsn,
       d.transition_started_at
  FROM pgtrickle.pgt_dependencies d
  JOIN pgtrickle.pgt_stream_tables st ON st.pgt_id = d.pgt_id
 WHERE pgtrickle._pgt_role_may_see(CURRENT_USER, st.pgt_relid);
COMMENT ON VIEW pgtrickle._pgt_visible_dependencies IS
    'pg_trickle (internal): sources of the stream tables the current role may see';

-- A tracked source is visible to a role that may SELECT the source, or may
-- see one of its consumers, or may read the catalog. `consumers` lists only
-- the consumers the role may see, except for catalog readers, who get the
-- stored array as is (so that stale ids remain visible to them).
-- _pgt_change_buffer_stats repeats this rule for a named role.
CREATE VIEW pgtrickle._pgt_visible_change_tracking WITH (security_barrier = true) AS
SELECT ct.source_relid,
       ct.slot_name,
       ct.last_consumed_lsn,
       CASE
           WHEN pg_catalog.has_table_privilege(CURRENT_USER,
                    'pgtrickle.pgt_change_tracking'::pg_catalog.regclass, 'SELECT')
           THEN ct.tracked_by_pgt_ids
           ELSE ARRAY(SELECT st.pgt_id
                        FROM pgtrickle.pgt_stream_tables st
                       WHERE st.pgt_id = ANY (ct.tracked_by_pgt_ids)
                         AND pgtrickle._pgt_role_may_see(CURRENT_USER, st.pgt_relid)
                       ORDER BY st.pgt_id)
       END AS consumers
  FROM pgtrickle.pgt_change_tracking ct
 WHERE COALESCE(pg_catalog.has_table_privilege(CURRENT_USER, ct.source_relid, 'SELECT'), false)
    OR pg_catalog.has_table_privilege(CURRENT_USER,
           'pgtrickle.pgt_change_tracking'::pg_catalog.regclass, 'SELECT')
    OR EXISTS (SELECT 1
                 FROM pgtrickle.pgt_stream_tables st
                WHERE st.pgt_id = ANY (ct.tracked_by_pgt_ids)
                  AND pgtrickle._pgt_role_may_see(CURRENT_USER, st.pgt_relid));
COMMENT ON VIEW pgtrickle._pgt_visible_change_tracking IS
    'pg_trickle (internal): tracked sources the current role may see';

-- ---------------------------------------------------------------------------
-- Change buffers
-- ---------------------------------------------------------------------------

-- The change buffer of a source: `changes_<source oid>` in the schema set by
-- pg_trickle.change_buffer_schema, or in pgtrickle_changes (where buffers
-- created before the setting changed remain). NULL if there is none.
-- Reads only pg_class and pg_namespace, which every role may read.
CREATE FUNCTION pgtrickle._pgt_change_buffer(p_source_relid oid)
RETURNS pg_catalog.regclass
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT c.oid::pg_catalog.regclass
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relname = 'changes_' || p_source_relid::text
       AND c.relkind IN ('r', 'p')
       AND n.nspname IN (COALESCE(NULLIF(pg_catalog.current_setting('pg_trickle.change_buffer_schema', true), ''),
                                  'pgtrickle_changes'),
                         'pgtrickle_changes')
     ORDER BY n.nspname = 'pgtrickle_changes'
     LIMIT 1;
END;
COMMENT ON FUNCTION pgtrickle._pgt_change_buffer(oid) IS
    'pg_trickle (internal): the change buffer table of a source, if it exists';

-- Pending changes in the buffer of a tracked source, answered for p_as_role
-- (see the privacy design above). NULLs when the source is not tracked, the
-- role may not see it, the session user could not act as that role, or the
-- buffer is missing or locked.
CREATE FUNCTION pgtrickle._pgt_change_buffer_stats(
    p_source_relid oid,
    p_as_role name DEFAULT CURRENT_USER,
    OUT pending_rows bigint,
    OUT oldest_captured_at timestamptz)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
    v_consumers bigint[];
    v_buffer    regclass;
BEGIN
    IF p_source_relid IS NULL OR p_as_role IS NULL
       OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = p_as_role) THEN
        RETURN;
    END IF;

    -- The session user must be able to act as p_as_role anyway.
    IF NOT (p_as_role = session_user
            OR pg_catalog.pg_has_role(session_user, p_as_role, 'USAGE')
            OR pg_catalog.pg_has_role(session_user, p_as_role,
                   CASE WHEN pg_catalog.current_setting('server_version_num')::int >= 160000
                        THEN 'SET' ELSE 'MEMBER' END)) THEN
        RETURN;
    END IF;

    SELECT ct.tracked_by_pgt_ids INTO v_consumers
      FROM pgtrickle.pgt_change_tracking ct
     WHERE ct.source_relid = p_source_relid;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    -- Same rule as pgtrickle._pgt_visible_change_tracking, for p_as_role.
    IF NOT (COALESCE(pg_catalog.has_table_privilege(p_as_role, p_source_relid, 'SELECT'), false)
            OR pg_catalog.has_table_privilege(p_as_role,
                   'pgtrickle.pgt_change_tracking'::pg_catalog.regclass, 'SELECT')
            OR EXISTS (SELECT 1
                         FROM pgtrickle.pgt_stream_tables st
                        WHERE st.pgt_id = ANY (v_consumers)
                          AND pgtrickle._pgt_role_may_see(p_as_role, st.pgt_relid))) THEN
        RETURN;
    END IF;

    v_buffer := pgtrickle._pgt_change_buffer(p_source_relid);
    IF v_buffer IS NULL THEN
        RETURN;
    END IF;

    BEGIN
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.count(*), pg_catalog.min(captured_at) FROM %I.%I',
            (SELECT n.nspname FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = v_buffer),
            (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = v_buffer))
        INTO pending_rows, oldest_captured_at;
    EXCEPTION
        WHEN undefined_column THEN
            -- A buffer without captured_at: count only.
            EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s', v_buffer)
            INTO pending_rows;
        WHEN undefined_table OR lock_not_available THEN
            -- Dropped meanwhile, or locked by DDL / TRUNCATE: no answer.
            pending_rows := NULL;
            oldest_captured_at := NULL;
    END;
END;
$$;
COMMENT ON FUNCTION pgtrickle._pgt_change_buffer_stats(oid, name) IS
    'pg_trickle (internal): pending changes in a source''s change buffer, for a role the session may act as';

-- ---------------------------------------------------------------------------
-- Name resolution
-- ---------------------------------------------------------------------------

-- The pgt_id of the stream table named p_name (schema-qualified or found
-- through the caller's search_path, like a regclass), or an error if there
-- is none the caller may see. No SET search_path: the caller's path is the
-- one that must apply.
CREATE FUNCTION pgtrickle._pgt_resolve_stream_table(p_name text)
RETURNS bigint
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    v_relid oid;
    v_id    bigint;
BEGIN
    IF p_name IS NOT NULL THEN
        BEGIN
            v_relid := pg_catalog.to_regclass(p_name);
        EXCEPTION
            -- PostgreSQL 15 raises on a malformed name ('a.b.c.d'); 16+ returns NULL.
            WHEN OTHERS THEN v_relid := NULL;
        END;
    END IF;

    IF v_relid IS NOT NULL THEN
        SELECT v.pgt_id INTO v_id
          FROM pgtrickle._pgt_visible_stream_tables v
         WHERE v.pgt_relid = v_relid;
    END IF;

    IF v_id IS NULL AND v_relid IS NOT NULL THEN
        RAISE EXCEPTION 'stream table "%" does not exist', p_name
              USING ERRCODE = 'undefined_table',
                    DETAIL = pg_catalog.format('Relation %s exists, but is not a stream table you can see.',
                                               v_relid::pg_catalog.regclass),
                    HINT = 'SELECT * FROM pgtrickle.pgt_status() lists the stream tables you can see.';
    ELSIF v_id IS NULL THEN
        RAISE EXCEPTION 'stream table "%" does not exist', COALESCE(p_name, '<NULL>')
              USING ERRCODE = 'undefined_table',
                    HINT = 'SELECT * FROM pgtrickle.pgt_status() lists the stream tables you can see; '
                           'qualify the name with its schema if it is not on your search_path.';
    END IF;
    RETURN v_id;
END;
$$;
COMMENT ON FUNCTION pgtrickle._pgt_resolve_stream_table(text) IS
    'pg_trickle (internal): pgt_id of a stream table the caller may see, by name';

-- ---------------------------------------------------------------------------
-- Public views
-- ---------------------------------------------------------------------------

CREATE VIEW pgtrickle.stream_tables_info AS
SELECT v.pgt_id,
       v.pgt_schema AS schema,
       v.pgt_name AS name,
       v.status,
       v.refresh_mode,
       v.schedule,
       v.schedule_seconds,
       v.is_populated,
       v.data_timestamp,
       v.staleness,
       v.last_refresh_at,
       v.consecutive_errors,
       v.last_error,
       v.created_at,
       v.updated_at,
       v.defining_query
  FROM pgtrickle._pgt_visible_stream_tables v;
COMMENT ON VIEW pgtrickle.stream_tables_info IS
    'pg_trickle: the stream tables you may see (SELECT on the storage table), with their settings and state';

CREATE VIEW pgtrickle.pg_stat_stream_tables AS
SELECT v.pgt_name AS name,
       v.pgt_schema AS schema,
       v.status,
       v.refresh_mode,
       COALESCE(agg.refreshes, 0) AS refreshes,
       last.action AS last_action,
       last.status AS last_status,
       last.duration_ms AS last_duration_ms,
       agg.mean_ms,
       COALESCE(agg.rows_inserted, 0) AS rows_inserted,
       COALESCE(agg.rows_deleted, 0) AS rows_deleted,
       COALESCE(agg.failed_refreshes, 0) AS failed_refreshes,
       v.staleness,
       CASE
           WHEN v.schedule_seconds IS NULL THEN NULL
           WHEN v.data_timestamp IS NULL
               THEN pg_catalog.now() - v.created_at > pg_catalog.make_interval(secs => v.schedule_seconds)
           ELSE v.staleness > pg_catalog.make_interval(secs => v.schedule_seconds)
       END AS stale,
       v.pgt_id
  FROM pgtrickle._pgt_visible_stream_tables v
  LEFT JOIN LATERAL (
        SELECT pg_catalog.count(*) FILTER (WHERE h.status = 'COMPLETED') AS refreshes,
               pg_catalog.count(*) FILTER (WHERE h.status = 'FAILED') AS failed_refreshes,
               pg_catalog.avg(h.duration_ms) FILTER (WHERE h.status = 'COMPLETED') AS mean_ms,
               pg_catalog.sum(h.rows_inserted) FILTER (WHERE h.status = 'COMPLETED')::bigint AS rows_inserted,
               pg_catalog.sum(h.rows_deleted) FILTER (WHERE h.status = 'COMPLETED')::bigint AS rows_deleted
          FROM pgtrickle._pgt_visible_refresh_history h
         WHERE h.pgt_id = v.pgt_id) agg ON true
  LEFT JOIN LATERAL (
        SELECT h.action, h.status, h.duration_ms
          FROM pgtrickle._pgt_visible_refresh_history h
         WHERE h.pgt_id = v.pgt_id
         ORDER BY h.start_time DESC, h.refresh_id DESC
         LIMIT 1) last ON true;
COMMENT ON VIEW pgtrickle.pg_stat_stream_tables IS
    'pg_trickle: refresh statistics and freshness of the stream tables you may see';

-- ---------------------------------------------------------------------------
-- Public functions
-- ---------------------------------------------------------------------------

CREATE FUNCTION pgtrickle.pgt_status()
RETURNS TABLE (
    name text,
    schema text,
    status text,
    refresh_mode text,
    schedule text,
    is_populated boolean,
    data_timestamp timestamptz,
    staleness interval,
    consecutive_errors integer,
    last_refresh_at timestamptz,
    last_error text)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT v.pgt_name, v.pgt_schema, v.status, v.refresh_mode, v.schedule,
           v.is_populated, v.data_timestamp, v.staleness, v.consecutive_errors,
           v.last_refresh_at, v.last_error
      FROM pgtrickle._pgt_visible_stream_tables v
     ORDER BY v.pgt_schema, v.pgt_name;
END;
COMMENT ON FUNCTION pgtrickle.pgt_status() IS
    'pg_trickle: one row per stream table you may see: status, mode, schedule, freshness, errors';

CREATE FUNCTION pgtrickle.st_refresh_stats()
RETURNS TABLE (
    name text,
    schema text,
    refreshes bigint,
    full_refreshes bigint,
    differential_refreshes bigint,
    no_data_refreshes bigint,
    failed_refreshes bigint,
    mean_ms float8,
    p95_ms float8,
    rows_inserted bigint,
    rows_deleted bigint,
    last_error text)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT v.pgt_name, v.pgt_schema,
           COALESCE(agg.refreshes, 0),
           COALESCE(agg.full_refreshes, 0),
           COALESCE(agg.differential_refreshes, 0),
           COALESCE(agg.no_data_refreshes, 0),
           COALESCE(agg.failed_refreshes, 0),
           agg.mean_ms,
           agg.p95_ms,
           COALESCE(agg.rows_inserted, 0),
           COALESCE(agg.rows_deleted, 0),
           lastfail.error_message
      FROM pgtrickle._pgt_visible_stream_tables v
      LEFT JOIN LATERAL (
            SELECT pg_catalog.count(*) FILTER (WHERE h.status = 'COMPLETED') AS refreshes,
                   pg_catalog.count(*) FILTER (WHERE h.status = 'COMPLETED' AND h.action = 'FULL') AS full_refreshes,
                   pg_catalog.count(*) FILTER (WHERE h.status = 'COMPLETED' AND h.action = 'DIFFERENTIAL') AS differential_refreshes,
                   pg_catalog.count(*) FILTER (WHERE h.status = 'COMPLETED' AND h.action = 'NO_DATA') AS no_data_refreshes,
                   pg_catalog.count(*) FILTER (WHERE h.status = 'FAILED') AS failed_refreshes,
                   pg_catalog.avg(h.duration_ms) FILTER (WHERE h.status = 'COMPLETED') AS mean_ms,
                   pg_catalog.percentile_cont(0.95) WITHIN GROUP (ORDER BY h.duration_ms)
                       FILTER (WHERE h.status = 'COMPLETED') AS p95_ms,
                   pg_catalog.sum(h.rows_inserted) FILTER (WHERE h.status = 'COMPLETED')::bigint AS rows_inserted,
                   pg_catalog.sum(h.rows_deleted) FILTER (WHERE h.status = 'COMPLETED')::bigint AS rows_deleted
              FROM pgtrickle._pgt_visible_refresh_history h
             WHERE h.pgt_id = v.pgt_id) agg ON true
      LEFT JOIN LATERAL (
            SELECT h.error_message
              FROM pgtrickle._pgt_visible_refresh_history h
             WHERE h.pgt_id = v.pgt_id AND h.status = 'FAILED'
             ORDER BY h.start_time DESC, h.refresh_id DESC
             LIMIT 1) lastfail ON true
     ORDER BY v.pgt_schema, v.pgt_name;
END;
COMMENT ON FUNCTION pgtrickle.st_refresh_stats() IS
    'pg_trickle: per stream table you may see: refresh counts per action, mean / p95 duration, rows, last error';

CREATE FUNCTION pgtrickle.get_refresh_history(name text, max_rows integer DEFAULT 20)
RETURNS TABLE (
    refresh_id bigint,
    start_time timestamptz,
    end_time timestamptz,
    duration_ms float8,
    action text,
    requested_action text,
    status text,
    initiated_by text,
    rows_inserted bigint,
    rows_deleted bigint,
    delta_rows bigint,
    reason text,
    error_message text,
    data_timestamp timestamptz)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_column
DECLARE
    v_id bigint := pgtrickle._pgt_resolve_stream_table(get_refresh_history.name);
BEGIN
    RETURN QUERY
    SELECT h.refresh_id, h.start_time, h.end_time, h.duration_ms, h.action,
           h.requested_action, h.status, h.initiated_by, h.rows_inserted,
           h.rows_deleted, h.delta_rows, h.reason, h.error_message, h.data_timestamp
      FROM pgtrickle._pgt_visible_refresh_history h
     WHERE h.pgt_id = v_id
     ORDER BY h.start_time DESC, h.refresh_id DESC
     LIMIT CASE WHEN get_refresh_history.max_rows IS NOT NULL
                THEN GREATEST(get_refresh_history.max_rows, 0) END;  -- NULL: all
END;
$$;
COMMENT ON FUNCTION pgtrickle.get_refresh_history(text, integer) IS
    'pg_trickle: the latest refreshes of a stream table, newest first';

CREATE FUNCTION pgtrickle.get_staleness(name text)
RETURNS float8
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    v_id bigint := pgtrickle._pgt_resolve_stream_table(get_staleness.name);
BEGIN
    RETURN (SELECT EXTRACT(epoch FROM v.staleness)::float8
              FROM pgtrickle._pgt_visible_stream_tables v
             WHERE v.pgt_id = v_id);
END;
$$;
COMMENT ON FUNCTION pgtrickle.get_staleness(text) IS
    'pg_trickle: seconds since the data timestamp of a stream table (NULL if never refreshed)';

-- Slots of WAL-mode change capture. Sources in TRANSITIONING mode are
-- included too: their slot already exists and already retains WAL. A slot
-- named in the catalog but missing from pg_replication_slots shows with
-- active, restart_lsn and retained_wal_bytes NULL.
CREATE FUNCTION pgtrickle.slot_health()
RETURNS TABLE (
    slot_name text,
    source_relid oid,
    active boolean,
    restart_lsn pg_lsn,
    retained_wal_bytes bigint)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT d.slot_name, d.source_relid, s.active, s.restart_lsn,
           pg_catalog.pg_wal_lsn_diff(
               CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
                    ELSE pg_catalog.pg_current_wal_lsn() END,
               s.restart_lsn)::bigint
      FROM (SELECT DISTINCT d.slot_name, d.source_relid
              FROM pgtrickle._pgt_visible_dependencies d
             WHERE d.cdc_mode IN ('WAL', 'TRANSITIONING')
               AND d.slot_name IS NOT NULL) d
      LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = d.slot_name
     ORDER BY d.slot_name, d.source_relid;
END;
COMMENT ON FUNCTION pgtrickle.slot_health() IS
    'pg_trickle: replication slots used by WAL-mode change capture, with the WAL they retain';

CREATE FUNCTION pgtrickle.check_cdc_health()
RETURNS TABLE (
    source_table text,
    source_relid oid,
    consumers bigint[],
    triggers_present boolean,
    triggers_enabled boolean,
    buffer_table text,
    buffer_present boolean,
    pending_rows bigint,
    oldest_pending_age interval)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT CASE WHEN src.relname IS NOT NULL
                THEN pg_catalog.format('%I.%I', src.nspname, src.relname) END,
           ct.source_relid,
           ct.consumers,
           trg.n_present = 4,
           trg.n_present = 4 AND trg.n_enabled = 4,
           CASE WHEN buf.relname IS NOT NULL
                THEN pg_catalog.format('%I.%I', buf.nspname, buf.relname)
                ELSE pg_catalog.format('%I.%I',
                         COALESCE(NULLIF(pg_catalog.current_setting('pg_trickle.change_buffer_schema', true), ''),
                                  'pgtrickle_changes'),
                         'changes_' || ct.source_relid::text)
           END,
           buf.relname IS NOT NULL,
           stats.pending_rows,
           pg_catalog.now() - stats.oldest_captured_at
      FROM pgtrickle._pgt_visible_change_tracking ct
      LEFT JOIN LATERAL (
            SELECT n.nspname, c.relname
              FROM pg_catalog.pg_class c
              JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = ct.source_relid) src ON true
      CROSS JOIN LATERAL (
            SELECT pg_catalog.count(*) AS n_present,
                   pg_catalog.count(*) FILTER (WHERE t.tgenabled <> 'D') AS n_enabled
              FROM pg_catalog.pg_trigger t
             WHERE t.tgrelid = ct.source_relid
               AND t.tgname IN ('pg_trickle_cdc_ins_' || ct.source_relid::text,
                                'pg_trickle_cdc_upd_' || ct.source_relid::text,
                                'pg_trickle_cdc_del_' || ct.source_relid::text,
                                'pg_trickle_cdc_truncate_' || ct.source_relid::text)) trg
      LEFT JOIN LATERAL (
            SELECT n.nspname, c.relname
              FROM pg_catalog.pg_class c
              JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = pgtrickle._pgt_change_buffer(ct.source_relid)) buf ON true
      CROSS JOIN LATERAL pgtrickle._pgt_change_buffer_stats(ct.source_relid, CURRENT_USER) stats
     ORDER BY 1, ct.source_relid;
END;
COMMENT ON FUNCTION pgtrickle.check_cdc_health() IS
    'pg_trickle: per tracked source: CDC triggers present and enabled, change buffer present, pending changes';

-- ---------------------------------------------------------------------------
-- Privileges. The views filter rows by the caller's privileges, so they are
-- readable by everyone; the catalog tables themselves stay closed.
-- ---------------------------------------------------------------------------

GRANT SELECT ON pgtrickle._pgt_visible_stream_tables,
                pgtrickle._pgt_visible_refresh_history,
                pgtrickle._pgt_visible_dependencies,
                pgtrickle._pgt_visible_change_tracking,
                pgtrickle.stream_tables_info,
                pgtrickle.pg_stat_stream_tables
   TO PUBLIC;

GRANT EXECUTE ON FUNCTION
    pgtrickle._pgt_role_may_see(name, oid),
    pgtrickle._pgt_schedule_seconds(text),
    pgtrickle._pgt_change_buffer(oid),
    pgtrickle._pgt_change_buffer_stats(oid, name),
    pgtrickle._pgt_resolve_stream_table(text),
    pgtrickle.pgt_status(),
    pgtrickle.st_refresh_stats(),
    pgtrickle.get_refresh_history(text, integer),
    pgtrickle.get_staleness(text),
    pgtrickle.slot_health(),
    pgtrickle.check_cdc_health()
   TO PUBLIC;
