//! The correctness contract of PRODUCT.md §4 under random DML: after every
//! refresh, a stream table's user-visible rows equal, as a multiset, a fresh
//! evaluation of its defining query.
//!
//! Each test starts one cluster, creates a few source tables with small value
//! domains, several stream tables over them (manual schedule), and then runs
//! rounds of random DML (inserts, upserts, updates that move rows between
//! groups and change join keys and primary keys, deletes, NULLs, duplicate
//! rows, committed and rolled-back transactions, TRUNCATE) followed by a
//! refresh and the oracle on every stream table.
//!
//! When DIFFERENTIAL refuses a query with SQLSTATE 0A000, the stream table is
//! created in AUTO mode instead (a note is printed) and must still be exact.
//!
//! Seeds and rounds: `PGT_PROPTEST_SEED=<n|0xhex|random>`,
//! `PGT_PROPTEST_CASES=<rounds>`; a failure prints the seed, the command that
//! reproduces it, the differences, and a replay of the SQL log shrunk (by
//! delta debugging in scratch databases of the same cluster, for at most
//! `PGT_PROPTEST_SHRINK_SECS`, default 90, 0 = off) to the statements that
//! still reproduce it; the full log is written under the temp dir.
//!
//! `PGT_ORACLE_SIMULATE=1` checks the harness alone: stream tables become
//! plain tables refreshed by DELETE + INSERT of their query (add
//! `PGT_ORACLE_SIMULATE_BUG=1` to watch the oracle and the shrinker catch a
//! planted bug).
//!
//!     PGT_PG_VERSION=18 cargo test -p pgtrickle-e2e --test oracle -- --test-threads=2
//!     PGT_PROPTEST_SEED=random PGT_PROPTEST_CASES=100 cargo test -p pgtrickle-e2e --test oracle

use pgtrickle_e2e::oracle::{cases, RandomDml, TableSpec};
use pgtrickle_e2e::{cluster_with_extension, Client};

const DIFF: &str = "DIFFERENTIAL";

/// Rounds per test unless `PGT_PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: usize = 50;

// ----- source tables ----------------------------------------------------------

/// One table with a primary key; `grp` has 5 values so groups collide.
fn items(max_id: i64) -> TableSpec {
    TableSpec::new("items")
        .pk("id", max_id)
        .int("grp", 0, 4)
        .int("val", 0, 9)
        .num("amt", -5, 20)
        .text("name", &["a", "b", "c", "x", ""])
        .max_rows(max_id)
        .initial_rows(max_id * 2 / 3)
}

/// A table without primary key; tiny domains make exact duplicate rows.
fn events() -> TableSpec {
    TableSpec::new("events")
        .int("a", 0, 4)
        .text("b", &["x", "y", "z"])
        .int("c", 0, 3)
        .max_rows(50)
        .initial_rows(25)
}

/// Customer ids 1..8; orders reference 0..9, so some orders dangle.
fn customers() -> TableSpec {
    TableSpec::new("customers")
        .pk("id", 8)
        .text("region", &["north", "south", "east", "west"])
        .text("name", &["ann", "bob", "cy", "dee"])
        .int("tier", 0, 3)
        .max_rows(8)
        .initial_rows(6)
}

fn orders() -> TableSpec {
    TableSpec::new("orders")
        .pk("id", 40)
        .int("cust_id", 0, 9)
        .int("prod_id", 1, 5)
        .int("qty", 0, 4)
        .num("amt", 0, 50)
        .max_rows(40)
        .initial_rows(25)
}

fn products() -> TableSpec {
    TableSpec::new("products")
        .pk("id", 5)
        .text("cat", &["tools", "toys", "food"])
        .num("price", 1, 20)
        .max_rows(5)
        .initial_rows(5)
}

// ----- scaffolding ------------------------------------------------------------

/// Starts a cluster, creates and fills `tables`, runs `setup` SQL (views...).
fn start(
    test: &str,
    tables: Vec<TableSpec>,
    setup: &[&str],
) -> (pgtrickle_e2e::Cluster, Client, RandomDml) {
    let (cluster, mut client) = cluster_with_extension();
    let mut dml = RandomDml::new(test, tables);
    dml.attach(&cluster);
    dml.setup(&mut client);
    for sql in setup {
        dml.exec(&mut client, sql);
    }
    (cluster, client, dml)
}

/// The common shape: stream tables in `mode`, then random rounds.
fn scenario(
    test: &str,
    tables: Vec<TableSpec>,
    setup: &[&str],
    sts: &[(&str, &str)],
    default_cases: usize,
) {
    let (_cluster, mut client, mut dml) = start(test, tables, setup);
    for (name, query) in sts {
        dml.create_st(&mut client, name, query, DIFF);
    }
    dml.run_rounds(&mut client, cases(default_cases));
    dml.finish(&mut client);
}

// ----- 1. projection and filter --------------------------------------------------

#[test]
fn projection_and_filter_with_primary_key() {
    scenario(
        "projection_and_filter_with_primary_key",
        vec![items(30)],
        &[],
        &[
            (
                "st_proj_expr",
                "SELECT id, val * 2 + 1 AS v2, upper(name) AS uname, coalesce(amt, 0) AS amt0
                   FROM items WHERE grp <> 3",
            ),
            (
                "st_proj_label",
                "SELECT id, grp, name || '-' || val AS label FROM items WHERE val > 2 AND name IS NOT NULL",
            ),
            (
                "st_proj_case",
                "SELECT id, abs(val - 5) AS d,
                        CASE WHEN grp IS NULL THEN 'none' ELSE 'g' || grp END AS g,
                        amt * 2 AS amt2
                   FROM items WHERE amt BETWEEN -2 AND 10 OR val IS NULL",
            ),
            ("st_proj_star", "SELECT * FROM items"),
            // Drops the key: the result has duplicate rows.
            ("st_proj_nokey", "SELECT grp, val FROM items WHERE id % 2 = 0"),
        ],
        DEFAULT_CASES,
    );
}

// ----- 2. table without primary key ------------------------------------------------

#[test]
fn table_without_primary_key_and_duplicate_rows() {
    scenario(
        "table_without_primary_key_and_duplicate_rows",
        vec![events()],
        &[],
        &[
            ("st_nopk_all", "SELECT a, b, c FROM events"),
            (
                "st_nopk_filter",
                "SELECT a, c * 10 AS c10 FROM events WHERE b IS DISTINCT FROM 'x'",
            ),
            ("st_nopk_proj", "SELECT b FROM events WHERE a < 3"),
            ("st_nopk_star", "SELECT * FROM events WHERE c IS NOT NULL"),
        ],
        DEFAULT_CASES,
    );
}

// ----- 3. inner joins ---------------------------------------------------------------

#[test]
fn inner_joins_of_two_and_three_tables() {
    scenario(
        "inner_joins_of_two_and_three_tables",
        vec![orders(), customers(), products()],
        &[],
        &[
            (
                "st_join2",
                "SELECT o.id AS order_id, o.qty, c.name, c.region
                   FROM orders o JOIN customers c ON o.cust_id = c.id",
            ),
            (
                "st_join3",
                "SELECT o.id AS order_id, c.name, p.cat, o.qty * p.price AS line_total
                   FROM orders o
                   JOIN customers c ON o.cust_id = c.id
                   JOIN products p ON p.id = o.prod_id
                  WHERE p.cat <> 'food'",
            ),
            // Many-to-many on non-key columns.
            (
                "st_join_mn",
                "SELECT o.id AS order_id, c.id AS cust_id FROM orders o JOIN customers c ON o.qty = c.tier",
            ),
            (
                "st_join_where",
                "SELECT o.id AS order_id, p.cat FROM orders o, products p
                  WHERE o.prod_id = p.id AND o.qty > 1",
            ),
        ],
        DEFAULT_CASES,
    );
}

// ----- 4. left join ----------------------------------------------------------------

#[test]
fn left_join_of_two_tables() {
    scenario(
        "left_join_of_two_tables",
        vec![orders(), customers(), products()],
        &[],
        &[
            (
                "st_left",
                "SELECT o.id AS order_id, o.cust_id, c.name, c.region
                   FROM orders o LEFT JOIN customers c ON o.cust_id = c.id",
            ),
            (
                "st_left_cond",
                "SELECT c.id AS cust_id, c.name, o.id AS order_id, o.qty
                   FROM customers c LEFT JOIN orders o ON o.cust_id = c.id AND o.qty > 1",
            ),
            (
                "st_left_anti",
                "SELECT o.id AS order_id, o.cust_id FROM orders o
                   LEFT JOIN customers c ON c.id = o.cust_id WHERE c.id IS NULL",
            ),
            (
                "st_left_chain",
                "SELECT o.id AS order_id, c.region, p.cat, o.qty * p.price AS line_total
                   FROM orders o LEFT JOIN customers c ON c.id = o.cust_id
                   LEFT JOIN products p ON p.id = o.prod_id AND p.price > 5",
            ),
            (
                "st_inner_then_left",
                "SELECT c.name, o.id AS order_id, p.cat
                   FROM customers c JOIN orders o ON o.cust_id = c.id
                   LEFT JOIN products p ON p.id = o.prod_id",
            ),
        ],
        DEFAULT_CASES,
    );
}

// ----- 5. GROUP BY and HAVING ---------------------------------------------------------

#[test]
fn group_by_aggregates_and_having() {
    scenario(
        "group_by_aggregates_and_having",
        vec![items(30), events()],
        &[],
        &[
            (
                "st_agg_all",
                "SELECT grp, count(*) AS n, count(val) AS nv, sum(val) AS s, avg(val) AS a,
                        min(val) AS mn, max(val) AS mx
                   FROM items GROUP BY grp",
            ),
            (
                "st_agg_numeric",
                "SELECT name, sum(amt) AS total, avg(amt) AS avg_amt, min(amt) AS mn, max(amt) AS mx,
                        count(amt) AS na
                   FROM items GROUP BY name",
            ),
            (
                "st_agg_two_keys",
                "SELECT grp, val % 3 AS bucket, count(*) AS n, sum(amt) AS s FROM items GROUP BY grp, val % 3",
            ),
            (
                "st_having_count",
                "SELECT grp, sum(val) AS s, count(*) AS n FROM items GROUP BY grp HAVING count(*) > 3",
            ),
            (
                "st_having_sum",
                "SELECT grp, max(val) AS mx FROM items WHERE val IS NOT NULL GROUP BY grp HAVING sum(val) > 10",
            ),
            (
                "st_agg_nopk",
                "SELECT a, count(*) AS n, sum(c) AS s, min(b) AS mb, max(b) AS xb FROM events GROUP BY a",
            ),
        ],
        DEFAULT_CASES,
    );
}

// ----- 6. scalar aggregates over a table that becomes empty ------------------------------

#[test]
fn scalar_aggregates_over_a_table_that_empties() {
    let test = "scalar_aggregates_over_a_table_that_empties";
    let (_cluster, mut client, mut dml) = start(test, vec![items(12)], &[]);
    let sts = [
        (
            "st_scalar",
            "SELECT count(*) AS n, sum(val) AS s, min(val) AS mn, max(amt) AS mx, avg(val) AS a FROM items",
        ),
        ("st_scalar_filtered", "SELECT count(*) AS n, sum(amt) AS s FROM items WHERE grp = 1"),
        ("st_scalar_text", "SELECT count(val) AS nv, min(name) AS mname, max(name) AS xname FROM items"),
    ];
    for (name, query) in sts {
        dml.create_st(&mut client, name, query, DIFF);
    }
    let rounds = cases(DEFAULT_CASES);
    for i in 0..rounds {
        dml.next_round(&mut client);
        match i % 6 {
            // Empty the table in different ways, then refresh.
            2 => dml.exec(&mut client, "DELETE FROM items"),
            5 => dml.exec(&mut client, "TRUNCATE items"),
            4 => {
                // Emptied and refilled within one transaction; then emptied
                // by a transaction that rolls back.
                dml.exec(&mut client, "BEGIN");
                dml.exec(&mut client, "DELETE FROM items WHERE true");
                dml.exec(
                    &mut client,
                    "INSERT INTO items VALUES (1, 1, 5, 2.50, 'a'), (2, NULL, NULL, NULL, NULL)",
                );
                dml.exec(&mut client, "COMMIT");
                dml.exec(&mut client, "BEGIN");
                dml.exec(&mut client, "DELETE FROM items");
                dml.exec(&mut client, "ROLLBACK");
            }
            _ => dml.random_dml(&mut client),
        }
        dml.refresh_and_check_all(&mut client);
        if i % 6 == 2 || i % 6 == 5 {
            // Still empty: a refresh with nothing to do keeps the one row.
            dml.refresh_and_check_all(&mut client);
        }
    }
    dml.finish(&mut client);
}

// ----- 7. DISTINCT ------------------------------------------------------------------

#[test]
fn select_distinct() {
    scenario(
        "select_distinct",
        vec![items(30), events()],
        &[],
        &[
            ("st_distinct_grp", "SELECT DISTINCT grp FROM items"),
            (
                "st_distinct_two",
                "SELECT DISTINCT grp, name FROM items WHERE val > 1",
            ),
            ("st_distinct_nopk", "SELECT DISTINCT a, b FROM events"),
            (
                "st_distinct_expr",
                "SELECT DISTINCT val % 4 AS m, name IS NULL AS no_name FROM items",
            ),
        ],
        DEFAULT_CASES,
    );
}

// ----- 8. UNION ALL -----------------------------------------------------------------

#[test]
fn union_all_of_filtered_selects() {
    scenario(
        "union_all_of_filtered_selects",
        vec![items(30), events()],
        &[],
        &[
            // Overlapping branches over one table: rows appear twice.
            (
                "st_union_same",
                "SELECT id, grp FROM items WHERE val > 3 UNION ALL SELECT id, grp FROM items WHERE grp < 2",
            ),
            (
                "st_union_two",
                "SELECT a, b FROM events WHERE c > 0 UNION ALL SELECT grp, name FROM items WHERE amt > 5",
            ),
            (
                "st_union_three",
                "SELECT a AS k FROM events UNION ALL SELECT grp FROM items
                 UNION ALL SELECT val FROM items WHERE val < 2",
            ),
        ],
        DEFAULT_CASES,
    );
}

// ----- 9. join under aggregate ------------------------------------------------------------

#[test]
fn join_under_aggregate() {
    scenario(
        "join_under_aggregate",
        vec![orders(), customers(), products()],
        &[],
        &[
            (
                "st_region_totals",
                "SELECT c.region, sum(o.amt) AS total, count(*) AS n
                   FROM orders o JOIN customers c ON o.cust_id = c.id GROUP BY c.region",
            ),
            (
                "st_region_cat",
                "SELECT c.region, p.cat, count(*) AS n, sum(o.qty) AS q, min(o.amt) AS mn, max(o.amt) AS mx
                   FROM orders o
                   JOIN customers c ON o.cust_id = c.id
                   JOIN products p ON p.id = o.prod_id
                  GROUP BY c.region, p.cat",
            ),
            (
                "st_cust_left_agg",
                "SELECT c.id AS cust_id, count(o.id) AS n_orders, sum(o.amt) AS total
                   FROM customers c LEFT JOIN orders o ON o.cust_id = c.id GROUP BY c.id",
            ),
            (
                "st_revenue",
                "SELECT count(*) AS n, sum(o.qty * p.price) AS revenue
                   FROM orders o JOIN products p ON p.id = o.prod_id",
            ),
        ],
        DEFAULT_CASES,
    );
}

// ----- 10. views as sources ---------------------------------------------------------------

#[test]
fn view_as_source() {
    scenario(
        "view_as_source",
        vec![items(30), orders(), customers()],
        &[
            "CREATE VIEW big_items AS SELECT id, grp, val * 2 AS v2, name FROM items WHERE val IS NOT NULL",
            "CREATE VIEW positive_big_items AS SELECT * FROM big_items WHERE grp > 0",
            "CREATE VIEW order_details AS
               SELECT o.id, o.qty, c.region FROM orders o JOIN customers c ON c.id = o.cust_id",
            "CREATE VIEW grp_counts AS SELECT grp, count(*) AS n FROM items GROUP BY grp",
        ],
        &[
            ("st_view_proj", "SELECT id, grp, v2 FROM big_items"),
            ("st_view_agg", "SELECT grp, sum(v2) AS s, count(*) AS n FROM big_items GROUP BY grp"),
            ("st_view_nested", "SELECT id, v2, name FROM positive_big_items WHERE v2 > 4"),
            ("st_view_join", "SELECT region, sum(qty) AS q, count(*) AS n FROM order_details GROUP BY region"),
            ("st_view_of_agg", "SELECT grp, n FROM grp_counts WHERE n > 2"),
        ],
        DEFAULT_CASES,
    );
}

// ----- 11. stream table on stream table ------------------------------------------------------

#[test]
fn stream_table_on_stream_table() {
    let test = "stream_table_on_stream_table";
    let (_cluster, mut client, mut dml) = start(test, vec![items(30), customers()], &[]);
    let base = [
        (
            "st_base_agg",
            "SELECT grp, count(*) AS n, sum(val) AS s FROM items GROUP BY grp",
        ),
        (
            "st_base_proj",
            "SELECT id, grp, val FROM items WHERE val > 2",
        ),
    ];
    let downstream = [
        (
            "st_down_filter",
            "SELECT grp, n, s FROM st_base_agg WHERE n > 1",
        ),
        (
            "st_down_scalar",
            "SELECT sum(n) AS total_n, max(s) AS max_s, count(*) AS groups FROM st_base_agg",
        ),
        (
            "st_down_join",
            "SELECT b.grp, count(*) AS n, sum(c.tier) AS tiers
               FROM st_base_proj b JOIN customers c ON c.tier = b.grp GROUP BY b.grp",
        ),
        // Three levels.
        (
            "st_down_level3",
            "SELECT grp FROM st_down_filter WHERE s > 10",
        ),
    ];
    for (name, query) in base.iter().chain(downstream.iter()) {
        dml.create_st(&mut client, name, query, DIFF);
    }
    for _ in 0..cases(DEFAULT_CASES) {
        dml.next_round(&mut client);
        dml.random_dml(&mut client);
        if dml.rng.pct(25) {
            // Only the upstream layer this time: downstream catches up with
            // two rounds of upstream changes next time.
            dml.comment("refresh only the base stream tables");
            for (name, _) in &base {
                dml.refresh(&mut client, name);
                dml.check(&mut client, name);
            }
        } else {
            dml.refresh_and_check_all(&mut client);
        }
    }
    dml.refresh_and_check_all(&mut client);
    dml.finish(&mut client);
}

// ----- 12. FULL and AUTO modes ----------------------------------------------------------------

#[test]
fn full_and_auto_modes() {
    let test = "full_and_auto_modes";
    // AUTO compares the change count with the sources' size: give the
    // planner statistics, as autovacuum would, so that AUTO takes both paths.
    let (_cluster, mut client, mut dml) =
        start(test, vec![items(30), orders(), customers()], &["ANALYZE"]);
    let queries = [
        ("proj", "SELECT id, val * 2 AS v2, name FROM items WHERE grp <> 2"),
        ("join", "SELECT o.id AS order_id, c.region FROM orders o JOIN customers c ON c.id = o.cust_id"),
        (
            "left",
            "SELECT o.id AS order_id, c.name FROM orders o LEFT JOIN customers c ON c.id = o.cust_id",
        ),
        (
            "agg",
            "SELECT grp, count(*) AS n, sum(val) AS s, min(amt) AS mn, avg(val) AS a FROM items GROUP BY grp",
        ),
        ("distinct", "SELECT DISTINCT grp, name FROM items"),
        ("union", "SELECT grp AS k FROM items UNION ALL SELECT cust_id FROM orders WHERE qty > 2"),
        ("scalar", "SELECT count(*) AS n, sum(amt) AS s FROM orders"),
    ];
    for mode in ["FULL", "AUTO"] {
        for (name, query) in &queries {
            dml.create_st(
                &mut client,
                &format!("st_{}_{name}", mode.to_lowercase()),
                query,
                mode,
            );
        }
    }
    dml.run_rounds(&mut client, cases(35));
    dml.finish(&mut client);
}

// ----- 13. refresh inside the writing transaction, rolled back refreshes, concurrent writers -------

#[test]
fn refresh_inside_transactions() {
    let test = "refresh_inside_transactions";
    let (cluster, mut client, mut dml) = start(test, vec![items(30), orders(), customers()], &[]);
    // A refresh that waits on another session would hang this
    // single-threaded test: make it an error instead.
    dml.exec(&mut client, "SET statement_timeout = '60s'");
    let mut other = cluster.connect();
    other
        .batch_execute("SET statement_timeout = '60s'")
        .unwrap();
    let sts = [
        ("st_tx_proj", "SELECT id, grp, val FROM items WHERE val > 1"),
        ("st_tx_agg", "SELECT grp, count(*) AS n, sum(amt) AS s, max(val) AS mx FROM items GROUP BY grp"),
        (
            "st_tx_join",
            "SELECT o.id AS order_id, o.qty, c.region FROM orders o JOIN customers c ON o.cust_id = c.id",
        ),
        (
            "st_tx_join_agg",
            "SELECT c.region, count(*) AS n, sum(o.qty) AS q FROM orders o JOIN customers c ON o.cust_id = c.id
              GROUP BY c.region",
        ),
    ];
    for (name, query) in sts {
        dml.create_st(&mut client, name, query, DIFF);
    }
    let tables = dml.tables.clone();
    let orders_t = tables.iter().find(|t| t.name == "orders").unwrap().clone();
    let not_orders: Vec<TableSpec> = tables
        .iter()
        .filter(|t| t.name != "orders")
        .cloned()
        .collect();
    for i in 0..cases(DEFAULT_CASES) {
        dml.next_round(&mut client);
        match i % 6 {
            0 => {
                dml.comment("DML and refresh in one transaction, committed");
                dml.exec(&mut client, "BEGIN");
                for _ in 0..dml.rng.range(1, 5) {
                    let s = dml.random_statement(&mut client);
                    dml.exec(&mut client, &s);
                }
                dml.refresh_and_check_all(&mut client);
                dml.exec(&mut client, "COMMIT");
                dml.check_all(&mut client);
            }
            1 => {
                dml.comment("DML and refresh in one transaction, rolled back");
                dml.exec(&mut client, "BEGIN");
                for _ in 0..dml.rng.range(1, 5) {
                    let s = dml.random_statement(&mut client);
                    dml.exec(&mut client, &s);
                }
                dml.refresh_and_check_all(&mut client);
                dml.exec(&mut client, "ROLLBACK");
                // Sources and stream tables are both back where they were.
                dml.check_all(&mut client);
                dml.random_dml(&mut client);
                dml.refresh_and_check_all(&mut client);
            }
            2 => {
                dml.comment("refresh first, then DML, in one transaction");
                dml.exec(&mut client, "BEGIN");
                dml.refresh_all(&mut client);
                for _ in 0..dml.rng.range(1, 4) {
                    let s = dml.random_statement(&mut client);
                    dml.exec(&mut client, &s);
                }
                dml.exec(&mut client, "COMMIT");
                dml.refresh_and_check_all(&mut client);
            }
            3 | 4 => {
                // Another session writes orders and stays open across a
                // refresh; this session writes the other tables.
                let commit = i % 6 == 3;
                dml.comment("[other session] BEGIN; DML on orders; left open");
                other.batch_execute("BEGIN").unwrap();
                for _ in 0..dml.rng.range(1, 3) {
                    let s = dml.statement_on(&mut other, &orders_t);
                    dml.comment(&format!("[other session] {s};"));
                    if let Err(e) = other.batch_execute(&s) {
                        dml.fail(&format!(
                            "statement in the other session failed: {s}\nerror: {}",
                            pgtrickle_e2e::oracle::error_text(&e)
                        ));
                    }
                }
                for _ in 0..dml.rng.range(1, 3) {
                    let t = dml.rng.pick(&not_orders).clone();
                    let s = dml.statement_on(&mut client, &t);
                    dml.exec(&mut client, &s);
                }
                dml.refresh_and_check_all(&mut client);
                let end = if commit { "COMMIT" } else { "ROLLBACK" };
                dml.comment(&format!("[other session] {end};"));
                other.batch_execute(end).unwrap();
                dml.refresh_and_check_all(&mut client);
            }
            _ => {
                dml.random_dml(&mut client);
                dml.refresh_and_check_all(&mut client);
            }
        }
    }
    dml.finish(&mut client);
}

// ----- the oracle itself can fail ------------------------------------------------------------

/// The oracle catches extra rows, missing rows, a lost duplicate, a changed
/// value and different column names; and ignores `__pgt_*` columns.
#[test]
fn oracle_detects_differences() {
    use pgtrickle_e2e::oracle::check_matches_query;
    let (_cluster, mut client) = cluster_with_extension();
    client
        .batch_execute(
            "CREATE TABLE src (a int, b text);
             INSERT INTO src VALUES (1, 'x'), (1, 'x'), (2, NULL), (NULL, 'y');
             CREATE TABLE fake (__pgt_row_id bigint, a int, __pgt_count bigint, b text);
             INSERT INTO fake SELECT 0, a, 1, b FROM src;",
        )
        .unwrap();
    let q = "SELECT a, b FROM src";
    check_matches_query(&mut client, "fake", q).expect("equal multisets");
    let cases: &[(&str, &str, &str)] = &[
        (
            "INSERT INTO fake VALUES (0, 3, 1, 'z')",
            "DELETE FROM fake WHERE a = 3",
            "(3,z)",
        ),
        (
            "INSERT INTO fake VALUES (0, 1, 1, 'x')",
            "DELETE FROM fake WHERE ctid = (SELECT max(ctid) FROM fake)",
            "(1,x)",
        ),
        (
            "DELETE FROM fake WHERE ctid = (SELECT min(ctid) FROM fake WHERE a = 1)",
            "INSERT INTO fake VALUES (0, 1, 1, 'x')",
            "(1,x)",
        ),
        (
            "UPDATE fake SET b = 'w' WHERE a = 2",
            "UPDATE fake SET b = NULL WHERE a = 2",
            "(2,w)",
        ),
        (
            "UPDATE fake SET a = 7 WHERE a IS NULL",
            "UPDATE fake SET a = NULL WHERE a = 7",
            "(7,y)",
        ),
    ];
    for (break_it, repair, shows) in cases {
        client.batch_execute(break_it).unwrap();
        let err = check_matches_query(&mut client, "fake", q).expect_err(break_it);
        assert!(err.contains(shows), "{break_it}: {err}");
        client.batch_execute(repair).unwrap();
        check_matches_query(&mut client, "fake", q).expect(repair);
    }
    client
        .batch_execute("ALTER TABLE fake RENAME COLUMN b TO c")
        .unwrap();
    let err = check_matches_query(&mut client, "fake", q).expect_err("renamed column");
    assert!(err.contains("\"c\""), "{err}");
}
