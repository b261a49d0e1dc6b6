//! Rows with LEFT JOINs, recomputed per row of the leftmost table.

use super::*;

/// Rows of the full core for every anchor (or the anchors listed in
/// `only_anchors`), with their source-row identities; exact duplicates are
/// stored as copies, as for `Shape::Rows`.
pub(super) fn anchored_insert(
    plan: &Plan,
    table: &str,
    core: &Core,
    anchor: usize,
    only_anchors: Option<&str>,
) -> Statement {
    let n = plan.columns.len();
    let cols = visible_list(plan);
    let rids: Vec<String> = (0..core.relations)
        .map(|i| format!("f.__pgt_rid_{i}"))
        .collect();
    let rid_texts: Vec<String> = rids.iter().map(|r| format!("{r}::text")).collect();
    let picked: Vec<String> = (0..n).map(|i| format!("f.{}", c(i))).collect();
    let out: Vec<String> = (0..n).map(|i| format!("g.{}", c(i))).collect();
    let filter = only_anchors
        .map(|t| format!(" WHERE f.__pgt_rid_{anchor} IN (SELECT a FROM {t})"))
        .unwrap_or_default();
    stmt_reading_sources(
        format!(
            "INSERT INTO {table} ({cols}, {ROW_ID}, {COUNT}, {ANCHOR}, {SOURCE_ROWS}) \
             SELECT {out}, {rid}, CASE WHEN k = 1 THEN g.__pgt_n ELSE 0 END, g.__pgt_a, g.__pgt_s \
             FROM (SELECT DISTINCT ON (x.__pgt_ident) x.*, count(*) OVER (PARTITION BY x.__pgt_ident) AS __pgt_n \
                     FROM (SELECT {HASH}(ARRAY[{rid_texts}]) AS __pgt_ident, {picked}, \
                                  f.__pgt_rid_{anchor} AS __pgt_a, ARRAY[{rids}]::bigint[] AS __pgt_s \
                             FROM ({core}) f{filter}) x) g, \
                  generate_series(1, g.__pgt_n) k",
            cols = cols.join(", "),
            out = out.join(", "),
            rid = copy_row_id("g.__pgt_ident", "k"),
            rid_texts = rid_texts.join(", "),
            picked = picked.join(", "),
            rids = rids.join(", "),
            core = core.sql,
        ),
        Tally::Inserted,
    )
}

/// Statements that refresh a stream table with LEFT JOINs: find the anchors
/// whose rows a change touches — through the stored rows built from a
/// deleted source row, and through the rows the changed source rows join
/// with now — then delete and recompute their rows.
///
/// `changed` are cores with one table replaced by its changed row images,
/// each with the index of that table; `deleted_rids` are queries returning
/// the identities of deleted source rows.
pub fn anchored_apply(
    plan: &Plan,
    table: &str,
    changed: &[(Core, usize)],
    deleted_rids: &[String],
    full_core: &Core,
    scratch: &Scratch,
) -> Vec<Statement> {
    let Shape::AnchoredRows { anchor } = plan.shape else {
        unreachable!("anchored_apply on a stream table without LEFT JOINs")
    };
    let mut sources: Vec<String> = changed
        .iter()
        .map(|(core, changed)| {
            format!(
                "SELECT f.__pgt_rid_{anchor} AS a FROM ({}) f WHERE f.__pgt_rid_{changed} IS NOT NULL",
                core.sql
            )
        })
        .collect();
    if !deleted_rids.is_empty() {
        sources.push(format!(
            "SELECT t.{ANCHOR} FROM {table} t WHERE t.{SOURCE_ROWS} && \
             ARRAY(SELECT r FROM ({}) d(r))::bigint[]",
            union_all(deleted_rids.to_vec())
        ));
    }
    if sources.is_empty() {
        return vec![];
    }
    vec![
        stmt(
            format!(
                "CREATE TEMP TABLE {} AS SELECT DISTINCT a FROM ({}) x(a) WHERE a IS NOT NULL",
                scratch.delta,
                union_all(sources)
            ),
            Tally::Delta,
        ),
        analyze(&scratch.delta),
        stmt(
            format!(
                "DELETE FROM {table} WHERE {ANCHOR} IN (SELECT a FROM {})",
                scratch.delta
            ),
            Tally::Deleted,
        ),
        anchored_insert(plan, table, full_core, anchor, Some(&scratch.delta)),
        Scratch::drop(&[&scratch.delta]),
    ]
}
