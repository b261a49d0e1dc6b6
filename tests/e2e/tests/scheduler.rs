//! The background scheduler: schedules, dependency order, concurrent
//! writers, crashes, errors and the enabled switch.

use pgtrickle_e2e::{difference, Client, Cluster};
use postgres::fallible_iterator::FallibleIterator;
use std::time::{Duration, Instant};

const FAST: &[&str] = &[
    "pg_trickle.min_schedule_seconds = 1",
    "pg_trickle.scheduler_interval_ms = 100",
];

fn fast_cluster() -> (Cluster, Client) {
    let cluster = Cluster::start_with(FAST);
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION pg_trickle").unwrap();
    (cluster, client)
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// ALTER SYSTEM SET pg_trickle.enabled, then a configuration reload.
fn set_scheduler_enabled(client: &mut Client, on: bool) {
    set_system(
        client,
        if on {
            "pg_trickle.enabled = on"
        } else {
            "pg_trickle.enabled = off"
        },
    );
}

/// `ALTER SYSTEM SET <setting>`, then a reload.
fn set_system(client: &mut Client, setting: &str) {
    client
        .batch_execute(&format!("ALTER SYSTEM SET {setting}"))
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
}

#[test]
fn a_short_schedule_catches_up_on_its_own() {
    let (_cluster, mut client) = fast_cluster();
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, g int, v int);
             SELECT pgtrickle.create_stream_table('sums', 'SELECT g, sum(v) AS s, count(*) AS n FROM t GROUP BY g', '1s');
             INSERT INTO t SELECT i, i % 5, i FROM generate_series(1, 1000) i;",
        )
        .unwrap();
    let q = "SELECT g, sum(v), count(*) FROM t GROUP BY g";
    wait_until("the scheduler to refresh", Duration::from_secs(30), || {
        difference(&mut client, "g, s, n", "sums", q) == 0
    });
    let by_scheduler: i64 = client
        .query_one("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE initiated_by = 'SCHEDULER' AND action = 'DIFFERENTIAL'", &[])
        .unwrap()
        .get(0);
    assert!(by_scheduler >= 1);
}

#[test]
fn a_chain_of_three_refreshes_upstream_first() {
    let (_cluster, mut client) = fast_cluster();
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, g int, v int);
             INSERT INTO t SELECT i, i % 7, i FROM generate_series(1, 200) i;
             SELECT pgtrickle.create_stream_table('s1', 'SELECT id, g, v FROM t WHERE v % 2 = 0', '1s');
             SELECT pgtrickle.create_stream_table('s2', 'SELECT g, sum(v) AS total FROM s1 GROUP BY g', '1s');
             SELECT pgtrickle.create_stream_table('s3', 'SELECT g, total FROM s2 WHERE total > 100', '1s');
             UPDATE t SET v = v + 2 WHERE id % 3 = 0;
             DELETE FROM t WHERE id % 11 = 0;",
        )
        .unwrap();
    let q3 = "SELECT g, total FROM (SELECT g, sum(v) AS total FROM t WHERE v % 2 = 0 GROUP BY g) x WHERE total > 100";
    wait_until("the chain to catch up", Duration::from_secs(30), || {
        difference(&mut client, "g, total", "s3", q3) == 0
    });
    // In every scheduler pass that refreshed all three, s1 ran before s2 and s2 before s3.
    let out_of_order: i64 = client
        .query_one(
            "WITH h AS (SELECT s.pgt_name, r.start_time FROM pgtrickle.pgt_refresh_history r
                          JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
                         WHERE r.initiated_by = 'SCHEDULER' AND r.action = 'DIFFERENTIAL')
             SELECT count(*) FROM h a JOIN h b ON b.start_time > a.start_time AND b.start_time < a.start_time + interval '50 ms'
              WHERE (a.pgt_name, b.pgt_name) IN (('s2', 's1'), ('s3', 's2'), ('s3', 's1'))",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(out_of_order, 0);
}

fn writer(conn: String, seed: u64, rounds: usize) {
    let mut client = postgres::Client::connect(&conn, postgres::NoTls).unwrap();
    let mut x = seed;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..rounds {
        let id = (next() % 500) as i32;
        let g = (next() % 6) as i32;
        let sql = match next() % 4 {
            0 => format!("INSERT INTO t VALUES ({id}, {g}, {}) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v", next() % 100),
            1 => format!("UPDATE t SET g = {g}, v = v + 1 WHERE id = {id}"),
            2 => format!("DELETE FROM t WHERE id = {id}"),
            _ => format!("BEGIN; UPDATE t SET v = v - 1 WHERE id % 7 = {}; ROLLBACK", id % 7),
        };
        // Crashes end the connection; that is part of the test.
        if client.batch_execute(&sql).is_err() {
            return;
        }
    }
}

fn start_writers(cluster: &Cluster, n: u64, rounds: usize) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let conn = cluster.connection_string("postgres");
            std::thread::spawn(move || writer(conn, 0x9E37_79B9 + i * 7919, rounds))
        })
        .collect()
}

const GROUPS: &str = "SELECT g, count(*), sum(v), min(v), max(v) FROM t GROUP BY g";
const FILTERED: &str = "SELECT id, g, v FROM t WHERE v > 20";

fn create_targets(client: &mut Client) {
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, g int, v int);
             INSERT INTO t SELECT i, i % 6, i % 50 FROM generate_series(1, 300) i;
             SELECT pgtrickle.create_stream_table('groups', 'SELECT g, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi FROM t GROUP BY g', '1s');
             SELECT pgtrickle.create_stream_table('filtered', 'SELECT id, g, v FROM t WHERE v > 20', '1s');",
        )
        .unwrap();
}

fn assert_exact_after_catch_up(client: &mut Client) {
    wait_until("stream tables to be exact", Duration::from_secs(40), || {
        difference(client, "g, n, s, lo, hi", "groups", GROUPS) == 0
            && difference(client, "id, g, v", "filtered", FILTERED) == 0
    });
}

#[test]
fn concurrent_writers_lose_nothing() {
    let (cluster, mut client) = fast_cluster();
    create_targets(&mut client);
    for w in start_writers(&cluster, 4, 600) {
        w.join().unwrap();
    }
    assert_exact_after_catch_up(&mut client);
    let failed: i64 = client
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE status = 'FAILED'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(failed, 0);
}

#[test]
fn a_crash_during_writes_and_refreshes_recovers_without_help() {
    let (cluster, mut client) = fast_cluster();
    create_targets(&mut client);
    let writers = start_writers(&cluster, 3, 100_000);
    std::thread::sleep(Duration::from_millis(2500));
    cluster.crash();
    for w in writers {
        w.join().unwrap();
    }
    cluster.start_again();
    let mut client = cluster.connect();
    // More writes after recovery, then the scheduler must converge.
    for w in start_writers(&cluster, 2, 200) {
        w.join().unwrap();
    }
    assert_exact_after_catch_up(&mut client);
}

#[test]
fn repeated_failures_stop_the_stream_table_with_an_alert() {
    let (cluster, mut client) = fast_cluster();
    client
        .batch_execute(
            "CREATE ROLE carol LOGIN; GRANT CREATE ON SCHEMA public TO carol;
             CREATE TABLE t (id int PRIMARY KEY, v int); GRANT SELECT ON t TO carol;
             INSERT INTO t VALUES (1, 1);",
        )
        .unwrap();
    let mut carol = cluster.connect_as("postgres", "carol");
    carol
        .batch_execute("SELECT pgtrickle.create_stream_table('c', 'SELECT id, v FROM t', '1s')")
        .unwrap();
    let mut listener = cluster.connect();
    listener.batch_execute("LISTEN pg_trickle_alert").unwrap();
    client
        .batch_execute("REVOKE SELECT ON t FROM carol; INSERT INTO t VALUES (2, 2)")
        .unwrap();
    wait_until("ERROR status", Duration::from_secs(30), || {
        let status: String = client
            .query_one("SELECT status FROM pgtrickle.pgt_stream_tables", &[])
            .unwrap()
            .get(0);
        status == "ERROR"
    });
    let row = client
        .query_one(
            "SELECT consecutive_errors, last_error FROM pgtrickle.pgt_stream_tables",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 3);
    assert!(
        row.get::<_, String>(1).contains("permission denied"),
        "{:?}",
        row.get::<_, String>(1)
    );
    let failed: i64 = client
        .query_one("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE status = 'FAILED' AND error_message LIKE '%permission denied%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(failed, 3);
    let mut notifications = listener.notifications();
    let alert = notifications
        .timeout_iter(Duration::from_secs(5))
        .next()
        .expect("reading notifications")
        .expect("an alert");
    assert!(
        alert.payload().contains("\"event\":\"stream_table_error\""),
        "{}",
        alert.payload()
    );
    // ERROR refuses manual refreshes with a way out, and ACTIVE resumes.
    let err = client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('c')")
        .unwrap_err();
    assert!(err
        .as_db_error()
        .unwrap()
        .hint()
        .unwrap_or("")
        .contains("status => 'ACTIVE'"));
    client
        .batch_execute("GRANT SELECT ON t TO carol; SELECT pgtrickle.alter_stream_table('c', status => 'ACTIVE')")
        .unwrap();
    wait_until("recovery", Duration::from_secs(30), || {
        difference(&mut client, "id, v", "c", "SELECT id, v FROM t") == 0
    });
}

#[test]
fn disabling_the_scheduler_stops_refreshes() {
    let (_cluster, mut client) = fast_cluster();
    set_scheduler_enabled(&mut client, false);
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY);
             SELECT pgtrickle.create_stream_table('s', 'SELECT id FROM t', '1s');",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    client.batch_execute("INSERT INTO t VALUES (1)").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let n: i64 = client
        .query_one("SELECT count(*) FROM s", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "no refresh while pg_trickle.enabled is off");
    set_scheduler_enabled(&mut client, true);
    wait_until("refresh after enabling", Duration::from_secs(30), || {
        client
            .query_one("SELECT count(*) FROM s", &[])
            .unwrap()
            .get::<_, i64>(0)
            == 1
    });
}

fn pending_rows(client: &mut Client) -> i64 {
    client
        .query_one("SELECT pending_rows FROM pgtrickle.check_cdc_health()", &[])
        .unwrap()
        .get::<_, Option<i64>>(0)
        .expect("the buffer answers")
}

/// The buffer's file, its size and its TOAST table's size, and the size of
/// its index of TRUNCATE markers.
fn buffer_files(client: &mut Client, source: &str) -> (u32, i64, i64, i64) {
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_relation_filenode(c.oid)::oid, pg_catalog.pg_relation_size(c.oid), \
                    pg_catalog.pg_relation_size(c.reltoastrelid), \
                    (SELECT pg_catalog.pg_relation_size(i.indexrelid) FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid) \
               FROM pg_catalog.pg_class c \
              WHERE c.oid = pg_catalog.format('pgtrickle_changes.changes_%s', $1::text::regclass::oid)::regclass",
            &[&source],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

/// Waits until a scheduler worker serves the client's database.
fn wait_for_scheduler(client: &mut Client) {
    wait_until("the scheduler", Duration::from_secs(20), || {
        client
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_stat_activity \
                  WHERE backend_type = 'pg_trickle scheduler' AND datname = pg_catalog.current_database()",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 1
    });
}

const BIG_QUERY: &str = "SELECT id, pad FROM big";

/// A cluster with `big` and `big_st` over `BIG_QUERY`, whose scheduler
/// ticks a minute apart: any sweep within the test is one a refresh woke.
fn big_with_ticks_a_minute_apart() -> (Cluster, Client) {
    let (cluster, mut client) = fast_cluster();
    create_big(&mut client, BIG_QUERY);
    wait_for_scheduler(&mut client);
    set_system(&mut client, "pg_trickle.scheduler_interval_ms = 60000");
    // The worker reloads on the signal, then sleeps for the new interval.
    std::thread::sleep(Duration::from_secs(2));
    (cluster, client)
}

/// The table `big` and the manual stream table `big_st` over `query`.
fn create_big(client: &mut Client, query: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE big (id int PRIMARY KEY, pad text);
             SELECT pgtrickle.create_stream_table('big_st', $q${query}$q$, NULL);"
        ))
        .unwrap();
}

#[test]
fn a_consumed_buffer_is_emptied_in_place_unless_it_held_a_truncate_marker() {
    let (_cluster, mut client) = fast_cluster();
    let query = "SELECT id, length(pad) AS n FROM big";
    create_big(&mut client, query);
    // More than the 1 MB below which a sweep DELETEs, some of it TOASTed
    // (random text does not compress below the TOAST threshold).
    let fill = |client: &mut Client, from: i32| {
        client
            .batch_execute(&format!(
                "INSERT INTO big SELECT g, repeat('x', 150) FROM generate_series({from}, {from} + 19999) g;
                 INSERT INTO big SELECT g, (SELECT string_agg(md5(random()::text || g || k.i), '') FROM generate_series(1, 300) AS k(i))
                   FROM generate_series({from} + 20000, {from} + 20009) g;"
            ))
            .unwrap();
    };
    let refresh_and_sweep = |client: &mut Client| {
        client
            .batch_execute("SELECT pgtrickle.refresh_stream_table('big_st')")
            .unwrap();
        wait_until("the sweep", Duration::from_secs(20), || {
            pending_rows(client) == 0
        });
        assert_eq!(difference(client, "id, n", "big_st", query), 0);
    };

    // The sweeps below are the scheduler's: wait until it serves the
    // database (a refresh before then cleans up itself).
    wait_for_scheduler(&mut client);
    fill(&mut client, 1);
    let (file, size, toast, index) = buffer_files(&mut client, "big");
    assert!(size >= 1 << 20, "{size} bytes of changes");
    assert!(toast > 0, "some changes are TOASTed");
    assert_eq!(index, 8192, "no TRUNCATE marker: the index is its metapage");
    refresh_and_sweep(&mut client);
    // Emptied in place: the same file, and plans reading it stay valid.
    assert_eq!(buffer_files(&mut client, "big"), (file, 0, 0, 8192));

    // Changes go on being captured into it.
    client
        .batch_execute(
            "UPDATE big SET pad = pad || 'y' WHERE id % 3 = 0;
             DELETE FROM big WHERE id % 7 = 0;",
        )
        .unwrap();
    refresh_and_sweep(&mut client);
    assert_eq!(buffer_files(&mut client, "big").0, file);

    // A TRUNCATE marker is found through the index, which then points into
    // the buffer: emptying it in place would leave the entry pointing at
    // nothing, so the sweep TRUNCATEs, which rebuilds the index.
    client.batch_execute("TRUNCATE big").unwrap();
    fill(&mut client, 100_001);
    assert!(buffer_files(&mut client, "big").3 > 8192);
    refresh_and_sweep(&mut client);
    let (truncated, size, toast, index) = buffer_files(&mut client, "big");
    assert_ne!(truncated, file, "TRUNCATE gives the buffer a new file");
    assert_eq!((size, toast, index), (0, 0, 8192));

    // After which it is emptied in place again.
    fill(&mut client, 200_001);
    refresh_and_sweep(&mut client);
    assert_eq!(buffer_files(&mut client, "big"), (truncated, 0, 0, 8192));

    // A refresh that cleans up itself (no scheduler) empties with TRUNCATE,
    // which a rollback undoes together with the refresh: its changes stay.
    set_scheduler_enabled(&mut client, false);
    fill(&mut client, 300_001);
    let pending = pending_rows(&mut client);
    client
        .batch_execute(
            "BEGIN;
             SELECT pgtrickle.refresh_stream_table('big_st');
             ROLLBACK;",
        )
        .unwrap();
    assert_eq!(pending_rows(&mut client), pending);
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('big_st')")
        .unwrap();
    assert_eq!(difference(&mut client, "id, n", "big_st", query), 0);
    assert_eq!(pending_rows(&mut client), 0);
}

/// The size of `source`'s change buffer file, read without locking the
/// buffer (a lock would keep the sweep from emptying it).
fn buffer_file_size(client: &mut Client, source: &str) -> i64 {
    client
        .query_one(
            "SELECT (pg_catalog.pg_stat_file(pg_catalog.pg_relation_filepath( \
                 pg_catalog.format('pgtrickle_changes.changes_%s', $1::text::regclass::oid)::regclass))).size",
            &[&source],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_manual_refresh_wakes_the_sweep_once_it_has_let_go_of_the_buffers() {
    // A buffer of 1 MB or more is emptied under an ACCESS EXCLUSIVE lock that
    // the sweep does not wait for. Woken while the refresh still held the
    // buffer, the sweep would leave it full until its next tick, here a
    // minute away; so every round below is emptied only if the wake-up came
    // after the refresh's locks were released.
    let (cluster, mut client) = big_with_ticks_a_minute_apart();
    let query = BIG_QUERY;
    // Sessions keeping the CPUs busy: a backend that wakes the scheduler
    // may then lose its CPU to it before it gets to release its locks.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let mut session = cluster.connect();
            std::thread::spawn(move || {
                let _ = session.batch_execute(
                    "SET statement_timeout = '30s';
                     SELECT count(*) FROM generate_series(1, 10000000000)",
                );
            })
        })
        .collect();
    for round in 0..6 {
        let from = round * 20_000 + 1;
        client
            .batch_execute(&format!(
                "INSERT INTO big SELECT g, repeat('x', 150) FROM generate_series({from}, {from} + 19999) g"
            ))
            .unwrap();
        assert!(buffer_file_size(&mut client, "big") >= 1 << 20);
        client
            .batch_execute("SELECT pgtrickle.refresh_stream_table('big_st')")
            .unwrap();
        wait_until(
            &format!("the sweep woken by refresh {round}"),
            Duration::from_secs(10),
            || buffer_file_size(&mut client, "big") == 0,
        );
    }
    client
        .batch_execute(
            "SELECT pg_catalog.pg_cancel_backend(pid) FROM pg_catalog.pg_stat_activity \
              WHERE query LIKE '%generate_series(1, 10000000000)%' AND pid <> pg_catalog.pg_backend_pid()",
        )
        .unwrap();
    for session in busy {
        session.join().unwrap();
    }
    assert_eq!(difference(&mut client, "id, pad", "big_st", query), 0);
}

/// The qualified name of `source`'s change buffer.
fn buffer_name(client: &mut Client, source: &str) -> String {
    client
        .query_one(
            "SELECT pg_catalog.format('pgtrickle_changes.changes_%s', $1::text::regclass::oid)",
            &[&source],
        )
        .unwrap()
        .get(0)
}

/// The rows in `source`'s change buffer.
fn buffer_rows(client: &mut Client, source: &str) -> i64 {
    let buffer = buffer_name(client, source);
    client
        .query_one(&format!("SELECT count(*) FROM {buffer}"), &[])
        .unwrap()
        .get(0)
}

#[test]
fn the_sweep_deletes_what_was_consumed_while_another_session_reads_the_buffer() {
    // Changes committed after the refresh's snapshot keep the buffer from
    // being emptied whole, so the sweep has no use for an exclusive lock on
    // it: it deletes what was consumed even while a session reads the
    // buffer (another consumer's refresh, say). Were it to try the lock, it
    // would find it taken and leave everything for its next tick, here a
    // minute away.
    let (cluster, mut client) = big_with_ticks_a_minute_apart();
    let query = BIG_QUERY;
    client
        .batch_execute(
            "INSERT INTO big SELECT g, repeat('x', 150) FROM generate_series(1, 20000) g",
        )
        .unwrap();
    // Large enough to be emptied with TRUNCATE if it were all consumed.
    assert!(buffer_file_size(&mut client, "big") >= 1 << 20);
    let mut reader = cluster.connect();
    reader
        .batch_execute(&format!(
            "BEGIN; LOCK {} IN ACCESS SHARE MODE",
            buffer_name(&mut client, "big")
        ))
        .unwrap();
    client
        .batch_execute("BEGIN; SELECT pgtrickle.refresh_stream_table('big_st')")
        .unwrap();
    let mut writer = cluster.connect();
    writer
        .batch_execute("INSERT INTO big SELECT g, 'y' FROM generate_series(20001, 20100) g")
        .unwrap();
    client.batch_execute("COMMIT").unwrap();
    wait_until(
        "the sweep the refresh woke",
        Duration::from_secs(10),
        || buffer_rows(&mut client, "big") == 100,
    );
    reader.batch_execute("COMMIT").unwrap();
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('big_st')")
        .unwrap();
    assert_eq!(difference(&mut client, "id, pad", "big_st", query), 0);
}

#[test]
fn the_scheduler_sweeps_consumed_changes_and_keeps_the_rest() {
    let (cluster, mut client) = fast_cluster();
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY);
             SELECT pgtrickle.create_stream_table('s', 'SELECT id FROM t', NULL);
             INSERT INTO t SELECT generate_series(1, 100);",
        )
        .unwrap();
    // Nothing consumed these yet: sweeps leave them.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pending_rows(&mut client), 100);
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('s')")
        .unwrap();
    wait_until(
        "the sweep after a manual refresh",
        Duration::from_secs(20),
        || pending_rows(&mut client) == 0,
    );
    // Rows committed after the refresh stay for the next one.
    client
        .batch_execute("INSERT INTO t SELECT generate_series(101, 150)")
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pending_rows(&mut client), 50);
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('s')")
        .unwrap();
    wait_until("the second sweep", Duration::from_secs(20), || {
        pending_rows(&mut client) == 0
    });
    assert_eq!(difference(&mut client, "id", "s", "SELECT id FROM t"), 0);

    // A manual refresh wakes the scheduler when it commits: with ticks a
    // minute apart, its changes are still swept at once.
    set_system(&mut client, "pg_trickle.scheduler_interval_ms = 60000");
    // The worker reloads on the signal, then sleeps for the new interval.
    std::thread::sleep(Duration::from_secs(2));
    client
        .batch_execute(
            "INSERT INTO t SELECT generate_series(151, 160);
             SELECT pgtrickle.refresh_stream_table('s');",
        )
        .unwrap();
    wait_until(
        "the sweep the refresh woke",
        Duration::from_secs(10),
        || pending_rows(&mut client) == 0,
    );
    client
        .batch_execute("ALTER SYSTEM RESET pg_trickle.scheduler_interval_ms")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();

    // While a pg_restore session is connected the scheduler pauses, so the
    // refresh cleans up before it returns.
    let restore_session = Client::connect(
        &format!(
            "{} application_name=pg_restore",
            cluster.connection_string("postgres")
        ),
        postgres::NoTls,
    )
    .unwrap();
    client
        .batch_execute(
            "INSERT INTO t SELECT generate_series(161, 170);
             SELECT pgtrickle.refresh_stream_table('s');",
        )
        .unwrap();
    assert_eq!(pending_rows(&mut client), 0);
    drop(restore_session);

    // With the scheduler off, likewise.
    set_scheduler_enabled(&mut client, false);
    wait_until("the reload", Duration::from_secs(10), || {
        client
            .query_one("SELECT current_setting('pg_trickle.enabled')", &[])
            .unwrap()
            .get::<_, String>(0)
            == "off"
    });
    client
        .batch_execute(
            "INSERT INTO t SELECT generate_series(171, 180);
             SELECT pgtrickle.refresh_stream_table('s');",
        )
        .unwrap();
    assert_eq!(pending_rows(&mut client), 0);
    assert_eq!(difference(&mut client, "id", "s", "SELECT id FROM t"), 0);
}
