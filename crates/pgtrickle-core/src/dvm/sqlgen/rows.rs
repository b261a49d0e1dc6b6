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

/// One statement that nets the changes per source-row identity and applies
/// them: no scratch table to create, analyse and drop (catalog churn at
/// every refresh). `m` holds each identity's old and new multiplicity (kept
/// by its first copy) and where that first copy is; the four writes touch
/// disjoint rows and all see the storage table as it was before the
/// statement.
pub(super) fn rows_apply(plan: &Plan, table: &str, cores: &[Core]) -> Statement {
    let n = plan.columns.len();
    let cols = visible_list(plan);
    let stream = union_all(cores.iter().map(|core| row_stream(core, n)).collect());
    let picked: Vec<String> = (0..n).map(|i| format!("u.{}", c(i))).collect();
    let m_cols: Vec<String> = (0..n).map(|i| format!("m.{}", c(i))).collect();
    let ctes = [
        format!("u AS ({stream})"),
        format!(
            "d AS (SELECT * FROM (SELECT DISTINCT ON (u.__pgt_ident) u.__pgt_ident, {picked}, \
             sum(u.__pgt_w) OVER (PARTITION BY u.__pgt_ident) AS __pgt_dw FROM u) x \
             WHERE x.__pgt_dw <> 0)",
            picked = picked.join(", ")
        ),
        // A probe of the row-id index per changed identity (LIMIT 1 keeps
        // the subquery from being flattened into a join that could hash
        // the whole storage table).
        format!(
            "m AS (SELECT d.*, t.tid, coalesce(t.{COUNT}, 0) AS __pgt_old, \
             greatest(coalesce(t.{COUNT}, 0) + d.__pgt_dw, 0) AS __pgt_new FROM d \
             LEFT JOIN LATERAL (SELECT s.ctid AS tid, s.{COUNT} FROM {table} s \
             WHERE s.{ROW_ID} = {first} LIMIT 1) t ON true)",
            first = copy_row_id("d.__pgt_ident", "1"),
        ),
        // Removed identities: their first copy ...
        format!(
            "del AS (DELETE FROM {table} t USING m WHERE t.ctid = m.tid AND m.__pgt_new = 0 RETURNING 1)"
        ),
        // ... and extra copies of exact duplicates, which are rare (an
        // index scan for a list that is nearly always empty).
        format!(
            "dex AS (DELETE FROM {table} t WHERE t.{ROW_ID} = ANY (ARRAY(SELECT {rid} FROM m, \
             generate_series(greatest(m.__pgt_new, 1) + 1, m.__pgt_old) k WHERE m.__pgt_old > 1)) \
             RETURNING 1)",
            rid = copy_row_id("m.__pgt_ident", "k"),
        ),
        format!(
            "upd AS (UPDATE {table} t SET {COUNT} = m.__pgt_new FROM m \
             WHERE t.ctid = m.tid AND m.__pgt_new > 0 RETURNING 1)"
        ),
        format!(
            "ins AS (INSERT INTO {table} ({cols}, {ROW_ID}, {COUNT}) \
             SELECT {m_cols}, {rid}, CASE WHEN k = 1 THEN m.__pgt_new ELSE 0 END \
             FROM m, generate_series(m.__pgt_old + 1, m.__pgt_new) k RETURNING 1)",
            cols = cols.join(", "),
            m_cols = m_cols.join(", "),
            rid = copy_row_id("m.__pgt_ident", "k"),
        ),
    ];
    stmt(
        format!(
            "WITH {} SELECT (SELECT count(*) FROM d)::text, (SELECT count(*) FROM ins)::text, \
             ((SELECT count(*) FROM del) + (SELECT count(*) FROM dex))::text",
            ctes.join(", ")
        ),
        Tally::Counts,
    )
}
