//! Groups with per-group state: counts, non-null counts and running sums are
//! folded in; groups whose MIN/MAX lost its value are recomputed.

use super::*;

/// The row id of a group: a hash of its keys `exprs` (the values of the
/// visible columns `group_columns`), each in its column's key form.
pub(super) fn group_hash(plan: &Plan, group_columns: &[usize], exprs: &[String]) -> String {
    debug_assert_eq!(group_columns.len(), exprs.len());
    if exprs.is_empty() {
        format!("{HASH}(ARRAY[]::text[])")
    } else {
        let parts: Vec<String> = group_columns
            .iter()
            .zip(exprs)
            .map(|(&g, e)| plan.columns[g].key_form.text_of(e))
            .collect();
        format!("{HASH}(ARRAY[{}])", parts.join(", "))
    }
}

/// Storage columns of a grouped stream table, in insert order.
pub(super) fn groups_storage_columns(plan: &Plan, aggs: &[Agg]) -> Vec<String> {
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
pub(super) fn groups_insert(
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
    values.push(group_hash(plan, group_columns, &group_exprs));
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
                group_hash(plan, group_columns, &group_exprs)
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

pub(super) fn dnn(agg: &Agg) -> String {
    format!("__pgt_dnn_{}", agg.column)
}

pub(super) fn dsum(agg: &Agg) -> String {
    format!("__pgt_dsum_{}", agg.column)
}

pub(super) fn dins(agg: &Agg) -> String {
    format!("__pgt_dins_{}", agg.column)
}

pub(super) fn ddel(agg: &Agg) -> String {
    format!("__pgt_ddel_{}", agg.column)
}

pub(super) fn groups_apply(
    plan: &Plan,
    table: &str,
    cores: &[Core],
    group_columns: &[usize],
    aggs: &[Agg],
    s: &Scratch,
) -> Vec<Statement> {
    let scalar = group_columns.is_empty();
    let ncore = group_columns.len() + aggs.iter().filter(|a| a.arg.is_some()).count();
    // With a paired core, every branch also outputs old argument values and
    // their weight (none, for unpaired cores).
    let paired = cores.iter().any(|core| core.paired);
    let weighted = union_all(
        cores
            .iter()
            .map(|core| {
                let mut cols: Vec<String> = (0..ncore).map(|i| format!("f.{}", c(i))).collect();
                cols.push(format!("{} AS __pgt_w", weight_expr(core, "f")));
                if paired {
                    for i in group_columns.len()..ncore {
                        cols.push(if core.paired {
                            format!("f.o{i}")
                        } else {
                            // a NULL of the argument's type
                            format!("CASE WHEN false THEN f.{} END AS o{i}", c(i))
                        });
                    }
                    cols.push(if core.paired && core.sign == 1 {
                        "f.__pgt_wo".to_string()
                    } else if core.paired {
                        format!("f.__pgt_wo * ({}) AS __pgt_wo", core.sign)
                    } else {
                        "0::bigint AS __pgt_wo".to_string()
                    });
                }
                format!("SELECT {} FROM ({}) f", cols.join(", "), core.sql)
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
    let mut select = vec![format!(
        "{} AS {ROW_ID}",
        group_hash(plan, group_columns, &group_exprs)
    )];
    for (expr, name) in group_exprs.iter().zip(&key_names) {
        select.push(format!("{expr} AS {name}"));
    }
    // The change of a group's row count.
    let dc = if paired {
        "sum(u.__pgt_w + u.__pgt_wo)"
    } else {
        "sum(u.__pgt_w)"
    };
    select.push(format!("{dc} AS __pgt_dc"));
    // The old value of argument `i`, when cores are paired.
    let old_arg = |i: usize| paired.then(|| format!("u.o{i}"));
    let mut extremum_ctes = Vec::new();
    let mut extremum_cols = Vec::new();
    let mut extremum_joins = Vec::new();
    for agg in aggs {
        let Some(a) = agg.arg.map(|i| format!("u.{}", c(i))) else {
            continue;
        };
        let old = agg.arg.and_then(old_arg);
        let nonnull = |v: &str, w: &str| format!("CASE WHEN {v} IS NOT NULL THEN {w} ELSE 0 END");
        select.push(if agg.never_null {
            // the same aggregate as __pgt_dc: PostgreSQL computes it once
            format!("{dc} AS {}", dnn(agg))
        } else {
            format!(
                "sum({}) AS {}",
                match &old {
                    Some(o) => format!(
                        "{} + {}",
                        nonnull(&a, "u.__pgt_w"),
                        nonnull(o, "u.__pgt_wo")
                    ),
                    None => nonnull(&a, "u.__pgt_w"),
                },
                dnn(agg)
            )
        });
        // The weighted sum of `value(argument)`, old values included. Every
        // weight is 1 or -1 (0: a row without old values), so the sum is
        // that of the rows weighted 1 minus that of the rows weighted -1:
        // plain sums of the values, with no multiplication or negation per
        // row (and no overflow negating the smallest integer). Old values
        // only ever weigh -1 (the other tables of a paired core are read
        // whole, at +1), so theirs is one sum, subtracted.
        let summed = |value: &dyn Fn(&str) -> String| {
            let v = value(&a);
            let new = sub_sums(
                &format!("sum({v}) FILTER (WHERE u.__pgt_w > 0)"),
                &format!("sum({v}) FILTER (WHERE u.__pgt_w < 0)"),
                agg.non_finite,
            );
            match &old {
                Some(o) => sub_sums(
                    &new,
                    &format!("sum({}) FILTER (WHERE u.__pgt_wo < 0)", value(o)),
                    agg.non_finite,
                ),
                None => new,
            }
        };
        match &agg.kind {
            AggKind::CountStar | AggKind::Count => {}
            AggKind::Sum => select.push(format!("{} AS {}", summed(&|v| v.to_string()), dsum(agg))),
            AggKind::Avg { state_type } => select.push(format!(
                "{} AS {}",
                summed(&|v| format!("{v}::{state_type}")),
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
                    group_hash(plan, group_columns, &group_exprs),
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
    let sets = folded_state(plan, aggs).join(", ");
    let insert = format!(
        "INSERT INTO {table} ({}) SELECT {}",
        groups_storage_columns(plan, aggs).join(", "),
        new_group_values(plan, group_columns, &key_names, aggs).join(", ")
    );
    let new_groups = format!(
        "d.__pgt_dc > 0 AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{ROW_ID} = d.{ROW_ID})"
    );

    if extremum_ctes.is_empty() {
        // One statement: no scratch table to create, analyse and drop. The
        // three writes touch disjoint rows and all see the storage table as
        // it was before the statement. Updated and new groups whose sum is
        // now NaN or infinite are listed, to be recomputed.
        let lists = !stored_non_finite(plan, aggs, "").is_empty();
        let returning = |prefix: &str| {
            if lists {
                format!(
                    "{prefix}{ROW_ID} AS r, ({}) IS TRUE AS nf",
                    stored_non_finite(plan, aggs, prefix).join(" OR ")
                )
            } else {
                "1".to_string()
            }
        };
        let mut writes = vec![format!(
            "upd AS (UPDATE {table} t SET {sets} FROM b d WHERE t.{ROW_ID} = d.{ROW_ID}{} RETURNING {})",
            if scalar {
                String::new()
            } else {
                format!(" AND t.{COUNT} + d.__pgt_dc > 0")
            },
            returning("t.")
        )];
        if !scalar {
            writes.push(format!(
                "del AS (DELETE FROM {table} t USING b d WHERE t.{ROW_ID} = d.{ROW_ID} \
                 AND t.{COUNT} + d.__pgt_dc <= 0 RETURNING 1)"
            ));
        }
        writes.push(format!(
            "ins AS ({insert} FROM b d WHERE {new_groups} RETURNING {})",
            returning("")
        ));
        ctes.extend(writes);
        let listed = if lists {
            ", (SELECT pg_catalog.array_agg(x.r) FROM \
             (SELECT r FROM upd WHERE nf UNION ALL SELECT r FROM ins WHERE nf) x)::text"
        } else {
            ""
        };
        return vec![stmt(
            format!(
                "WITH {} SELECT (SELECT count(*) FROM b)::text, (SELECT count(*) FROM ins)::text, {}::text{listed}",
                ctes.join(", "),
                if scalar { "0" } else { "(SELECT count(*) FROM del)" }
            ),
            Tally::Counts,
        )];
    }

    ctes.extend(extremum_ctes);
    let mut out = vec![stmt(
        format!(
            "CREATE TEMP TABLE {} AS WITH {} SELECT b.*, {} FROM b{}",
            s.delta,
            ctes.join(", "),
            extremum_cols.join(", "),
            extremum_joins.join("")
        ),
        Tally::Delta,
    )];
    out.push(analyze(&s.delta));

    // Groups whose MIN/MAX lost its current value must be recomputed, and
    // so must groups (new ones too) whose sum was or becomes NaN or
    // infinite: their stored sum or its delta is.
    let mut conds: Vec<String> = aggs
        .iter()
        .filter(|a| matches!(a.kind, AggKind::Min | AggKind::Max))
        .map(|agg| {
            let col = ident(&plan.columns[agg.column].name);
            let op = if agg.kind == AggKind::Min { "<=" } else { ">=" };
            format!(
                "(d.{del} IS NOT NULL AND d.{del} {op} t.{col})",
                del = ddel(agg)
            )
        })
        .collect();
    conds.extend(stored_non_finite(plan, aggs, "t."));
    conds.extend(
        aggs.iter()
            .filter_map(|agg| non_finite(&format!("d.{}", dsum(agg)), agg.non_finite)),
    );
    out.push(stmt(
        format!(
            "CREATE TEMP TABLE {rescan} AS SELECT d.{ROW_ID} FROM {delta} d \
             LEFT JOIN {table} t ON t.{ROW_ID} = d.{ROW_ID} \
             WHERE coalesce(t.{COUNT}, 0) + d.__pgt_dc > 0 AND ({conds})",
            rescan = s.rescan,
            delta = s.delta,
            conds = conds.join(" OR ")
        ),
        Tally::None,
    ));
    // Existing groups: fold the deltas into the state.
    out.push(stmt(
        format!(
            "UPDATE {table} t SET {sets} FROM {delta} d WHERE t.{ROW_ID} = d.{ROW_ID}",
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
    out.push(stmt(
        format!(
            "{insert} FROM {delta} d WHERE {new_groups}",
            delta = s.delta
        ),
        Tally::Inserted,
    ));
    out
}

fn folded_state(plan: &Plan, aggs: &[Agg]) -> Vec<String> {
    let mut sets = vec![format!("{COUNT} = t.{COUNT} + d.__pgt_dc")];
    for agg in aggs {
        let col = ident(&plan.columns[agg.column].name);
        // The new non-NULL count of the argument. For an argument that is
        // never NULL, the new row count: right even if NULLs were counted
        // out before the column became NOT NULL.
        let nn_new = |agg: &Agg| {
            if agg.never_null {
                format!("(t.{COUNT} + d.__pgt_dc)")
            } else {
                format!("(t.{} + d.{})", nonnull_state(agg), dnn(agg))
            }
        };
        match &agg.kind {
            AggKind::CountStar => sets.push(format!("{col} = t.{col} + d.__pgt_dc")),
            AggKind::Count if agg.never_null => sets.push(format!("{col} = {}", nn_new(agg))),
            AggKind::Count => sets.push(format!("{col} = t.{col} + d.{}", dnn(agg))),
            AggKind::Sum => {
                sets.push(format!(
                    "{col} = CASE WHEN {} > 0 THEN {} END",
                    nn_new(agg),
                    add_sums(
                        &format!("t.{col}"),
                        &format!("d.{}", dsum(agg)),
                        agg.non_finite
                    )
                ));
                sets.push(format!("{} = {}", nonnull_state(agg), nn_new(agg)));
            }
            AggKind::Avg { .. } => {
                let sum = add_sums(
                    &format!("t.{}", sum_state(agg)),
                    &format!("d.{}", dsum(agg)),
                    agg.non_finite,
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
    sets
}

/// The stored row of a new group `d`, in `groups_storage_columns` order:
/// its state is its delta.
fn new_group_values(
    plan: &Plan,
    group_columns: &[usize],
    key_names: &[String],
    aggs: &[Agg],
) -> Vec<String> {
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
    values
}

/// Statements that recompute, from the full core, the groups listed in the
/// rescan table.
pub(super) fn rescan_groups(
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
        stmt_reading_sources(
            groups_insert(plan, table, full_core, group_columns, aggs, Some(&s.rescan)),
            Tally::Inserted,
        ),
    ]
}

pub(super) fn has_extremum(aggs: &[Agg]) -> bool {
    aggs.iter()
        .any(|a| matches!(a.kind, AggKind::Min | AggKind::Max))
}

/// For each sum or average whose sum can be NaN or infinite, a test of its
/// stored sum; `prefix` qualifies the storage table's columns.
fn stored_non_finite(plan: &Plan, aggs: &[Agg], prefix: &str) -> Vec<String> {
    aggs.iter()
        .filter_map(|agg| {
            let column = match agg.kind {
                AggKind::Sum => ident(&plan.columns[agg.column].name),
                AggKind::Avg { .. } => sum_state(agg),
                _ => return None,
            };
            non_finite(&format!("{prefix}{column}"), agg.non_finite)
        })
        .collect()
}

/// Statements that recompute, from the full core, the groups the delta
/// statement listed (`$1`): those whose sum is NaN or infinite.
pub(super) fn recompute_listed_groups(
    plan: &Plan,
    table: &str,
    full_core: &Core,
    group_columns: &[usize],
    aggs: &[Agg],
) -> Vec<Statement> {
    let listed = format!("(SELECT pg_catalog.unnest($1::bigint[]) AS {ROW_ID}) l");
    vec![
        Statement {
            for_listed_groups: true,
            ..stmt(
                format!("DELETE FROM {table} WHERE {ROW_ID} = ANY ($1::bigint[])"),
                Tally::Deleted,
            )
        },
        Statement {
            for_listed_groups: true,
            ..stmt_reading_sources(
                groups_insert(plan, table, full_core, group_columns, aggs, Some(&listed)),
                Tally::Inserted,
            )
        },
    ]
}
