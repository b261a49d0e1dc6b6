//! The lifecycle API, its errors, change capture objects, AUTO, explain,
//! monitoring and refreshes running as the owner.

use pgtrickle_e2e::{cluster_with_extension, db_error, difference, last_refresh, Client};
use postgres::fallible_iterator::FallibleIterator;

fn setup(client: &mut Client) {
    client
        .batch_execute(
            "CREATE TABLE src (id int PRIMARY KEY, grp int, val int, note text);
             INSERT INTO src SELECT g, g % 4, g * 10, 'n' || g FROM generate_series(1, 40) g;",
        )
        .unwrap();
}

fn count(client: &mut Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

/// Everything a failed create could have left behind.
fn leftovers(client: &mut Client) -> i64 {
    count(
        client,
        "SELECT (SELECT count(*) FROM pgtrickle.pgt_stream_tables)
              + (SELECT count(*) FROM pgtrickle.pgt_dependencies)
              + (SELECT count(*) FROM pgtrickle.pgt_change_tracking)
              + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pg_trickle_cdc_%')
              + (SELECT count(*) FROM pg_class WHERE relnamespace = 'pgtrickle_changes'::regnamespace)
              + (SELECT count(*) FROM pg_class WHERE relname = 'st' AND relkind = 'r')",
    )
}

fn create_err(
    client: &mut Client,
    query: &str,
    schedule: Option<&str>,
    mode: &str,
) -> (String, String, Option<String>) {
    let err = client
        .query_one(
            "SELECT pgtrickle.create_stream_table('st', $1, $2, $3)",
            &[&query, &schedule, &mode],
        )
        .expect_err(query);
    let (code, message, _detail, hint) = db_error(&err);
    (code, message, hint)
}

#[test]
fn bad_input_gets_a_clear_error_and_leaves_nothing_behind() {
    let (_cluster, mut client) = cluster_with_extension();
    setup(&mut client);
    let src = "SELECT id, val FROM src";
    let cases: Vec<(&str, Option<&str>, &str, &str, &str)> = vec![
        (
            "SELEC id FROM src",
            None,
            "DIFFERENTIAL",
            "42601",
            "syntax error",
        ),
        (
            "SELECT nope FROM src",
            None,
            "DIFFERENTIAL",
            "42703",
            "column \"nope\" does not exist",
        ),
        (
            "INSERT INTO src VALUES (1)",
            None,
            "DIFFERENTIAL",
            "22023",
            "must be a SELECT",
        ),
        (
            "SELECT 1 AS a; SELECT 2 AS b",
            None,
            "DIFFERENTIAL",
            "22023",
            "exactly one SELECT",
        ),
        (
            "SELECT id, random() AS r FROM src",
            None,
            "FULL",
            "22023",
            "volatile function(s): random()",
        ),
        (
            "SELECT val + 1 FROM src",
            None,
            "DIFFERENTIAL",
            "22023",
            "has no name",
        ),
        (
            "SELECT id AS __pgt_x FROM src",
            None,
            "DIFFERENTIAL",
            "22023",
            "reserved",
        ),
        (
            src,
            Some("5 minutes"),
            "DIFFERENTIAL",
            "22023",
            "unknown unit \"minutes\"",
        ),
        (
            src,
            Some("10s"),
            "DIFFERENTIAL",
            "22023",
            "more often than pg_trickle.min_schedule_seconds",
        ),
        (
            src,
            Some("61 * * * *"),
            "DIFFERENTIAL",
            "22023",
            "invalid cron expression",
        ),
        (src, None, "SOMETIMES", "22023", "invalid refresh mode"),
        (
            "SELECT id, sum(val) OVER () AS s FROM src",
            None,
            "DIFFERENTIAL",
            "0A000",
            "window functions",
        ),
        (
            "SELECT s.grp, count(*) AS n FROM src s LEFT JOIN src t ON t.id = s.val GROUP BY s.grp",
            None,
            "DIFFERENTIAL",
            "0A000",
            "LEFT JOIN",
        ),
        (
            "SELECT id FROM src ORDER BY id LIMIT 3",
            None,
            "DIFFERENTIAL",
            "0A000",
            "LIMIT",
        ),
        (
            "SELECT DISTINCT ON (grp) grp, id FROM src",
            None,
            "DIFFERENTIAL",
            "0A000",
            "DISTINCT ON",
        ),
        (
            "SELECT count(*) AS n FROM src GROUP BY grp",
            None,
            "DIFFERENTIAL",
            "0A000",
            "GROUP BY expressions that are not in the select list",
        ),
        (
            "SELECT id FROM src EXCEPT SELECT id FROM src WHERE val > 100",
            None,
            "DIFFERENTIAL",
            "0A000",
            "EXCEPT",
        ),
        (
            "SELECT id FROM src WHERE id IN (SELECT grp FROM src)",
            None,
            "DIFFERENTIAL",
            "0A000",
            "subqueries in expressions",
        ),
        (
            "WITH x AS (SELECT id FROM src) SELECT id FROM x",
            None,
            "DIFFERENTIAL",
            "0A000",
            "WITH queries",
        ),
        (
            "SELECT v.grp, v.n FROM (SELECT grp, count(*) AS n FROM src GROUP BY grp) v",
            None,
            "DIFFERENTIAL",
            "0A000",
            "aggregates inside a subquery",
        ),
        (
            "SELECT id FROM src WHERE val > extract(epoch FROM now())::int % 100",
            None,
            "DIFFERENTIAL",
            "0A000",
            "the current time (now())",
        ),
        (
            "SELECT id, CURRENT_DATE - val AS since FROM src",
            None,
            "DIFFERENTIAL",
            "0A000",
            "the current time (CURRENT_DATE)",
        ),
    ];
    for (query, schedule, mode, want_code, want_message) in cases {
        let (code, message, hint) = create_err(&mut client, query, schedule, mode);
        assert_eq!(code, want_code, "{query}: {message}");
        assert!(message.contains(want_message), "{query}: {message}");
        if want_code == "0A000" {
            assert!(
                hint.as_deref().unwrap_or("").contains("'AUTO'"),
                "{query}: hint {hint:?}"
            );
        }
        assert_eq!(leftovers(&mut client), 0, "{query} left objects behind");
    }

    // A name that is taken.
    client.batch_execute("CREATE TABLE st (x int)").unwrap();
    let (code, message, _) = create_err(&mut client, src, None, "DIFFERENTIAL");
    assert_eq!(code, "42710");
    assert!(message.contains("already exists"), "{message}");
    client.batch_execute("DROP TABLE st").unwrap();

    // A source the caller may not read.
    client
        .batch_execute(
            "CREATE ROLE reader LOGIN; GRANT CREATE ON SCHEMA public TO reader;
             CREATE TABLE secret (id int PRIMARY KEY, v int);",
        )
        .unwrap();
    let mut reader = _cluster.connect_as("postgres", "reader");
    let err = reader
        .query_one(
            "SELECT pgtrickle.create_stream_table('st', 'SELECT id, v FROM secret', NULL)",
            &[],
        )
        .unwrap_err();
    let (code, message, _, _) = db_error(&err);
    assert_eq!(code, "42501");
    assert!(
        message.contains("permission denied for table secret"),
        "{message}"
    );
    assert_eq!(leftovers(&mut client), 0);

    // Unknown stream tables.
    for sql in [
        "SELECT pgtrickle.refresh_stream_table('nope')",
        "SELECT pgtrickle.drop_stream_table('nope')",
        "SELECT pgtrickle.alter_stream_table('nope', status => 'ACTIVE')",
    ] {
        let (code, message, _, hint) = db_error(&client.batch_execute(sql).unwrap_err());
        assert_eq!(code, "42704", "{sql}");
        assert!(
            message.contains("stream table \"nope\" does not exist"),
            "{message}"
        );
        assert!(hint.unwrap_or_default().contains("pgt_status"));
    }
}

#[test]
fn capture_objects_are_shared_and_dropped_with_the_last_consumer() {
    let (_cluster, mut client) = cluster_with_extension();
    setup(&mut client);
    client
        .batch_execute(
            "SELECT pgtrickle.create_stream_table('a', 'SELECT id, val FROM src WHERE val > 100', NULL);
             SELECT pgtrickle.create_stream_table('b', 'SELECT grp, sum(val) AS s FROM src GROUP BY grp', NULL);",
        )
        .unwrap();
    assert_eq!(count(&mut client, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'src'::regclass AND tgname LIKE 'pg_trickle_cdc_%'"), 4);
    assert_eq!(count(&mut client, "SELECT count(*) FROM pg_class WHERE relnamespace = 'pgtrickle_changes'::regnamespace AND relkind = 'r'"), 1);
    assert_eq!(
        count(
            &mut client,
            "SELECT cardinality(tracked_by_pgt_ids)::bigint FROM pgtrickle.pgt_change_tracking"
        ),
        2
    );
    // The TRUNCATE marker function is SECURITY DEFINER with a pinned
    // search_path; rows are captured by the C function, which PUBLIC may
    // not attach to anything.
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'pgtrickle_changes'::regnamespace AND prosecdef AND proconfig::text LIKE '%search_path=pg_catalog, pg_temp%'"),
        1
    );
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'src'::regclass AND tgfoid = 'pgtrickle.pg_trickle_capture()'::regprocedure"),
        3
    );
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM pg_proc WHERE oid = 'pgtrickle.pg_trickle_capture()'::regprocedure AND has_function_privilege('public', oid, 'EXECUTE')"),
        0
    );
    // FULL mode needs no capture.
    client
        .batch_execute(
            "SELECT pgtrickle.create_stream_table('c', 'SELECT id FROM src', NULL, 'FULL')",
        )
        .unwrap();
    assert_eq!(
        count(
            &mut client,
            "SELECT cardinality(tracked_by_pgt_ids)::bigint FROM pgtrickle.pgt_change_tracking"
        ),
        2
    );

    client
        .batch_execute("SELECT pgtrickle.drop_stream_table('a')")
        .unwrap();
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pg_trickle_cdc_%'"
        ),
        4
    );
    client
        .batch_execute(
            "SELECT pgtrickle.drop_stream_table('b'); SELECT pgtrickle.drop_stream_table('c')",
        )
        .unwrap();
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pg_trickle_cdc_%'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'pgtrickle_changes'::regnamespace"
        ),
        0
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'pgtrickle_changes'::regnamespace"
        ),
        0
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pgtrickle.pgt_change_tracking"
        ),
        0
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history"
        ),
        0
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pg_class WHERE relname IN ('a', 'b', 'c')"
        ),
        0
    );
}

#[test]
fn stream_tables_on_stream_tables_refuse_to_drop_upstream() {
    let (_cluster, mut client) = cluster_with_extension();
    setup(&mut client);
    client
        .batch_execute(
            "SELECT pgtrickle.create_stream_table('up', 'SELECT id, grp, val FROM src WHERE val > 50', NULL);
             SELECT pgtrickle.create_stream_table('down', 'SELECT grp, count(*) AS n FROM up GROUP BY grp', NULL);",
        )
        .unwrap();
    let (code, message, _, hint) = db_error(
        &client
            .batch_execute("SELECT pgtrickle.drop_stream_table('up')")
            .unwrap_err(),
    );
    assert_eq!(code, "55000");
    assert!(message.contains("is read by public.down"), "{message}");
    assert!(hint.unwrap_or_default().contains("Drop the dependent"));
    let source_type: String = client
        .query_one("SELECT source_type FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) WHERE s.pgt_name = 'down'", &[])
        .unwrap()
        .get(0);
    assert_eq!(source_type, "STREAM_TABLE");
}

#[test]
fn auto_records_the_path_it_took() {
    let (_cluster, mut client) = cluster_with_extension();
    setup(&mut client);
    client
        .batch_execute(
            "SELECT pgtrickle.create_stream_table('w', 'SELECT id, sum(val) OVER (PARTITION BY grp) AS s FROM src', NULL, 'AUTO');
             SELECT pgtrickle.create_stream_table('g', 'SELECT grp, sum(val) AS s FROM src GROUP BY grp', NULL, 'AUTO');
             ANALYZE src;
             UPDATE src SET val = val + 1 WHERE id = 1;
             SELECT pgtrickle.refresh_stream_table('w');
             SELECT pgtrickle.refresh_stream_table('g');
             UPDATE src SET val = val + 1;
             SELECT pgtrickle.refresh_stream_table('g');",
        )
        .unwrap();
    let rows = client
        .query(
            "SELECT s.pgt_name, h.action, h.requested_action, coalesce(h.reason, '') FROM pgtrickle.pgt_refresh_history h
               JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) WHERE h.initiated_by = 'MANUAL' ORDER BY h.refresh_id",
            &[],
        )
        .unwrap();
    let got: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(got[0].0, "w");
    assert_eq!(got[0].1, "FULL");
    assert!(got[0].3.contains("window functions"), "{got:?}");
    assert_eq!(
        (got[1].1.as_str(), got[1].2.as_str()),
        ("DIFFERENTIAL", "DIFFERENTIAL")
    );
    assert_eq!(
        (got[2].1.as_str(), got[2].2.as_str()),
        ("FULL", "DIFFERENTIAL"),
        "{got:?}"
    );
    assert!(got[2].3.contains("change ratio"), "{got:?}");
    let exact = count(
        &mut client,
        "SELECT count(*) FROM ((SELECT grp, s FROM g EXCEPT ALL SELECT grp, sum(val) FROM src GROUP BY grp)
                            UNION ALL (SELECT grp, sum(val) FROM src GROUP BY grp EXCEPT ALL SELECT grp, s FROM g)) d",
    );
    assert_eq!(exact, 0);
}

#[test]
fn a_query_on_the_current_time_is_refreshed_in_full_under_auto() {
    // Rows leave `now() - interval '25 seconds'` as time passes, with no
    // change to any source row: only a full refresh follows them.
    let (_cluster, mut client) = cluster_with_extension();
    let query = "SELECT id FROM ev WHERE at > now() - interval '25 seconds'";
    client
        .batch_execute(&format!(
            "CREATE TABLE ev (id int PRIMARY KEY, at timestamptz);
             INSERT INTO ev SELECT i, now() - make_interval(secs => 10 * i) FROM generate_series(0, 5) i;
             SELECT pgtrickle.create_stream_table('recent', $q${query}$q$, NULL, 'AUTO');"
        ))
        .unwrap();
    assert_eq!(count(&mut client, "SELECT count(*) FROM recent"), 3);
    // Rows 0, 1 and 2 are now 8, 18 and 28 seconds old.
    std::thread::sleep(std::time::Duration::from_secs(8));
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('recent')")
        .unwrap();
    assert_eq!(difference(&mut client, "id", "recent", query), 0);
    assert_eq!(count(&mut client, "SELECT count(*) FROM recent"), 2);
    let (action, reason) = last_refresh(&mut client);
    assert_eq!(action, "FULL");
    assert!(reason.contains("the current time (now())"), "{reason}");
}

#[test]
fn explain_and_monitoring_describe_the_stream_table() {
    let (_cluster, mut client) = cluster_with_extension();
    setup(&mut client);
    client
        .batch_execute(
            "SELECT pgtrickle.create_stream_table('g', 'SELECT grp, count(*) AS n, min(val) AS lo FROM src GROUP BY grp', '1m');
             INSERT INTO src VALUES (100, 1, 5, 'x');
             SELECT pgtrickle.refresh_stream_table('g');",
        )
        .unwrap();
    let explain: Vec<(String, String)> = client
        .query("SELECT property, value FROM pgtrickle.explain_st('g')", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let get = |k: &str| {
        explain
            .iter()
            .filter(|(p, _)| p.starts_with(k))
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert!(
        get("maintenance")[0].contains("grouped by (grp)"),
        "{explain:?}"
    );
    assert!(get("mode_chosen")[0].starts_with("DIFFERENTIAL"));
    assert!(
        get("delta_sql")
            .iter()
            .any(|s| s.contains("pgtrickle_changes")),
        "{explain:?}"
    );
    assert!(get("source_cdc")[0].contains("4 capture triggers"));

    let status = client
        .query_one(
            "SELECT name, status, refresh_mode, schedule, is_populated FROM pgtrickle.pgt_status()",
            &[],
        )
        .unwrap();
    assert_eq!(status.get::<_, String>(0), "g");
    assert_eq!(status.get::<_, String>(1), "ACTIVE");
    assert!(status.get::<_, bool>(4));
    let history = count(
        &mut client,
        "SELECT count(*) FROM pgtrickle.get_refresh_history('g')",
    );
    assert_eq!(history, 2);
    let staleness: f64 = client
        .query_one("SELECT pgtrickle.get_staleness('g')", &[])
        .unwrap()
        .get(0);
    assert!((0.0..60.0).contains(&staleness));
    let stats = client.query_one("SELECT refreshes, full_refreshes, differential_refreshes FROM pgtrickle.st_refresh_stats()", &[]).unwrap();
    assert_eq!(
        (
            stats.get::<_, i64>(0),
            stats.get::<_, i64>(1),
            stats.get::<_, i64>(2)
        ),
        (2, 1, 1)
    );
    let health = client
        .query_one("SELECT triggers_present, triggers_enabled, buffer_present FROM pgtrickle.check_cdc_health()", &[])
        .unwrap();
    assert!(health.get::<_, bool>(0) && health.get::<_, bool>(1) && health.get::<_, bool>(2));
    // The scheduler sweeps consumed changes after the refresh commits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let pending: Option<i64> = client
            .query_one("SELECT pending_rows FROM pgtrickle.check_cdc_health()", &[])
            .unwrap()
            .get(0);
        if pending == Some(0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "consumed changes are cleaned up: {pending:?} left"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM pgtrickle.slot_health()"),
        0
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pgtrickle.stream_tables_info"
        ),
        1
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pgtrickle.pg_stat_stream_tables"
        ),
        1
    );
}

#[test]
fn refreshes_read_sources_as_the_owner() {
    let cluster = pgtrickle_e2e::Cluster::start();
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE EXTENSION pg_trickle;
             CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
             GRANT CREATE ON SCHEMA public TO alice;
             CREATE TABLE docs (id int PRIMARY KEY, owner text, body text);
             ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
             CREATE POLICY own ON docs FOR SELECT USING (owner = current_user);
             GRANT SELECT ON docs TO alice, bob;
             INSERT INTO docs VALUES (1, 'alice', 'a1'), (2, 'bob', 'b1');",
        )
        .unwrap();
    let mut alice = cluster.connect_as("postgres", "alice");
    alice
        .batch_execute(
            "SELECT pgtrickle.create_stream_table('mine', 'SELECT id, body FROM docs', NULL)",
        )
        .unwrap();
    admin
        .batch_execute("INSERT INTO docs VALUES (3, 'alice', 'a2'), (4, 'bob', 'b2')")
        .unwrap();
    // A superuser refreshes; the refresh still reads as alice.
    admin
        .batch_execute("SELECT pgtrickle.refresh_stream_table('mine')")
        .unwrap();
    let ids: Vec<i32> = admin
        .query("SELECT id FROM mine ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![1, 3]);
    // Bob may neither refresh nor read alice's stream table, nor the buffers.
    let mut bob = cluster.connect_as("postgres", "bob");
    let (code, _, _, _) = db_error(
        &bob.batch_execute("SELECT pgtrickle.refresh_stream_table('mine')")
            .unwrap_err(),
    );
    assert!(code == "42501" || code == "42704", "{code}");
    let (code, _, _, _) = db_error(
        &bob.batch_execute("SELECT * FROM pgtrickle_changes.changes_1")
            .unwrap_err(),
    );
    assert!(code == "42501" || code == "42P01", "{code}");
    assert_eq!(
        count(&mut bob, "SELECT count(*) FROM pgtrickle.pgt_status()"),
        0
    );
    // Alice losing access makes refreshes fail rather than leak.
    admin
        .batch_execute(
            "REVOKE SELECT ON docs FROM alice; INSERT INTO docs VALUES (5, 'alice', 'a3')",
        )
        .unwrap();
    let (code, message, _, _) = db_error(
        &admin
            .batch_execute("SELECT pgtrickle.refresh_stream_table('mine')")
            .unwrap_err(),
    );
    assert_eq!(code, "42501", "{message}");
}

#[test]
fn changes_of_the_refreshing_transaction_are_applied_once() {
    // The refreshing transaction's own id is not listed as running in its
    // snapshot; once a later transaction has committed it even falls below
    // the snapshot's xmax. Its changes must still be applied exactly once.
    let (cluster, mut client) = cluster_with_extension();
    setup(&mut client);
    let mut other = cluster.connect();
    let q = "SELECT grp, count(*), sum(val) FROM src GROUP BY grp";
    client
        .batch_execute(
            "BEGIN;
             SELECT pgtrickle.create_stream_table('g', 'SELECT grp, count(*) AS n, sum(val) AS s FROM src GROUP BY grp', NULL);",
        )
        .unwrap();
    other.batch_execute("SELECT pg_current_xact_id()").unwrap();
    client
        .batch_execute(
            "UPDATE src SET grp = 0 WHERE id < 10;
             DELETE FROM src WHERE id > 35;
             SELECT pgtrickle.refresh_stream_table('g');",
        )
        .unwrap();
    let diff = |c: &mut Client| {
        count(
            c,
            &format!(
                "SELECT count(*) FROM ((SELECT grp, n, s FROM g EXCEPT ALL {q}) UNION ALL ({q} EXCEPT ALL SELECT grp, n, s FROM g)) d"
            ),
        )
    };
    assert_eq!(diff(&mut client), 0, "inside the transaction");
    client
        .batch_execute("INSERT INTO src VALUES (100, 1, 7, 'late'); COMMIT; SELECT pgtrickle.refresh_stream_table('g')")
        .unwrap();
    assert_eq!(
        diff(&mut client),
        0,
        "after commit, with a change made after the refresh"
    );
}

#[test]
fn users_cannot_write_a_stream_table_unless_they_opt_in() {
    let (_cluster, mut client) = cluster_with_extension();
    setup(&mut client);
    client
        .batch_execute(
            "SELECT pgtrickle.create_stream_table('st', 'SELECT grp, sum(val) AS total FROM src GROUP BY grp', NULL);
             SELECT pgtrickle.create_stream_table('st2', 'SELECT grp, total FROM st WHERE total > 0', NULL);",
        )
        .unwrap();
    for (op, sql) in [
        ("INSERT", "INSERT INTO st (grp, total) VALUES (99, 1)"),
        ("UPDATE", "UPDATE st SET total = 0"),
        ("DELETE", "DELETE FROM st"),
        ("TRUNCATE", "TRUNCATE st"),
    ] {
        let e = client.batch_execute(sql).expect_err(sql);
        let (code, message, _, hint) = db_error(&e);
        assert_eq!(code, "55000", "{sql}");
        assert!(
            message.contains(&format!("cannot {op} stream table public.st")),
            "{message}"
        );
        assert!(hint.unwrap_or_default().contains("allow_direct_writes"));
    }
    // Refreshes write as before, and a stream table reading it follows.
    client
        .batch_execute(
            "UPDATE src SET val = val + 1;
             SELECT pgtrickle.refresh_stream_table('st');
             SELECT pgtrickle.refresh_stream_table('st2');",
        )
        .unwrap();
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM ((SELECT grp, total FROM st EXCEPT SELECT grp, sum(val) FROM src GROUP BY grp)
               UNION ALL (SELECT grp, total FROM st2 EXCEPT SELECT grp, total FROM st WHERE total > 0)) d"
        ),
        0
    );
    // Opting in, for one transaction.
    client
        .batch_execute(
            "BEGIN; SET LOCAL pg_trickle.allow_direct_writes = on; INSERT INTO st (grp, total) VALUES (99, 1); COMMIT;",
        )
        .unwrap();
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM st WHERE grp = 99"),
        1
    );
    assert!(client
        .batch_execute("DELETE FROM st WHERE grp = 99")
        .is_err());
}

#[test]
fn planner_hints_are_local_to_the_refresh_statements() {
    let (_cluster, mut client) = cluster_with_extension();
    setup(&mut client);
    client
        .batch_execute(
            "SELECT pgtrickle.create_stream_table('g', 'SELECT grp, sum(val) AS s FROM src GROUP BY grp', NULL);
             SELECT pgtrickle.create_stream_table('r', 'SELECT id, val FROM src WHERE val > 100', NULL);",
        )
        .unwrap();
    let settings =
        "SELECT current_setting('work_mem') || ' ' || current_setting('random_page_cost') \
                    || ' ' || current_setting('enable_sort')";
    let mut tx = client.transaction().unwrap();
    tx.batch_execute(
        "SET LOCAL work_mem = '1234kB'; SET LOCAL random_page_cost = 3; SET LOCAL enable_sort = on;
         UPDATE src SET val = val + 1 WHERE id % 3 = 0;
         SELECT pgtrickle.refresh_stream_table('g');
         SELECT pgtrickle.refresh_stream_table('r');",
    )
    .unwrap();
    let after: String = tx.query_one(settings, &[]).unwrap().get(0);
    assert_eq!(after, "1234kB 3 on", "the session's settings come back");
    let history: i64 = tx
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE action = 'DIFFERENTIAL'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(history, 2, "both refreshes were differential");
    tx.commit().unwrap();
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM ((SELECT grp, s FROM g EXCEPT ALL SELECT grp, sum(val) FROM src GROUP BY grp)
                       UNION ALL (SELECT grp, sum(val) FROM src GROUP BY grp EXCEPT ALL SELECT grp, s FROM g)) d"
        ),
        0
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM ((SELECT id, val FROM r EXCEPT ALL SELECT id, val FROM src WHERE val > 100)
                       UNION ALL (SELECT id, val FROM src WHERE val > 100 EXCEPT ALL SELECT id, val FROM r)) d"
        ),
        0
    );
}

#[test]
fn an_update_is_one_buffer_row_and_pairs_in_grouped_deltas() {
    let (_cluster, mut client) = cluster_with_extension();
    client
        .batch_execute(
            "CREATE TABLE customers (id int PRIMARY KEY, region text, score numeric);
             CREATE TABLE orders (id int PRIMARY KEY, cust int, amt numeric(10,2), qty int);
             INSERT INTO customers SELECT g, 'r' || (g % 3), g % 4 FROM generate_series(1, 12) g;
             INSERT INTO orders SELECT g, 1 + g % 12, g * 1.5, g FROM generate_series(1, 200) g;",
        )
        .unwrap();
    let query =
        "SELECT c.region, c.score, count(*) AS n, sum(o.amt) AS total, avg(o.qty) AS mean, \
                 count(o.amt) AS priced FROM orders o JOIN customers c ON c.id = o.cust \
                 WHERE o.qty % 10 <> 3 GROUP BY c.region, c.score";
    let cols = "region, score, n, total, mean, priced";
    client
        .query_one(
            "SELECT pgtrickle.create_stream_table('st', $1, NULL)",
            &[&query],
        )
        .unwrap();
    let actions = |client: &mut Client| -> String {
        let buffer = format!(
            "pgtrickle_changes.changes_{}",
            count(client, "SELECT 'orders'::regclass::oid::bigint")
        );
        client
            .query_one(
                &format!(
                    "SELECT string_agg(action || ':' || n, ',' ORDER BY action) \
                     FROM (SELECT action::text, count(*) n FROM {buffer} GROUP BY 1) a"
                ),
                &[],
            )
            .unwrap()
            .get::<_, Option<String>>(0)
            .unwrap_or_default()
    };

    // An UPDATE is one buffer row with old and new values.
    client
        .batch_execute("UPDATE orders SET amt = amt + 1 WHERE id % 2 = 0")
        .unwrap();
    assert_eq!(actions(&mut client), "U:100");
    // The grouped delta pairs them: one join for both images.
    let delta: String = client
        .query_one(
            "SELECT string_agg(value, ' ') FROM pgtrickle.explain_st('st') WHERE property LIKE 'delta_sql%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(delta.contains("__pgt_wo"), "{delta}");
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('st')")
        .unwrap();
    assert_eq!(difference(&mut client, cols, "st", query), 0);

    // Updates that keep the keys, that move rows between groups (join key,
    // filter column), NULLs, all in one window, with inserts and deletes.
    client
        .batch_execute(
            "UPDATE orders SET amt = NULL WHERE id % 7 = 0;
             UPDATE orders SET cust = 1 + (cust + 4) % 12 WHERE id % 5 = 0;
             UPDATE orders SET qty = qty + 1 WHERE id % 9 = 0;
             UPDATE orders SET amt = amt * 2, qty = qty + 10 WHERE id % 11 = 0;
             UPDATE customers SET region = 'moved' WHERE id = 3;
             DELETE FROM orders WHERE id % 13 = 0;
             INSERT INTO orders SELECT g, 1 + g % 12, g, g FROM generate_series(201, 230) g;
             UPDATE orders SET id = id + 1000 WHERE id % 17 = 0;",
        )
        .unwrap();
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('st')")
        .unwrap();
    assert_eq!(difference(&mut client, cols, "st", query), 0);

    // A rolled-back update leaves nothing to apply.
    client
        .batch_execute("BEGIN; UPDATE orders SET amt = 0; ROLLBACK;")
        .unwrap();
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('st')")
        .unwrap();
    assert_eq!(difference(&mut client, cols, "st", query), 0);
}

#[test]
fn updates_of_joined_filtered_or_grouped_columns_are_split_and_read_once() {
    let (_cluster, mut client) = cluster_with_extension();
    client
        .batch_execute(
            "CREATE TABLE customers (id int PRIMARY KEY, region text);
             CREATE TABLE orders (id int PRIMARY KEY, cust int, amt numeric(10,2), qty int, tag text);
             INSERT INTO customers SELECT g, 'r' || (g % 3) FROM generate_series(1, 12) g;
             INSERT INTO orders SELECT g, 1 + g % 12, g * 1.5, g, 't' || (g % 4) FROM generate_series(1, 200) g;",
        )
        .unwrap();
    let query = "SELECT c.region, count(*) AS n, sum(o.amt) AS total FROM orders o \
                 JOIN customers c ON c.id = o.cust WHERE o.qty % 10 <> 3 GROUP BY c.region";
    let cols = "region, n, total";
    let check = |client: &mut Client, what: &str| {
        refresh_and_check(client, "st", cols, query, Some("DIFFERENTIAL"), what)
    };
    client
        .query_one(
            "SELECT pgtrickle.create_stream_table('st', $1, NULL)",
            &[&query],
        )
        .unwrap();
    let oid = count(&mut client, "SELECT 'orders'::regclass::oid::bigint");
    let split_arg = |client: &mut Client| -> String {
        client
            .query_one(
                &format!(
                    "SELECT split_part(encode(tgargs, 'escape'), E'\\\\000', 3) FROM pg_trigger \
                      WHERE tgname = 'pg_trickle_cdc_upd_{oid}'"
                ),
                &[],
            )
            .unwrap()
            .get(0)
    };
    let actions = |client: &mut Client| -> String {
        client
            .query_one(
                &format!(
                    "SELECT coalesce(string_agg(action || ':' || n, ',' ORDER BY action), '') \
                     FROM (SELECT action::text, count(*) n FROM pgtrickle_changes.changes_{oid} GROUP BY 1) a"
                ),
                &[],
            )
            .unwrap()
            .get(0)
    };
    // Whether a paired delta of st's next refresh reads a window a second
    // time, for the old images of updates that changed a joined, filtered
    // or grouped column (that read weighs them `(0)::bigint AS __pgt_wo`).
    let reads_moved_updates = |client: &mut Client, st: &str| -> bool {
        let delta: String = client
            .query_one(
                "SELECT value FROM pgtrickle.explain_st($1) WHERE property = 'delta_sql[0]'",
                &[&st],
            )
            .unwrap()
            .get(0);
        assert!(delta.contains("__pgt_wo"), "a paired delta: {delta}");
        delta.contains("(0)::bigint AS __pgt_wo")
    };
    // The join column (cust, attnum 2) and the filtered one (qty, 4).
    assert!(
        split_arg(&mut client).starts_with("2,4@"),
        "{}",
        split_arg(&mut client)
    );

    // An update of the summed column is one row; one that moves an order
    // to another customer, or changes the filtered column, is two.
    client
        .batch_execute(
            "UPDATE orders SET amt = amt + 1 WHERE id <= 20;
             UPDATE orders SET cust = 1 + cust % 12, amt = amt * 2 WHERE id > 20 AND id <= 25;
             UPDATE orders SET qty = qty + 1 WHERE id > 25 AND id <= 28;
             UPDATE orders SET tag = 'x' WHERE id > 28 AND id <= 30;",
        )
        .unwrap();
    assert_eq!(actions(&mut client), "D:8,I:8,U:22");
    // The window began in the transaction that chose the columns: this
    // refresh cannot count on the split yet.
    assert!(reads_moved_updates(&mut client, "st"));
    check(&mut client, "after the first updates");
    // From now on it can: one read of the window.
    assert!(!reads_moved_updates(&mut client, "st"));
    client
        .batch_execute(
            "UPDATE orders SET cust = NULL WHERE id % 17 = 0;
             UPDATE orders SET cust = 3, qty = qty + 7, amt = NULL WHERE id % 5 = 0;
             UPDATE orders SET id = id + 1000 WHERE id % 13 = 0;
             UPDATE customers SET region = 'moved' WHERE id = 4;
             DELETE FROM orders WHERE id % 11 = 0;
             INSERT INTO orders SELECT g, 1 + g % 12, g, g, 'n' FROM generate_series(201, 220) g;",
        )
        .unwrap();
    check(&mut client, "after moves, NULLs and key changes");

    // A second stream table grouping on tag adds it (attnum 5); st counts
    // on the longer list only after a refresh that began after it.
    client
        .query_one(
            "SELECT pgtrickle.create_stream_table('by_tag', \
               'SELECT tag, sum(amt) AS total FROM orders GROUP BY tag', NULL)",
            &[],
        )
        .unwrap();
    assert!(
        split_arg(&mut client).starts_with("2,4,5@"),
        "{}",
        split_arg(&mut client)
    );
    assert!(reads_moved_updates(&mut client, "st"));
    client
        .batch_execute("UPDATE orders SET tag = 'y', cust = 1 + cust % 12 WHERE id % 3 = 0")
        .unwrap();
    for (st, cols, query) in [
        ("st", cols, query),
        (
            "by_tag",
            "tag, total",
            "SELECT tag, sum(amt) AS total FROM orders GROUP BY tag",
        ),
    ] {
        client
            .batch_execute(&format!("SELECT pgtrickle.refresh_stream_table('{st}')"))
            .unwrap();
        assert_eq!(difference(&mut client, cols, st, query), 0, "{st}");
    }
    assert!(!reads_moved_updates(&mut client, "st"));
    // Dropping it leaves the list as it is: refreshes count on it.
    client
        .batch_execute("SELECT pgtrickle.drop_stream_table('by_tag')")
        .unwrap();
    assert!(split_arg(&mut client).starts_with("2,4,5@"));

    // A capture without the list (as 0.1.0-era triggers migrated to the C
    // capture were) writes moved updates as U rows; once migrate() adds
    // the list, the refresh still reads those rows' old images.
    client
        .batch_execute(&format!(
            "DROP TRIGGER pg_trickle_cdc_upd_{oid} ON orders;
             CREATE TRIGGER pg_trickle_cdc_upd_{oid} AFTER UPDATE ON orders
               REFERENCING OLD TABLE AS __pgt_old NEW TABLE AS __pgt_new FOR EACH STATEMENT
               EXECUTE FUNCTION pgtrickle.pg_trickle_capture('pgtrickle_changes', 'changes_{oid}');
             UPDATE orders SET cust = 1 + cust % 12 WHERE id % 4 = 0;"
        ))
        .unwrap();
    let moved = format!(
        "SELECT count(*) FROM pgtrickle_changes.changes_{oid} WHERE action = 'U' AND cust IS DISTINCT FROM __pgt_old_cust"
    );
    assert!(count(&mut client, &moved) > 0);
    client
        .batch_execute("SELECT * FROM pgtrickle.migrate()")
        .unwrap();
    assert!(split_arg(&mut client).starts_with("2,4@"));
    assert!(reads_moved_updates(&mut client, "st"));
    check(&mut client, "after migrate() added the list");
}

#[test]
fn paired_deltas_hold_for_infinities_float_output_and_wide_tables() {
    let (_cluster, mut client) = cluster_with_extension();
    client
        .batch_execute(
            "CREATE TABLE fl (id int PRIMARY KEY, g int, ok bool, x float8);
             INSERT INTO fl VALUES (1, 1, false, 'Infinity'), (2, 1, true, 2), (3, 2, true, 1), (4, 2, true, 5);",
        )
        .unwrap();
    let filtered = "SELECT g, sum(x) AS s, count(*) AS n FROM fl WHERE ok GROUP BY g";
    let above_one = "SELECT g, sum(id) AS s, count(*) AS n FROM fl WHERE x > 1 GROUP BY g";
    for (name, query) in [("st_f", filtered), ("st_a", above_one)] {
        client
            .query_one(
                "SELECT pgtrickle.create_stream_table($1, $2, NULL)",
                &[&name, &query],
            )
            .unwrap();
    }
    // Updates that move rows (filter column, group key) carry old values
    // that weigh nothing: an infinity among them must not turn into NaN.
    // And a value that prints like its old one unless floats print exactly.
    client
        .batch_execute(
            "UPDATE fl SET ok = true, x = 5 WHERE id = 1;
             UPDATE fl SET g = 2 WHERE id = 1;
             UPDATE fl SET x = 1.0000000000000002 WHERE id = 3;
             SET extra_float_digits = 0;
             SELECT pgtrickle.refresh_stream_table('st_f');
             SELECT pgtrickle.refresh_stream_table('st_a');
             RESET extra_float_digits;",
        )
        .unwrap();
    for (name, query) in [("st_f", filtered), ("st_a", above_one)] {
        assert_eq!(difference(&mut client, "g, s, n", name, query), 0, "{name}");
    }

    // A source too wide for old values in its buffer keeps capturing an
    // update as a delete and an insert.
    let columns: Vec<String> = (1..=520)
        .map(|i| format!("c{i} bigint DEFAULT {i}"))
        .collect();
    client
        .batch_execute(&format!(
            "CREATE TABLE wide (id int PRIMARY KEY, g int, {});
             INSERT INTO wide (id, g) SELECT i, i % 3 FROM generate_series(1, 30) i;",
            columns.join(", ")
        ))
        .unwrap();
    let wide = "SELECT g, sum(c7) AS s, count(*) AS n FROM wide GROUP BY g";
    client
        .query_one(
            "SELECT pgtrickle.create_stream_table('st_w', $1, NULL)",
            &[&wide],
        )
        .unwrap();
    client
        .batch_execute(
            "UPDATE wide SET c7 = c7 * 2, g = g + 1 WHERE id % 2 = 0;
             SELECT pgtrickle.refresh_stream_table('st_w');",
        )
        .unwrap();
    assert_eq!(difference(&mut client, "g, s, n", "st_w", wide), 0);
    let buffer = format!(
        "pgtrickle_changes.changes_{}",
        count(&mut client, "SELECT 'wide'::regclass::oid::bigint")
    );
    let updates = count(
        &mut client,
        &format!("SELECT count(*) FROM {buffer} WHERE action = 'U'"),
    );
    assert_eq!(updates, 0);
}

/// Rows of `st` and of `query` that differ in their text, in this session.
fn text_difference(client: &mut Client, cols: &str, st: &str, query: &str) -> i64 {
    count(
        client,
        &format!(
            "SELECT count(*) FROM ((SELECT ROW({cols})::text FROM {st} EXCEPT ALL SELECT ROW(q.*)::text FROM ({query}) q) \
             UNION ALL (SELECT ROW(q.*)::text FROM ({query}) q EXCEPT ALL SELECT ROW({cols})::text FROM {st})) d"
        ),
    )
}

#[test]
fn row_ids_follow_neither_session_settings_nor_the_spelling_of_equal_values() {
    let (_cluster, mut client) = cluster_with_extension();
    client
        .batch_execute(
            "CREATE EXTENSION citext;
             CREATE TABLE ev (id int PRIMARY KEY, at timestamptz, d date, iv interval, f float8,
                              b bytea, n numeric, name citext, r tstzrange, v int);
             INSERT INTO ev SELECT i, timestamptz '2026-01-01 00:00+00' + (i % 3) * interval '1 day',
                                   date '2026-01-01' + i % 2, (i % 2) * interval '1 day 2 hours',
                                   (i % 3) / 3.0, decode(lpad(to_hex(i % 4), 2, '0'), 'hex'),
                                   (i % 3)::numeric(10, 1), 'Name' || i % 3,
                                   tstzrange(timestamptz '2026-01-01 00:00+00', timestamptz '2026-01-02 00:00+00' + i % 2 * interval '1 day'),
                                   i
                              FROM generate_series(1, 30) i;",
        )
        .unwrap();
    let rows = "SELECT id, at, d, iv, f, b, n, name, r, v FROM ev WHERE v % 5 <> 0";
    let grouped: [(&str, &str, &str); 5] = [
        (
            "by_at",
            "SELECT at, sum(v) AS s, count(*) AS c FROM ev GROUP BY at",
            "at, s, c",
        ),
        (
            "by_n",
            "SELECT n, sum(v) AS s, count(*) AS c FROM ev GROUP BY n",
            "n, s, c",
        ),
        (
            "by_name",
            "SELECT name, sum(v) AS s, count(*) AS c FROM ev GROUP BY name",
            "name, s, c",
        ),
        (
            "by_f_iv",
            "SELECT f, iv, count(*) AS c FROM ev GROUP BY f, iv",
            "f, iv, c",
        ),
        (
            "by_d_r",
            "SELECT d, r, max(v) AS m, count(*) AS c FROM ev GROUP BY d, r",
            "d, r, m, c",
        ),
    ];
    client
        .query_one(
            "SELECT pgtrickle.create_stream_table('rows_st', $1, NULL, 'DIFFERENTIAL')",
            &[&rows],
        )
        .unwrap();
    for (name, query, _) in grouped {
        client
            .query_one(
                "SELECT pgtrickle.create_stream_table($1, $2, NULL, 'DIFFERENTIAL')",
                &[&name, &query],
            )
            .unwrap();
    }
    // Each round refreshes in a session whose output settings differ, after
    // changes that write equal values differently (1.0 / 1.00, 'name1' /
    // 'NAME1' in citext, -0 / 0).
    let sessions = [
        "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET extra_float_digits = 1",
        "SET TimeZone = 'Asia/Kolkata'; SET DateStyle = 'German'; SET IntervalStyle = 'sql_standard'; \
         SET extra_float_digits = 0; SET bytea_output = 'escape'",
        "SET TimeZone = 'America/New_York'; SET DateStyle = 'Postgres, DMY'; SET IntervalStyle = 'iso_8601'; \
         SET extra_float_digits = 3",
    ];
    let changes = [
        "UPDATE ev SET n = n::numeric(10, 2), v = v + 1 WHERE id % 4 = 0",
        "UPDATE ev SET name = upper(name) WHERE id % 3 = 1;
         INSERT INTO ev VALUES (101, '2026-01-02 00:00+00', '2026-01-02', '26 hours', -0.0::float8, '\\x01', 2.000, 'nAmE2',
                                '[2026-01-01 00:00+00, 2026-01-02 00:00+00)', 7)
             ON CONFLICT (id) DO UPDATE SET v = ev.v + 1, n = ev.n * 1.0",
        "UPDATE ev SET f = -f, at = at + interval '1 day', v = v * 2 WHERE id % 5 = 2;
         DELETE FROM ev WHERE id % 7 = 3;
         UPDATE ev SET name = lower(name), n = n + 0.000 WHERE id % 2 = 1",
    ];
    for round in 0..6 {
        client.batch_execute("RESET ALL").unwrap();
        client.batch_execute(changes[round % 3]).unwrap();
        client.batch_execute(sessions[round % 3]).unwrap();
        client
            .batch_execute("SELECT pgtrickle.refresh_stream_table('rows_st')")
            .unwrap();
        for (name, _, _) in grouped {
            client
                .query_one("SELECT pgtrickle.refresh_stream_table($1)", &[&name])
                .unwrap();
        }
        // The rows as written, in this session's output.
        assert_eq!(
            text_difference(
                &mut client,
                "id, at, d, iv, f, b, n, name, r, v",
                "rows_st",
                rows
            ),
            0,
            "rows_st, round {round}"
        );
        // Groups as GROUP BY forms them (the stored key may be another
        // spelling of the group's value, as GROUP BY's may).
        for (name, query, cols) in grouped {
            assert_eq!(
                difference(&mut client, cols, name, query),
                0,
                "{name}, round {round}"
            );
        }
    }
}

/// The last refresh action of stream table `name`.
fn last_action(client: &mut Client, name: &str) -> String {
    client
        .query_one(
            "SELECT h.action FROM pgtrickle.pgt_refresh_history h
               JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
              WHERE s.pgt_name = $1 ORDER BY h.refresh_id DESC LIMIT 1",
            &[&name],
        )
        .unwrap()
        .get(0)
}

/// Whether the server is PostgreSQL 18 or later.
fn server_is_pg18(client: &mut Client) -> bool {
    count(
        client,
        "SELECT current_setting('server_version_num')::bigint",
    ) >= 180000
}

/// Refreshes stream table `st` and checks it against `query`, and, when
/// `action` is given, that the refresh was that one (for DIFFERENTIAL,
/// NO_DATA too: no change reached it).
fn refresh_and_check(
    client: &mut Client,
    st: &str,
    cols: &str,
    query: &str,
    action: Option<&str>,
    what: &str,
) {
    client
        .execute("SELECT pgtrickle.refresh_stream_table($1)", &[&st])
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    if let Some(expected) = action {
        let done = last_action(client, st);
        assert!(
            done == expected || (expected == "DIFFERENTIAL" && done == "NO_DATA"),
            "{what}: {done} instead of {expected}"
        );
    }
    assert_eq!(difference(client, cols, st, query), 0, "{what}");
}

/// Runs each of `steps`, refreshes stream table `st` and checks it against
/// `query` (and, if `differential`, that the refresh was DIFFERENTIAL).
fn refresh_after_each(
    client: &mut Client,
    st: &str,
    cols: &str,
    query: &str,
    steps: &[&str],
    differential: bool,
) {
    for (i, step) in steps.iter().enumerate() {
        client.batch_execute(step).unwrap();
        let action = differential.then_some("DIFFERENTIAL");
        refresh_and_check(
            client,
            st,
            cols,
            query,
            action,
            &format!("step {i}: {step}"),
        );
    }
}

#[test]
fn kept_plans_follow_changes_of_what_they_read() {
    // One session refreshes throughout, so the plans it keeps for the
    // statements of differential refreshes (pg_trickle.use_prepared_statements)
    // outlive schema changes, a drop and re-creation under the same names,
    // and the setting turned off and on.
    let (_cluster, mut client) = cluster_with_extension();
    setup(&mut client);
    let grouped = "SELECT grp, sum(val) AS s, count(*) AS n FROM src GROUP BY grp";
    let rows = "SELECT id, val, note FROM src WHERE val > 100";
    let create = format!(
        "SELECT pgtrickle.create_stream_table('g', $${grouped}$$, NULL);
         SELECT pgtrickle.create_stream_table('r', $${rows}$$, NULL);"
    );
    client.batch_execute(&create).unwrap();
    for round in 0..8 {
        let change = match round {
            2 => "ALTER TABLE src ADD COLUMN extra int DEFAULT 7".to_string(),
            3 => "SET pg_trickle.use_prepared_statements = off".to_string(),
            4 => "RESET pg_trickle.use_prepared_statements".to_string(),
            5 => format!(
                "SELECT pgtrickle.drop_stream_table('g'); SELECT pgtrickle.drop_stream_table('r'); {create}"
            ),
            6 => "ALTER TABLE src DROP COLUMN extra".to_string(),
            _ => String::new(),
        };
        client.batch_execute(&change).unwrap();
        client
            .batch_execute(&format!(
                "UPDATE src SET val = val + {round} + 1 WHERE id % 3 = {r3};
                 UPDATE src SET grp = (grp + 1) % 5 WHERE id % 7 = {r7};
                 DELETE FROM src WHERE id % 11 = {round};
                 INSERT INTO src SELECT g, g % 4, g * 9, 'new' FROM generate_series(41 + {round} * 5, 45 + {round} * 5) g;
                 SELECT pgtrickle.refresh_stream_table('g');
                 SELECT pgtrickle.refresh_stream_table('r');",
                r3 = round % 3,
                r7 = round % 7
            ))
            .unwrap();
        for (name, cols, query) in [("g", "grp, s, n", grouped), ("r", "id, val, note", rows)] {
            assert_eq!(
                difference(&mut client, cols, name, query),
                0,
                "round {round}: {name} differs from its query"
            );
            // A source's schema change may reinitialize (refresh in full) once.
            let action = last_action(&mut client, name);
            if round != 2 && round != 6 {
                assert_eq!(action, "DIFFERENTIAL", "round {round}: {name}");
            }
        }
    }
}

#[test]
fn aggregates_of_not_null_columns_follow_constraint_changes() {
    // The non-NULL count of a NOT NULL column is not kept per change row
    // but follows the row count; the stream table must stay exact when the
    // constraint comes and goes, and (PostgreSQL 18) while a NOT VALID one
    // leaves NULLs in place.
    let (_cluster, mut client) = cluster_with_extension();
    client
        .batch_execute(
            "CREATE TABLE m (id int PRIMARY KEY, g int NOT NULL, v int);
             INSERT INTO m SELECT i, i % 3, CASE WHEN i % 4 = 0 THEN NULL ELSE i END FROM generate_series(1, 24) i;
             SELECT pgtrickle.create_stream_table('ms',
                 'SELECT g, sum(v) AS s, count(v) AS c, avg(v) AS a, count(*) AS n FROM m GROUP BY g', NULL);",
        )
        .unwrap();
    let query =
        "SELECT g, sum(v) AS s, count(v) AS c, avg(v) AS a, count(*) AS n FROM m GROUP BY g";
    let pg18 = server_is_pg18(&mut client);
    let steps = [
        "UPDATE m SET v = coalesce(v, 0) WHERE id % 2 = 0",
        "UPDATE m SET v = 7 WHERE v IS NULL; ALTER TABLE m ALTER COLUMN v SET NOT NULL",
        "DELETE FROM m WHERE g = 0 AND id > 6; UPDATE m SET v = v + 1 WHERE g = 1",
        "ALTER TABLE m ALTER COLUMN v DROP NOT NULL; UPDATE m SET v = NULL WHERE id % 5 = 0",
        "DELETE FROM m WHERE g = 2 AND v IS NOT NULL",
        "INSERT INTO m VALUES (100, 2, 5), (101, 2, NULL)",
    ];
    refresh_after_each(&mut client, "ms", "g, s, c, a, n", query, &steps, false);
    if pg18 {
        // NULLs stay under a NOT VALID NOT NULL constraint.
        client
            .batch_execute(
                "ALTER TABLE m ADD CONSTRAINT m_v_not_null NOT NULL v NOT VALID;
                 SELECT pgtrickle.refresh_stream_table('ms');
                 DELETE FROM m WHERE g = 2 AND v IS NOT NULL;
                 UPDATE m SET v = v + 1 WHERE g = 1 AND v IS NOT NULL;
                 SELECT pgtrickle.refresh_stream_table('ms');",
            )
            .unwrap();
        assert_eq!(
            difference(&mut client, "g, s, c, a, n", "ms", query),
            0,
            "NOT VALID"
        );
    }
}

#[test]
fn sums_of_every_summable_type_are_maintained() {
    // Deltas subtract the sums of removed rows per group: every type `sum`
    // and `avg` accept must support that (money has no unary minus).
    let (_cluster, mut client) = cluster_with_extension();
    client
        .batch_execute(
            "CREATE TABLE s (id int PRIMARY KEY, g int NOT NULL, i2 int2, i4 int4, i8 int8, n numeric,
                             f4 float4, f8 float8, m money, iv interval);
             INSERT INTO s SELECT i, i % 3, i, i * 10, i * 100, i / 7.0, i / 4.0, i / 8.0, i * 1.25,
                                  i * interval '1 hour'
                             FROM generate_series(1, 30) i;
             SELECT pgtrickle.create_stream_table('ss',
                 'SELECT g, sum(i2) AS a, sum(i4) AS b, sum(i8) AS c, sum(n) AS d, sum(f4) AS e, sum(f8) AS f,
                         sum(m) AS h, sum(iv) AS j, avg(i4) AS k, avg(n) AS l, avg(f8) AS o, avg(iv) AS p
                    FROM s GROUP BY g', NULL);",
        )
        .unwrap();
    let query = "SELECT g, sum(i2) AS a, sum(i4) AS b, sum(i8) AS c, sum(n) AS d, sum(f4) AS e, sum(f8) AS f,
                        sum(m) AS h, sum(iv) AS j, avg(i4) AS k, avg(n) AS l, avg(f8) AS o, avg(iv) AS p
                   FROM s GROUP BY g";
    let steps = [
        "DELETE FROM s WHERE id % 4 = 0",
        "UPDATE s SET m = m + 1::money, iv = iv * 2, n = n + 1 WHERE id % 3 = 1",
        "UPDATE s SET g = 0 WHERE g = 2 AND id % 2 = 1",
        "DELETE FROM s WHERE g = 1",
        "INSERT INTO s VALUES (100, 1, 1, 2, 3, 4.5, 5.5, 6.5, 7.25, '1 day')",
    ];
    refresh_after_each(
        &mut client,
        "ss",
        "g, a, b, c, d, e, f, h, j, k, l, o, p",
        query,
        &steps,
        true,
    );
}

#[test]
fn sums_follow_infinities_and_nan_in_and_out_of_groups() {
    // Infinity - Infinity is NaN, and NaN stays NaN: a running sum cannot
    // let such a value leave its group. Groups whose sum involves one are
    // recomputed; the others keep being folded.
    let (_cluster, mut client) = cluster_with_extension();
    // PostgreSQL 17 added infinite intervals.
    let (iv_col, iv_aggs) = if server_is_pg18(&mut client) {
        (", iv interval", ", sum(iv) AS siv, avg(iv) AS aiv")
    } else {
        ("", "")
    };
    client
        .batch_execute(&format!(
            "CREATE TABLE nf (id int PRIMARY KEY, g int NOT NULL, f8 float8, f4 float4, n numeric{iv_col});
             INSERT INTO nf (id, g, f8, f4, n) SELECT i, i % 3, i, i / 2.0, i / 4.0 FROM generate_series(1, 12) i;"
        ))
        .unwrap();
    let iv_set = if iv_col.is_empty() {
        ""
    } else {
        "UPDATE nf SET iv = id * interval '1 hour';"
    };
    client.batch_execute(iv_set).unwrap();
    let sums = format!(
        "SELECT g, sum(f8) AS s8, sum(f4) AS s4, sum(n) AS sn, avg(f8) AS a8, avg(n) AS an, count(*) AS c{iv_aggs}
           FROM nf GROUP BY g"
    );
    let with_min = "SELECT g, sum(f8) AS s8, avg(n) AS an, min(f4) AS m4 FROM nf GROUP BY g";
    let scalar = "SELECT sum(f8) AS s8, avg(n) AS an FROM nf";
    let stream_tables = [
        (
            "nf_sums",
            sums.as_str(),
            format!(
                "g, s8, s4, sn, a8, an, c{}",
                if iv_col.is_empty() { "" } else { ", siv, aiv" }
            ),
        ),
        ("nf_min", with_min, "g, s8, an, m4".to_string()),
        ("nf_scalar", scalar, "s8, an".to_string()),
    ];
    for (name, query, _) in &stream_tables {
        client
            .execute(
                "SELECT pgtrickle.create_stream_table($1, $2, NULL, 'DIFFERENTIAL')",
                &[name, query],
            )
            .unwrap();
    }
    let iv = |value: &str| {
        if iv_col.is_empty() {
            String::new()
        } else {
            format!(", iv = {value}")
        }
    };
    let steps = [
        format!("UPDATE nf SET f8 = 'Infinity', f4 = '-Infinity', n = 'Infinity'{} WHERE id = 1", iv("'infinity'")),
        format!("UPDATE nf SET f8 = 2, f4 = 2, n = 2{} WHERE id = 1", iv("'2 hours'")),
        "UPDATE nf SET f8 = 'Infinity', n = 'NaN' WHERE id = 2; UPDATE nf SET f8 = '-Infinity', f4 = 'NaN' WHERE id = 5".to_string(),
        "UPDATE nf SET f8 = 1, n = 1 WHERE id = 2".to_string(),
        "DELETE FROM nf WHERE id = 5".to_string(),
        // in and out within one refresh's changes
        "INSERT INTO nf (id, g, f8, f4, n) VALUES (20, 1, 'Infinity', 'NaN', '-Infinity'); DELETE FROM nf WHERE id = 20".to_string(),
        // a new group whose changes hold an infinity that left again
        "INSERT INTO nf (id, g, f8, f4, n) VALUES (21, 7, 'Infinity', 1, 'NaN'), (22, 7, 3, 4, 5); DELETE FROM nf WHERE id = 21".to_string(),
        // a group moving away from its infinity
        "UPDATE nf SET f8 = '-Infinity' WHERE id = 3; UPDATE nf SET g = 2 WHERE id = 3".to_string(),
        "DELETE FROM nf WHERE id = 3".to_string(),
    ];
    for (i, step) in steps.iter().enumerate() {
        client.batch_execute(step).unwrap();
        for (name, query, cols) in &stream_tables {
            let what = format!("{name}, step {i}: {step}");
            refresh_and_check(&mut client, name, cols, query, Some("DIFFERENTIAL"), &what);
        }
    }
}

#[test]
fn sources_may_have_columns_named_like_the_change_buffers_own() {
    // A change buffer has columns change_id, xid, action and captured_at of
    // its own; a source's columns of those names are kept apart.
    let (_cluster, mut client) = cluster_with_extension();
    client
        .batch_execute(
            "CREATE TABLE audit (id int PRIMARY KEY, action text NOT NULL, xid bigint, change_id int, g int);
             INSERT INTO audit SELECT i, 'act' || (i % 3), i * 10, i % 4, i % 2 FROM generate_series(1, 20) i;
             SELECT pgtrickle.create_stream_table('audit_rows',
                 'SELECT id, action, xid, change_id FROM audit WHERE change_id <> 0', NULL, 'DIFFERENTIAL');
             SELECT pgtrickle.create_stream_table('audit_by_action',
                 'SELECT action, count(*) AS n, sum(xid) AS s FROM audit GROUP BY action', NULL, 'DIFFERENTIAL');",
        )
        .unwrap();
    let rows = "SELECT id, action, xid, change_id FROM audit WHERE change_id <> 0";
    let grouped = "SELECT action, count(*) AS n, sum(xid) AS s FROM audit GROUP BY action";
    let steps = [
        "INSERT INTO audit VALUES (21, 'act9', 5, 1, 0)",
        "UPDATE audit SET action = 'act0' WHERE id % 5 = 0",
        "UPDATE audit SET xid = xid + 1, change_id = change_id + 1 WHERE id % 3 = 0",
        "DELETE FROM audit WHERE id % 7 = 0",
        // a column named like one of the buffer's, added later
        "ALTER TABLE audit ADD COLUMN captured_at int DEFAULT 3; UPDATE audit SET captured_at = id WHERE id < 5",
    ];
    for (st, query, cols) in [
        ("audit_rows", rows, "id, action, xid, change_id"),
        ("audit_by_action", grouped, "action, n, s"),
    ] {
        assert_eq!(
            difference(&mut client, cols, st, query),
            0,
            "{st} after creation"
        );
    }
    for (i, step) in steps.iter().enumerate() {
        client.batch_execute(step).unwrap();
        for (st, query, cols) in [
            ("audit_rows", rows, "id, action, xid, change_id"),
            ("audit_by_action", grouped, "action, n, s"),
        ] {
            // the added column is not read: refreshes stay differential
            let what = format!("{st}, step {i}: {step}");
            refresh_and_check(&mut client, st, cols, query, Some("DIFFERENTIAL"), &what);
        }
    }
    // the added column is captured too
    let late = "SELECT captured_at, count(*) AS n FROM audit GROUP BY captured_at";
    client
        .execute(
            "SELECT pgtrickle.create_stream_table('audit_late', $1, NULL, 'DIFFERENTIAL')",
            &[&late],
        )
        .unwrap();
    refresh_after_each(
        &mut client,
        "audit_late",
        "captured_at, n",
        late,
        &["UPDATE audit SET captured_at = 4 WHERE id % 2 = 0"],
        true,
    );

    // Two columns that would need one buffer column: refused, nothing left.
    client
        .batch_execute("CREATE TABLE clash (id int PRIMARY KEY, v int, __pgt_old_v int)")
        .unwrap();
    let err = client
        .execute(
            "SELECT pgtrickle.create_stream_table('clash_st', 'SELECT id, v FROM clash', NULL)",
            &[],
        )
        .unwrap_err();
    let message = err.as_db_error().unwrap().message().to_string();
    assert!(
        message.contains("column \"__pgt_old_v\" of table")
            && message.contains(
                "needs the change buffer column \"__pgt_old_v\", which column \"v\" needs too"
            ),
        "{message}"
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pg_class WHERE relname = 'clash_st' OR relname = 'changes_' || 'clash'::regclass::oid"
        ),
        0
    );
}

#[test]
fn not_null_of_an_inheritance_parent_does_not_hold_for_its_children() {
    // A child may drop the parent's NOT NULL constraint; the parent's
    // column then yields NULLs through inheritance.
    let (_cluster, mut client) = cluster_with_extension();
    // PostgreSQL 18 keeps an inherited NOT NULL in the children; a NO
    // INHERIT one stays with the parent.
    let tables = if server_is_pg18(&mut client) {
        "CREATE TABLE p (id int PRIMARY KEY, g int, v int NOT NULL NO INHERIT);
         CREATE TABLE c () INHERITS (p);"
    } else {
        "CREATE TABLE p (id int PRIMARY KEY, g int, v int NOT NULL);
         CREATE TABLE c () INHERITS (p);
         ALTER TABLE c ALTER COLUMN v DROP NOT NULL;"
    };
    client.batch_execute(tables).unwrap();
    client
        .batch_execute(
            "INSERT INTO p VALUES (1, 1, 5);
             INSERT INTO c VALUES (2, 1, NULL), (3, 2, NULL);
             SELECT pgtrickle.create_stream_table('pc',
                 'SELECT g, count(v) AS c, sum(v) AS s, avg(v) AS a FROM p GROUP BY g', NULL, 'DIFFERENTIAL');",
        )
        .unwrap();
    let query = "SELECT g, count(v) AS c, sum(v) AS s, avg(v) AS a FROM p GROUP BY g";
    let steps = [
        "INSERT INTO p VALUES (4, 1, 4), (5, 2, 3)",
        "DELETE FROM p WHERE id = 5",
        "UPDATE p SET v = v + 1",
    ];
    refresh_after_each(&mut client, "pc", "g, c, s, a", query, &steps, false);
}

#[test]
fn whole_row_references_mean_the_source_row_in_every_mode() {
    // `t` or `t.*` used as a value is the source row: its columns only,
    // dropped ones left out, and NULL where a LEFT JOIN finds no row.
    let (_cluster, mut client) = cluster_with_extension();
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, g int, gone int, v int);
             ALTER TABLE t DROP COLUMN gone;
             INSERT INTO t SELECT i, i % 3, i * 10 FROM generate_series(1, 12) i;
             CREATE TABLE b (id int PRIMARY KEY, t_id int, w text);
             INSERT INTO b SELECT i, i * 2, 'w' || i FROM generate_series(1, 4) i;",
        )
        .unwrap();
    let cases = [
        (
            "rows_",
            "SELECT t::text AS r, row_to_json(t)::text AS j, (t).v AS v FROM t WHERE t.* IS NOT NULL",
            "r, j, v",
        ),
        (
            "grouped",
            "SELECT g, count(t) AS n, max(t::text) AS r FROM t GROUP BY g",
            "g, n, r",
        ),
        (
            "via_subquery",
            "SELECT t.id, b::text AS bt, b IS NULL AS bn, count_b FROM t LEFT JOIN (SELECT b.*, 1 AS count_b FROM b) b ON b.t_id = t.id",
            "id, bt, bn, count_b",
        ),
        (
            "left_",
            "SELECT t.id, b::text AS bt, b IS NULL AS bn FROM t LEFT JOIN b ON b.t_id = t.id",
            "id, bt, bn",
        ),
    ];
    let steps = [
        "UPDATE t SET v = v + 1 WHERE id % 4 = 0",
        "DELETE FROM b WHERE id = 1; INSERT INTO b VALUES (9, 7, 'x'), (10, 7, NULL)",
        "INSERT INTO t VALUES (13, 1, NULL); DELETE FROM t WHERE id = 2",
        "UPDATE b SET w = NULL, t_id = 5 WHERE id = 2",
        // the whole row of t grows: its readers refresh in full once
        "ALTER TABLE t ADD COLUMN extra int DEFAULT 5; UPDATE t SET v = 0 WHERE id = 3",
        "UPDATE t SET extra = 6 WHERE id % 2 = 0; UPDATE b SET w = 'y' WHERE id = 3",
    ];
    for mode in ["DIFFERENTIAL", "AUTO", "FULL"] {
        for (st, query, cols) in cases {
            let created = client.execute(
                "SELECT pgtrickle.create_stream_table($1, $2, NULL, $3)",
                &[&st, &query, &mode],
            );
            if st == "via_subquery" && mode == "DIFFERENTIAL" {
                // a whole-row reference to a subquery is not maintained
                let (_, message, _, _) = db_error(&created.expect_err(query));
                assert!(
                    message.contains("a whole-row reference to a subquery or view"),
                    "{message}"
                );
                continue;
            }
            created.unwrap_or_else(|e| panic!("{mode} {st}: {e}"));
            assert_eq!(
                difference(&mut client, cols, st, query),
                0,
                "{mode} {st} after creation"
            );
        }
        client.batch_execute("BEGIN").unwrap();
        for (i, step) in steps.iter().enumerate() {
            client.batch_execute(step).unwrap();
            for (st, query, cols) in cases {
                if st == "via_subquery" && mode == "DIFFERENTIAL" {
                    continue;
                }
                let reads_whole_t = matches!(st, "rows_" | "grouped");
                let action = match mode {
                    // AUTO picks by the share of rows changed, large here
                    "AUTO" => None,
                    _ if step.starts_with("ALTER") && reads_whole_t => Some("FULL"),
                    _ => Some(mode),
                };
                let what = format!("{mode} {st} step {i}: {step}");
                refresh_and_check(&mut client, st, cols, query, action, &what);
            }
        }
        // Back to the data each mode starts from.
        client.batch_execute("ROLLBACK").unwrap();
        for (st, _, _) in cases {
            if st == "via_subquery" && mode == "DIFFERENTIAL" {
                continue;
            }
            client
                .execute("SELECT pgtrickle.drop_stream_table($1)", &[&st])
                .unwrap();
        }
    }
}

#[test]
fn every_refresh_is_recorded_and_announced() {
    let (cluster, mut client) = cluster_with_extension();
    setup(&mut client);
    client
        .batch_execute(
            "SELECT pgtrickle.create_stream_table('g', 'SELECT grp, sum(val) AS s FROM src GROUP BY grp', NULL);
             SELECT pgtrickle.create_stream_table('\"we''ird\"', 'SELECT id, val FROM src', NULL, 'FULL');",
        )
        .unwrap();
    let mut listener = cluster.connect();
    listener.batch_execute("LISTEN pg_trickle_refresh").unwrap();
    client
        .batch_execute(
            "UPDATE src SET val = val + 1 WHERE id <= 3;
             SELECT pgtrickle.refresh_stream_table('g');
             SELECT pgtrickle.refresh_stream_table('\"we''ird\"');",
        )
        .unwrap();

    // One notification per refresh, a JSON object naming the stream table
    // (any character in its name) and what the refresh did.
    let mut notifications = listener.notifications();
    let mut iter = notifications.timeout_iter(std::time::Duration::from_secs(5));
    let payloads: Vec<serde_json::Value> = (0..2)
        .map(|_| {
            let n = iter
                .next()
                .expect("reading notifications")
                .expect("a notification");
            serde_json::from_str(n.payload()).unwrap()
        })
        .collect();
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    assert_eq!(payloads[0]["name"], "g");
    assert_eq!(payloads[0]["action"], "DIFFERENTIAL");
    assert_eq!(payloads[1]["schema"], "public");
    assert_eq!(payloads[1]["name"], "we'ird");
    assert_eq!(payloads[1]["action"], "FULL");
    assert_eq!(payloads[1]["rows_inserted"], 40);
    assert_eq!(payloads[1]["rows_deleted"], 40);

    // The history rows, every column as the refresh knew it.
    let mut row = |name: &str| {
        client
            .query_one(
                "SELECT h.action || '/' || h.requested_action || '/' || h.status || '/' || h.initiated_by
                        || '/' || coalesce(h.reason, '-') || '/' || coalesce(h.error_message, '-')
                        || '/' || (h.delta_rows IS NOT NULL) || '/' || (h.data_timestamp = h.start_time)
                        || '/' || (h.end_time >= h.start_time)
                   FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
                  WHERE s.pgt_name = $1 ORDER BY h.refresh_id DESC LIMIT 1",
                &[&name],
            )
            .unwrap()
            .get::<_, String>(0)
    };
    assert_eq!(
        row("g"),
        "DIFFERENTIAL/DIFFERENTIAL/COMPLETED/MANUAL/-/-/true/true/true"
    );
    assert_eq!(
        row("we'ird"),
        "FULL/FULL/COMPLETED/MANUAL/refresh mode FULL/-/false/true/true"
    );

    // The catalog row: the frontier moved, and a FULL refresh (also the
    // initial population of `g`) records how long it took.
    let catalog: String = client
        .query_one(
            "SELECT string_agg(pgt_name || ':' || (frontier IS NOT NULL) || ':' || is_populated || ':'
                               || coalesce((last_full_ms >= 0)::text, '-') || ':' || status, ' ' ORDER BY pgt_name)
               FROM pgtrickle.pgt_stream_tables",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        catalog,
        "g:true:true:true:ACTIVE we'ird:true:true:true:ACTIVE"
    );
}
