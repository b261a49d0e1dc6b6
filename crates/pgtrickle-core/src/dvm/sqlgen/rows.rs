//! Rows of select-project-join cores: netted per source-row identity, exact
//! duplicates stored as copies (the first copy holds the multiplicity).

use super::*;

/// Rows of one core with a single identity and weight.
pub(super) fn row_stream(core: &Core, ncols: usize) -> String {
    let mut ident_parts = vec![literal(&core.branch.to_string())];
    ident_parts.extend((0..core.relations).map(|i| format!("f.__pgt_rid_{i}::text")));
    let cols: Vec<String> = (0..ncols).map(|i| format!("f.{}", c(i))).collect();
    format!(
        "SELECT {HASH}(ARRAY[{}]) AS __pgt_ident, {}{}{} AS __pgt_w FROM ({}) f",
        ident_parts.join(", "),
        cols.join(", "),
        if cols.is_empty() { "" } else { ", " },
        weight_expr(core, "f"),
        core.sql
    )
}

pub(super) fn rows_full_insert(plan: &Plan, table: &str, cores: &[Core]) -> String {
    let n = plan.columns.len();
    let cols = visible_list(plan);
    let stream = union_all(cores.iter().map(|core| row_stream(core, n)).collect());
    let picked: Vec<String> = (0..n).map(|i| format!("u.{}", c(i))).collect();
    let out: Vec<String> = (0..n).map(|i| format!("g.{}", c(i))).collect();
    format!(
        "INSERT INTO {table} ({cols}, {ROW_ID}, {COUNT}) \
         SELECT {out}, {rid}, CASE WHEN k = 1 THEN g.__pgt_n ELSE 0 END \
         FROM (SELECT DISTINCT ON (u.__pgt_ident) u.__pgt_ident, {picked}, \
                      count(*) OVER (PARTITION BY u.__pgt_ident) AS __pgt_n \
                 FROM ({stream}) u) g, generate_series(1, g.__pgt_n) k",
        cols = cols.join(", "),
        out = out.join(", "),
        rid = copy_row_id("g.__pgt_ident", "k"),
        picked = picked.join(", "),
    )
}

pub(super) fn rows_apply(plan: &Plan, table: &str, cores: &[Core], s: &Scratch) -> Vec<Statement> {
    let n = plan.columns.len();
    let cols = visible_list(plan);
    let stream = union_all(cores.iter().map(|core| row_stream(core, n)).collect());
    let picked: Vec<String> = (0..n).map(|i| format!("u.{}", c(i))).collect();
    let first_copy = copy_row_id("m.__pgt_ident", "1");
    let m_cols: Vec<String> = (0..n).map(|i| format!("m.{}", c(i))).collect();
    vec![
        // Net the changes per source-row identity.
        stmt(
            format!(
                "CREATE TEMP TABLE {delta} AS SELECT * FROM \
                 (SELECT DISTINCT ON (u.__pgt_ident) u.__pgt_ident, {picked}, \
                         sum(u.__pgt_w) OVER (PARTITION BY u.__pgt_ident) AS __pgt_dw \
                    FROM ({stream}) u) x WHERE x.__pgt_dw <> 0",
                delta = s.delta,
                picked = picked.join(", ")
            ),
            Tally::Delta,
        ),
        analyze(&s.delta),
        // Old and new multiplicity of each identity (held by its first copy).
        stmt(
            format!(
                "CREATE TEMP TABLE {merge} AS SELECT d.*, coalesce(t.{COUNT}, 0) AS __pgt_old, \
                 greatest(coalesce(t.{COUNT}, 0) + d.__pgt_dw, 0) AS __pgt_new \
                 FROM {delta} d LEFT JOIN {table} t ON t.{ROW_ID} = {first}",
                merge = s.merge,
                delta = s.delta,
                first = copy_row_id("d.__pgt_ident", "1"),
            ),
            Tally::None,
        ),
        analyze(&s.merge),
        // Removed identities: their first copy, found through the index ...
        stmt(
            format!(
                "DELETE FROM {table} t USING {merge} m \
                 WHERE t.{ROW_ID} = {first_copy} AND m.__pgt_new = 0 AND m.__pgt_old > 0",
                merge = s.merge
            ),
            Tally::Deleted,
        ),
        // ... and extra copies of exact duplicates, which are rare.
        stmt(
            format!(
                "DELETE FROM {table} t USING (SELECT {rid} AS rid FROM {merge} m, \
                 generate_series(greatest(m.__pgt_new, 1) + 1, m.__pgt_old) k WHERE m.__pgt_old > 1) x \
                 WHERE t.{ROW_ID} = x.rid",
                rid = copy_row_id("m.__pgt_ident", "k"),
                merge = s.merge
            ),
            Tally::Deleted,
        ),
        stmt(
            format!(
                "UPDATE {table} t SET {COUNT} = m.__pgt_new FROM {merge} m \
                 WHERE t.{ROW_ID} = {first_copy} AND m.__pgt_new > 0 AND m.__pgt_old > 0",
                merge = s.merge
            ),
            Tally::None,
        ),
        stmt(
            format!(
                "INSERT INTO {table} ({cols}, {ROW_ID}, {COUNT}) \
                 SELECT {m_cols}, {rid}, CASE WHEN k = 1 THEN m.__pgt_new ELSE 0 END \
                 FROM {merge} m, generate_series(m.__pgt_old + 1, m.__pgt_new) k",
                cols = cols.join(", "),
                m_cols = m_cols.join(", "),
                rid = copy_row_id("m.__pgt_ident", "k"),
                merge = s.merge
            ),
            Tally::Inserted,
        ),
    ]
}
