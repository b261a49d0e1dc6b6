//! Unit tests of the generated refresh SQL.
use super::*;
use crate::dvm::plan::{Column, ValueForm};

fn col(name: &str, ty: &str) -> Column {
    Column {
        name: name.into(),
        type_sql: ty.into(),
        key_form: ValueForm::Text,
    }
}

fn core(sql: &str, relations: usize, sign: i64) -> Core {
    Core {
        sql: sql.into(),
        relations,
        full: Vec::new(),
        branch: 0,
        sign,
        paired: false,
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
fn relations_read_in_full_weigh_nothing_in() {
    let mut joined = core("x", 3, -1);
    joined.full = vec![false, true, false];
    assert_eq!(
        weight_expr(&joined, "f"),
        "f.__pgt_w_0 * f.__pgt_w_2 * (-1)"
    );
    joined.full = vec![true; 3];
    joined.sign = 1;
    assert_eq!(weight_expr(&joined, "f"), "1::bigint");
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
                    never_null: false,
                    non_finite: NonFinite::None,
                },
                Agg {
                    kind: AggKind::Min,
                    column: 2,
                    arg: Some(2),
                    never_null: false,
                    non_finite: NonFinite::None,
                },
            ],
        },
    };
    let stmts = apply_one_core(&plan, 1);
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
                never_null: false,
                non_finite: NonFinite::None,
            }],
        },
    };
    let stmts = apply_one_core(&plan, 3);
    let rescan = stmts
        .iter()
        .find(|s| s.sql.starts_with("INSERT INTO t") && s.sql.contains("FROM (FULL) f"))
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
    let stmts = apply_one_core(&plan, 4);
    assert!(stmts[0]
        .sql
        .contains("SELECT DISTINCT pgtrickle.pg_trickle_hash_multi(ARRAY[u.c0::text])"));
    assert_eq!(stmts[0].tally, Tally::Delta);
    assert_eq!(stmts[1].sql, "ANALYZE pg_temp.pgt_delta_4");
    assert_eq!(stmts[2].tally, Tally::Deleted);
    assert!(stmts[3].sql.ends_with("FROM (Q) q WHERE pgtrickle.pg_trickle_hash_multi(ARRAY[q.\"g\"::text]) IN (SELECT __pgt_row_id FROM pg_temp.pgt_delta_4)"), "{}", stmts[3].sql);
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
    assert!(
        stmts[0].sql.contains(
            "t.__pgt_source_rows && ARRAY(SELECT r FROM ((SELECT rid FROM buf)) d(r))::bigint[]"
        ),
        "{}",
        stmts[0].sql
    );
    assert!(stmts[2]
        .sql
        .starts_with("DELETE FROM t WHERE __pgt_anchor IN"));
    assert!(
        stmts[3]
            .sql
            .contains("FROM (FULL) f WHERE f.__pgt_rid_0 IN (SELECT a FROM pg_temp.pgt_delta_5)"),
        "{}",
        stmts[3].sql
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
                never_null: false,
                non_finite: NonFinite::None,
            }],
        },
    };
    let stmts = apply_one_core(&plan, 1);
    assert!(!stmts.iter().any(|s| s.sql.starts_with("DELETE")));
    assert!(stmts[0].sql.contains("HAVING count(*) > 0"));
}

/// The statements of a differential refresh of one single-relation core
/// `SELECT` (full core `FULL`, query `Q`) into table `t`.
fn apply_one_core(plan: &Plan, pgt_id: i64) -> Vec<Statement> {
    differential_apply(
        plan,
        "t",
        &[core("SELECT", 1, 1)],
        &core("FULL", 1, 1),
        "Q",
        &Scratch::for_stream_table(pgt_id),
    )
}

fn sums_plan(group_columns: Vec<usize>) -> Plan {
    let mut columns = vec![col("g", "text")];
    columns.truncate(group_columns.len());
    columns.push(col("s", "numeric"));
    let sum_column = columns.len() - 1;
    Plan {
        columns,
        shape: Shape::Groups {
            group_columns,
            aggs: vec![Agg {
                kind: AggKind::Sum,
                column: sum_column,
                arg: Some(sum_column),
                never_null: false,
                non_finite: NonFinite::None,
            }],
        },
    }
}

#[test]
fn grouped_apply_without_extremum_is_one_statement() {
    let stmts = apply_one_core(&sums_plan(vec![0]), 3);
    assert_eq!(stmts.len(), 1, "{stmts:?}");
    let sql = &stmts[0].sql;
    assert_eq!(stmts[0].tally, Tally::Counts);
    assert!(!sql.contains("pg_temp"), "{sql}");
    // Surviving groups are updated, emptied ones deleted, new ones inserted:
    // disjoint rows, one snapshot.
    assert!(
        sql.contains("upd AS (UPDATE t t SET")
            && sql.contains("AND t.__pgt_count + d.__pgt_dc > 0 RETURNING 1)")
    );
    assert!(
        sql.contains("del AS (DELETE FROM t t USING b d")
            && sql.contains("AND t.__pgt_count + d.__pgt_dc <= 0 RETURNING 1)")
    );
    assert!(sql.contains("ins AS (INSERT INTO t ("));
    assert!(sql.contains("WHERE d.__pgt_dc > 0 AND NOT EXISTS (SELECT 1 FROM t t WHERE t.__pgt_row_id = d.__pgt_row_id)"));
    assert!(sql.ends_with(
        "SELECT (SELECT count(*) FROM b)::text, (SELECT count(*) FROM ins)::text, (SELECT count(*) FROM del)::text"
    ));
    // rows weighted -1 are summed apart and subtracted once per group
    assert!(sql.contains(
        "CASE WHEN sum(u.c1) FILTER (WHERE u.__pgt_w < 0) IS NULL THEN sum(u.c1) FILTER (WHERE u.__pgt_w > 0) \
         WHEN sum(u.c1) FILTER (WHERE u.__pgt_w > 0) IS NULL THEN (sum(u.c1) FILTER (WHERE u.__pgt_w < 0)) * -1 \
         ELSE sum(u.c1) FILTER (WHERE u.__pgt_w > 0) - sum(u.c1) FILTER (WHERE u.__pgt_w < 0) END"
    ), "{sql}");
}

#[test]
fn scalar_sums_never_delete_their_row() {
    let stmts = apply_one_core(&sums_plan(vec![]), 3);
    assert_eq!(stmts.len(), 1);
    let sql = &stmts[0].sql;
    assert!(!sql.contains("DELETE"), "{sql}");
    assert!(sql.contains("FROM b d WHERE t.__pgt_row_id = d.__pgt_row_id RETURNING 1)"));
    assert!(sql.ends_with("(SELECT count(*) FROM ins)::text, 0::text"));
}

#[test]
fn never_null_arguments_count_non_nulls_by_the_row_count() {
    let mut plan = sums_plan(vec![0]);
    if let Shape::Groups { aggs, .. } = &mut plan.shape {
        aggs[0].never_null = true;
    }
    let stmts = apply_one_core(&plan, 3);
    let sql = &stmts[0].sql;
    // the same aggregate as the row count: no CASE per change row
    assert!(sql.contains("sum(u.__pgt_w) AS __pgt_dnn_1"), "{sql}");
    assert!(!sql.contains("IS NOT NULL THEN u.__pgt_w"), "{sql}");
    // the non-NULL count follows the row count, whatever it held before
    assert!(
        sql.contains("__pgt_nn_1 = (t.__pgt_count + d.__pgt_dc)"),
        "{sql}"
    );
}

fn with_non_finite(mut plan: Plan, nf: NonFinite) -> Plan {
    if let Shape::Groups { aggs, .. } = &mut plan.shape {
        aggs[0].non_finite = nf;
    }
    plan
}

#[test]
fn groups_whose_sum_turns_nan_or_infinite_are_listed_and_recomputed() {
    let stmts = apply_one_core(
        &with_non_finite(sums_plan(vec![0]), NonFinite::NanOrInfinity),
        3,
    );
    assert_eq!(stmts.len(), 3, "{stmts:?}");
    let sql = &stmts[0].sql;
    // updated and inserted groups report whether their new sum is finite
    assert!(
        sql.contains("RETURNING t.__pgt_row_id AS r, (NOT (t.\"s\" > '-Infinity' AND t.\"s\" < 'Infinity')) IS TRUE AS nf)"),
        "{sql}"
    );
    assert!(
        sql.contains("RETURNING __pgt_row_id AS r, (NOT (\"s\" > '-Infinity' AND \"s\" < 'Infinity')) IS TRUE AS nf)"),
        "{sql}"
    );
    assert!(sql.ends_with(
        "(SELECT pg_catalog.array_agg(x.r) FROM (SELECT r FROM upd WHERE nf UNION ALL SELECT r FROM ins WHERE nf) x)::text"
    ));
    // only those groups are recomputed, from the full core
    assert!(stmts[1..].iter().all(|s| s.for_listed_groups));
    assert_eq!(
        stmts[1].sql,
        "DELETE FROM t WHERE __pgt_row_id = ANY ($1::bigint[])"
    );
    assert!(stmts[2].reads_sources);
    assert!(
        stmts[2].sql.contains("FROM (FULL) f WHERE pgtrickle.pg_trickle_hash_multi(ARRAY[f.c0::text]) IN \
             (SELECT __pgt_row_id FROM (SELECT pg_catalog.unnest($1::bigint[]) AS __pgt_row_id) l) GROUP BY f.c0"),
        "{}",
        stmts[2].sql
    );
    // sums of integers cannot be NaN or infinite: nothing to list
    let plain = apply_one_core(&sums_plan(vec![0]), 3);
    assert_eq!(plain.len(), 1);
    assert!(!plain[0].sql.contains("nf"));
}

#[test]
fn sums_of_intervals_do_not_add_opposite_infinities() {
    let stmts = apply_one_core(&with_non_finite(sums_plan(vec![0]), NonFinite::Infinity), 3);
    let sql = &stmts[0].sql;
    assert!(sql.contains(
        "CASE WHEN NOT pg_catalog.isfinite(t.\"s\") THEN t.\"s\" \
         WHEN NOT pg_catalog.isfinite(d.__pgt_dsum_1) THEN d.__pgt_dsum_1 ELSE t.\"s\" + d.__pgt_dsum_1 END"
    ), "{sql}");
    assert!(
        sql.contains("(NOT pg_catalog.isfinite(t.\"s\")) IS TRUE AS nf"),
        "{sql}"
    );
}

#[test]
fn paired_cores_subtract_old_arguments_in_the_same_row() {
    let mut paired = core("PAIRED", 2, 1);
    paired.paired = true;
    let stmts = differential_apply(
        &sums_plan(vec![0]),
        "t",
        &[paired, core("OTHER", 2, -1)],
        &core("FULL", 2, 1),
        "Q",
        &Scratch::for_stream_table(3),
    );
    assert_eq!(stmts.len(), 1, "{stmts:?}");
    let sql = &stmts[0].sql;
    // The paired core passes its old arguments and their weight; an
    // unpaired one has none (typed NULLs, weight 0).
    assert!(sql.contains("f.o1, f.__pgt_wo FROM (PAIRED) f"), "{sql}");
    assert!(
        sql.contains("CASE WHEN false THEN f.c1 END AS o1, 0::bigint AS __pgt_wo FROM (OTHER) f")
    );
    // An update that kept its group counts for nothing, and its old value
    // is subtracted.
    assert!(sql.contains("sum(u.__pgt_w + u.__pgt_wo) AS __pgt_dc"));
    assert!(sql.contains(
        "CASE WHEN u.c1 IS NOT NULL THEN u.__pgt_w ELSE 0 END + CASE WHEN u.o1 IS NOT NULL THEN u.__pgt_wo ELSE 0 END"
    ));
    assert!(
        sql.contains("sum(u.o1) FILTER (WHERE u.__pgt_wo < 0)"),
        "{sql}"
    );
    // Old values weigh -1 only: no sum of positively weighted ones.
    assert!(!sql.contains("__pgt_wo > 0"), "{sql}");
}

#[test]
fn group_row_ids_hash_each_key_in_its_form() {
    let mut plan = sums_plan(vec![0]);
    plan.columns.insert(
        1,
        Column {
            name: "at".into(),
            type_sql: "timestamp with time zone".into(),
            key_form: ValueForm::Binary {
                send: "pg_catalog.timestamptz_send".into(),
            },
        },
    );
    plan.columns[0].key_form = ValueForm::Hash {
        function: "pg_catalog.hashtextextended".into(),
    };
    if let Shape::Groups {
        group_columns,
        aggs,
    } = &mut plan.shape
    {
        group_columns.push(1);
        aggs[0].column = 2;
        aggs[0].arg = Some(2);
    }
    let stmts = full_insert(&plan, "t", &[core("CORE", 1, 1)], "Q");
    assert!(
        stmts[0].sql.contains(
            "pgtrickle.pg_trickle_hash_multi(ARRAY[pg_catalog.hashtextextended(f.c0, 0)::text, \
             pg_catalog.encode(pg_catalog.timestamptz_send(f.c1), 'hex')])"
        ),
        "{}",
        stmts[0].sql
    );
    let apply = apply_one_core(&plan, 3);
    assert!(apply[0].sql.contains(
        "pgtrickle.pg_trickle_hash_multi(ARRAY[pg_catalog.hashtextextended(u.c0, 0)::text, \
         pg_catalog.encode(pg_catalog.timestamptz_send(u.c1), 'hex')]) AS __pgt_row_id"
    ));
}
