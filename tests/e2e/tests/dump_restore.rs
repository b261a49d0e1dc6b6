//! pg_dump / pg_restore of a database with stream tables yields working
//! stream tables, in another database of the same cluster and in another
//! cluster (where OIDs and transaction ids start over).

use pgtrickle_e2e::{Client, Cluster};
use std::process::Command;

const SETUP: &str = "
    CREATE EXTENSION pg_trickle;
    CREATE TABLE customers (id int PRIMARY KEY, region text);
    CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount int);
    INSERT INTO customers SELECT i, 'r' || (i % 4) FROM generate_series(1, 30) i;
    INSERT INTO orders SELECT i, 1 + i % 35, i FROM generate_series(1, 400) i;
    SELECT pgtrickle.create_stream_table('by_region',
        'SELECT c.region, count(*) AS n, sum(o.amount) AS total FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region', NULL);
    SELECT pgtrickle.create_stream_table('with_customer',
        'SELECT o.id, o.amount, c.region FROM orders o LEFT JOIN customers c ON c.id = o.customer_id', NULL);
    SELECT pgtrickle.create_stream_table('rich_regions', 'SELECT region, total FROM by_region WHERE total > 1000', NULL);
    SELECT pgtrickle.create_stream_table('big', 'SELECT id, amount FROM orders WHERE amount > 300', '1m', 'AUTO');";

/// (stream table, columns, query) checked after every step.
const CHECKS: &[(&str, &str, &str)] = &[
    ("by_region", "region, n, total", "SELECT c.region, count(*), sum(o.amount) FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region"),
    ("with_customer", "id, amount, region", "SELECT o.id, o.amount, c.region FROM orders o LEFT JOIN customers c ON c.id = o.customer_id"),
    ("rich_regions", "region, total", "SELECT region, total FROM (SELECT c.region, sum(o.amount) AS total FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region) x WHERE total > 1000"),
    ("big", "id, amount", "SELECT id, amount FROM orders WHERE amount > 300"),
];

fn change(client: &mut Client, step: i32) {
    client
        .batch_execute(&format!(
            "INSERT INTO orders SELECT 1000 * {step} + i, 1 + i % 35, i * 2 FROM generate_series(1, 20) i;
             UPDATE orders SET amount = amount + 5 WHERE id % 9 = {step};
             DELETE FROM orders WHERE id % 17 = {step};
             UPDATE customers SET region = 'r9' WHERE id = {step};"
        ))
        .unwrap();
}

fn refresh_and_check(client: &mut Client, when: &str) {
    for (name, cols, query) in CHECKS {
        client
            .execute("SELECT pgtrickle.refresh_stream_table($1)", &[name])
            .unwrap();
        let diff: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM ((SELECT {cols} FROM {name} EXCEPT ALL {query}) UNION ALL ({query} EXCEPT ALL SELECT {cols} FROM {name})) d"
                ),
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(diff, 0, "{name} differs from its query {when}");
    }
}

fn run(program: std::path::PathBuf, args: &[&str]) {
    let out = Command::new(&program)
        .args(args)
        .output()
        .expect("run pg_dump/pg_restore");
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dump(cluster: &Cluster, db: &str, file: &str) {
    let port = cluster.port.to_string();
    run(
        cluster.install.bin("pg_dump"),
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-Fc",
            "-f",
            file,
            db,
        ],
    );
}

fn restore(cluster: &Cluster, db: &str, file: &str) {
    let port = cluster.port.to_string();
    let mut admin = cluster.connect();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    run(
        cluster.install.bin("pg_restore"),
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            db,
            file,
        ],
    );
}

fn after_restore(client: &mut Client) {
    // Changes made before the dump and not yet applied, then new ones.
    refresh_and_check(client, "after the restore");
    let triggers: i64 = client
        .query_one("SELECT count(*) FROM pgtrickle.check_cdc_health() WHERE triggers_present AND buffer_present", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        triggers, 3,
        "capture on orders, customers and the by_region storage table"
    );
    change(client, 3);
    refresh_and_check(client, "after changes following the restore");
    let last: Vec<(String, String, String)> = client
        .query(
            "SELECT DISTINCT ON (h.pgt_id) s.pgt_name, h.action, coalesce(h.reason, '') FROM pgtrickle.pgt_refresh_history h
               JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) ORDER BY h.pgt_id, h.refresh_id DESC",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    for (name, action, reason) in &last {
        // AUTO may choose FULL for a large share of changes, and says so.
        let ok = action == "DIFFERENTIAL" || (name == "big" && reason.contains("change ratio"));
        assert!(ok, "{name}: {action} ({reason})");
    }
}

#[test]
fn pg_dump_and_pg_restore_carry_working_stream_tables() {
    let cluster = Cluster::start();
    let mut admin = cluster.connect();
    admin.batch_execute("CREATE DATABASE app").unwrap();
    let mut app = cluster.connect_to("app");
    app.batch_execute(SETUP).unwrap();
    change(&mut app, 1);
    refresh_and_check(&mut app, "before the dump");
    change(&mut app, 2); // captured, not applied when dumped
    let file = format!("{}/app.dump", std::env::temp_dir().display());
    dump(&cluster, "app", &file);

    // Another database of the same cluster: new OIDs, same transaction ids.
    restore(&cluster, "copy", &file);
    let mut copy = cluster.connect_to("copy");
    after_restore(&mut copy);

    // Another cluster: new OIDs and another transaction-id space.
    let other = Cluster::start();
    restore(&other, "app", &file);
    let mut moved = other.connect_to("app");
    after_restore(&mut moved);
    // The original is untouched by both.
    refresh_and_check(&mut app, "in the original database");
    let _ = std::fs::remove_file(&file);
}
