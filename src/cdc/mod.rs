//! Trigger-based change capture.
//!
//! One change buffer per source table, shared by every stream table that
//! reads it: `<change_buffer_schema>.changes_<oid>` holds one row image per
//! inserted or deleted row (an UPDATE is a delete of the old image and an
//! insert of the new), stamped with the writing transaction's `xid8`, and a
//! marker row for TRUNCATE. Statement-level AFTER triggers with transition
//! tables fill it: one INSERT ... SELECT per statement, linear in the rows
//! written, with no join between old and new images.

use crate::config;
use crate::spi;
use pgrx::pg_sys::Oid;
use pgtrickle_core::quote::{ident, qualified};

/// Names of the objects capturing changes of one source table.
pub struct CdcObjects {
    pub schema: String,
    pub buffer: String,
    pub function: String,
    pub truncate_function: String,
    pub triggers: [String; 4],
}

impl CdcObjects {
    pub fn for_source(source: Oid, schema: &str) -> CdcObjects {
        let oid = source.to_u32();
        CdcObjects {
            schema: schema.to_string(),
            buffer: format!("changes_{oid}"),
            function: format!("pg_trickle_cdc_fn_{oid}"),
            truncate_function: format!("pg_trickle_cdc_truncate_fn_{oid}"),
            triggers: [
                format!("pg_trickle_cdc_ins_{oid}"),
                format!("pg_trickle_cdc_upd_{oid}"),
                format!("pg_trickle_cdc_del_{oid}"),
                format!("pg_trickle_cdc_truncate_{oid}"),
            ],
        }
    }

    /// The buffer of an existing tracked source (wherever it was created).
    pub fn existing(source: Oid) -> Option<CdcObjects> {
        let schema = spi::query_value(&format!(
            "SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = 'changes_{}' AND c.relkind = 'r' \
               AND n.nspname IN ({}, 'pgtrickle_changes') ORDER BY n.nspname = 'pgtrickle_changes' LIMIT 1",
            source.to_u32(),
            pgtrickle_core::quote::literal(&config::change_buffer_schema())
        ))?;
        Some(CdcObjects::for_source(source, &schema))
    }

    pub fn buffer_name(&self) -> String {
        qualified(&self.schema, &self.buffer)
    }
}

fn source_name(source: Oid) -> String {
    spi::query_value(&format!(
        "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = {}",
        source.to_u32()
    ))
    .expect("source table exists")
}

/// (quoted name, type) of the live columns of a table.
fn columns(source: Oid) -> Vec<(String, String)> {
    spi::query(&format!(
        "SELECT attname, pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute \
         WHERE attrelid = {} AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        source.to_u32()
    ))
    .into_iter()
    .map(|r| {
        (
            ident(r[0].as_deref().unwrap_or("")),
            r[1].clone().unwrap_or_default(),
        )
    })
    .collect()
}

/// Creates the buffer and triggers of `source` if they do not exist, and
/// adds `pgt_id` to its consumers. Runs as the bootstrap superuser.
pub fn track(source: Oid, pgt_id: i64, consumer_role: Oid) {
    spi::as_role(spi::superuser(), || {
        let existing = CdcObjects::existing(source);
        let objects = match existing {
            Some(objects) => objects,
            None => create_capture(source),
        };
        spi::execute(&format!(
            "INSERT INTO pgtrickle.pgt_change_tracking (source_relid, slot_name, tracked_by_pgt_ids) \
             VALUES ({oid}, 'pgtrickle_{oid}', ARRAY[{pgt_id}]::bigint[]) \
             ON CONFLICT (source_relid) DO UPDATE SET tracked_by_pgt_ids = \
               (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(pgt_change_tracking.tracked_by_pgt_ids || {pgt_id}::bigint) x)",
            oid = source.to_u32()
        ));
        // The owner of the stream table reads the buffer during refreshes.
        spi::execute(&format!(
            "GRANT USAGE ON SCHEMA {} TO {role}; GRANT SELECT ON {} TO {role}",
            ident(&objects.schema),
            objects.buffer_name(),
            role = role_name(consumer_role)
        ));
    });
}

fn role_name(role: Oid) -> String {
    spi::query_value(&format!(
        "SELECT pg_catalog.quote_ident(rolname) FROM pg_catalog.pg_roles WHERE oid = {}",
        role.to_u32()
    ))
    .expect("role exists")
}

fn create_capture(source: Oid) -> CdcObjects {
    let objects = CdcObjects::for_source(source, &config::change_buffer_schema());
    let cols = columns(source);
    let col_defs: Vec<String> = cols.iter().map(|(n, t)| format!("{n} {t}")).collect();
    let col_names: Vec<String> = cols.iter().map(|(n, _)| n.clone()).collect();
    let names = col_names.join(", ");
    let buffer = objects.buffer_name();
    let src = source_name(source);
    let schema = ident(&objects.schema);
    let function = qualified(&objects.schema, &objects.function);
    let truncate_function = qualified(&objects.schema, &objects.truncate_function);
    let col_sep = if col_defs.is_empty() { "" } else { ", " };
    if spi::query_value(&format!(
        "SELECT 1::text FROM pg_catalog.pg_namespace WHERE nspname = {}",
        pgtrickle_core::quote::literal(&objects.schema)
    ))
    .is_none()
    {
        spi::execute(&format!(
            "CREATE SCHEMA {schema}; REVOKE ALL ON SCHEMA {schema} FROM PUBLIC"
        ));
    }
    spi::execute(&format!(
        "CREATE TABLE {buffer} (
             change_id bigserial,
             xid pg_catalog.xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
             action \"char\" NOT NULL,
             captured_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(){col_sep}{defs}
         );
         COMMENT ON TABLE {buffer} IS 'pg_trickle change buffer of {src_comment}';
         CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
         SET search_path = pg_catalog, pg_temp AS $pgt$
         BEGIN
             IF TG_OP = 'INSERT' THEN
                 INSERT INTO {buffer} (action{col_sep}{names}) SELECT 'I'{col_sep}{names} FROM __pgt_new;
             ELSIF TG_OP = 'UPDATE' THEN
                 INSERT INTO {buffer} (action{col_sep}{names})
                 SELECT 'D'{col_sep}{names} FROM __pgt_old UNION ALL SELECT 'I'{col_sep}{names} FROM __pgt_new;
             ELSE
                 INSERT INTO {buffer} (action{col_sep}{names}) SELECT 'D'{col_sep}{names} FROM __pgt_old;
             END IF;
             RETURN NULL;
         END
         $pgt$;
         CREATE FUNCTION {truncate_function}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
         SET search_path = pg_catalog, pg_temp AS $pgt$
         BEGIN
             INSERT INTO {buffer} (action) VALUES ('T');
             RETURN NULL;
         END
         $pgt$;
         REVOKE ALL ON FUNCTION {function}() FROM PUBLIC;
         REVOKE ALL ON FUNCTION {truncate_function}() FROM PUBLIC;
         CREATE TRIGGER {ins} AFTER INSERT ON {src} REFERENCING NEW TABLE AS __pgt_new
             FOR EACH STATEMENT EXECUTE FUNCTION {function}();
         CREATE TRIGGER {upd} AFTER UPDATE ON {src} REFERENCING OLD TABLE AS __pgt_old NEW TABLE AS __pgt_new
             FOR EACH STATEMENT EXECUTE FUNCTION {function}();
         CREATE TRIGGER {del} AFTER DELETE ON {src} REFERENCING OLD TABLE AS __pgt_old
             FOR EACH STATEMENT EXECUTE FUNCTION {function}();
         CREATE TRIGGER {trunc} AFTER TRUNCATE ON {src}
             FOR EACH STATEMENT EXECUTE FUNCTION {truncate_function}();",
        defs = col_defs.join(", "),
        src_comment = src.replace('\'', "''"),
        ins = ident(&objects.triggers[0]),
        upd = ident(&objects.triggers[1]),
        del = ident(&objects.triggers[2]),
        trunc = ident(&objects.triggers[3]),
    ));
    objects
}

/// Removes `pgt_id` from the consumers of every source; drops the capture
/// objects of sources no stream table consumes any more.
pub fn untrack_all(pgt_id: i64) {
    spi::as_role(spi::superuser(), || {
        for source in crate::catalog::tracked_sources(pgt_id) {
            let remaining = spi::query_value(&format!(
                "UPDATE pgtrickle.pgt_change_tracking SET tracked_by_pgt_ids = array_remove(tracked_by_pgt_ids, {pgt_id}::bigint) \
                 WHERE source_relid = {oid} RETURNING coalesce(cardinality(tracked_by_pgt_ids), 0)::text",
                oid = source.to_u32()
            ));
            if remaining.as_deref() == Some("0") {
                drop_capture(source);
            }
        }
    });
}

fn drop_capture(source: Oid) {
    let oid = source.to_u32();
    if let Some(objects) = CdcObjects::existing(source) {
        let table_exists = spi::query_value(&format!(
            "SELECT 1::text FROM pg_catalog.pg_class WHERE oid = {oid}"
        ))
        .is_some();
        if table_exists {
            let src = source_name(source);
            for trigger in &objects.triggers {
                spi::execute(&format!(
                    "DROP TRIGGER IF EXISTS {} ON {src}",
                    ident(trigger)
                ));
            }
        }
        spi::execute(&format!(
            "DROP FUNCTION IF EXISTS {}(); DROP FUNCTION IF EXISTS {}(); DROP TABLE IF EXISTS {}",
            qualified(&objects.schema, &objects.function),
            qualified(&objects.schema, &objects.truncate_function),
            objects.buffer_name()
        ));
    }
    spi::execute(&format!(
        "DELETE FROM pgtrickle.pgt_change_tracking WHERE source_relid = {oid}"
    ));
}

/// Drops the capture of `source` whatever consumes it (used when the
/// source itself, a stream table's storage, goes away).
pub fn drop_capture_of(source: Oid) {
    spi::as_role(spi::superuser(), || {
        if spi::query_value(&format!(
            "SELECT 1::text FROM pgtrickle.pgt_change_tracking WHERE source_relid = {}",
            source.to_u32()
        ))
        .is_some()
        {
            drop_capture(source);
        }
    });
}
