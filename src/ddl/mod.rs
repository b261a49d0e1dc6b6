//! DDL on tables that stream tables read.
//!
//! Event triggers (`catalog/ddl_tracking.sql`) call in here after every
//! `ALTER TABLE` and `DROP TABLE` on a source. Change capture is always
//! brought in line with the table first, so that writes to the source keep
//! working whatever the DDL did. Then, per dependent stream table: a change
//! to a column the stream table uses stops it loudly (or, with
//! `pg_trickle.block_source_ddl`, rejects the DDL); a renamed used column
//! is followed; a safely widened one makes the next refresh a full one, and
//! so does any column change when the stream table reads the table's whole
//! row; other column changes, and constraint, index and default changes,
//! need nothing (row identities hash only the columns read).

pub mod columns;
mod decide;
pub mod diff;
pub mod rewrite;
mod storage;
pub mod wal;

use crate::catalog;
use crate::cdc;
use crate::config;
use crate::dvm::{identity, tree};
use crate::error::{ErrorKind, PgtError, PgtResult};
use crate::spi;
pub use columns::ColumnChange;
use columns::{changes, live_columns, snapshot_columns};
use decide::stop_message;
use pgrx::pg_sys::Oid;
use pgtrickle_core::quote::literal;
use pgtrickle_core::schema_change::{decide, Decision};

thread_local! {
    /// Set while pg_trickle itself runs DDL on storage tables (the renames of
    /// a blue-green promotion), which its own event triggers must not judge.
    static OWN_DDL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the DDL tracking of this backend standing aside. `f` must
/// keep the catalog consistent itself.
pub fn as_own_ddl<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            OWN_DDL.with(|flag| flag.set(self.0));
        }
    }
    let _reset = Reset(OWN_DDL.with(|flag| flag.replace(true)));
    f()
}

fn own_ddl() -> bool {
    OWN_DDL.with(|flag| flag.get())
}

/// After ALTER TABLE on a stream table's storage.
pub fn storage_altered(relid: Oid) -> PgtResult<()> {
    if own_ddl() || crate::restore::restored() {
        return Ok(());
    }
    storage::storage_altered(relid)
}

/// After ALTER TABLE on `source`.
pub fn source_altered(source: Oid) -> PgtResult<()> {
    if own_ddl() {
        return Ok(());
    }
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
        let mut before_image: Option<String> = None;
        let mut all_changes: Vec<ColumnChange> = Vec::new();
        let mut stops: Vec<(i64, String)> = Vec::new();
        let mut rewrites: Vec<(i64, String)> = Vec::new();
        let mut reinit: Vec<i64> = Vec::new();
        let mut carry_on: Vec<i64> = Vec::new();
        let mut decisions = Vec::new();
        for row in dependents {
            let pgt_id: i64 = row[0].as_deref().unwrap_or("0").parse().unwrap_or(0);
            let used = parse_text_array(row[1].as_deref().unwrap_or("{}"));
            let snapshot = row[2].clone().unwrap_or_else(|| "[]".into());
            let before = snapshot_columns(&snapshot);
            before_image.get_or_insert(snapshot);
            let Some(st) = catalog::load(pgt_id) else {
                continue;
            };
            let found = changes(&before, &live);
            let whole_row = reads_whole_row(pgt_id, source);
            let mut decision = decide(&found, &used, whole_row);
            let mut reason = None;
            if decision != Decision::Stop {
                // Renamed tables and columns: the query printed again from
                // its analysed form names them as they are now.
                match rewrite::reprinted(&st, &found, &used) {
                    Ok(Some(text)) => {
                        decision = decision.max(Decision::Rewrite);
                        reason = Some("the stored query now names the source as it is".to_string());
                        rewrites.push((pgt_id, text));
                    }
                    Ok(None) => {}
                    Err(why) => {
                        decision = Decision::Stop;
                        reason = Some(stop_message(&st, &table, &why));
                    }
                }
            } else {
                let breaking: Vec<String> = found
                    .iter()
                    .filter(|c| c.decide(&used, whole_row) == Decision::Stop)
                    .map(|c| c.describe())
                    .collect();
                reason = Some(stop_message(&st, &table, &breaking.join(" and ")));
            }
            match decision {
                Decision::Stop => stops.push((pgt_id, reason.clone().unwrap_or_default())),
                Decision::Reinitialize => {
                    reason = Some(
                        "its next refresh is a full one: a used column was widened, or it reads the whole row"
                            .to_string(),
                    );
                    reinit.push(pgt_id);
                }
                _ => carry_on.push(pgt_id),
            }
            let rejected = config::BLOCK_SOURCE_DDL.get();
            for change in &found {
                diff::record(
                    &st,
                    &table,
                    &change.describe(),
                    change.decide(&used, whole_row),
                    rejected,
                );
            }
            if found.is_empty() && decision == Decision::Rewrite {
                diff::record(
                    &st,
                    &table,
                    "the table was renamed or moved",
                    decision,
                    rejected,
                );
            }
            let label = if decision == Decision::Stop && config::BLOCK_SOURCE_DDL.get() {
                "reject"
            } else {
                decision.as_str()
            };
            decisions.push(serde_json::json!({
                "schema": st.schema, "name": st.name, "decision": label, "reason": reason,
            }));
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
        let after_image = columns::snapshot_json(source);
        wal::ddl(serde_json::json!({
            "event": "alter_table",
            "command_tag": "ALTER TABLE",
            "table": table_json(source),
            "columns_before": parse_json(before_image.as_deref().unwrap_or("[]")),
            "columns_after": parse_json(&after_image),
            "changes": all_changes.iter().map(|c| c.describe()).collect::<Vec<_>>(),
            "stream_tables": decisions,
        }));
        cdc::follow_column_changes(source, &all_changes);
        for (pgt_id, message) in &stops {
            stop(*pgt_id, message);
        }
        for (pgt_id, text) in &rewrites {
            rewrite::apply(*pgt_id, text)?;
        }
        for pgt_id in reinit.iter().chain(&carry_on) {
            spi::execute(&format!(
                "UPDATE pgtrickle.pgt_dependencies SET column_snapshot = {snap}::jsonb, \
                        schema_fingerprint = pgtrickle.pg_trickle_hash({snap})::text \
                  WHERE pgt_id = {pgt_id} AND source_relid = {oid}",
                snap = literal(&after_image),
                oid = source.to_u32()
            ));
        }
        for pgt_id in &reinit {
            rewrite::reinitialize(*pgt_id)?;
        }
        Ok(())
    })
}

/// Whether stream table `pgt_id` reads the whole row of `source`, by its
/// stored analysed query (assumed when there is none to read).
fn reads_whole_row(pgt_id: i64, source: Oid) -> bool {
    catalog::query_tree(pgt_id)
        .and_then(|text| tree::decode(&text))
        .is_none_or(|query| identity::reads_whole_row(query, source))
}

fn parse_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// OID, schema and name of a table, for messages.
fn table_json(source: Oid) -> serde_json::Value {
    let row = spi::query(&format!(
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
          WHERE c.oid = {}",
        source.to_u32()
    ));
    let row = row.into_iter().next().unwrap_or_default();
    serde_json::json!({
        "oid": source.to_u32(),
        "schema": row.first().cloned().flatten(),
        "name": row.get(1).cloned().flatten(),
    })
}

/// After DROP TABLE of `source` (a source table, or a stream table's own
/// storage dropped with DROP TABLE).
pub fn source_dropped(source: Oid, identity: &str) -> PgtResult<()> {
    if own_ddl() {
        return Ok(());
    }
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
        let decisions: Vec<serde_json::Value> = messages
            .iter()
            .filter_map(|(pgt_id, message)| {
                catalog::load(*pgt_id).map(|st| {
                    serde_json::json!({"schema": st.schema, "name": st.name, "decision": "stop", "reason": message})
                })
            })
            .collect();
        if !decisions.is_empty() {
            wal::ddl(serde_json::json!({
                "event": "drop_table",
                "command_tag": "DROP TABLE",
                "table": { "oid": source.to_u32(), "identity": identity },
                "stream_tables": decisions,
            }));
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
    // The history shows where refreshes stopped, and why.
    spi::execute(&format!(
        "INSERT INTO pgtrickle.pgt_refresh_history (pgt_id, data_timestamp, start_time, end_time, action, status, \
                reason, error_message) \
         VALUES ({pgt_id}, pg_catalog.now(), pg_catalog.now(), pg_catalog.now(), 'SKIP', 'SKIPPED', \
                 'stopped by a change of a source', {})",
        literal(message)
    ));
    if let Some(st) = catalog::load(pgt_id) {
        wal::lifecycle(
            "status_change",
            &st.schema,
            &st.name,
            serde_json::json!({ "status": "ERROR", "reason": message }),
        );
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

/// `schema.table`, quoted where needed, whatever the search_path.
pub(crate) fn table_name(source: Oid) -> String {
    spi::query_value(&format!(
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = {}",
        source.to_u32()
    ))
    .unwrap_or_default()
}

pub(crate) fn parse_text_array(text: &str) -> Vec<String> {
    text.trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_matches('"').replace("\\\"", "\""))
        .collect()
}
