//! `pg_trickle_dump` against a real cluster: dump a database with stream
//! tables of every kind, replay the script into a fresh database with the
//! same sources, and check definitions, statuses, contents and later
//! (differential) refreshes. Also the exit codes.
//!
//! Needs a PostgreSQL with pg_trickle installed: `PGT_PG_CONFIG` or
//! `PGT_PG_VERSION` (see the pgtrickle-e2e crate).

use pgtrickle_e2e::oracle::{assert_matches_query, error_text};
use pgtrickle_e2e::{cluster_with_extension, Client, Cluster};
use std::process::{Command, Output};

const DUMP: &str = env!("CARGO_BIN_EXE_pg_trickle_dump");

/// The sources, recreated identically in the target database.
const SOURCES: &str = "
CREATE SCHEMA sales;
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, region text);
CREATE TABLE orders (id int PRIMARY KEY, cust int NOT NULL, amount numeric(10,2) NOT NULL, note text);
CREATE TABLE sales.targets (region text PRIMARY KEY, target numeric);
INSERT INTO customers SELECT g, 'cust ' || g, (ARRAY['north','south','east','it''s'])[1 + g % 4]
  FROM generate_series(1, 20) g;
INSERT INTO orders SELECT g, 1 + g % 20, (g * 7 % 100) + 0.25, CASE WHEN g % 5 = 0 THEN 'it''s' ELSE 'n' || g END
  FROM generate_series(1, 200) g;
INSERT INTO sales.targets VALUES ('north', 1000), ('south', 2000), ('east', 500), ('it''s', 10);
";

/// (create call, expected schema, name, schedule, mode) of every stream table.
struct Spec {
    sql: &'static str,
    schema: &'static str,
    name: &'static str,
}

const SPECS: &[Spec] = &[
    // The chain: st2 reads st1.
    Spec {
        sql: "SELECT pgtrickle.create_stream_table('st1', 'SELECT cust, sum(amount) AS total, count(*) AS n FROM orders GROUP BY cust', '1m', 'DIFFERENTIAL')",
        schema: "public",
        name: "st1",
    },
    Spec {
        sql: "SELECT pgtrickle.create_stream_table('st2', 'SELECT cust, total FROM st1 WHERE total > 300', '2m', 'DIFFERENTIAL')",
        schema: "public",
        name: "st2",
    },
    // A name needing quotes (space, capitals and a single quote), and a
    // query with a quoted literal.
    Spec {
        sql: "SELECT pgtrickle.create_stream_table('\"Weird Name''s\"', $q$SELECT id, cust, note FROM orders WHERE note <> 'it''s'$q$, '30m', 'DIFFERENTIAL')",
        schema: "public",
        name: "Weird Name's",
    },
    // Non-public schema, join.
    Spec {
        sql: "SELECT pgtrickle.create_stream_table('sales.region_totals', 'SELECT c.region, count(*) AS n, sum(o.amount) AS total FROM orders o JOIN customers c ON c.id = o.cust GROUP BY c.region', '5m')",
        schema: "sales",
        name: "region_totals",
    },
    // Suspended later.
    Spec {
        sql: "SELECT pgtrickle.create_stream_table('big_orders', 'SELECT id, amount FROM orders WHERE amount > 50', '1m', 'DIFFERENTIAL')",
        schema: "public",
        name: "big_orders",
    },
    // AUTO, cron schedule.
    Spec {
        sql: "SELECT pgtrickle.create_stream_table('auto_st', 'SELECT region, count(*) AS n FROM customers GROUP BY region', '*/5 * * * *', 'AUTO')",
        schema: "public",
        name: "auto_st",
    },
    // Manual schedule, FULL.
    Spec {
        sql: "SELECT pgtrickle.create_stream_table('manual_st', 'SELECT cust, max(amount) AS top FROM orders GROUP BY cust', NULL, 'FULL')",
        schema: "public",
        name: "manual_st",
    },
    // Never populated (INITIALIZING), manual so the scheduler leaves it.
    Spec {
        sql: "SELECT pgtrickle.create_stream_table('lazy_st', 'SELECT id, name FROM customers', NULL, 'DIFFERENTIAL', false)",
        schema: "public",
        name: "lazy_st",
    },
    // Put into ERROR below (by hand: a real one needs failing scheduler runs).
    Spec {
        sql: "SELECT pgtrickle.create_stream_table('sales.err_st', 'SELECT region, target FROM sales.targets', NULL, 'DIFFERENTIAL')",
        schema: "sales",
        name: "err_st",
    },
];

fn qualified(schema: &str, name: &str) -> String {
    format!(
        "\"{}\".\"{}\"",
        schema.replace('"', "\"\""),
        name.replace('"', "\"\"")
    )
}

fn run_dump(args: &[&str], envs: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(DUMP);
    cmd.args(args);
    for var in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD"] {
        cmd.env_remove(var);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("running pg_trickle_dump")
}

fn exec(client: &mut Client, sql: &str) {
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{}\nSQL: {sql}", error_text(&e)));
}

type CatalogRow = (
    String,
    String,
    Option<String>,
    String,
    String,
    bool,
    Option<String>,
);

fn catalog(client: &mut Client) -> Vec<CatalogRow> {
    client
        .query(
            "SELECT pgt_schema, pgt_name, schedule, refresh_mode, status, is_populated, original_query
               FROM pgtrickle.pgt_stream_tables ORDER BY pgt_schema, pgt_name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect()
}

fn defining_query(client: &mut Client, schema: &str, name: &str) -> String {
    client
        .query_one(
            "SELECT defining_query FROM pgtrickle.pgt_stream_tables WHERE pgt_schema = $1 AND pgt_name = $2",
            &[&schema, &name],
        )
        .unwrap()
        .get(0)
}

/// Every populated stream table equals its query; `active_only` skips
/// SUSPENDED and ERROR ones (not refreshed, so legitimately stale).
fn check_all_populated(client: &mut Client, active_only: bool) {
    let filter = if active_only {
        " AND status = 'ACTIVE'"
    } else {
        ""
    };
    let rows = client
        .query(
            &format!("SELECT pgt_schema, pgt_name, defining_query FROM pgtrickle.pgt_stream_tables WHERE is_populated{filter}"),
            &[],
        )
        .unwrap();
    for r in rows {
        let (schema, name, query): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        assert_matches_query(client, &qualified(&schema, &name), &query);
    }
}

/// Drops the header lines that differ between two runs (the time).
fn without_time(script: &str) -> String {
    script
        .lines()
        .filter(|l| !l.starts_with("-- Dumped at:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn dump_replays_into_a_fresh_database() {
    let (cluster, mut src) = cluster_with_extension();
    exec(&mut src, SOURCES);
    for spec in SPECS {
        exec(&mut src, spec.sql);
    }
    exec(
        &mut src,
        "SELECT pgtrickle.alter_stream_table('big_orders', status => 'SUSPENDED');
         UPDATE pgtrickle.pgt_stream_tables SET status = 'ERROR', consecutive_errors = 3,
                last_error = E'simulated failure\\nwith a second line'
          WHERE pgt_schema = 'sales' AND pgt_name = 'err_st';",
    );
    // Some changes and refreshes so the source is not just freshly created.
    exec(
        &mut src,
        "UPDATE orders SET amount = amount + 100 WHERE id % 7 = 0;
         DELETE FROM orders WHERE id % 11 = 0;
         INSERT INTO customers VALUES (21, 'new', 'north');
         SELECT pgtrickle.refresh_stream_table('st1');
         SELECT pgtrickle.refresh_stream_table('st2');
         SELECT pgtrickle.refresh_stream_table('\"Weird Name''s\"');
         SELECT pgtrickle.refresh_stream_table('sales.region_totals');
         SELECT pgtrickle.refresh_stream_table('auto_st');
         SELECT pgtrickle.refresh_stream_table('manual_st');",
    );
    check_all_populated(&mut src, true);
    let source_catalog = catalog(&mut src);
    assert_eq!(source_catalog.len(), SPECS.len());

    // Dump with a conninfo string, to a file.
    let file = std::env::temp_dir().join(format!("pgt-dump-{}.sql", std::process::id()));
    let out = run_dump(
        &[
            "-d",
            &cluster.connection_string("postgres"),
            "-f",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "pg_trickle_dump failed ({:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let script = std::fs::read_to_string(&file).expect("dump file");
    let _ = std::fs::remove_file(&file);
    eprintln!("---- dump ----\n{script}---- end ----");

    // The same dump from the PG* variables, to stdout.
    let out = run_dump(
        &[],
        &[
            ("PGHOST", "127.0.0.1".into()),
            ("PGPORT", cluster.port.to_string()),
            ("PGUSER", "postgres".into()),
            ("PGDATABASE", "postgres".into()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        without_time(&String::from_utf8(out.stdout).unwrap()),
        without_time(&script)
    );

    // Shape of the script.
    assert!(script.contains("-- pg_trickle version: "));
    assert!(script.contains("\nBEGIN;\n") && script.trim_end().ends_with("COMMIT;"));
    assert!(script.contains("CREATE SCHEMA IF NOT EXISTS \"sales\";"));
    let pos = |needle: &str| {
        script
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} not in the dump"))
    };
    assert!(pos("name => '\"public\".\"st1\"'") < pos("name => '\"public\".\"st2\"'"));
    assert!(script.contains("name => '\"public\".\"Weird Name''s\"'"));
    assert!(script.contains("query => 'SELECT cust, total FROM st1 WHERE total > 300'"));
    assert!(script.contains("schedule => NULL"));
    assert!(script.contains(
        "alter_stream_table(name => '\"public\".\"big_orders\"', status => 'SUSPENDED')"
    ));
    assert!(script
        .contains("alter_stream_table(name => '\"sales\".\"err_st\"', status => 'SUSPENDED')"));
    assert!(script.contains("cannot be recreated"));

    // A second database with the extension and the same sources and data.
    exec(&mut src, "CREATE DATABASE restored");
    let mut dst = cluster.connect_to("restored");
    exec(&mut dst, "CREATE EXTENSION pg_trickle");
    // Same data: the DML above applied to the sources too.
    exec(&mut dst, SOURCES);
    exec(
        &mut dst,
        "UPDATE orders SET amount = amount + 100 WHERE id % 7 = 0;
         DELETE FROM orders WHERE id % 11 = 0;
         INSERT INTO customers VALUES (21, 'new', 'north');",
    );
    exec(&mut dst, &script);

    // Same stream tables, schedules, modes, original queries; statuses as
    // the source had them, except ERROR which comes back SUSPENDED and
    // unpopulated.
    let restored = catalog(&mut dst);
    let expected: Vec<CatalogRow> = source_catalog
        .iter()
        .cloned()
        .map(|mut r| {
            if r.4 == "ERROR" {
                r.4 = "SUSPENDED".into();
                r.5 = false;
            }
            r
        })
        .collect();
    assert_eq!(restored, expected);
    let statuses: Vec<(String, String, bool)> = restored
        .iter()
        .map(|r| (r.1.clone(), r.4.clone(), r.5))
        .collect();
    assert!(statuses.contains(&("big_orders".into(), "SUSPENDED".into(), true)));
    assert!(statuses.contains(&("lazy_st".into(), "INITIALIZING".into(), false)));
    assert!(statuses.contains(&("err_st".into(), "SUSPENDED".into(), false)));
    // The expanded queries are the same too (same sources, same names).
    for spec in SPECS {
        assert_eq!(
            defining_query(&mut dst, spec.schema, spec.name),
            defining_query(&mut src, spec.schema, spec.name),
            "{}.{}",
            spec.schema,
            spec.name
        );
    }
    // Dependencies came back: st2 reads the restored st1.
    let edge: i64 = dst
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_dependencies d
               JOIN pgtrickle.pgt_stream_tables s ON s.pgt_relid = d.source_relid
               JOIN pgtrickle.pgt_stream_tables t ON t.pgt_id = d.pgt_id
              WHERE s.pgt_name = 'st1' AND t.pgt_name = 'st2' AND d.source_type = 'STREAM_TABLE'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(edge, 1);
    check_all_populated(&mut dst, false);

    // Further DML on the sources: refreshes keep everything exact.
    exec(
        &mut dst,
        "UPDATE orders SET amount = amount * 2 WHERE cust IN (3, 4, 5);
         DELETE FROM orders WHERE id BETWEEN 40 AND 60;
         INSERT INTO orders SELECT g, 1 + g % 21, g % 90 + 0.5, 'late' FROM generate_series(301, 340) g;
         UPDATE customers SET region = 'south' WHERE id = 2;
         UPDATE sales.targets SET target = target + 1;
         SELECT pgtrickle.alter_stream_table('big_orders', status => 'ACTIVE');
         SELECT pgtrickle.alter_stream_table('sales.err_st', status => 'ACTIVE');",
    );
    for spec in SPECS {
        exec(
            &mut dst,
            &format!(
                "SELECT pgtrickle.refresh_stream_table('{}')",
                qualified(spec.schema, spec.name).replace('\'', "''")
            ),
        );
    }
    check_all_populated(&mut dst, false);
    let populated: i64 = dst
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE is_populated",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(populated as usize, SPECS.len());
    // The DIFFERENTIAL stream tables were maintained differentially: the
    // change capture made by the replay works.
    let actions: Vec<(String, String)> = dst
        .query(
            "SELECT DISTINCT ON (s.pgt_id) s.pgt_name, h.action FROM pgtrickle.pgt_refresh_history h
               JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
              WHERE h.initiated_by = 'MANUAL' AND h.status = 'COMPLETED'
              ORDER BY s.pgt_id, h.refresh_id DESC",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for name in ["st1", "st2", "Weird Name's", "region_totals", "big_orders"] {
        assert!(
            actions.contains(&(name.to_string(), "DIFFERENTIAL".to_string())),
            "{name} not refreshed DIFFERENTIAL after replay: {actions:?}"
        );
    }
    assert!(
        actions.contains(&("manual_st".to_string(), "FULL".to_string())),
        "{actions:?}"
    );

    // A second round, to be sure the first differential refresh left
    // frontiers and buffers consistent.
    exec(
        &mut dst,
        "UPDATE orders SET cust = 1 + (cust + 3) % 21 WHERE id % 3 = 0;
         DELETE FROM customers WHERE id = 21;",
    );
    for spec in SPECS {
        exec(
            &mut dst,
            &format!(
                "SELECT pgtrickle.refresh_stream_table('{}')",
                qualified(spec.schema, spec.name).replace('\'', "''")
            ),
        );
    }
    check_all_populated(&mut dst, false);

    // --expanded replays without depending on search_path.
    let out = run_dump(
        &["--expanded", "-d", &cluster.connection_string("postgres")],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expanded = String::from_utf8(out.stdout).unwrap();
    exec(&mut src, "CREATE DATABASE restored2");
    let mut dst2 = cluster.connect_to("restored2");
    exec(&mut dst2, "CREATE EXTENSION pg_trickle");
    exec(&mut dst2, SOURCES);
    exec(&mut dst2, "SET search_path = pg_catalog");
    exec(&mut dst2, &expanded);
    exec(&mut dst2, "RESET search_path");
    let restored2: Vec<(String, String, Option<String>, String, String)> = catalog(&mut dst2)
        .into_iter()
        .map(|r| (r.0, r.1, r.2, r.3, r.4))
        .collect();
    let expected2: Vec<(String, String, Option<String>, String, String)> = expected
        .into_iter()
        .map(|r| (r.0, r.1, r.2, r.3, r.4))
        .collect();
    assert_eq!(restored2, expected2);
    check_all_populated(&mut dst2, false);
}

#[test]
fn exit_codes() {
    let cluster = Cluster::start();
    let mut admin = cluster.connect();
    for sql in [
        "CREATE DATABASE with_ext",
        "CREATE DATABASE without_ext",
        "CREATE ROLE plain_user LOGIN",
    ] {
        exec(&mut admin, sql);
    }
    exec(
        &mut cluster.connect_to("with_ext"),
        "CREATE EXTENSION pg_trickle",
    );

    // 3: the extension is not installed.
    let out = run_dump(&["-d", &cluster.connection_string("without_ext")], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("not installed"), "{stderr}");
    assert!(stderr.contains("without_ext"), "{stderr}");
    assert!(out.stdout.is_empty());

    // 0: an empty but valid dump.
    let out = run_dump(&["-d", &cluster.connection_string("with_ext")], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("-- Stream tables: 0"), "{script}");

    // 1: permission denied on the catalog, with the way out.
    let out = run_dump(
        &[
            "-d",
            &format!("host=127.0.0.1 port={} dbname=with_ext", cluster.port),
            "-U",
            "plain_user",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(stderr.contains("superuser"), "{stderr}");

    // 1: nothing listening.
    let out = run_dump(
        &["-h", "127.0.0.1", "-p", "1", "-U", "postgres", "-d", "x"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not connect"));

    // 1: a database that does not exist.
    let out = run_dump(
        &[
            "-d",
            &format!("postgresql://postgres@127.0.0.1:{}/nosuchdb", cluster.port),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuchdb"));

    // 2: bad arguments.
    let out = run_dump(&["--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
}
