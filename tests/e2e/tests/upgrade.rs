//! Upgrades: the chain from the previous release reaches exactly the objects
//! of a fresh install, stream tables made before the upgrade keep working,
//! and the scheduler waits while library and SQL versions differ.
//!
//! Needs the archived install script of the previous release in the server's
//! extension directory (`scripts/test.sh` copies `sql/archive/*.sql` there),
//! and for `a_real_previous_library_hands_over` the previous release's
//! library in `PGT_PREVIOUS_LIB_DIR` (built by `scripts/test.sh` from the tag).

use pgtrickle_e2e::inventory::{extension_inventory, InventoryDiff};
use pgtrickle_e2e::{last_refresh, Client, Cluster};
use std::time::{Duration, Instant};

const PREVIOUS: &str = "0.1.0";

fn create_previous(client: &mut Client) {
    client
        .batch_execute(&format!("CREATE EXTENSION pg_trickle VERSION '{PREVIOUS}'"))
        .unwrap_or_else(|e| {
            panic!("installing {PREVIOUS} from the archive failed ({e}); run scripts/test.sh, which copies sql/archive/ into the extension directory")
        });
}

fn new_database(cluster: &Cluster, admin: &mut Client, name: &str) -> Client {
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    cluster.connect_to(name)
}

#[test]
fn the_upgrade_chain_reaches_the_objects_of_a_fresh_install() {
    let cluster = Cluster::start();
    let mut admin = cluster.connect();
    let mut fresh = new_database(&cluster, &mut admin, "fresh");
    fresh.batch_execute("CREATE EXTENSION pg_trickle").unwrap();
    let mut upgraded = new_database(&cluster, &mut admin, "upgraded");
    create_previous(&mut upgraded);
    upgraded
        .batch_execute("ALTER EXTENSION pg_trickle UPDATE")
        .unwrap();
    let diff = InventoryDiff::between(
        &extension_inventory(&mut fresh),
        &extension_inventory(&mut upgraded),
    );
    assert!(
        diff.is_empty(),
        "the upgrade chain does not reach a fresh install:\n{}",
        diff.report()
    );
    let versions: Vec<String> = upgraded
        .query(
            "SELECT version FROM pgtrickle.pgt_schema_version ORDER BY applied_at, version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions.first().map(String::as_str), Some(PREVIOUS));
    let current: String = upgraded
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_trickle'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(versions.last(), Some(&current));
    // Running the upgrade script's statements a second time changes nothing.
    let before = extension_inventory(&mut upgraded);
    let script = std::fs::read_to_string(format!(
        "{}/../../sql/pg_trickle--{PREVIOUS}--{current}.sql",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let lib = upgraded
        .query_one(
            "SELECT probin FROM pg_proc WHERE oid = 'pgtrickle.version()'::regprocedure",
            &[],
        )
        .unwrap()
        .get::<_, String>(0);
    upgraded
        .batch_execute(&script.replace("MODULE_PATHNAME", &lib))
        .expect("the upgrade script is idempotent");
    assert_eq!(extension_inventory(&mut upgraded), before);
}

#[test]
fn the_check_names_a_missing_function_and_a_missing_column() {
    // A developer adds a function and a column to the fresh install but
    // forgets the upgrade script: the check must name both.
    let cluster = Cluster::start();
    let mut admin = cluster.connect();
    let mut fresh = new_database(&cluster, &mut admin, "fresh");
    fresh
        .batch_execute(
            "CREATE EXTENSION pg_trickle;
             CREATE FUNCTION pgtrickle.forgotten(n int) RETURNS int LANGUAGE sql AS 'SELECT n';
             ALTER EXTENSION pg_trickle ADD FUNCTION pgtrickle.forgotten(int);
             ALTER TABLE pgtrickle.pgt_refresh_history ADD COLUMN forgotten text DEFAULT 'x';",
        )
        .unwrap();
    let mut upgraded = new_database(&cluster, &mut admin, "upgraded");
    create_previous(&mut upgraded);
    upgraded
        .batch_execute("ALTER EXTENSION pg_trickle UPDATE")
        .unwrap();
    let diff = InventoryDiff::between(
        &extension_inventory(&mut fresh),
        &extension_inventory(&mut upgraded),
    );
    let report = diff.report();
    assert!(
        report.contains("missing after upgrade: function pgtrickle.forgotten(integer) (n integer) returns integer"),
        "{report}"
    );
    assert!(
        report.contains("missing after upgrade: column pgtrickle.pgt_refresh_history.forgotten text default 'x'::text"),
        "{report}"
    );
    assert_eq!(diff.missing.len(), 2, "{report}");
    assert!(diff.unexpected.is_empty(), "{report}");
    // And the other way round: an upgrade that stops at the previous release.
    let mut stale = new_database(&cluster, &mut admin, "stale");
    create_previous(&mut stale);
    let mut clean = new_database(&cluster, &mut admin, "clean");
    clean.batch_execute("CREATE EXTENSION pg_trickle").unwrap();
    let diff = InventoryDiff::between(
        &extension_inventory(&mut clean),
        &extension_inventory(&mut stale),
    );
    assert!(
        diff.report()
            .contains("missing after upgrade: function pgtrickle.migrate()"),
        "{}",
        diff.report()
    );
}

fn exact(client: &mut Client, st: &str, cols: &str, query: &str) -> bool {
    let n: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM ((SELECT {cols} FROM {st} EXCEPT ALL {query}) UNION ALL ({query} EXCEPT ALL SELECT {cols} FROM {st})) d"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    n == 0
}

const SETUP: &str = "
    CREATE TABLE customers (id int PRIMARY KEY, region text);
    CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount int);
    INSERT INTO customers SELECT i, 'r' || (i % 3) FROM generate_series(1, 20) i;
    INSERT INTO orders SELECT i, 1 + i % 25, i FROM generate_series(1, 300) i;";

/// (name, query, columns) of the stream tables made before an upgrade.
const STREAM_TABLES: &[(&str, &str, &str)] = &[
    ("by_region", "SELECT c.region, count(*) AS n, sum(o.amount) AS total, max(o.amount) AS top FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region", "region, n, total, top"),
    ("with_customer", "SELECT o.id, o.amount, c.region FROM orders o LEFT JOIN customers c ON c.id = o.customer_id", "id, amount, region"),
    ("big", "SELECT id, amount FROM orders WHERE amount > 150", "id, amount"),
    ("regions_over", "SELECT region, total FROM by_region WHERE total > 100", "region, total"),
];

fn create_stream_tables(client: &mut Client) {
    client.batch_execute(SETUP).unwrap();
    for (name, query, _) in STREAM_TABLES {
        client
            .execute(
                "SELECT pgtrickle.create_stream_table($1, $2, NULL)",
                &[name, query],
            )
            .unwrap();
    }
    client.batch_execute("SELECT pgtrickle.create_stream_table('ranked', 'SELECT id, rank() OVER (ORDER BY amount) AS r FROM orders', NULL, 'AUTO')").unwrap();
}

fn change_sources(client: &mut Client, step: i32) {
    client
        .batch_execute(&format!(
            "INSERT INTO orders SELECT 1000 * {step} + i, 1 + i % 25, i * 3 FROM generate_series(1, 30) i;
             UPDATE orders SET amount = amount + 7 WHERE id % 11 = {m};
             DELETE FROM orders WHERE id % 13 = {m};
             UPDATE customers SET region = 'r9' WHERE id = {c};",
            m = step % 11,
            c = 1 + step % 20
        ))
        .unwrap();
}

fn assert_all_exact(client: &mut Client) {
    for (name, query, cols) in STREAM_TABLES {
        let query = query.replace("FROM by_region", "FROM (SELECT c.region, sum(o.amount) AS total FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region) x");
        assert!(
            exact(client, name, cols, &query),
            "{name} differs from its query"
        );
    }
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn scheduler_refreshes(client: &mut Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE initiated_by = 'SCHEDULER'",
            &[],
        )
        .unwrap()
        .get(0)
}

fn refresh_all(client: &mut Client) {
    for (name, _, _) in STREAM_TABLES {
        client
            .execute("SELECT pgtrickle.refresh_stream_table($1)", &[name])
            .unwrap();
    }
}

/// After `ALTER EXTENSION ... UPDATE`: same objects as fresh, stream tables
/// refresh differentially and exactly, the scheduler runs them again.
fn check_after_update(cluster: &Cluster, client: &mut Client) {
    let version: String = client
        .query_one("SELECT pgtrickle.version()", &[])
        .unwrap()
        .get(0);
    let sql_version: String = client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_trickle'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, sql_version);
    let mut admin = cluster.connect();
    let mut fresh = new_database(cluster, &mut admin, "fresh_for_compare");
    fresh.batch_execute("CREATE EXTENSION pg_trickle").unwrap();
    let diff = InventoryDiff::between(
        &extension_inventory(&mut fresh),
        &extension_inventory(client),
    );
    assert!(diff.is_empty(), "{}", diff.report());
    let report: Vec<(String, String)> = client
        .query("SELECT object, action FROM pgtrickle.migrate()", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(!report.is_empty());
    let again: Vec<String> = client
        .query("SELECT action FROM pgtrickle.migrate()", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        again.iter().all(|a| a == "unchanged"),
        "migrate() is idempotent: {again:?}"
    );
    // migrate() gave the older stream tables what 0.2.0 creates with new
    // ones: the write guard and the analysed query (to follow renames).
    let unfinished: i64 = client
        .query_one(
            "SELECT sum(n)::bigint FROM (SELECT count(*) AS n FROM pgtrickle.pgt_stream_tables s
              WHERE s.query_tree IS NULL
                 OR NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = s.pgt_relid AND t.tgname = 'pg_trickle_guard')
             UNION ALL
             -- row capture moved to the C function, the PL/pgSQL ones gone
             SELECT count(*) FROM pg_trigger t
              WHERE t.tgname ~ '^pg_trickle_cdc_(ins|upd|del)_'
                AND t.tgfoid <> 'pgtrickle.pg_trickle_capture()'::regprocedure
             UNION ALL
             SELECT count(*) FROM pg_proc WHERE proname LIKE 'pg\\_trickle\\_cdc\\_fn\\_%') x",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(unfinished, 0);
    // The row ids 0.1.0 stored are recomputed once (the upgrade marks every
    // stream table for reinitialization); refreshes are differential again
    // afterwards.
    refresh_all(client);
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('ranked')")
        .unwrap();
    let marked: i64 = client
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE needs_reinit",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(marked, 0);
    change_sources(client, 3);
    refresh_all(client);
    assert_all_exact(client);
    let last_actions: Vec<String> = client
        .query(
            "SELECT DISTINCT ON (h.pgt_id) h.action FROM pgtrickle.pgt_refresh_history h
               JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
              WHERE h.initiated_by = 'MANUAL' AND s.pgt_name NOT IN ('ranked', 'recent')
              ORDER BY h.pgt_id, h.refresh_id DESC",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        last_actions.iter().all(|a| a == "DIFFERENTIAL"),
        "{last_actions:?}"
    );
    // The scheduler picks them up again.
    client
        .batch_execute("SELECT pgtrickle.alter_stream_table('big', schedule => '1s')")
        .unwrap();
    change_sources(client, 4);
    wait_until("a scheduled refresh after the update", || {
        scheduler_refreshes(client) > 0
    });
    wait_until("big to catch up", || {
        exact(
            client,
            "big",
            "id, amount",
            "SELECT id, amount FROM orders WHERE amount > 150",
        )
    });
}

#[test]
fn stream_tables_made_on_the_previous_release_survive_the_upgrade() {
    let cluster = Cluster::start_with(&[
        "pg_trickle.min_schedule_seconds = 1",
        "pg_trickle.scheduler_interval_ms = 100",
    ]);
    let mut admin = cluster.connect();
    let mut client = new_database(&cluster, &mut admin, "app");
    create_previous(&mut client);
    create_stream_tables(&mut client);
    client
        .batch_execute("SELECT pgtrickle.alter_stream_table('regions_over', schedule => '1s')")
        .unwrap();
    change_sources(&mut client, 1);
    refresh_all(&mut client);
    assert_all_exact(&mut client);
    change_sources(&mut client, 2);
    // Library and SQL differ: the scheduler waits and says why.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        scheduler_refreshes(&mut client),
        0,
        "no scheduled refresh before the update"
    );
    assert!(
        cluster
            .log()
            .contains("run ALTER EXTENSION pg_trickle UPDATE"),
        "the scheduler warns about the version difference"
    );
    // Meanwhile, manual refreshes ran in full: the stored row ids may be
    // another version's.
    let differential: i64 = client
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE action = 'DIFFERENTIAL'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(differential, 0);
    client
        .batch_execute("ALTER EXTENSION pg_trickle UPDATE")
        .unwrap();
    let marked: i64 = client
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE NOT needs_reinit",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        marked, 0,
        "the update marks every stream table for reinitialization"
    );
    check_after_update(&cluster, &mut client);
}

#[test]
fn a_real_previous_library_hands_over() {
    let dir = std::env::var("PGT_PREVIOUS_LIB_DIR").expect(
        "PGT_PREVIOUS_LIB_DIR must name a directory holding the previous release's pg_trickle.so (scripts/test.sh builds it from the v0.1.0 tag)",
    );
    assert!(
        std::path::Path::new(&dir).join("pg_trickle.so").exists(),
        "no pg_trickle.so in {dir}"
    );
    // The previous library is found first; the current one after the swap.
    let cluster = Cluster::start_with(&[
        "pg_trickle.min_schedule_seconds = 1",
        "pg_trickle.scheduler_interval_ms = 100",
        &format!("dynamic_library_path = '{dir}:$libdir'"),
    ]);
    let mut admin = cluster.connect();
    let mut client = new_database(&cluster, &mut admin, "app");
    create_previous(&mut client);
    let loaded: String = client
        .query_one("SELECT pgtrickle.version()", &[])
        .unwrap()
        .get(0);
    assert_eq!(loaded, PREVIOUS, "the previous library is loaded");
    create_stream_tables(&mut client);
    // A query on the current time, which the previous release maintained
    // differentially (and so let go stale) and this one refreshes in full.
    let recent = "SELECT id FROM ev WHERE at > now() - interval '90 minutes'";
    client
        .batch_execute(&format!(
            "CREATE TABLE ev (id int PRIMARY KEY, at timestamptz);
             INSERT INTO ev SELECT i, now() - make_interval(hours => i) FROM generate_series(0, 3) i;
             SELECT pgtrickle.create_stream_table('recent', $q${recent}$q$, NULL, 'DIFFERENTIAL');"
        ))
        .unwrap();
    change_sources(&mut client, 1);
    refresh_all(&mut client);
    assert_all_exact(&mut client);
    // Changes captured by the old library and not yet applied.
    change_sources(&mut client, 2);
    drop(client);
    cluster.set_conf("dynamic_library_path", "'$libdir'");
    cluster.restart();
    let mut client = cluster.connect_to("app");
    client
        .batch_execute("ALTER EXTENSION pg_trickle UPDATE")
        .unwrap();
    refresh_all(&mut client);
    assert_all_exact(&mut client);
    // Past its reinitialization, still in full, saying why.
    client
        .batch_execute(
            "SELECT pgtrickle.refresh_stream_table('recent');
             INSERT INTO ev VALUES (10, now());
             SELECT pgtrickle.refresh_stream_table('recent');",
        )
        .unwrap();
    let (action, reason) = last_refresh(&mut client);
    assert_eq!(action, "FULL");
    assert!(
        reason.contains("DIFFERENTIAL: DIFFERENTIAL cannot maintain the current time (now())"),
        "{reason}"
    );
    assert!(exact(&mut client, "recent", "id", recent));
    check_after_update(&cluster, &mut client);
}
