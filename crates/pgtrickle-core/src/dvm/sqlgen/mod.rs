//! The SQL of full and differential refreshes, built around printed cores.
//!
//! A *core* is a select-project-join query printed by `flat`: its outputs
//! are `c0 .. c{k-1}` (the visible columns, or group keys then aggregate
//! arguments) followed by `__pgt_rid_<i>` and `__pgt_w_<i>` for each of its
//! `relations` sources: the identity of the source row and its weight (+1
//! for a row of the full contents or an inserted row, -1 for a deleted row).
//! A core's rows weigh the product of its sources' weights times `sign`
//! (inclusion–exclusion when several sources changed).

use super::plan::{
    nonnull_state, sum_state, Agg, AggKind, NonFinite, Plan, Shape, ANCHOR, COUNT, ROW_ID,
    SOURCE_ROWS,
};
use crate::quote::{ident, literal};

mod anchored;
mod groups;
mod recomputed;
mod rows;
#[cfg(test)]
mod tests;

pub use anchored::anchored_apply;
use anchored::anchored_insert;
use groups::{
    group_hash, groups_apply, groups_insert, has_extremum, recompute_listed_groups, rescan_groups,
};
use recomputed::{recomputed_apply, recomputed_insert};
use rows::{rows_apply, rows_full_insert};

/// A printed core and how its rows count.
#[derive(Debug, Clone)]
pub struct Core {
    pub sql: String,
    pub relations: usize,
    /// Per relation: read in full, so that each of its rows weighs 1 and
    /// its weight need not be multiplied in.
    pub full: Vec<bool>,
    pub branch: usize,
    pub sign: i64,
    /// A grouped core whose one changed table pairs each update's old and
    /// new values in one row: after its usual outputs come `o<k>`, the old
    /// value of aggregate argument `c<k>`, and `__pgt_wo`, its weight (0 when
    /// the row has no old values). Its other tables are full (weight 1).
    pub paired: bool,
}

/// Whether a statement's row count goes to rows_inserted or rows_deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    None,
    Inserted,
    Deleted,
    /// Rows of the netted delta (history's `delta_rows`).
    Delta,
    /// A statement that computes the delta and applies it, returning one
    /// row: delta rows, rows inserted, rows deleted, and (for sums that can
    /// be NaN or infinite) the row ids of the groups to recompute, as a
    /// `bigint[]`, NULL when there are none.
    Counts,
}

#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    pub tally: Tally,
    /// Reads the sources' full contents (recomputing groups or anchors), as
    /// opposed to applying a computed delta to the storage table.
    pub reads_sources: bool,
    /// Runs only when the `Counts` statement before it listed groups to
    /// recompute; `$1` is that list (`bigint[]`).
    pub for_listed_groups: bool,
}

fn stmt(sql: String, tally: Tally) -> Statement {
    Statement {
        sql,
        tally,
        reads_sources: false,
        for_listed_groups: false,
    }
}

fn stmt_reading_sources(sql: String, tally: Tally) -> Statement {
    Statement {
        sql,
        tally,
        reads_sources: true,
        for_listed_groups: false,
    }
}

/// Fresh statistics for a scratch table, so that joining it with the
/// storage table uses the row-id index rather than a scan.
fn analyze(table: &str) -> Statement {
    stmt(format!("ANALYZE {table}"), Tally::None)
}

const HASH: &str = "pgtrickle.pg_trickle_hash_multi";

fn c(i: usize) -> String {
    format!("c{i}")
}

/// `a IS NULL ? b : b IS NULL ? a : a + b` — adding partial sums of
/// values of kind `nf`.
fn add_sums(a: &str, b: &str, nf: NonFinite) -> String {
    format!(
        "CASE WHEN {a} IS NULL THEN {b} WHEN {b} IS NULL THEN {a} ELSE {} END",
        guarded(a, "+", b, nf)
    )
}

/// `a - b` for partial sums that may be NULL (no rows), NULL when both are.
/// `b * -1`, not `-b`: `money` has no unary minus.
fn sub_sums(a: &str, b: &str, nf: NonFinite) -> String {
    format!(
        "CASE WHEN {b} IS NULL THEN {a} WHEN {a} IS NULL THEN ({b}) * -1 ELSE {} END",
        guarded(a, "-", b, nf)
    )
}

/// `a op b`; for intervals, the infinite operand when either is infinite
/// (adding opposite infinite intervals is an error), which marks the group
/// for recomputation. (No `'infinity'` literal: PostgreSQL 15 has none.)
fn guarded(a: &str, op: &str, b: &str, nf: NonFinite) -> String {
    match nf {
        NonFinite::Infinity => format!(
            "CASE WHEN NOT pg_catalog.isfinite({a}) THEN {a} \
             WHEN NOT pg_catalog.isfinite({b}) THEN {b} ELSE {a} {op} {b} END"
        ),
        NonFinite::None | NonFinite::NanOrInfinity => format!("{a} {op} {b}"),
    }
}

/// True when `v`, a sum of kind `nf`, is NaN or infinite (NULL for NULL);
/// `None` when it cannot be.
fn non_finite(v: &str, nf: NonFinite) -> Option<String> {
    match nf {
        NonFinite::None => None,
        // NaN sorts above every number, Infinity included.
        NonFinite::NanOrInfinity => Some(format!("NOT ({v} > '-Infinity' AND {v} < 'Infinity')")),
        NonFinite::Infinity => Some(format!("NOT pg_catalog.isfinite({v})")),
    }
}

/// The weight of a core's output row: the product of its relations'
/// weights and the core's sign. Each factor is 1 or -1, so every weight
/// is too; the aggregate deltas of `groups.rs` rely on that. Relations read
/// in full weigh 1 and are left out: PostgreSQL would multiply by the
/// constant again wherever the weight is used, for every row.
fn weight_expr(core: &Core, alias: &str) -> String {
    let mut parts: Vec<String> = (0..core.relations)
        .filter(|&i| !core.full.get(i).copied().unwrap_or(false))
        .map(|i| format!("{alias}.__pgt_w_{i}"))
        .collect();
    if core.sign != 1 {
        parts.push(format!("({})", core.sign));
    }
    if parts.is_empty() {
        "1::bigint".to_string()
    } else {
        parts.join(" * ")
    }
}

fn union_all(parts: Vec<String>) -> String {
    parts
        .into_iter()
        .map(|p| format!("({p})"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

fn visible_list(plan: &Plan) -> Vec<String> {
    plan.columns.iter().map(|col| ident(&col.name)).collect()
}

fn copy_row_id(ident_expr: &str, k: &str) -> String {
    format!("{HASH}(ARRAY[{ident_expr}::text, {k}::text])")
}

/// Statements that fill an empty storage table from the full cores (or
/// from the defining query, for shapes that keep no state).
pub fn full_insert(
    plan: &Plan,
    table: &str,
    cores: &[Core],
    defining_query: &str,
) -> Vec<Statement> {
    match &plan.shape {
        Shape::FullOnly => vec![full_only_insert(plan, table, defining_query)],
        Shape::RecomputedGroups { group_columns } => {
            vec![recomputed_insert(
                plan,
                table,
                defining_query,
                group_columns,
                None,
            )]
        }
        Shape::AnchoredRows { anchor } => {
            vec![anchored_insert(plan, table, &cores[0], *anchor, None)]
        }
        Shape::Rows { .. } => vec![stmt(rows_full_insert(plan, table, cores), Tally::Inserted)],
        Shape::Groups {
            group_columns,
            aggs,
        } => {
            vec![stmt(
                groups_insert(plan, table, &cores[0], group_columns, aggs, None),
                Tally::Inserted,
            )]
        }
    }
}

/// Insert of a query recomputed in full, for stream tables without a
/// differential plan.
fn full_only_insert(plan: &Plan, table: &str, defining_query: &str) -> Statement {
    let cols = visible_list(plan);
    let q_cols: Vec<String> = cols.iter().map(|c| format!("q.{c}")).collect();
    stmt(
        format!(
            "INSERT INTO {table} ({}, {ROW_ID}) SELECT {}, row_number() OVER () FROM ({defining_query}) q",
            cols.join(", "),
            q_cols.join(", ")
        ),
        Tally::Inserted,
    )
}

/// Names of the temporary tables one refresh uses.
pub struct Scratch {
    pub delta: String,
    pub merge: String,
    pub rescan: String,
}

impl Scratch {
    pub fn for_stream_table(pgt_id: i64) -> Scratch {
        Scratch {
            delta: format!("pg_temp.pgt_delta_{pgt_id}"),
            merge: format!("pg_temp.pgt_merge_{pgt_id}"),
            rescan: format!("pg_temp.pgt_rescan_{pgt_id}"),
        }
    }

    fn drop(tables: &[&String]) -> Statement {
        let names: Vec<&str> = tables.iter().map(|t| t.as_str()).collect();
        stmt(format!("DROP TABLE {}", names.join(", ")), Tally::None)
    }
}

/// Statements that apply the delta cores to the storage table. `full_core`
/// (the block over full contents) recomputes groups whose MIN/MAX lost its
/// value.
pub fn differential_apply(
    plan: &Plan,
    table: &str,
    cores: &[Core],
    full_core: &Core,
    defining_query: &str,
    scratch: &Scratch,
) -> Vec<Statement> {
    match &plan.shape {
        Shape::FullOnly => unreachable!("full-only stream tables have no delta"),
        Shape::RecomputedGroups { group_columns } => {
            recomputed_apply(plan, table, cores, defining_query, group_columns, scratch)
        }
        Shape::AnchoredRows { .. } => {
            unreachable!("stream tables with LEFT JOINs are refreshed with anchored_apply")
        }
        Shape::Rows { .. } => {
            let mut out = rows_apply(plan, table, cores, scratch);
            out.push(Scratch::drop(&[&scratch.delta, &scratch.merge]));
            out
        }
        Shape::Groups {
            group_columns,
            aggs,
        } => {
            let mut out = groups_apply(plan, table, cores, group_columns, aggs, scratch);
            if !has_extremum(aggs) && aggs.iter().any(|a| a.non_finite != NonFinite::None) {
                out.extend(recompute_listed_groups(
                    plan,
                    table,
                    full_core,
                    group_columns,
                    aggs,
                ));
            }
            if has_extremum(aggs) {
                out.extend(rescan_groups(
                    plan,
                    table,
                    full_core,
                    group_columns,
                    aggs,
                    scratch,
                ));
                out.push(Scratch::drop(&[&scratch.delta, &scratch.rescan]));
            }
            out
        }
    }
}
