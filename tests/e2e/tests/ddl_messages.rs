//! DDL on sources and stream-table lifecycle events reach the WAL as
//! transactional logical messages, in commit order with the data changes;
//! rolled-back DDL leaves none. Read back through a test_decoding slot.

use pgtrickle_e2e::{cluster_with_extension, Client};

/// (prefix, JSON payload) of every pg_trickle message, and the full change
/// stream as text, consumed from the slot.
fn read_slot(c: &mut Client) -> (Vec<(String, serde_json::Value)>, Vec<String>) {
    let rows = c
        .query("SELECT data FROM pg_logical_slot_get_changes('pgt_test', NULL, NULL, 'include-xids', '0')", &[])
        .unwrap();
    let lines: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let messages = lines
        .iter()
        .filter_map(|line| {
            let rest = line.strip_prefix("message: transactional: 1 prefix: ")?;
            let (prefix, rest) = rest.split_once(", sz: ")?;
            let json = rest.split_once(" content:")?.1;
            prefix.starts_with("pg_trickle.").then(|| {
                (
                    prefix.to_string(),
                    serde_json::from_str(json).expect("JSON payload"),
                )
            })
        })
        .collect();
    (messages, lines)
}

fn setup(c: &mut Client) {
    // Decoding reads only flushed WAL: let every commit flush it.
    c.batch_execute("SET synchronous_commit = on").unwrap();
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, g int NOT NULL DEFAULT 0, v int, note text);
         INSERT INTO t SELECT i, i % 3, i, 'x' FROM generate_series(1, 10) i;
         SELECT pgtrickle.create_stream_table('sums', 'SELECT g, sum(v) AS total FROM t GROUP BY g', NULL);",
    )
    .unwrap();
    // In a transaction of its own: a slot cannot be made after writes.
    c.batch_execute("SELECT pg_create_logical_replication_slot('pgt_test', 'test_decoding')")
        .unwrap();
}

#[test]
fn ddl_on_a_source_is_one_message_ordered_with_the_data() {
    let (_cluster, mut c) = cluster_with_extension();
    setup(&mut c);
    c.batch_execute(
        "BEGIN;
         INSERT INTO t VALUES (100, 1, 1, 'before');
         ALTER TABLE t ADD COLUMN extra int, DROP COLUMN note;
         INSERT INTO t VALUES (101, 1, 1, 5);
         COMMIT;",
    )
    .unwrap();
    let (messages, lines) = read_slot(&mut c);
    let ddl: Vec<&serde_json::Value> = messages
        .iter()
        .filter(|(p, _)| p == "pg_trickle.ddl")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        ddl.len(),
        1,
        "one message for one ALTER with two subcommands: {messages:?}"
    );
    let m = ddl[0];
    assert_eq!(m["event"], "alter_table");
    assert_eq!(m["format"], 1);
    assert_eq!(m["table"]["schema"], "public");
    assert_eq!(m["table"]["name"], "t");
    let before: Vec<&str> = m["columns_before"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let after: Vec<&str> = m["columns_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(before, ["id", "g", "v", "note"]);
    assert_eq!(after, ["id", "g", "v", "extra"]);
    let g = &m["columns_after"][1];
    assert_eq!(
        (
            g["type"].as_str(),
            g["not_null"].as_bool(),
            g["default"].as_str()
        ),
        (Some("integer"), Some(true), Some("0"))
    );
    assert_eq!(m["columns_after"][0]["primary_key"], true);
    assert_eq!(m["stream_tables"][0]["name"], "sums");
    // columns it does not read: it carries on
    assert_eq!(m["stream_tables"][0]["decision"], "continue");
    // In commit order: the first insert, the message, the second insert.
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} in {lines:?}"))
    };
    let first = pos("table public.t: INSERT: id[integer]:100");
    let message = pos("prefix: pg_trickle.ddl");
    let second = pos("table public.t: INSERT: id[integer]:101");
    assert!(first < message && message < second, "{lines:?}");
}

#[test]
fn rolled_back_ddl_leaves_no_message_and_statements_get_one_each() {
    let (_cluster, mut c) = cluster_with_extension();
    setup(&mut c);
    c.batch_execute("BEGIN; ALTER TABLE t ADD COLUMN gone int; ROLLBACK;")
        .unwrap();
    // Two statements in one query string: two messages.
    c.batch_execute("ALTER TABLE t ADD COLUMN a int; ALTER TABLE t ADD COLUMN b int;")
        .unwrap();
    // DDL on a table no stream table reads: nothing.
    c.batch_execute("CREATE TABLE other (id int); ALTER TABLE other ADD COLUMN x int;")
        .unwrap();
    let (messages, _) = read_slot(&mut c);
    let ddl: Vec<&serde_json::Value> = messages
        .iter()
        .filter(|(p, _)| p == "pg_trickle.ddl")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(ddl.len(), 2, "{messages:?}");
    assert!(ddl.iter().all(|m| m["table"]["name"] == "t"));
    assert!(!messages.iter().any(|(_, m)| m.to_string().contains("gone")));
}

#[test]
fn lifecycle_events_and_the_switch() {
    let (_cluster, mut c) = cluster_with_extension();
    setup(&mut c);
    c.batch_execute(
        "SELECT pgtrickle.create_stream_table('big', 'SELECT id, v FROM t WHERE v > 5', NULL);
         SELECT pgtrickle.alter_stream_table('big', status => 'SUSPENDED');
         ALTER TABLE t DROP COLUMN v;
         SELECT pgtrickle.drop_stream_table('big');",
    )
    .unwrap();
    let (messages, _) = read_slot(&mut c);
    let events: Vec<(String, String)> = messages
        .iter()
        .filter(|(p, _)| p == "pg_trickle.lifecycle")
        .map(|(_, m)| {
            (
                m["event"].as_str().unwrap().to_string(),
                m["stream_table"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        events.contains(&("create".into(), "big".into())),
        "{events:?}"
    );
    assert!(
        events.contains(&("status_change".into(), "big".into())),
        "{events:?}"
    );
    assert!(
        events.contains(&("status_change".into(), "sums".into())),
        "the drop of a used column stops sums: {events:?}"
    );
    assert!(
        events.contains(&("drop".into(), "big".into())),
        "{events:?}"
    );
    let stop = messages
        .iter()
        .find(|(p, m)| p == "pg_trickle.ddl" && m["event"] == "alter_table")
        .unwrap();
    assert_eq!(stop.1["stream_tables"][0]["decision"], "stop");
    // Off: nothing more.
    c.batch_execute("SET pg_trickle.ddl_messages = off; ALTER TABLE t ADD COLUMN quiet int;")
        .unwrap();
    let (messages, _) = read_slot(&mut c);
    assert!(messages.is_empty(), "{messages:?}");
}
