//! Blue-green redeployment: a green catches up beside its blue, promotion
//! swaps them under readers without an error or an empty table, downstream
//! stream tables follow, rollback and cancel undo it, a pipeline moves as a
//! group, and refusals say why.

use pgtrickle_e2e::oracle::Rng;
use pgtrickle_e2e::{cluster_with_extension, db_error, Client};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

/// The stream table `name` equals a fresh evaluation of the defining query
/// the catalog now holds for it.
fn assert_exact(c: &mut Client, name: &str) {
    let query: String = c
        .query_one(
            "SELECT defining_query FROM pgtrickle.pgt_stream_tables WHERE pgt_name = $1",
            &[&name],
        )
        .unwrap()
        .get(0);
    let cols: String = c
        .query_one(
            "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute \
              WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped AND attname NOT LIKE '\\_\\_pgt\\_%'",
            &[&name],
        )
        .unwrap()
        .get(0);
    let diff = count(
        c,
        &format!(
            "SELECT count(*) FROM ((SELECT {cols} FROM {name} EXCEPT ALL SELECT * FROM ({query}) q) \
             UNION ALL (SELECT * FROM ({query}) q EXCEPT ALL SELECT {cols} FROM {name})) d"
        ),
    );
    assert_eq!(diff, 0, "{name} differs from its query: {query}");
}

fn refresh(c: &mut Client, names: &[&str]) {
    for n in names {
        c.execute("SELECT pgtrickle.refresh_stream_table($1)", &[n])
            .unwrap_or_else(|e| panic!("refresh {n}: {:?}", e.as_db_error()));
    }
}

/// Random inserts, updates (some moving rows between regions) and deletes
/// on `orders`, some in rolled-back transactions.
fn random_dml(c: &mut Client, rng: &mut Rng, statements: usize) {
    for _ in 0..statements {
        let id = rng.range(1, 400);
        let sql = match rng.below(4) {
            0 => format!(
                "INSERT INTO orders VALUES ({id}, {}, {}) ON CONFLICT (id) DO NOTHING",
                rng.range(1, 5),
                rng.range(-20, 100)
            ),
            1 => format!(
                "UPDATE orders SET amount = amount + {} WHERE id = {id}",
                rng.range(-30, 30)
            ),
            2 => format!(
                "UPDATE orders SET region = {} WHERE id = {id}",
                rng.range(1, 5)
            ),
            _ => format!("DELETE FROM orders WHERE id = {id}"),
        };
        if rng.pct(10) {
            c.batch_execute(&format!("BEGIN; {sql}; ROLLBACK")).unwrap();
        } else {
            c.batch_execute(&sql).unwrap();
        }
    }
}

const SHOP: &str = "
    CREATE TABLE orders (id int PRIMARY KEY, region int, amount int);
    INSERT INTO orders SELECT g, g % 5, (g * 7) % 100 - 10 FROM generate_series(1, 300) g;
    SELECT pgtrickle.create_stream_table('sales',
        'SELECT region, sum(amount) AS total FROM orders GROUP BY region', NULL);
    SELECT pgtrickle.create_stream_table('big_regions',
        'SELECT region, total FROM sales WHERE total > 500', NULL);
    CREATE INDEX sales_total_idx ON sales (total);
    CREATE ROLE app LOGIN;
    GRANT SELECT ON sales TO app;";

const NEW_SALES: &str =
    "SELECT region, sum(amount) AS total, count(*) AS n FROM orders WHERE amount > 0 GROUP BY region";

#[test]
fn promotion_under_readers_swaps_the_query_and_rollback_and_cancel_undo_it() {
    let (cluster, mut c) = cluster_with_extension();
    c.batch_execute(SHOP).unwrap();
    let mut rng = Rng::new(pgtrickle_e2e::oracle::base_seed() ^ 0xb1e);

    let green: String = c
        .query_one(
            "SELECT pgtrickle.create_green('sales', query => $1)",
            &[&NEW_SALES],
        )
        .unwrap()
        .get(0);
    assert_eq!(green, "public.sales__pgt_green");
    assert_exact(&mut c, "sales__pgt_green");
    // The user's index came along (pg_trickle's own exist anyway).
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'sales__pgt_green' AND indexdef LIKE '%(total)%'"
        ),
        1
    );
    // Both consume the shared buffer of orders.
    assert_eq!(
        count(
            &mut c,
            "SELECT cardinality(tracked_by_pgt_ids)::bigint FROM pgtrickle.pgt_change_tracking \
              WHERE source_relid = 'orders'::regclass"
        ),
        2
    );

    random_dml(&mut c, &mut rng, 60);
    refresh(&mut c, &["sales", "big_regions"]);
    let status = c
        .query_one(
            "SELECT converged, pending_changes, reason FROM pgtrickle.green_status('sales')",
            &[],
        )
        .unwrap();
    assert!(!status.get::<_, bool>(0), "the green has not refreshed yet");
    assert!(status.get::<_, i64>(1) > 0);
    refresh(&mut c, &["sales__pgt_green"]);
    let status = c
        .query_one(
            "SELECT converged, pending_changes, green_rows FROM pgtrickle.green_status('sales')",
            &[],
        )
        .unwrap();
    assert!(status.get::<_, bool>(0));
    assert_eq!(status.get::<_, i64>(1), 0);

    // A reader (the role the table was granted to) loops during promotion.
    let stop = Arc::new(AtomicBool::new(false));
    let mut reader = cluster.connect_as("postgres", "app");
    let reader_stop = stop.clone();
    let reads = std::thread::spawn(move || {
        let (mut n, mut empty, mut errors, mut slowest) = (0u64, 0u64, Vec::new(), Duration::ZERO);
        while !reader_stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            match reader.query_one("SELECT count(*) FROM sales", &[]) {
                Ok(row) if row.get::<_, i64>(0) == 0 => empty += 1,
                Ok(_) => {}
                Err(e) => errors.push(e.to_string()),
            }
            slowest = slowest.max(start.elapsed());
            n += 1;
        }
        (n, empty, errors, slowest)
    });
    std::thread::sleep(Duration::from_millis(300));
    c.batch_execute("SELECT pgtrickle.promote_green('sales')")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (n, empty, errors, slowest) = reads.join().unwrap();
    assert!(errors.is_empty(), "reader errors: {errors:?}");
    assert_eq!(empty, 0, "the reader saw an empty table");
    assert!(n > 10, "the reader ran only {n} times");
    eprintln!("reader: {n} reads, slowest {slowest:?}");

    // The public name holds the new query; the old one is retired.
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'sales'::regclass AND attname = 'n'"
        ),
        1
    );
    assert_exact(&mut c, "sales");
    assert_exact(&mut c, "sales__pgt_retired");
    // The retired table is kept as it was: not refreshed, consuming nothing.
    let e = c
        .batch_execute("SELECT pgtrickle.refresh_stream_table('sales__pgt_retired')")
        .expect_err("a retired table is not refreshed");
    let (_, message, _, hint) = db_error(&e);
    assert!(message.contains("is retired"), "{message}");
    assert!(hint.unwrap_or_default().contains("rollback_green"));
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pgtrickle.pgt_change_tracking t, pgtrickle.pgt_stream_tables s \
              WHERE s.pgt_name = 'sales__pgt_retired' AND s.pgt_id = ANY (t.tracked_by_pgt_ids)"
        ),
        0
    );
    let retired_by: Option<i64> = c
        .query_one(
            "SELECT retired_by FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'sales__pgt_retired'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(retired_by.is_some());
    // Downstream follows the name and is exact after its (full) refresh.
    refresh(&mut c, &["big_regions"]);
    assert_exact(&mut c, "big_regions");
    let depends_on_new: bool = c
        .query_one(
            "SELECT source_relid = 'sales'::regclass FROM pgtrickle.pgt_dependencies d \
               JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) WHERE s.pgt_name = 'big_regions'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(depends_on_new);
    // And everything stays exact under more random writes.
    for _ in 0..3 {
        random_dml(&mut c, &mut rng, 40);
        refresh(&mut c, &["sales", "big_regions"]);
        for st in ["sales", "big_regions"] {
            assert_exact(&mut c, st);
        }
    }

    // Rollback: the old query is back under the name, the new one is a
    // green again.
    random_dml(&mut c, &mut rng, 30);
    c.batch_execute("SELECT pgtrickle.rollback_green('sales')")
        .unwrap();
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'sales'::regclass AND attname = 'n'"
        ),
        0
    );
    assert_exact(&mut c, "sales");
    refresh(&mut c, &["big_regions", "sales__pgt_green"]);
    assert_exact(&mut c, "big_regions");
    assert_exact(&mut c, "sales__pgt_green");
    let mut app = cluster.connect_as("postgres", "app");
    app.query_one("SELECT count(*) FROM sales", &[]).unwrap();

    // Cancel leaves no trace of the green.
    let green_id: i64 = c
        .query_one(
            "SELECT pgt_id FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'sales__pgt_green'",
            &[],
        )
        .unwrap()
        .get(0);
    c.batch_execute("SELECT pgtrickle.cancel_green('sales')")
        .unwrap();
    assert_eq!(
        count(
            &mut c,
            &format!(
                "SELECT (SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE pgt_id = {green_id}) \
                      + (SELECT count(*) FROM pgtrickle.pgt_dependencies WHERE pgt_id = {green_id}) \
                      + (SELECT count(*) FROM pgtrickle.pgt_change_tracking WHERE {green_id} = ANY (tracked_by_pgt_ids)) \
                      + (SELECT count(*) FROM pg_class WHERE relname = 'sales__pgt_green')"
            )
        ),
        0
    );
    random_dml(&mut c, &mut rng, 30);
    refresh(&mut c, &["sales", "big_regions"]);
    assert_exact(&mut c, "sales");
    assert_exact(&mut c, "big_regions");
}

#[test]
fn refusals_name_the_problem_and_the_way_out() {
    let (_cluster, mut c) = cluster_with_extension();
    c.batch_execute(SHOP).unwrap();
    let err = |c: &mut Client, sql: &str| {
        let e = c.batch_execute(sql).expect_err(sql);
        let (code, message, _, hint) = db_error(&e);
        (code, message, hint.unwrap_or_default())
    };
    let stream_tables =
        |c: &mut Client| count(c, "SELECT count(*) FROM pgtrickle.pgt_stream_tables");

    // No green yet.
    let (_, message, hint) = err(&mut c, "SELECT pgtrickle.promote_green('sales')");
    assert!(message.contains("has no green"), "{message}");
    assert!(hint.contains("create_green"), "{hint}");

    // A green that reads its own blue is refused, leaving nothing behind.
    let before = stream_tables(&mut c);
    let (_, message, _) = err(
        &mut c,
        "SELECT pgtrickle.create_green('sales', query => 'SELECT region, total FROM sales')",
    );
    assert!(message.contains("cannot read"), "{message}");
    assert_eq!(stream_tables(&mut c), before);
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pg_class WHERE relname = 'sales__pgt_green'"
        ),
        0
    );

    // ... or a stream table that reads the blue: after promotion it would
    // read itself.
    let (_, message, _) = err(
        &mut c,
        "SELECT pgtrickle.create_green('sales', query => 'SELECT region, total FROM big_regions')",
    );
    assert!(
        message.contains("cannot read public.big_regions"),
        "{message}"
    );
    assert_eq!(stream_tables(&mut c), before);

    // A green without the column downstream reads.
    c.batch_execute(
        "SELECT pgtrickle.create_green('sales', query => 'SELECT region, count(*) AS n FROM orders GROUP BY region')",
    )
    .unwrap();
    let (_, message, _) = err(&mut c, "SELECT pgtrickle.create_green('sales')");
    assert!(message.contains("already has a green"), "{message}");
    let (_, message, _) = err(&mut c, "SELECT pgtrickle.create_green('sales__pgt_green')");
    assert!(message.contains("is itself a green"), "{message}");
    let (_, message, hint) = err(&mut c, "SELECT pgtrickle.drop_stream_table('sales')");
    assert!(message.contains("has a green"), "{message}");
    assert!(hint.contains("cancel_green"), "{hint}");
    let (code, message, hint) = err(&mut c, "SELECT pgtrickle.promote_green('sales')");
    assert_eq!(code, "55000");
    assert!(
        message.contains("big_regions") && message.contains("total") && message.contains("missing"),
        "{message}"
    );
    assert!(hint.contains("pipeline group"), "{hint}");
    // force does not override an incompatible reader either.
    err(
        &mut c,
        "SELECT pgtrickle.promote_green('sales', force => true)",
    );
    c.batch_execute("SELECT pgtrickle.cancel_green('sales__pgt_green')")
        .unwrap();

    // Not converged: the blue has changes the green has not consumed.
    c.batch_execute(
        "SELECT pgtrickle.create_green('sales', refresh_mode => 'FULL');
         UPDATE orders SET amount = amount + 1 WHERE id < 50;
         SELECT pgtrickle.refresh_stream_table('sales');",
    )
    .unwrap();
    let (code, message, hint) = err(&mut c, "SELECT pgtrickle.promote_green('sales')");
    assert_eq!(code, "55000");
    assert!(message.contains("has not converged"), "{message}");
    assert!(hint.contains("force => true"), "{hint}");
    let skipped = c
        .query(
            "SELECT action, detail FROM pgtrickle.promote_all_green()",
            &[],
        )
        .unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].get::<_, String>(0), "skipped");
    // A lag threshold the fresh green does not meet.
    c.batch_execute(
        "SELECT pgtrickle.refresh_stream_table('sales__pgt_green'); SELECT pg_sleep(0.2)",
    )
    .unwrap();
    let (_, message, _) = err(
        &mut c,
        "SELECT pgtrickle.promote_green('sales', max_lag => interval '10 milliseconds')",
    );
    assert!(message.contains("max_lag"), "{message}");
    // Row-level security of the blue must be on the green too.
    c.batch_execute(
        "ALTER TABLE sales ENABLE ROW LEVEL SECURITY;
         CREATE POLICY north_only ON sales FOR SELECT TO app USING (region = 1);",
    )
    .unwrap();
    let (_, message, hint) = err(
        &mut c,
        "SELECT pgtrickle.promote_green('sales', force => true)",
    );
    assert!(
        message.contains("row level security") && message.contains("north_only"),
        "{message}"
    );
    assert!(hint.contains("CREATE POLICY"), "{hint}");
    c.batch_execute(
        "DROP POLICY north_only ON sales; ALTER TABLE sales DISABLE ROW LEVEL SECURITY",
    )
    .unwrap();
    // Same query, same point: the contents can be compared.
    let matches: Option<bool> = c
        .query_one(
            "SELECT content_matches FROM pgtrickle.green_status('sales', verify => true)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(matches, Some(true));
    c.batch_execute("SELECT pgtrickle.promote_green('sales')")
        .unwrap();
    // The name of a retired table is taken until it is dropped.
    let (_, message, hint) = err(&mut c, "SELECT pgtrickle.create_green('sales')");
    assert!(message.contains("sales__pgt_retired"), "{message}");
    assert!(hint.contains("drop_retired"), "{hint}");
    let (_, message, _) = err(&mut c, "SELECT pgtrickle.drop_stream_table('sales')");
    assert!(message.contains("retired predecessor"), "{message}");
    let dropped: String = c
        .query_one("SELECT pgtrickle.drop_retired('sales')", &[])
        .unwrap()
        .get(0);
    assert_eq!(dropped, "public.sales__pgt_retired");
    let (_, message, _) = err(&mut c, "SELECT pgtrickle.rollback_green('sales')");
    assert!(message.contains("no retired predecessor"), "{message}");
    assert_exact(&mut c, "sales");
}

#[test]
fn a_pipeline_of_three_is_redeployed_as_a_group() {
    let (_cluster, mut c) = cluster_with_extension();
    c.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, region int, amount int);
         INSERT INTO orders SELECT g, g % 5, (g * 7) % 100 - 10 FROM generate_series(1, 300) g;
         SELECT pgtrickle.create_stream_table('a', 'SELECT region, sum(amount) AS s FROM orders GROUP BY region', NULL);
         SELECT pgtrickle.create_stream_table('b', 'SELECT region, s FROM a WHERE s > 0', NULL);
         SELECT pgtrickle.create_stream_table('c', 'SELECT count(*) AS regions, sum(s) AS total FROM b', NULL);",
    )
    .unwrap();
    let mut rng = Rng::new(pgtrickle_e2e::oracle::base_seed() ^ 0xabc);
    // The new pipeline: each green reads the green upstream of it.
    c.batch_execute(
        "SELECT pgtrickle.create_green('a', query => 'SELECT region, sum(amount * 2) AS s, max(amount) AS top FROM orders GROUP BY region', pipeline_group => 'shop');
         SELECT pgtrickle.create_green('b', query => 'SELECT region, s, top FROM a__pgt_green WHERE s > 100', pipeline_group => 'shop');
         SELECT pgtrickle.create_green('c', query => 'SELECT count(*) AS regions, sum(s) AS total, max(top) AS top FROM b__pgt_green', pipeline_group => 'shop');",
    )
    .unwrap();
    let chain = [
        "a",
        "b",
        "c",
        "a__pgt_green",
        "b__pgt_green",
        "c__pgt_green",
    ];
    random_dml(&mut c, &mut rng, 60);
    refresh(&mut c, &chain);
    for st in chain {
        assert_exact(&mut c, st);
    }
    let rows = c
        .query(
            "SELECT stream_table, action FROM pgtrickle.promote_all_green('shop')",
            &[],
        )
        .unwrap();
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![
            ("public.a".to_string(), "promoted".to_string()),
            ("public.b".to_string(), "promoted".to_string()),
            ("public.c".to_string(), "promoted".to_string()),
        ]
    );
    // The stored queries name the tables by their new names.
    let b_query: String = c
        .query_one(
            "SELECT defining_query FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'b'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        b_query.contains("public.a") && !b_query.contains("__pgt_green"),
        "{b_query}"
    );
    let retired_b: String = c
        .query_one(
            "SELECT defining_query FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'b__pgt_retired'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(retired_b.contains("a__pgt_retired"), "{retired_b}");
    let top: Option<i32> = c.query_one("SELECT top FROM c", &[]).unwrap().get(0);
    assert!(top.is_some());
    let all = [
        "a",
        "b",
        "c",
        "a__pgt_retired",
        "b__pgt_retired",
        "c__pgt_retired",
    ];
    for st in all {
        assert_exact(&mut c, st);
    }
    // The public pipeline stays exact; the retired one is kept as it was.
    for _ in 0..3 {
        random_dml(&mut c, &mut rng, 40);
        refresh(&mut c, &all[..3]);
        for st in &all[..3] {
            assert_exact(&mut c, st);
        }
    }
    // Retired tables go downstream first.
    let (_, message, _, _) = {
        let e = c
            .batch_execute("SELECT pgtrickle.drop_retired('a')")
            .expect_err("a's retired table is still read by b's");
        db_error(&e)
    };
    assert!(message.contains("b__pgt_retired"), "{message}");
    c.batch_execute(
        "SELECT pgtrickle.drop_retired('c'); SELECT pgtrickle.drop_retired('b'); SELECT pgtrickle.drop_retired('a');",
    )
    .unwrap();
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE pgt_name LIKE '%pgt_retired'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT cardinality(tracked_by_pgt_ids)::bigint FROM pgtrickle.pgt_change_tracking \
              WHERE source_relid = 'orders'::regclass"
        ),
        1
    );
    random_dml(&mut c, &mut rng, 40);
    refresh(&mut c, &["a", "b", "c"]);
    for st in ["a", "b", "c"] {
        assert_exact(&mut c, st);
    }
}
