//! `schema_diff(name)`: what the changes of a stream table's sources mean
//! for it. DDL tracking decides at the end of each ALTER TABLE and records
//! its decisions for the transaction, so running the DDL in a transaction,
//! looking, and rolling back shows what it would do; differences between a
//! source and its recorded columns that tracking has not seen are
//! classified here.

use super::columns::{changes, live_columns, snapshot_columns, ColumnChange};
use crate::catalog::{self, StreamTable};
use crate::error::PgtResult;
use crate::lifecycle::check_owner;
use crate::spi;
use pgrx::pg_sys::Oid;
use pgtrickle_core::quote::literal;
use pgtrickle_core::schema_change::Decision;
use std::cell::RefCell;

#[derive(Clone)]
pub struct DiffRow {
    pub source: String,
    pub change: String,
    pub decision: String,
    pub effect: String,
    pub fix: String,
}

thread_local! {
    /// (transaction, stream table, row) of this backend's current transaction.
    static DECIDED: RefCell<Vec<(String, i64, DiffRow)>> = const { RefCell::new(Vec::new()) };
}

fn current_xact() -> String {
    spi::query_value("SELECT pg_catalog.pg_current_xact_id()::text").unwrap_or_default()
}

pub fn effect_and_fix(st: &StreamTable, decision: Decision, rejected: bool) -> (String, String) {
    let name = literal(&st.display_name());
    match decision {
        Decision::Continue => ("nothing changes for this stream table".into(), "nothing to do".into()),
        Decision::Rewrite => (
            "the stored query is rewritten to the new names; refreshes stay differential".into(),
            "nothing to do".into(),
        ),
        Decision::Reinitialize => (
            "storage columns are retyped where the query's types changed; the next refresh is a full one, then differential again".into(),
            "nothing to do".into(),
        ),
        Decision::Stop => (
            if rejected {
                "the DDL is rejected (pg_trickle.block_source_ddl is on)".into()
            } else {
                "the stream table goes to status ERROR and is not refreshed any more".into()
            },
            format!(
                "before the DDL, deploy a query that does without the column: SELECT pgtrickle.create_green({name}, query => '...'); \
                 SELECT pgtrickle.promote_green({name}); or afterwards: SELECT pgtrickle.drop_stream_table({name}); and create it again"
            ),
        ),
    }
}

/// Records a decision of DDL tracking for `schema_diff`.
pub fn record(st: &StreamTable, source: &str, change: &str, decision: Decision, rejected: bool) {
    let xact = current_xact();
    let (effect, fix) = effect_and_fix(st, decision, rejected);
    let row = DiffRow {
        source: source.to_string(),
        change: change.to_string(),
        decision: if decision == Decision::Stop && rejected {
            "reject".into()
        } else {
            decision.as_str().into()
        },
        effect,
        fix,
    };
    DECIDED.with(|d| {
        let mut d = d.borrow_mut();
        d.retain(|(x, _, _)| *x == xact);
        d.push((xact, st.pgt_id, row));
    });
}

pub fn schema_diff(name: &str) -> PgtResult<Vec<DiffRow>> {
    let st = catalog::find(name)?;
    check_owner(&st)?;
    let xact = spi::query_value("SELECT pg_catalog.pg_current_xact_id_if_assigned()::text");
    let mut rows: Vec<DiffRow> = DECIDED.with(|d| {
        d.borrow()
            .iter()
            .filter(|(x, id, _)| Some(x) == xact.as_ref() && *id == st.pgt_id)
            .map(|(_, _, r)| r.clone())
            .collect()
    });
    let deps = spi::as_role(spi::superuser(), || {
        spi::query(&format!(
            "SELECT source_relid::bigint::text, coalesce(columns_used, '{{}}')::text, coalesce(column_snapshot, '[]')::text \
               FROM pgtrickle.pgt_dependencies WHERE pgt_id = {} AND source_type <> 'VIEW' ORDER BY 1",
            st.pgt_id
        ))
    });
    for dep in deps {
        let relid = Oid::from(dep[0].as_deref().unwrap_or("0").parse::<u32>().unwrap_or(0));
        let source = super::table_name(relid);
        // Tracking already decided for this source in this transaction.
        if rows.iter().any(|r| r.source == source) {
            continue;
        }
        let used = super::parse_text_array(dep[1].as_deref().unwrap_or("{}"));
        let found: Vec<ColumnChange> = changes(
            &snapshot_columns(dep[2].as_deref().unwrap_or("[]")),
            &live_columns(relid),
        );
        for change in found {
            let decision = change.decide(&used, super::reads_whole_row(st.pgt_id, relid));
            let (effect, fix) = effect_and_fix(&st, decision, false);
            rows.push(DiffRow {
                source: source.clone(),
                change: format!("{} (not yet seen by DDL tracking)", change.describe()),
                decision: decision.as_str().into(),
                effect,
                fix,
            });
        }
    }
    Ok(rows)
}
