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
    FOR r IN
        SELECT DISTINCT c.objid FROM pg_catalog.pg_event_trigger_ddl_commands() c
         WHERE c.classid = 'pg_catalog.pg_class'::regclass
    LOOP
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

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname = 'pg_trickle_ddl_tracker') THEN
        CREATE EVENT TRIGGER pg_trickle_ddl_tracker ON ddl_command_end
            WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION pgtrickle._on_ddl_end();
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname = 'pg_trickle_drop_tracker') THEN
        CREATE EVENT TRIGGER pg_trickle_drop_tracker ON sql_drop
            WHEN TAG IN ('DROP TABLE') EXECUTE FUNCTION pgtrickle._on_sql_drop();
    END IF;
END
$$;

-- 4. Record the version reached.
INSERT INTO pgtrickle.pgt_schema_version (version, description)
VALUES ('0.2.0', 'Upgrade from 0.1.0: migrate(), DDL tracking of sources')
ON CONFLICT (version) DO NOTHING;
