//! Following a source's renames and widenings.
//!
//! A rename is followed by printing the stored analysed query again
//! (`dvm::tree`): it refers to tables and columns by number, so it prints
//! with the new names, and the stream table's own column names stay. A
//! safe widening of a used column reinitializes: storage columns whose type
//! the query now gives differently are retyped, and the next refresh is a
//! full one.

use crate::catalog::{self, StreamTable};
use crate::ddl::columns::live_columns;
use crate::ddl::ColumnChange;
use crate::dvm::analyze::analyze;
use crate::dvm::tree;
use crate::error::PgtResult;
use crate::lifecycle::{probe_dependencies, record_dependencies};
use crate::refresh;
use crate::spi;
use pgtrickle_core::quote::ident;

/// The defining query of `st` printed again from its analysed form, when
/// that changes its text; `Err` says why a rename it depends on cannot be
/// followed.
pub fn reprinted(
    st: &StreamTable,
    found: &[ColumnChange],
    used: &[String],
) -> Result<Option<String>, String> {
    let tree = catalog::query_tree(st.pgt_id).and_then(|t| tree::decode(&t));
    let Some(tree) = tree else {
        let renames: Vec<String> = found
            .iter()
            .filter(|c| matches!(c, ColumnChange::Renamed { .. }) && c.touches(used))
            .map(|c| c.describe())
            .collect();
        return if renames.is_empty() {
            Ok(None)
        } else {
            Err(format!(
                "{} (its stored query has no analysed form to follow the rename with: \
                 after upgrading, SELECT * FROM pgtrickle.migrate() stores it)",
                renames.join(" and ")
            ))
        };
    };
    let text = tree::print(tree);
    Ok((text != st.defining_query).then_some(text))
}

/// Stores `text` as the defining query of `pgt_id` and records its
/// dependencies again (the columns used now carry their new names).
pub fn apply(pgt_id: i64, text: &str) -> PgtResult<()> {
    let analysis = analyze(text)?;
    catalog::set_query(pgt_id, text, analysis.query);
    let deps = probe_dependencies(text);
    let base: Vec<u32> = analysis.base_tables().iter().map(|o| o.to_u32()).collect();
    spi::execute(&format!(
        "DELETE FROM pgtrickle.pgt_dependencies WHERE pgt_id = {pgt_id}"
    ));
    record_dependencies(pgt_id, &deps, &base);
    Ok(())
}

/// Retypes the storage columns of `pgt_id` whose type the query now gives
/// differently, and makes its next refresh a full one.
pub fn reinitialize(pgt_id: i64) -> PgtResult<()> {
    let Some(st) = catalog::load(pgt_id) else {
        return Ok(());
    };
    let analysis = analyze(&st.defining_query)?;
    let plan = refresh::plan_for(&analysis);
    let expected: Vec<(String, String)> = plan.storage_columns();
    let live = live_columns(st.relid);
    let retypes: Vec<String> = expected
        .iter()
        .filter(|(name, type_sql)| {
            live.iter()
                .any(|c| &c.name == name && &c.type_sql != type_sql)
        })
        .map(|(name, type_sql)| {
            format!(
                "ALTER COLUMN {col} TYPE {type_sql} USING {col}::{type_sql}",
                col = ident(name)
            )
        })
        .collect();
    // One statement: the storage's own DDL check (and the decisions of
    // stream tables reading this one) sees the table with every column
    // retyped.
    if !retypes.is_empty() {
        // As the table's owner, restricted: the rewrite evaluates the
        // owner's CHECK constraints and generated columns.
        spi::as_owner_restricted(st.owner(), || {
            spi::execute(&format!(
                "ALTER TABLE {} {}",
                st.qualified_name(),
                retypes.join(", ")
            ))
        });
    }
    catalog::set_query(pgt_id, &st.defining_query, analysis.query);
    spi::execute(&format!(
        "UPDATE pgtrickle.pgt_stream_tables SET needs_reinit = true, updated_at = pg_catalog.now() \
          WHERE pgt_id = {pgt_id}"
    ));
    Ok(())
}

/// Stores the analysed query of every stream table that lacks a readable
/// one (created before 0.2.0, or on another major version); for migrate().
pub fn remember_queries() -> Vec<(String, String)> {
    spi::as_role(spi::superuser(), || {
        catalog::all()
            .into_iter()
            .filter(|st| {
                catalog::query_tree(st.pgt_id)
                    .and_then(|t| tree::decode(&t))
                    .is_none()
            })
            .filter_map(|st| {
                let analysis = analyze(&st.defining_query).ok()?;
                catalog::set_query(st.pgt_id, &st.defining_query, analysis.query);
                Some((
                    format!("query of {}", st.display_name()),
                    "stored".to_string(),
                ))
            })
            .collect()
    })
}
