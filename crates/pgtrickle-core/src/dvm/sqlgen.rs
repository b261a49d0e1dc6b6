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
    nonnull_state, sum_state, Agg, AggKind, Plan, Shape, ANCHOR, COUNT, ROW_ID, SOURCE_ROWS,
};
use crate::quote::{ident, literal};

/// A printed core and how its rows count.
#[derive(Debug, Clone)]
pub struct Core {
    pub sql: String,
    pub relations: usize,
    pub branch: usize,
    pub sign: i64,
}

/// Whether a statement's row count goes to rows_inserted or rows_deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    None,
    Inserted,
    Deleted,
}

#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    pub tally: Tally,
}

fn stmt(sql: String, tally: Tally) -> Statement {
    Statement { sql, tally }
}

const HASH: &str = "pgtrickle.pg_trickle_hash_multi";

fn c(i: usize) -> String {
    format!("c{i}")
}

/// `a IS NULL ? b : b IS NULL ? a : a + b` — adding partial sums.
fn add_nullable(a: &str, b: &str) -> String {
    format!("CASE WHEN {a} IS NULL THEN {b} WHEN {b} IS NULL THEN {a} ELSE {a} + {b} END")
}

fn weight_expr(core: &Core, alias: &str) -> String {
    let mut parts: Vec<String> = (0..core.relations)
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

/// Rows of one core with a single identity and weight.
fn row_stream(core: &Core, ncols: usize) -> String {
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

fn rows_full_insert(plan: &Plan, table: &str, cores: &[Core]) -> String {
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

fn has_extremum(aggs: &[Agg]) -> bool {
    aggs.iter()
        .any(|a| matches!(a.kind, AggKind::Min | AggKind::Max))
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
            } else {
                out.push(Scratch::drop(&[&scratch.delta]));
            }
            out
        }
    }
}

/// Rows of the defining query for the groups (all, or those whose row id
/// is in `only_rows`), keyed by the hash of their group columns.
fn recomputed_insert(
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
                group_hash(&keys)
            )
        })
        .unwrap_or_default();
    stmt(
        format!(
            "INSERT INTO {table} ({}, {ROW_ID}) SELECT {}, {} FROM ({defining_query}) q{filter}",
            cols.join(", "),
            q_cols.join(", "),
            group_hash(&keys)
        ),
        Tally::Inserted,
    )
}

fn recomputed_apply(
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
                group_hash(&keys)
            ),
            Tally::None,
        ),
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

/// Rows of the full core for every anchor (or the anchors listed in
/// `only_anchors`), with their source-row identities; exact duplicates are
/// stored as copies, as for `Shape::Rows`.
fn anchored_insert(
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
    stmt(
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
            Tally::None,
        ),
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

fn rows_apply(plan: &Plan, table: &str, cores: &[Core], s: &Scratch) -> Vec<Statement> {
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
            Tally::None,
        ),
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
        stmt(
            format!(
                "DELETE FROM {table} t USING (SELECT {rid} AS rid FROM {merge} m, \
                 generate_series(m.__pgt_new + 1, m.__pgt_old) k) x WHERE t.{ROW_ID} = x.rid",
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

fn group_hash(group_exprs: &[String]) -> String {
    if group_exprs.is_empty() {
        format!("{HASH}(ARRAY[]::text[])")
    } else {
        let parts: Vec<String> = group_exprs.iter().map(|g| format!("{g}::text")).collect();
        format!("{HASH}(ARRAY[{}])", parts.join(", "))
    }
}

/// Storage columns of a grouped stream table, in insert order.
fn groups_storage_columns(plan: &Plan, aggs: &[Agg]) -> Vec<String> {
    let mut cols = visible_list(plan);
    cols.push(ROW_ID.to_string());
    cols.push(COUNT.to_string());
    for agg in aggs {
        match agg.kind {
            AggKind::CountStar | AggKind::Count => {}
            AggKind::Sum | AggKind::Min | AggKind::Max => cols.push(nonnull_state(agg)),
            AggKind::Avg { .. } => {
                cols.push(sum_state(agg));
                cols.push(nonnull_state(agg));
            }
        }
    }
    cols
}

/// `INSERT ... SELECT` of whole groups aggregated from a full core,
/// optionally only the groups whose row id is in `only_rows` (a table).
fn groups_insert(
    plan: &Plan,
    table: &str,
    core: &Core,
    group_columns: &[usize],
    aggs: &[Agg],
    only_rows: Option<&str>,
) -> String {
    let key_of = |col: usize| group_columns.iter().position(|&g| g == col);
    let group_exprs: Vec<String> = (0..group_columns.len())
        .map(|i| format!("f.{}", c(i)))
        .collect();
    let arg = |agg: &Agg| format!("f.{}", c(agg.arg.expect("aggregate with an argument")));
    let mut values = Vec::new();
    for (col, _) in plan.columns.iter().enumerate() {
        if let Some(k) = key_of(col) {
            values.push(group_exprs[k].clone());
            continue;
        }
        let agg = aggs
            .iter()
            .find(|a| a.column == col)
            .expect("visible column is a key or an aggregate");
        values.push(match &agg.kind {
            AggKind::CountStar => "count(*)".to_string(),
            AggKind::Count => format!("count({})", arg(agg)),
            AggKind::Sum => format!("sum({})", arg(agg)),
            AggKind::Avg { state_type } => format!(
                "CASE WHEN count({a}) > 0 THEN sum({a}::{state_type}) / count({a}) END",
                a = arg(agg)
            ),
            AggKind::Min => format!("min({})", arg(agg)),
            AggKind::Max => format!("max({})", arg(agg)),
        });
    }
    values.push(group_hash(&group_exprs));
    values.push("count(*)".to_string());
    for agg in aggs {
        match &agg.kind {
            AggKind::CountStar | AggKind::Count => {}
            AggKind::Sum | AggKind::Min | AggKind::Max => {
                values.push(format!("count({})", arg(agg)))
            }
            AggKind::Avg { state_type } => {
                values.push(format!("sum({}::{state_type})", arg(agg)));
                values.push(format!("count({})", arg(agg)));
            }
        }
    }
    let (filter, group_by) = match (only_rows, group_exprs.is_empty()) {
        (None, true) => (String::new(), String::new()),
        (None, false) => (
            String::new(),
            format!(" GROUP BY {}", group_exprs.join(", ")),
        ),
        // Without GROUP BY an aggregate returns its one row even from no
        // input: recompute it only when it is listed.
        (Some(rows), true) => (
            String::new(),
            format!(" HAVING EXISTS (SELECT FROM {rows})"),
        ),
        (Some(rows), false) => (
            format!(
                " WHERE {} IN (SELECT {ROW_ID} FROM {rows})",
                group_hash(&group_exprs)
            ),
            format!(" GROUP BY {}", group_exprs.join(", ")),
        ),
    };
    format!(
        "INSERT INTO {table} ({}) SELECT {} FROM ({}) f{filter}{group_by}",
        groups_storage_columns(plan, aggs).join(", "),
        values.join(", "),
        core.sql
    )
}

fn dnn(agg: &Agg) -> String {
    format!("__pgt_dnn_{}", agg.column)
}
fn dsum(agg: &Agg) -> String {
    format!("__pgt_dsum_{}", agg.column)
}
fn dins(agg: &Agg) -> String {
    format!("__pgt_dins_{}", agg.column)
}
fn ddel(agg: &Agg) -> String {
    format!("__pgt_ddel_{}", agg.column)
}

fn groups_apply(
    plan: &Plan,
    table: &str,
    cores: &[Core],
    group_columns: &[usize],
    aggs: &[Agg],
    s: &Scratch,
) -> Vec<Statement> {
    let scalar = group_columns.is_empty();
    let ncore = group_columns.len() + aggs.iter().filter(|a| a.arg.is_some()).count();
    let weighted = union_all(
        cores
            .iter()
            .map(|core| {
                let cols: Vec<String> = (0..ncore).map(|i| format!("f.{}", c(i))).collect();
                format!(
                    "SELECT {}{}{} AS __pgt_w FROM ({}) f",
                    cols.join(", "),
                    if cols.is_empty() { "" } else { ", " },
                    weight_expr(core, "f"),
                    core.sql
                )
            })
            .collect(),
    );
    let group_exprs: Vec<String> = (0..group_columns.len())
        .map(|i| format!("u.{}", c(i)))
        .collect();
    let key_names: Vec<String> = group_columns
        .iter()
        .map(|&g| ident(&plan.columns[g].name))
        .collect();

    // Per-group deltas of every piece of state. Sums and counts are linear
    // in the weights; MIN/MAX candidates need the weights netted per value
    // first, since inclusion–exclusion terms add and cancel rows.
    let mut select = vec![format!("{} AS {ROW_ID}", group_hash(&group_exprs))];
    for (expr, name) in group_exprs.iter().zip(&key_names) {
        select.push(format!("{expr} AS {name}"));
    }
    select.push("sum(u.__pgt_w) AS __pgt_dc".to_string());
    let mut extremum_ctes = Vec::new();
    let mut extremum_cols = Vec::new();
    let mut extremum_joins = Vec::new();
    for agg in aggs {
        let Some(a) = agg.arg.map(|i| format!("u.{}", c(i))) else {
            continue;
        };
        select.push(format!(
            "sum(CASE WHEN {a} IS NOT NULL THEN u.__pgt_w ELSE 0 END) AS {}",
            dnn(agg)
        ));
        match &agg.kind {
            AggKind::CountStar | AggKind::Count => {}
            AggKind::Sum => select.push(format!("sum({a} * u.__pgt_w) AS {}", dsum(agg))),
            AggKind::Avg { state_type } => select.push(format!(
                "sum({a}::{state_type} * u.__pgt_w) AS {}",
                dsum(agg)
            )),
            AggKind::Min | AggKind::Max => {
                let f = if agg.kind == AggKind::Min {
                    "min"
                } else {
                    "max"
                };
                let cte = format!("e{}", agg.column);
                let by: Vec<String> = group_exprs
                    .iter()
                    .cloned()
                    .chain(std::iter::once(a.clone()))
                    .collect();
                extremum_ctes.push(format!(
                    "{cte} AS (SELECT x.rid, {f}(x.v) FILTER (WHERE x.nw > 0) AS ins, {f}(x.v) FILTER (WHERE x.nw < 0) AS del \
                     FROM (SELECT {} AS rid, {a} AS v, sum(u.__pgt_w) AS nw FROM u GROUP BY {}) x \
                     WHERE x.v IS NOT NULL GROUP BY x.rid)",
                    group_hash(&group_exprs),
                    by.join(", ")
                ));
                extremum_cols.push(format!(
                    "{cte}.ins AS {}, {cte}.del AS {}",
                    dins(agg),
                    ddel(agg)
                ));
                extremum_joins.push(format!(" LEFT JOIN {cte} ON {cte}.rid = b.{ROW_ID}"));
            }
        }
    }
    let grouping = if scalar {
        " HAVING count(*) > 0".to_string()
    } else {
        format!(" GROUP BY {}", group_exprs.join(", "))
    };
    let mut ctes = vec![
        format!("u AS ({weighted})"),
        format!("b AS (SELECT {} FROM u{grouping})", select.join(", ")),
    ];
    ctes.extend(extremum_ctes);
    let mut out = vec![stmt(
        format!(
            "CREATE TEMP TABLE {} AS WITH {} SELECT b.*{}{} FROM b{}",
            s.delta,
            ctes.join(", "),
            if extremum_cols.is_empty() { "" } else { ", " },
            extremum_cols.join(", "),
            extremum_joins.join("")
        ),
        Tally::None,
    )];

    // Groups whose MIN/MAX lost its current value must be recomputed.
    let extremum_aggs: Vec<&Agg> = aggs
        .iter()
        .filter(|a| matches!(a.kind, AggKind::Min | AggKind::Max))
        .collect();
    if has_extremum(aggs) {
        let conds: Vec<String> = extremum_aggs
            .iter()
            .map(|agg| {
                let col = ident(&plan.columns[agg.column].name);
                let op = if agg.kind == AggKind::Min { "<=" } else { ">=" };
                format!(
                    "(d.{del} IS NOT NULL AND d.{del} {op} t.{col})",
                    del = ddel(agg)
                )
            })
            .collect();
        out.push(stmt(
            format!(
                "CREATE TEMP TABLE {rescan} AS SELECT d.{ROW_ID} FROM {delta} d \
                 JOIN {table} t ON t.{ROW_ID} = d.{ROW_ID} \
                 WHERE t.{COUNT} + d.__pgt_dc > 0 AND ({conds})",
                rescan = s.rescan,
                delta = s.delta,
                conds = conds.join(" OR ")
            ),
            Tally::None,
        ));
    }

    // Existing groups: fold the deltas into the state.
    let mut sets = vec![format!("{COUNT} = t.{COUNT} + d.__pgt_dc")];
    for agg in aggs {
        let col = ident(&plan.columns[agg.column].name);
        let nn_new = |agg: &Agg| format!("(t.{} + d.{})", nonnull_state(agg), dnn(agg));
        match &agg.kind {
            AggKind::CountStar => sets.push(format!("{col} = t.{col} + d.__pgt_dc")),
            AggKind::Count => sets.push(format!("{col} = t.{col} + d.{}", dnn(agg))),
            AggKind::Sum => {
                sets.push(format!(
                    "{col} = CASE WHEN {} > 0 THEN {} END",
                    nn_new(agg),
                    add_nullable(&format!("t.{col}"), &format!("d.{}", dsum(agg)))
                ));
                sets.push(format!("{} = {}", nonnull_state(agg), nn_new(agg)));
            }
            AggKind::Avg { .. } => {
                let sum = add_nullable(
                    &format!("t.{}", sum_state(agg)),
                    &format!("d.{}", dsum(agg)),
                );
                sets.push(format!(
                    "{} = CASE WHEN {} > 0 THEN {sum} END",
                    sum_state(agg),
                    nn_new(agg)
                ));
                sets.push(format!(
                    "{col} = CASE WHEN {nn} > 0 THEN ({sum}) / {nn} END",
                    nn = nn_new(agg)
                ));
                sets.push(format!("{} = {}", nonnull_state(agg), nn_new(agg)));
            }
            AggKind::Min | AggKind::Max => {
                let f = if agg.kind == AggKind::Min {
                    "least"
                } else {
                    "greatest"
                };
                sets.push(format!(
                    "{col} = CASE WHEN {nn} = 0 THEN NULL WHEN d.{ins} IS NULL THEN t.{col} \
                     WHEN t.{col} IS NULL THEN d.{ins} ELSE {f}(t.{col}, d.{ins}) END",
                    nn = nn_new(agg),
                    ins = dins(agg)
                ));
                sets.push(format!("{} = {}", nonnull_state(agg), nn_new(agg)));
            }
        }
    }
    out.push(stmt(
        format!(
            "UPDATE {table} t SET {} FROM {delta} d WHERE t.{ROW_ID} = d.{ROW_ID}",
            sets.join(", "),
            delta = s.delta
        ),
        Tally::None,
    ));
    if !scalar {
        out.push(stmt(
            format!(
                "DELETE FROM {table} t USING {delta} d WHERE t.{ROW_ID} = d.{ROW_ID} AND t.{COUNT} <= 0",
                delta = s.delta
            ),
            Tally::Deleted,
        ));
    }

    // New groups: their state is their delta.
    let mut values = Vec::new();
    for (col, _) in plan.columns.iter().enumerate() {
        if let Some(k) = group_columns.iter().position(|&g| g == col) {
            values.push(format!("d.{}", key_names[k]));
            continue;
        }
        let agg = aggs
            .iter()
            .find(|a| a.column == col)
            .expect("key or aggregate");
        values.push(match &agg.kind {
            AggKind::CountStar => "d.__pgt_dc".to_string(),
            AggKind::Count => format!("d.{}", dnn(agg)),
            AggKind::Sum => format!("CASE WHEN d.{} > 0 THEN d.{} END", dnn(agg), dsum(agg)),
            AggKind::Avg { .. } => {
                format!(
                    "CASE WHEN d.{nn} > 0 THEN d.{s} / d.{nn} END",
                    nn = dnn(agg),
                    s = dsum(agg)
                )
            }
            AggKind::Min | AggKind::Max => format!("d.{}", dins(agg)),
        });
    }
    values.push(format!("d.{ROW_ID}"));
    values.push("d.__pgt_dc".to_string());
    for agg in aggs {
        match &agg.kind {
            AggKind::CountStar | AggKind::Count => {}
            AggKind::Sum | AggKind::Min | AggKind::Max => values.push(format!("d.{}", dnn(agg))),
            AggKind::Avg { .. } => {
                values.push(format!(
                    "CASE WHEN d.{} > 0 THEN d.{} END",
                    dnn(agg),
                    dsum(agg)
                ));
                values.push(format!("d.{}", dnn(agg)));
            }
        }
    }
    out.push(stmt(
        format!(
            "INSERT INTO {table} ({}) SELECT {} FROM {delta} d WHERE d.__pgt_dc > 0 \
             AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{ROW_ID} = d.{ROW_ID})",
            groups_storage_columns(plan, aggs).join(", "),
            values.join(", "),
            delta = s.delta
        ),
        Tally::Inserted,
    ));
    out
}

/// Statements that recompute, from the full core, the groups listed in the
/// rescan table.
fn rescan_groups(
    plan: &Plan,
    table: &str,
    full_core: &Core,
    group_columns: &[usize],
    aggs: &[Agg],
    s: &Scratch,
) -> Vec<Statement> {
    vec![
        stmt(
            format!(
                "DELETE FROM {table} WHERE {ROW_ID} IN (SELECT {ROW_ID} FROM {})",
                s.rescan
            ),
            Tally::Deleted,
        ),
        stmt(
            groups_insert(plan, table, full_core, group_columns, aggs, Some(&s.rescan)),
            Tally::Inserted,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvm::plan::Column;

    fn col(name: &str, ty: &str) -> Column {
        Column {
            name: name.into(),
            type_sql: ty.into(),
        }
    }

    fn core(sql: &str, relations: usize, sign: i64) -> Core {
        Core {
            sql: sql.into(),
            relations,
            branch: 0,
            sign,
        }
    }

    #[test]
    fn weights_multiply_and_carry_the_sign() {
        assert_eq!(
            weight_expr(&core("x", 2, -1), "f"),
            "f.__pgt_w_0 * f.__pgt_w_1 * (-1)"
        );
        assert_eq!(weight_expr(&core("x", 1, 1), "f"), "f.__pgt_w_0");
    }

    #[test]
    fn rows_delta_nets_per_identity_and_keeps_copies() {
        let plan = Plan {
            columns: vec![col("id", "integer")],
            shape: Shape::Rows { branches: 1 },
        };
        let stmts = differential_apply(
            &plan,
            "\"s\".\"t\"",
            &[core("SELECT 1", 1, 1)],
            &core("F", 1, 1),
            "Q",
            &Scratch::for_stream_table(7),
        );
        let sql: Vec<&str> = stmts.iter().map(|s| s.sql.as_str()).collect();
        assert!(sql[0].contains("sum(u.__pgt_w) OVER (PARTITION BY u.__pgt_ident)"));
        assert!(sql[0].contains("pg_temp.pgt_delta_7"));
        assert_eq!(
            sql.last().unwrap(),
            &"DROP TABLE pg_temp.pgt_delta_7, pg_temp.pgt_merge_7"
        );
        assert!(sql.iter().any(|s| s.starts_with("DELETE FROM \"s\".\"t\"")));
        assert_eq!(
            stmts.iter().filter(|s| s.tally == Tally::Inserted).count(),
            1
        );
    }

    #[test]
    fn grouped_apply_keeps_sums_null_when_no_values_remain() {
        let plan = Plan {
            columns: vec![col("g", "integer"), col("s", "bigint"), col("m", "integer")],
            shape: Shape::Groups {
                group_columns: vec![0],
                aggs: vec![
                    Agg {
                        kind: AggKind::Sum,
                        column: 1,
                        arg: Some(1),
                    },
                    Agg {
                        kind: AggKind::Min,
                        column: 2,
                        arg: Some(2),
                    },
                ],
            },
        };
        let stmts = differential_apply(
            &plan,
            "t",
            &[core("SELECT", 1, 1)],
            &core("FULL", 1, 1),
            "Q",
            &Scratch::for_stream_table(1),
        );
        let update = stmts.iter().find(|s| s.sql.starts_with("UPDATE")).unwrap();
        assert!(update
            .sql
            .contains("\"s\" = CASE WHEN (t.__pgt_nn_1 + d.__pgt_dnn_1) > 0"));
        assert!(stmts
            .iter()
            .any(|s| s.sql.contains("CREATE TEMP TABLE pg_temp.pgt_rescan_1")));
        // MIN candidates come from weights netted per value.
        assert!(stmts[0]
            .sql
            .contains("sum(u.__pgt_w) AS nw FROM u GROUP BY"));
        assert!(stmts.iter().any(|s| s.sql.contains("FROM (FULL) f WHERE")));
    }

    #[test]
    fn scalar_extremum_is_recomputed_only_when_listed() {
        let plan = Plan {
            columns: vec![col("lo", "integer")],
            shape: Shape::Groups {
                group_columns: vec![],
                aggs: vec![Agg {
                    kind: AggKind::Min,
                    column: 0,
                    arg: Some(0),
                }],
            },
        };
        let stmts = differential_apply(
            &plan,
            "t",
            &[core("SELECT", 1, 1)],
            &core("F", 1, 1),
            "Q",
            &Scratch::for_stream_table(3),
        );
        let rescan = stmts
            .iter()
            .find(|s| s.sql.starts_with("INSERT INTO t") && s.sql.contains("FROM (F) f"))
            .unwrap();
        assert!(
            rescan
                .sql
                .ends_with("HAVING EXISTS (SELECT FROM pg_temp.pgt_rescan_3)"),
            "{}",
            rescan.sql
        );
    }

    #[test]
    fn recomputed_groups_replace_the_groups_a_change_touches() {
        let plan = Plan {
            columns: vec![col("g", "integer"), col("n", "bigint")],
            shape: Shape::RecomputedGroups {
                group_columns: vec![0],
            },
        };
        let stmts = differential_apply(
            &plan,
            "t",
            &[core("CORE", 1, 1)],
            &core("F", 1, 1),
            "Q",
            &Scratch::for_stream_table(4),
        );
        assert!(stmts[0]
            .sql
            .contains("SELECT DISTINCT pgtrickle.pg_trickle_hash_multi(ARRAY[u.c0::text])"));
        assert_eq!(stmts[1].tally, Tally::Deleted);
        assert!(stmts[2].sql.ends_with("FROM (Q) q WHERE pgtrickle.pg_trickle_hash_multi(ARRAY[q.\"g\"::text]) IN (SELECT __pgt_row_id FROM pg_temp.pgt_delta_4)"), "{}", stmts[2].sql);
    }

    #[test]
    fn anchored_rows_are_found_by_stored_identities_and_recomputed() {
        let plan = Plan {
            columns: vec![col("a", "integer"), col("b", "integer")],
            shape: Shape::AnchoredRows { anchor: 0 },
        };
        let stmts = anchored_apply(
            &plan,
            "t",
            &[(core("INS", 2, 1), 1)],
            &["SELECT rid FROM buf".to_string()],
            &core("FULL", 2, 1),
            &Scratch::for_stream_table(5),
        );
        assert!(
            stmts[0]
                .sql
                .contains("FROM (INS) f WHERE f.__pgt_rid_1 IS NOT NULL"),
            "{}",
            stmts[0].sql
        );
        assert!(stmts[0].sql.contains("t.__pgt_source_rows && ARRAY(SELECT r FROM ((SELECT rid FROM buf)) d(r))::bigint[]"), "{}", stmts[0].sql);
        assert!(stmts[1]
            .sql
            .starts_with("DELETE FROM t WHERE __pgt_anchor IN"));
        assert!(
            stmts[2].sql.contains(
                "FROM (FULL) f WHERE f.__pgt_rid_0 IN (SELECT a FROM pg_temp.pgt_delta_5)"
            ),
            "{}",
            stmts[2].sql
        );
        assert!(anchored_apply(
            &plan,
            "t",
            &[],
            &[],
            &core("FULL", 2, 1),
            &Scratch::for_stream_table(5)
        )
        .is_empty());
    }

    #[test]
    fn scalar_aggregates_never_delete_their_row() {
        let plan = Plan {
            columns: vec![col("n", "bigint")],
            shape: Shape::Groups {
                group_columns: vec![],
                aggs: vec![Agg {
                    kind: AggKind::CountStar,
                    column: 0,
                    arg: None,
                }],
            },
        };
        let stmts = differential_apply(
            &plan,
            "t",
            &[core("SELECT", 1, 1)],
            &core("F", 1, 1),
            "Q",
            &Scratch::for_stream_table(1),
        );
        assert!(!stmts.iter().any(|s| s.sql.starts_with("DELETE")));
        assert!(stmts[0].sql.contains("HAVING count(*) > 0"));
    }
}
