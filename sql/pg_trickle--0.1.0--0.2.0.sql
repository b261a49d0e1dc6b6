-- pg_trickle 0.1.0 -> 0.2.0
--
-- Hand-written and idempotent: every statement may run again without harm.
-- Checklist for the next version step: docs/UPGRADING.md.

-- 1. Refuse to run on anything but a 0.1.0 catalog.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgtrickle.pgt_schema_version WHERE version IN ('0.1.0', '0.2.0')) THEN
        RAISE EXCEPTION 'pg_trickle: expected catalog version 0.1.0, found %',
            (SELECT string_agg(version, ', ' ORDER BY applied_at) FROM pgtrickle.pgt_schema_version)
            USING HINT = 'Upgrade through each intermediate version in order.';
    END IF;
END
$$;

-- 2. New functions.
CREATE OR REPLACE FUNCTION pgtrickle."migrate"() RETURNS TABLE (
    "object" TEXT,
    "action" TEXT
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'migrate_wrapper';

-- 3. DDL tracking of sources.
CREATE OR REPLACE FUNCTION pgtrickle."_source_altered"(
    "relid" oid
) RETURNS void
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', '_source_altered_wrapper';

CREATE OR REPLACE FUNCTION pgtrickle."_storage_altered"(
	"relid" oid /* pgrx::pg_sys::submodules::oids::Oid */
) RETURNS void
STRICT
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_storage_altered_wrapper';

CREATE OR REPLACE FUNCTION pgtrickle."_source_dropped"(
    "relid" oid,
    "identity" TEXT
) RETURNS void
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', '_source_dropped_wrapper';

CREATE OR REPLACE FUNCTION pgtrickle._on_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    -- Tables altered, and the tables of a schema renamed.
    FOR r IN
        SELECT DISTINCT x.objid FROM (
            SELECT c.objid FROM pg_catalog.pg_event_trigger_ddl_commands() c
             WHERE c.classid = 'pg_catalog.pg_class'::regclass
            UNION ALL
            SELECT k.oid FROM pg_catalog.pg_event_trigger_ddl_commands() c
              JOIN pg_catalog.pg_class k ON k.relnamespace = c.objid
             WHERE c.classid = 'pg_catalog.pg_namespace'::regclass) x
    LOOP
        IF EXISTS (SELECT FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_relid = r.objid) THEN
            PERFORM pgtrickle._storage_altered(r.objid);
        END IF;
        IF EXISTS (SELECT FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = r.objid) THEN
            PERFORM pgtrickle._source_altered(r.objid);
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION pgtrickle._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT o.objid, o.object_identity FROM pg_catalog.pg_event_trigger_dropped_objects() o
         WHERE o.classid = 'pg_catalog.pg_class'::regclass AND o.objsubid = 0 AND o.object_type = 'table'
    LOOP
        IF EXISTS (SELECT FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = r.objid)
           OR EXISTS (SELECT FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_relid = r.objid) THEN
            PERFORM pgtrickle._source_dropped(r.objid, r.object_identity);
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION pgtrickle._on_ddl_end() FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle._on_sql_drop() FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle._source_altered(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle._source_dropped(oid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtrickle._storage_altered(oid) FROM PUBLIC;

DO $$
BEGIN
    -- ALTER SCHEMA too (renamed schemas are followed); an earlier draft
    -- had ALTER TABLE only.
    IF EXISTS (SELECT FROM pg_catalog.pg_event_trigger
                WHERE evtname = 'pg_trickle_ddl_tracker' AND evttags <> ARRAY['ALTER TABLE', 'ALTER SCHEMA']) THEN
        DROP EVENT TRIGGER pg_trickle_ddl_tracker;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname = 'pg_trickle_ddl_tracker') THEN
        CREATE EVENT TRIGGER pg_trickle_ddl_tracker ON ddl_command_end
            WHEN TAG IN ('ALTER TABLE', 'ALTER SCHEMA') EXECUTE FUNCTION pgtrickle._on_ddl_end();
    END IF;
    -- Every DROP (tables also go with DROP SCHEMA ... CASCADE and DROP
    -- OWNED); an earlier draft filtered on DROP TABLE.
    IF EXISTS (SELECT FROM pg_catalog.pg_event_trigger
                WHERE evtname = 'pg_trickle_drop_tracker' AND evttags IS NOT NULL) THEN
        DROP EVENT TRIGGER pg_trickle_drop_tracker;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname = 'pg_trickle_drop_tracker') THEN
        CREATE EVENT TRIGGER pg_trickle_drop_tracker ON sql_drop
            EXECUTE FUNCTION pgtrickle._on_sql_drop();
    END IF;
END
$$;

-- Row capture in C (src/cdc/capture.rs); migrate() moves the triggers of
-- existing sources onto it and drops their PL/pgSQL row functions.
CREATE OR REPLACE FUNCTION pgtrickle."pg_trickle_capture"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'pg_trickle_capture_wrapper';
REVOKE ALL ON FUNCTION pgtrickle.pg_trickle_capture() FROM PUBLIC;

-- The write guard of storage tables (migrate() adds the triggers to
-- existing stream tables).
CREATE OR REPLACE FUNCTION pgtrickle."_check_direct_write"(
	"relid" oid, /* pg_sys :: Oid */
	"op" TEXT /* & str */
) RETURNS void
STRICT 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_check_direct_write_wrapper';
CREATE OR REPLACE FUNCTION pgtrickle._guard_storage() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgtrickle._check_direct_write(TG_RELID, TG_OP);
    RETURN NULL;
END
$$;

-- What source changes mean for a stream table.
CREATE OR REPLACE FUNCTION pgtrickle."schema_diff"(
	"name" TEXT /* & str */
) RETURNS TABLE (
	"source" TEXT,  /* String */
	"change" TEXT,  /* String */
	"decision" TEXT,  /* String */
	"effect" TEXT,  /* String */
	"fix" TEXT  /* String */
)
STRICT 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'schema_diff_wrapper';

-- 4. Blue-green: catalog columns (the functions are in section 5).
ALTER TABLE pgtrickle.pgt_stream_tables
    ADD COLUMN IF NOT EXISTS green_of BIGINT REFERENCES pgtrickle.pgt_stream_tables (pgt_id) ON DELETE SET NULL,
    ADD COLUMN IF NOT EXISTS retired_by BIGINT REFERENCES pgtrickle.pgt_stream_tables (pgt_id) ON DELETE SET NULL,
    ADD COLUMN IF NOT EXISTS pipeline_group TEXT;
-- Following renames of sources; filled for existing stream tables by
-- pgtrickle.migrate().
ALTER TABLE pgtrickle.pgt_stream_tables ADD COLUMN IF NOT EXISTS query_tree TEXT;

-- 5. Blue-green functions.
CREATE OR REPLACE FUNCTION pgtrickle."cancel_green"(
	"name" TEXT /* & str */
) RETURNS TEXT /* String */
STRICT 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cancel_green_wrapper';

CREATE OR REPLACE FUNCTION pgtrickle."create_green"(
	"name" TEXT, /* & str */
	"query" TEXT DEFAULT NULL, /* Option < & str > */
	"schedule" TEXT DEFAULT NULL, /* Option < & str > */
	"refresh_mode" TEXT DEFAULT NULL, /* Option < & str > */
	"pipeline_group" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TEXT /* String */

LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_green_wrapper';

CREATE OR REPLACE FUNCTION pgtrickle."drop_retired"(
	"name" TEXT /* & str */
) RETURNS TEXT /* String */
STRICT 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'drop_retired_wrapper';

CREATE OR REPLACE FUNCTION pgtrickle."green_status"(
	"name" TEXT, /* & str */
	"max_lag" interval DEFAULT NULL, /* Option < Interval > */
	"verify" bool DEFAULT false /* bool */
) RETURNS TABLE (
	"green_name" TEXT,  /* String */
	"status" TEXT,  /* String */
	"frontier_lag_bytes" bigint,  /* Option < i64 > */
	"frontier_lag" interval,  /* Option < Interval > */
	"pending_changes" bigint,  /* i64 */
	"blue_rows" bigint,  /* i64 */
	"green_rows" bigint,  /* i64 */
	"converged" bool,  /* bool */
	"reason" TEXT,  /* Option < String > */
	"content_matches" bool  /* Option < bool > */
)

LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'green_status_wrapper';

CREATE OR REPLACE FUNCTION pgtrickle."promote_all_green"(
	"pipeline_group" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"stream_table" TEXT,  /* String */
	"green_name" TEXT,  /* String */
	"action" TEXT,  /* String */
	"detail" TEXT  /* String */
)

LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'promote_all_green_wrapper';

CREATE OR REPLACE FUNCTION pgtrickle."promote_green"(
	"name" TEXT, /* & str */
	"force" bool DEFAULT false, /* bool */
	"max_lag" interval DEFAULT NULL /* Option < Interval > */
) RETURNS void

LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'promote_green_wrapper';

CREATE OR REPLACE FUNCTION pgtrickle."rollback_green"(
	"name" TEXT /* & str */
) RETURNS void
STRICT 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rollback_green_wrapper';

-- 6. Row ids no longer depend on the session's output settings, and group
-- keys hash as GROUP BY groups them (src/dvm/value_form.rs): the row ids
-- 0.1.0 stored are recomputed by one full refresh of each stream table.
UPDATE pgtrickle.pgt_stream_tables SET needs_reinit = true
 WHERE NOT EXISTS (SELECT FROM pgtrickle.pgt_schema_version WHERE version = '0.2.0');

-- 7. Record the version reached.
INSERT INTO pgtrickle.pgt_schema_version (version, description)
VALUES ('0.2.0', 'Upgrade from 0.1.0: migrate(), DDL tracking of sources, blue-green')
ON CONFLICT (version) DO NOTHING;
