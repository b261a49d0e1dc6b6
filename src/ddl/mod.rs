//! DDL on tables that stream tables read.
//!
//! Event triggers (`catalog/ddl_tracking.sql`) call in here after every
//! `ALTER TABLE` and `DROP TABLE` on a source. Change capture is always
//! brought in line with the table first, so that writes to the source keep
//! working whatever the DDL did. Then, per dependent stream table: a change
//! to a column the stream table uses stops it loudly (or, with
//! `pg_trickle.block_source_ddl`, rejects the DDL); any other column change
//! makes its next refresh a full one, because row identities cover every
//! column; constraint, index and default changes need nothing.

pub mod columns;
mod decide;

use crate::catalog;
use crate::cdc;
use crate::config;
use crate::error::{ErrorKind, PgtError, PgtResult};
use crate::spi;
pub use columns::ColumnChange;
use columns::{changes, live_columns, snapshot_columns};
use decide::stop_message;
use pgrx::pg_sys::Oid;
use pgtrickle_core::quote::literal;

/// After ALTER TABLE on `source`.
pub fn source_altered(source: Oid) -> PgtResult<()> {
    spi::as_role(spi::superuser(), || {
        // During a pg_restore the catalog still holds the dumped database's
        // OIDs, which may name other tables here; the repair deals with it.
        if crate::restore::restored() {
            return Ok(());
        }
        let live = live_columns(source);
        let table = table_name(source);
        let dependents = spi::query(&format!(
            "SELECT d.pgt_id::text, coalesce(d.columns_used, '{{}}')::text, coalesce(d.column_snapshot, '[]')::text \
               FROM pgtrickle.pgt_dependencies d WHERE d.source_relid = {} AND d.source_type <> 'VIEW' ORDER BY 1",
            source.to_u32()
        ));
        let mut all_changes: Vec<ColumnChange> = Vec::new();
        let mut stops: Vec<(i64, String)> = Vec::new();
        let mut reinit: Vec<i64> = Vec::new();
        for row in dependents {
            let pgt_id: i64 = row[0].as_deref().unwrap_or("0").parse().unwrap_or(0);
            let used = parse_text_array(row[1].as_deref().unwrap_or("{}"));
            let before = snapshot_columns(row[2].as_deref().unwrap_or("[]"));
            let found = changes(&before, &live);
            if found.is_empty() {
                continue;
            }
            let Some(st) = catalog::load(pgt_id) else {
                continue;
            };
            let breaking: Vec<&ColumnChange> = found.iter().filter(|c| c.touches(&used)).collect();
            if breaking.is_empty() {
                reinit.push(pgt_id);
            } else {
                stops.push((pgt_id, stop_message(&st, &table, &breaking)));
            }
            for change in found {
                if !all_changes.contains(&change) {
                    all_changes.push(change);
                }
            }
        }
        if let Some((_, message)) = stops.first() {
            if config::BLOCK_SOURCE_DDL.get() {
                return Err(PgtError::new(ErrorKind::ObjectState, message.clone())
                    .with_hint("pg_trickle.block_source_ddl is on, so this change is rejected; see the message for the ways forward."));
            }
        }
        cdc::follow_column_changes(source, &all_changes);
        for (pgt_id, message) in &stops {
            stop(*pgt_id, message);
        }
        for pgt_id in reinit {
            spi::execute(&format!(
                "UPDATE pgtrickle.pgt_dependencies SET column_snapshot = {snap}::jsonb, \
                        schema_fingerprint = pgtrickle.pg_trickle_hash({snap})::text \
                  WHERE pgt_id = {pgt_id} AND source_relid = {oid}; \
                 UPDATE pgtrickle.pgt_stream_tables SET needs_reinit = true, updated_at = pg_catalog.now() \
                  WHERE pgt_id = {pgt_id}",
                snap = literal(&columns::snapshot_json(source)),
                oid = source.to_u32()
            ));
        }
        Ok(())
    })
}

/// After DROP TABLE of `source` (a source table, or a stream table's own
/// storage dropped with DROP TABLE).
pub fn source_dropped(source: Oid, identity: &str) -> PgtResult<()> {
    spi::as_role(spi::superuser(), || {
        if crate::restore::restored() {
            return Ok(());
        }
        let readers: Vec<i64> = spi::query(&format!(
            "SELECT DISTINCT d.pgt_id::text FROM pgtrickle.pgt_dependencies d \
               JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) \
              WHERE d.source_relid = {} AND s.pgt_relid <> {0} ORDER BY 1",
            source.to_u32()
        ))
        .into_iter()
        .filter_map(|r| r[0].as_ref().and_then(|v| v.parse().ok()))
        .collect();
        let mut messages = Vec::new();
        for pgt_id in &readers {
            if let Some(st) = catalog::load(*pgt_id) {
                messages.push((*pgt_id, decide::dropped_message(&st, identity)));
            }
        }
        if let Some((_, message)) = messages.first() {
            if config::BLOCK_SOURCE_DDL.get() {
                return Err(PgtError::new(ErrorKind::ObjectState, message.clone())
                    .with_hint("pg_trickle.block_source_ddl is on, so this DROP is rejected."));
            }
        }
        for (pgt_id, message) in &messages {
            stop(*pgt_id, message);
        }
        // Its own capture objects (the triggers went with the table).
        cdc::drop_capture_of(source);
        // A stream table whose storage was dropped directly is gone too.
        if let Some(id) = spi::query_value(&format!(
            "SELECT pgt_id::text FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = {}",
            source.to_u32()
        )) {
            let pgt_id: i64 = id.parse().unwrap_or(0);
            cdc::untrack_all(pgt_id);
            spi::execute(&format!(
                "DELETE FROM pgtrickle.pgt_stream_tables WHERE pgt_id = {pgt_id}"
            ));
        }
        Ok(())
    })
}

/// Puts a stream table in ERROR with `message`, and says so on
/// `pg_trickle_alert`.
fn stop(pgt_id: i64, message: &str) {
    spi::execute(&format!(
        "UPDATE pgtrickle.pgt_stream_tables SET status = 'ERROR', last_error = {}, updated_at = pg_catalog.now() \
          WHERE pgt_id = {pgt_id}",
        literal(message)
    ));
    if let Some(st) = catalog::load(pgt_id) {
        let payload = serde_json::json!({
            "event": "source_changed",
            "schema": st.schema,
            "name": st.name,
            "error": message,
        });
        spi::execute(&format!(
            "SELECT pg_catalog.pg_notify('pg_trickle_alert', {})",
            literal(&payload.to_string())
        ));
    }
}

fn table_name(source: Oid) -> String {
    spi::query_value(&format!("SELECT {}::regclass::text", source.to_u32())).unwrap_or_default()
}

fn parse_text_array(text: &str) -> Vec<String> {
    text.trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_matches('"').replace("\\\"", "\""))
        .collect()
}
