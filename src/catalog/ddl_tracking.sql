-- DDL tracking: after ALTER TABLE, ALTER SCHEMA and DROP on a table that a
-- stream table reads or stores, pg_trickle brings change capture in line and decides what
-- happens to each dependent stream table (src/ddl/). Everything else is
-- skipped after one catalog probe. SECURITY DEFINER because the catalog is
-- closed to the roles that run DDL.

CREATE FUNCTION pgtrickle._on_ddl_end() RETURNS event_trigger
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

CREATE FUNCTION pgtrickle._on_sql_drop() RETURNS event_trigger
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

CREATE EVENT TRIGGER pg_trickle_ddl_tracker ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'ALTER SCHEMA') EXECUTE FUNCTION pgtrickle._on_ddl_end();
-- Every DROP: tables also go with DROP SCHEMA ... CASCADE and DROP OWNED.
CREATE EVENT TRIGGER pg_trickle_drop_tracker ON sql_drop
    EXECUTE FUNCTION pgtrickle._on_sql_drop();
