//! Groups recomputed from the defining query when a change touches them
//! (HAVING, other aggregates, expressions over aggregates).

use super::*;

/// Rows of the defining query for the groups (all, or those whose row id
/// is in `only_rows`), keyed by the hash of their group columns.
pub(super) fn recomputed_insert(
    plan: &Plan,
    table: &str,
    defining_query: &str,
    group_columns: &[usize],
    only_rows: Option<&str>,
) -> Statement {
    let cols = visible_list(plan);
    let q_cols: Vec<String> = cols.iter().map(|c| format!("q.{c}")).collect();
    let keys: Vec<String> = group_columns
        .iter()
        .map(|&g| format!("q.{}", ident(&plan.columns[g].name)))
        .collect();
    let filter = only_rows
        .map(|rows| {
            format!(
                " WHERE {} IN (SELECT {ROW_ID} FROM {rows})",
                group_hash(plan, group_columns, &keys)
            )
        })
        .unwrap_or_default();
    stmt_reading_sources(
        format!(
            "INSERT INTO {table} ({}, {ROW_ID}) SELECT {}, {} FROM ({defining_query}) q{filter}",
            cols.join(", "),
            q_cols.join(", "),
            group_hash(plan, group_columns, &keys)
        ),
        Tally::Inserted,
    )
}

pub(super) fn recomputed_apply(
    plan: &Plan,
    table: &str,
    cores: &[Core],
    defining_query: &str,
    group_columns: &[usize],
    s: &Scratch,
) -> Vec<Statement> {
    let keys: Vec<String> = (0..group_columns.len())
        .map(|i| format!("u.{}", c(i)))
        .collect();
    let touched = union_all(
        cores
            .iter()
            .map(|core| {
                let cols: Vec<String> = (0..group_columns.len())
                    .map(|i| format!("f.{}", c(i)))
                    .collect();
                format!(
                    "SELECT {} FROM ({}) f",
                    if cols.is_empty() {
                        "1 AS one".to_string()
                    } else {
                        cols.join(", ")
                    },
                    core.sql
                )
            })
            .collect(),
    );
    vec![
        stmt(
            format!(
                "CREATE TEMP TABLE {} AS SELECT DISTINCT {} AS {ROW_ID} FROM ({touched}) u",
                s.delta,
                group_hash(plan, group_columns, &keys)
            ),
            Tally::Delta,
        ),
        analyze(&s.delta),
        stmt(
            format!(
                "DELETE FROM {table} WHERE {ROW_ID} IN (SELECT {ROW_ID} FROM {})",
                s.delta
            ),
            Tally::Deleted,
        ),
        recomputed_insert(plan, table, defining_query, group_columns, Some(&s.delta)),
        Scratch::drop(&[&s.delta]),
    ]
}
