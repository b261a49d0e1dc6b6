//! DDL on sources: writes keep working, pending changes are not lost,
//! stream tables that use a changed column stop loudly (or the DDL is
//! rejected), the others refresh in full once and carry on.

use pgtrickle_e2e::{cluster_with_extension, db_error, difference, Client};
use postgres::fallible_iterator::FallibleIterator;

const SETUP: &str = "
    CREATE TABLE t (id int PRIMARY KEY, g int, v int, note text, spare int);
    INSERT INTO t SELECT i, i % 4, i, 'n' || i, i FROM generate_series(1, 50) i;
    SELECT pgtrickle.create_stream_table('sums', 'SELECT g, count(*) AS n, sum(v) AS total FROM t GROUP BY g', NULL);
    SELECT pgtrickle.create_stream_table('rows_', 'SELECT id, v FROM t WHERE v > 10', NULL);";

fn exact(c: &mut Client, st: &str, cols: &str, q: &str) -> bool {
    let n: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM ((SELECT {cols} FROM {st} EXCEPT ALL {q}) UNION ALL ({q} EXCEPT ALL SELECT {cols} FROM {st})) d"),
            &[],
        )
        .unwrap()
        .get(0);
    n == 0
}

fn refresh_and_check(c: &mut Client) {
    c.batch_execute("SELECT pgtrickle.refresh_stream_table('sums'); SELECT pgtrickle.refresh_stream_table('rows_')").unwrap();
    assert!(exact(
        c,
        "sums",
        "g, n, total",
        "SELECT g, count(*), sum(v) FROM t GROUP BY g"
    ));
    assert!(exact(
        c,
        "rows_",
        "id, v",
        "SELECT id, v FROM t WHERE v > 10"
    ));
}

fn status(c: &mut Client, st: &str) -> (String, Option<String>) {
    let row = c
        .query_one(
            "SELECT status, last_error FROM pgtrickle.pgt_stream_tables WHERE pgt_name = $1",
            &[&st],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn unused_column_changes_keep_writes_working_and_lose_nothing() {
    let (_cluster, mut c) = cluster_with_extension();
    c.batch_execute(SETUP).unwrap();
    for ddl in [
        "ALTER TABLE t ADD COLUMN extra text DEFAULT 'x'",
        "ALTER TABLE t RENAME COLUMN note TO remark",
        "ALTER TABLE t ALTER COLUMN spare TYPE bigint",
        "ALTER TABLE t DROP COLUMN remark",
        // added again under the name of a dropped column, with another
        // type: its buffer columns are the dropped one's until retyped
        "ALTER TABLE t DROP COLUMN spare",
        "ALTER TABLE t ADD COLUMN spare text",
        "ALTER TABLE t ADD CONSTRAINT v_positive CHECK (v > 0), ALTER COLUMN g SET DEFAULT 0",
    ] {
        // Changes captured before the DDL...
        c.batch_execute("INSERT INTO t (id, g, v) SELECT max(id) + 1, 1, 500 FROM t; UPDATE t SET v = v + 1 WHERE id % 5 = 0; DELETE FROM t WHERE id = (SELECT min(id) FROM t)").unwrap();
        c.batch_execute(ddl)
            .unwrap_or_else(|e| panic!("{ddl}: {e}"));
        // ... and after it: writes to the source still work.
        c.batch_execute("INSERT INTO t (id, g, v) SELECT max(id) + 1, 2, 7 FROM t; UPDATE t SET g = 3 WHERE id % 7 = 0").unwrap();
        refresh_and_check(&mut c);
        assert_eq!(status(&mut c, "sums").0, "ACTIVE", "{ddl}");
    }
    // And differential again afterwards, values in the re-added column too.
    c.batch_execute("UPDATE t SET v = v + 2, spare = 's' || id WHERE id % 3 = 0")
        .unwrap();
    refresh_and_check(&mut c);
    let last: String = c
        .query_one(
            "SELECT action FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(last, "DIFFERENTIAL");
}

#[test]
fn a_column_added_between_two_writes_of_one_session_is_captured_by_the_second() {
    // A backend keeps how a buffer is filled from its source between
    // statements; DDL on either must reach the very next write of the same
    // session, or the new column's values would be lost from the buffer.
    let (_cluster, mut c) = cluster_with_extension();
    for sql in [
        "CREATE TABLE t (id int PRIMARY KEY, v int)",
        "INSERT INTO t SELECT g, g FROM generate_series(1, 20) g",
        "SELECT pgtrickle.create_stream_table('by_v', 'SELECT id, v FROM t', NULL)",
        "UPDATE t SET v = v + 1 WHERE id <= 5",
        "ALTER TABLE t ADD COLUMN w int",
        "UPDATE t SET w = id * 10 WHERE id <= 10",
        "SELECT pgtrickle.create_stream_table('by_w', 'SELECT id, w FROM t WHERE w IS NOT NULL', NULL)",
        "UPDATE t SET w = w + 1 WHERE id <= 3",
        "INSERT INTO t VALUES (21, 21, 210)",
        "DELETE FROM t WHERE id = 4",
    ] {
        c.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let source: postgres::types::Oid = c
        .query_one("SELECT 't'::regclass::oid", &[])
        .unwrap()
        .get(0);
    let captured: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM pgtrickle_changes.changes_{source} WHERE w IS NOT NULL"),
            &[],
        )
        .unwrap()
        .get(0);
    // the 3 updated rows, the inserted one and the deleted one at least
    assert!(captured >= 5, "{captured} buffer rows carry w");
    c.batch_execute(
        "SELECT pgtrickle.refresh_stream_table('by_v'); SELECT pgtrickle.refresh_stream_table('by_w')",
    )
    .unwrap();
    assert_eq!(
        difference(&mut c, "id, v", "by_v", "SELECT id, v FROM t"),
        0
    );
    assert_eq!(
        difference(
            &mut c,
            "id, w",
            "by_w",
            "SELECT id, w FROM t WHERE w IS NOT NULL"
        ),
        0
    );
}

#[test]
fn a_used_column_change_stops_the_stream_table_with_its_reason() {
    let (cluster, mut c) = cluster_with_extension();
    c.batch_execute(SETUP).unwrap();
    let mut listener = cluster.connect();
    listener.batch_execute("LISTEN pg_trickle_alert").unwrap();
    c.batch_execute("ALTER TABLE t DROP COLUMN v").unwrap();
    for st in ["sums", "rows_"] {
        let (status, error) = status(&mut c, st);
        assert_eq!(status, "ERROR");
        let error = error.unwrap_or_default();
        assert!(error.contains("column \"v\" was dropped"), "{error}");
        assert!(
            error.contains("Impact:") && error.contains("Fix:") && error.contains("Alternatives:"),
            "{error}"
        );
        assert!(
            error.contains(&format!("pgtrickle.drop_stream_table('public.{st}')")),
            "{error}"
        );
    }
    let (action, error): (String, String) = {
        let row = c
            .query_one(
                "SELECT h.action, h.error_message FROM pgtrickle.pgt_refresh_history h \
                   JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) \
                  WHERE s.pgt_name = 'sums' ORDER BY refresh_id DESC LIMIT 1",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(action, "SKIP");
    assert!(error.contains("column \"v\" was dropped"), "{error}");
    // Writes keep working; refreshes are refused with the way out.
    c.batch_execute("INSERT INTO t (id, g) VALUES (1000, 1)")
        .unwrap();
    let err = c
        .batch_execute("SELECT pgtrickle.refresh_stream_table('sums')")
        .unwrap_err();
    assert!(db_error(&err)
        .3
        .unwrap_or_default()
        .contains("status => 'ACTIVE'"));
    let alert = listener
        .notifications()
        .timeout_iter(std::time::Duration::from_secs(5))
        .next()
        .unwrap()
        .expect("an alert");
    assert!(
        alert.payload().contains("source_changed"),
        "{}",
        alert.payload()
    );
}

#[test]
fn block_source_ddl_rejects_breaking_changes_and_drops() {
    let (_cluster, mut c) = cluster_with_extension();
    c.batch_execute(SETUP).unwrap();
    c.batch_execute("SET pg_trickle.block_source_ddl = on")
        .unwrap();
    let err = c
        .batch_execute("ALTER TABLE t ALTER COLUMN v TYPE text")
        .unwrap_err();
    let (code, message, _, hint) = db_error(&err);
    assert_eq!(code, "55000");
    assert!(
        message.contains("column \"v\" changed type from integer to text"),
        "{message}"
    );
    assert!(hint.unwrap_or_default().contains("block_source_ddl is on"));
    let err = c.batch_execute("DROP TABLE t").unwrap_err();
    assert!(db_error(&err).1.contains("table public.t was dropped"));
    // Unused columns may still change.
    c.batch_execute("ALTER TABLE t DROP COLUMN note").unwrap();
    assert_eq!(status(&mut c, "sums").0, "ACTIVE");
    refresh_and_check(&mut c);
}

#[test]
fn dropping_a_source_stops_its_readers_and_removes_its_capture() {
    let (_cluster, mut c) = cluster_with_extension();
    c.batch_execute(SETUP).unwrap();
    c.batch_execute("DROP TABLE t").unwrap();
    assert_eq!(status(&mut c, "sums").0, "ERROR");
    assert!(status(&mut c, "sums")
        .1
        .unwrap_or_default()
        .contains("table public.t was dropped"));
    let leftovers: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM pgtrickle.pgt_change_tracking)
                  + (SELECT count(*) FROM pg_class WHERE relnamespace = 'pgtrickle_changes'::regnamespace)
                  + (SELECT count(*) FROM pg_proc WHERE pronamespace = 'pgtrickle_changes'::regnamespace)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);
    // Dropping a stream table's storage directly removes it from the catalog.
    c.batch_execute("DROP TABLE rows_").unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'rows_'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    c.batch_execute("SELECT pgtrickle.drop_stream_table('sums')")
        .unwrap();
    // Tables also go with DROP SCHEMA ... CASCADE: the catalog follows.
    c.batch_execute(
        "CREATE SCHEMA shop;
         CREATE TABLE shop.src (id int PRIMARY KEY, v int);
         SELECT pgtrickle.create_stream_table('shop.st', 'SELECT id, v FROM shop.src', NULL);
         DROP SCHEMA shop CASCADE;",
    )
    .unwrap();
    let left: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM pgtrickle.pgt_stream_tables) + (SELECT count(*) FROM pgtrickle.pgt_change_tracking)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[test]
fn ddl_on_unrelated_tables_is_left_alone() {
    let (_cluster, mut c) = cluster_with_extension();
    c.batch_execute(SETUP).unwrap();
    c.batch_execute(
        "CREATE TABLE other (id int); ALTER TABLE other ADD COLUMN x int; ALTER TABLE other DROP COLUMN x; DROP TABLE other",
    )
    .unwrap();
    assert_eq!(status(&mut c, "sums").0, "ACTIVE");
    let reinit: bool = c
        .query_one(
            "SELECT bool_or(needs_reinit) FROM pgtrickle.pgt_stream_tables",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!reinit);
}

fn stored_query(c: &mut Client, st: &str) -> String {
    c.query_one(
        "SELECT defining_query FROM pgtrickle.pgt_stream_tables WHERE pgt_name = $1",
        &[&st],
    )
    .unwrap()
    .get(0)
}

fn last_action(c: &mut Client, st: &str) -> String {
    c.query_one(
        "SELECT h.action FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) \
          WHERE s.pgt_name = $1 ORDER BY refresh_id DESC LIMIT 1",
        &[&st],
    )
    .unwrap()
    .get(0)
}

#[test]
fn renamed_used_columns_and_tables_are_followed_without_a_full_refresh() {
    for block in ["off", "on"] {
        let (_cluster, mut c) = cluster_with_extension();
        c.batch_execute(SETUP).unwrap();
        c.batch_execute(&format!("SET pg_trickle.block_source_ddl = {block}"))
            .unwrap();
        // Pending changes before each rename are applied after it.
        c.batch_execute(
            "UPDATE t SET v = v + 3 WHERE id % 4 = 0; INSERT INTO t (id, g, v) VALUES (900, 2, 90)",
        )
        .unwrap();
        c.batch_execute("ALTER TABLE t RENAME COLUMN v TO amount")
            .unwrap();
        c.batch_execute("DELETE FROM t WHERE id % 9 = 0; ALTER TABLE t RENAME TO facts; UPDATE facts SET amount = amount * 2 WHERE g = 1")
            .unwrap();
        for st in ["sums", "rows_"] {
            let q = stored_query(&mut c, st);
            assert!(
                q.contains("public.facts") && q.contains("amount"),
                "{st}: {q}"
            );
            assert_eq!(status(&mut c, st).0, "ACTIVE", "block_source_ddl {block}");
        }
        c.batch_execute("SELECT pgtrickle.refresh_stream_table('sums'); SELECT pgtrickle.refresh_stream_table('rows_')")
            .unwrap();
        // The stream tables keep their own column names.
        assert!(exact(
            &mut c,
            "sums",
            "g, n, total",
            "SELECT g, count(*), sum(amount) FROM facts GROUP BY g"
        ));
        assert!(exact(
            &mut c,
            "rows_",
            "id, v",
            "SELECT id, amount FROM facts WHERE amount > 10"
        ));
        assert_eq!(last_action(&mut c, "sums"), "DIFFERENTIAL");
        c.batch_execute("UPDATE facts SET amount = amount - 1 WHERE id % 2 = 0; SELECT pgtrickle.refresh_stream_table('sums'); SELECT pgtrickle.refresh_stream_table('rows_')")
            .unwrap();
        assert!(exact(
            &mut c,
            "sums",
            "g, n, total",
            "SELECT g, count(*), sum(amount) FROM facts GROUP BY g"
        ));
        assert!(exact(
            &mut c,
            "rows_",
            "id, v",
            "SELECT id, amount FROM facts WHERE amount > 10"
        ));
    }
}

#[test]
fn a_safe_widening_retypes_storage_and_refreshes_in_full_once() {
    for block in ["off", "on"] {
        let (_cluster, mut c) = cluster_with_extension();
        c.batch_execute(SETUP).unwrap();
        c.batch_execute(&format!("SET pg_trickle.block_source_ddl = {block}"))
            .unwrap();
        c.batch_execute("UPDATE t SET v = v + 5 WHERE id % 3 = 0")
            .unwrap();
        c.batch_execute("ALTER TABLE t ALTER COLUMN v TYPE bigint")
            .unwrap();
        c.batch_execute("INSERT INTO t (id, g, v) VALUES (901, 1, 5000000000)")
            .unwrap();
        let types: Vec<String> = c
            .query(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                  WHERE (attrelid, attname) IN (('rows_'::regclass, 'v'), ('sums'::regclass, 'total')) ORDER BY attrelid::regclass::text",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(types, vec!["bigint".to_string(), "numeric".to_string()]);
        refresh_and_check(&mut c);
        for st in ["sums", "rows_"] {
            assert_eq!(status(&mut c, st).0, "ACTIVE");
            assert_ne!(last_action(&mut c, st), "DIFFERENTIAL", "{st}: full once");
        }
        c.batch_execute("UPDATE t SET v = v + 1 WHERE id % 2 = 0; DELETE FROM t WHERE id = 7")
            .unwrap();
        refresh_and_check(&mut c);
        assert_eq!(last_action(&mut c, "sums"), "DIFFERENTIAL");
    }
}

#[test]
fn ddl_on_a_stream_tables_own_storage_is_checked() {
    let (_cluster, mut c) = cluster_with_extension();
    c.batch_execute(SETUP).unwrap();
    c.batch_execute(
        "SELECT pgtrickle.create_stream_table('nothing', 'SELECT id, v FROM t WHERE v < 0', NULL)",
    )
    .unwrap();
    let refused = |c: &mut Client, ddl: &str| {
        let e = c.batch_execute(ddl).expect_err(ddl);
        let (code, message, _, hint) = db_error(&e);
        assert_eq!(code, "55000", "{ddl}: {message}");
        assert!(
            message.contains("would make its refreshes fail"),
            "{message}"
        );
        assert!(hint.unwrap_or_default().contains("create_green"));
        message
    };
    let m = refused(&mut c, "ALTER TABLE sums DROP COLUMN total");
    assert!(m.contains("\"total\" is gone"), "{m}");
    let m = refused(&mut c, "ALTER TABLE sums ALTER COLUMN total TYPE text");
    assert!(m.contains("\"total\" is now text"), "{m}");
    refused(&mut c, "ALTER TABLE sums RENAME COLUMN n TO how_many");
    refused(&mut c, "ALTER TABLE sums DROP COLUMN __pgt_row_id");
    let m = refused(&mut c, "ALTER TABLE nothing ADD COLUMN must int NOT NULL");
    assert!(m.contains("NOT NULL without a default"), "{m}");
    // A nullable or defaulted column may be added; refreshes go on.
    c.batch_execute(
        "ALTER TABLE sums ADD COLUMN remark text, ADD COLUMN flag int NOT NULL DEFAULT 0",
    )
    .unwrap();
    c.batch_execute("UPDATE t SET v = v + 1 WHERE id % 2 = 0")
        .unwrap();
    refresh_and_check(&mut c);
    // A rename of the table is followed by the catalog.
    c.batch_execute("ALTER TABLE sums RENAME TO sums_by_g")
        .unwrap();
    c.batch_execute("UPDATE t SET v = v + 1 WHERE id % 3 = 0; SELECT pgtrickle.refresh_stream_table('sums_by_g')")
        .unwrap();
    assert!(exact(
        &mut c,
        "sums_by_g",
        "g, n, total",
        "SELECT g, count(*), sum(v) FROM t GROUP BY g"
    ));
    let listed: i64 = c
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_status() WHERE name = 'public.sums_by_g' OR name = 'sums_by_g'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(listed, 1);
}

#[test]
fn schema_diff_shows_what_ddl_would_do_inside_a_rolled_back_transaction() {
    let (_cluster, mut c) = cluster_with_extension();
    c.batch_execute(SETUP).unwrap();
    let diff = |c: &mut Client, st: &str| -> Vec<(String, String, String)> {
        c.query(
            "SELECT change, decision, fix FROM pgtrickle.schema_diff($1) ORDER BY change",
            &[&st],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
    };
    assert!(diff(&mut c, "sums").is_empty());
    c.batch_execute(
        "BEGIN; ALTER TABLE t DROP COLUMN v, ALTER COLUMN g TYPE bigint, ADD COLUMN extra int;",
    )
    .unwrap();
    let rows = diff(&mut c, "sums");
    c.batch_execute("ROLLBACK").unwrap();
    let find = |what: &str| {
        rows.iter()
            .find(|r| r.0.contains(what))
            .unwrap_or_else(|| panic!("no row for {what}: {rows:?}"))
            .clone()
    };
    let (_, decision, fix) = find("\"v\" was dropped");
    assert_eq!(decision, "stop");
    assert!(fix.contains("create_green('public.sums'"), "{fix}");
    assert_eq!(find("\"g\" changed type").1, "reinitialize");
    assert_eq!(find("\"extra\"").1, "continue");
    // Rolled back: nothing happened.
    assert_eq!(status(&mut c, "sums").0, "ACTIVE");
    assert!(diff(&mut c, "sums").is_empty());
    c.batch_execute("BEGIN; ALTER TABLE t RENAME COLUMN v TO w")
        .unwrap();
    let rows = diff(&mut c, "rows_");
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1, "rewrite");
}

/// The source of the table-driven test: `t(id, g, v, note)`; `uses` reads
/// `v`, `plain` does not.
struct Source {
    table: String,
    v: Option<String>,
}

impl Source {
    fn uses_query(&self) -> Option<String> {
        let v = self.v.as_ref()?;
        Some(format!(
            "SELECT g, count(*), sum({v}) FROM {} GROUP BY g",
            self.table
        ))
    }

    fn plain_query(&self) -> String {
        format!("SELECT id, g FROM {} WHERE g <> 2", self.table)
    }

    /// Seeded random inserts, updates (some moving rows between groups) and
    /// deletes, some rolled back.
    fn random_dml(&self, c: &mut Client, rng: &mut pgtrickle_e2e::oracle::Rng, n: usize) {
        let t = &self.table;
        for _ in 0..n {
            let id = rng.range(1, 120);
            let sql = match (rng.below(4), &self.v) {
                (0, Some(v)) => format!(
                    "INSERT INTO {t} (id, g, {v}) VALUES ({id}, {}, {}) ON CONFLICT (id) DO NOTHING",
                    rng.range(0, 4),
                    rng.range(-50, 50)
                ),
                (0, None) => format!(
                    "INSERT INTO {t} (id, g) VALUES ({id}, {}) ON CONFLICT (id) DO NOTHING",
                    rng.range(0, 4)
                ),
                (1, Some(v)) => format!("UPDATE {t} SET {v} = {v} + {} WHERE id = {id}", rng.range(-9, 9)),
                (1, None) | (2, _) => format!("UPDATE {t} SET g = {} WHERE id = {id}", rng.range(0, 4)),
                _ => format!("DELETE FROM {t} WHERE id = {id}"),
            };
            let sql = if rng.pct(10) {
                format!("BEGIN; {sql}; ROLLBACK")
            } else {
                sql
            };
            c.batch_execute(&sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    fn refresh_and_check(&self, c: &mut Client, uses_stopped: bool, what: &str) {
        c.batch_execute("SELECT pgtrickle.refresh_stream_table('plain')")
            .unwrap_or_else(|e| panic!("{what}: refresh plain: {e}"));
        assert!(
            exact(c, "plain", "id, g", &self.plain_query()),
            "{what}: plain"
        );
        if !uses_stopped {
            c.batch_execute("SELECT pgtrickle.refresh_stream_table('uses')")
                .unwrap_or_else(|e| panic!("{what}: refresh uses: {e}"));
            let q = self.uses_query().expect("v exists while uses is active");
            assert!(exact(c, "uses", "g, n, total", &q), "{what}: uses");
        }
    }
}

#[test]
fn every_row_of_the_schema_change_table_under_random_dml() {
    // (DDL, decision for `uses` (reads v), decision for `plain`, the source
    // afterwards: table, v's name or None).
    let cases: &[(&str, &str, &str, &str, Option<&str>)] = &[
        (
            "ALTER TABLE t ADD COLUMN extra int DEFAULT 1",
            "continue",
            "continue",
            "t",
            Some("v"),
        ),
        (
            "ALTER TABLE t DROP COLUMN note",
            "continue",
            "continue",
            "t",
            Some("v"),
        ),
        (
            "ALTER TABLE t ALTER COLUMN note TYPE varchar(40)",
            "continue",
            "continue",
            "t",
            Some("v"),
        ),
        (
            "ALTER TABLE t ALTER COLUMN note TYPE int USING length(note)",
            "continue",
            "continue",
            "t",
            Some("v"),
        ),
        (
            "ALTER TABLE t RENAME COLUMN note TO remark",
            "continue",
            "continue",
            "t",
            Some("v"),
        ),
        (
            "ALTER TABLE t RENAME COLUMN v TO w",
            "rewrite",
            "continue",
            "t",
            Some("w"),
        ),
        (
            "ALTER TABLE t RENAME TO t2",
            "rewrite",
            "rewrite",
            "t2",
            Some("v"),
        ),
        (
            "ALTER TABLE t ALTER COLUMN v TYPE bigint",
            "reinitialize",
            "continue",
            "t",
            Some("v"),
        ),
        (
            "ALTER TABLE t ALTER COLUMN v TYPE numeric(20,2)",
            "reinitialize",
            "continue",
            "t",
            Some("v"),
        ),
        ("ALTER TABLE t DROP COLUMN v", "stop", "continue", "t", None),
        (
            "ALTER TABLE t ALTER COLUMN v TYPE text",
            "stop",
            "continue",
            "t",
            None,
        ),
        (
            "ALTER TABLE t ALTER COLUMN v TYPE smallint",
            "stop",
            "continue",
            "t",
            Some("v"),
        ),
        (
            "ALTER TABLE t ALTER COLUMN v SET DEFAULT 0, ADD CONSTRAINT g_small CHECK (g < 100)",
            "",
            "",
            "t",
            Some("v"),
        ),
    ];
    let mut rng = pgtrickle_e2e::oracle::Rng::new(pgtrickle_e2e::oracle::base_seed() ^ 0x5c4e);
    for block in ["off", "on"] {
        let (_cluster, mut c) = cluster_with_extension();
        for (i, (ddl, uses_decision, plain_decision, table, v)) in cases.iter().enumerate() {
            let what = format!("case {i} `{ddl}`, block_source_ddl {block}");
            c.batch_execute(
                "DROP TABLE IF EXISTS t, t2;
                 CREATE TABLE t (id int PRIMARY KEY, g int, v int, note varchar(20));
                 INSERT INTO t SELECT i, i % 4, i, 'n' || i FROM generate_series(1, 60) i;
                 SELECT pgtrickle.create_stream_table('uses', 'SELECT g, count(*) AS n, sum(v) AS total FROM t GROUP BY g', NULL);
                 SELECT pgtrickle.create_stream_table('plain', 'SELECT id, g FROM t WHERE g <> 2', NULL);",
            )
            .unwrap();
            c.batch_execute(&format!("SET pg_trickle.block_source_ddl = {block}"))
                .unwrap();
            let before = Source {
                table: "t".into(),
                v: Some("v".into()),
            };
            // Changes pending across the DDL.
            before.random_dml(&mut c, &mut rng, 30);
            c.batch_execute("BEGIN").unwrap();
            let stop = *uses_decision == "stop";
            if let Err(e) = c.batch_execute(ddl) {
                c.batch_execute("ROLLBACK").unwrap();
                assert!(stop && block == "on", "{what}: {e}");
                let (code, message, _, _) = db_error(&e);
                assert_eq!(code, "55000", "{what}");
                assert!(message.contains("public.uses"), "{what}: {message}");
                // Rejected: nothing changed, both carry on.
                before.random_dml(&mut c, &mut rng, 20);
                before.refresh_and_check(&mut c, false, &what);
            } else {
                assert!(
                    !(stop && block == "on"),
                    "{what}: should have been rejected"
                );
                for (st, expected) in [("uses", uses_decision), ("plain", plain_decision)] {
                    let decisions: Vec<String> = c
                        .query("SELECT decision FROM pgtrickle.schema_diff($1)", &[&st])
                        .unwrap()
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    if expected.is_empty() {
                        assert!(decisions.is_empty(), "{what}: {st}: {decisions:?}");
                    } else {
                        assert!(
                            decisions.contains(&expected.to_string()),
                            "{what}: {st}: {decisions:?}"
                        );
                    }
                }
                c.batch_execute("COMMIT").unwrap();
                assert_eq!(
                    status(&mut c, "uses").0,
                    if stop { "ERROR" } else { "ACTIVE" },
                    "{what}"
                );
                assert_eq!(status(&mut c, "plain").0, "ACTIVE", "{what}");
                let after = Source {
                    table: table.to_string(),
                    v: v.map(str::to_string),
                };
                for round in 0..3 {
                    after.random_dml(&mut c, &mut rng, 25);
                    after.refresh_and_check(&mut c, stop, &format!("{what}, round {round}"));
                    // Carrying on means staying differential: no full refresh.
                    for (st, decision) in [("uses", uses_decision), ("plain", plain_decision)] {
                        if matches!(*decision, "continue" | "rewrite" | "") {
                            assert_eq!(
                                last_action(&mut c, st),
                                "DIFFERENTIAL",
                                "{what}, round {round}: {st}"
                            );
                        }
                    }
                }
            }
            c.batch_execute(
                "RESET pg_trickle.block_source_ddl;
                 SELECT pgtrickle.drop_stream_table('uses'); SELECT pgtrickle.drop_stream_table('plain');",
            )
            .unwrap();
        }
    }
}

#[test]
fn a_renamed_schema_is_followed_by_sources_and_storage() {
    let (_cluster, mut c) = cluster_with_extension();
    c.batch_execute(
        "CREATE SCHEMA sales;
         CREATE TABLE sales.src (id int PRIMARY KEY, g int, v int);
         INSERT INTO sales.src SELECT i, i % 3, i FROM generate_series(1, 30) i;
         SELECT pgtrickle.create_stream_table('public.by_g', 'SELECT g, sum(v) AS total FROM sales.src GROUP BY g', NULL);
         SELECT pgtrickle.create_stream_table('sales.big', 'SELECT id, v FROM sales.src WHERE v > 10', NULL);",
    )
    .unwrap();
    c.batch_execute("UPDATE sales.src SET v = v + 1 WHERE id % 2 = 0; ALTER SCHEMA sales RENAME TO shop; UPDATE shop.src SET g = 0 WHERE id < 5")
        .unwrap();
    let q = stored_query(&mut c, "by_g");
    assert!(q.contains("shop.src"), "{q}");
    let schema: String = c
        .query_one(
            "SELECT pgt_schema FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'big'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(schema, "shop");
    c.batch_execute(
        "SELECT pgtrickle.refresh_stream_table('by_g'); SELECT pgtrickle.refresh_stream_table('shop.big');",
    )
    .unwrap();
    assert!(exact(
        &mut c,
        "by_g",
        "g, total",
        "SELECT g, sum(v) FROM shop.src GROUP BY g"
    ));
    assert!(exact(
        &mut c,
        "shop.big",
        "id, v",
        "SELECT id, v FROM shop.src WHERE v > 10"
    ));
    assert_eq!(status(&mut c, "by_g").0, "ACTIVE");
}

/// A session keeps what it derived from a defining query until the catalog
/// it read changes: here a NOT NULL constraint, which let `count(v)` be
/// maintained as the row count.
#[test]
fn a_session_follows_a_dropped_not_null_it_derived_from() {
    let (_cluster, mut c) = cluster_with_extension();
    let query = "SELECT g, count(v) AS n, sum(v) AS s, count(*) AS c FROM nn GROUP BY g";
    c.batch_execute(&format!(
        "CREATE TABLE nn (id int PRIMARY KEY, g int, v int NOT NULL);
         INSERT INTO nn SELECT i, i % 3, i FROM generate_series(1, 30) i;
         SELECT pgtrickle.create_stream_table('nn_st', $q${query}$q$, NULL, 'DIFFERENTIAL');
         UPDATE nn SET v = v + 1 WHERE id % 2 = 0;
         SELECT pgtrickle.refresh_stream_table('nn_st');
         ALTER TABLE nn ALTER COLUMN v DROP NOT NULL;"
    ))
    .unwrap();
    for round in 0..3 {
        c.batch_execute(&format!(
            "INSERT INTO nn SELECT i, i % 3, NULL FROM generate_series(100 * {round} + 31, 100 * {round} + 40) i;
             UPDATE nn SET v = NULL WHERE id % 7 = {round};
             SELECT pgtrickle.refresh_stream_table('nn_st');"
        ))
        .unwrap();
        assert_eq!(
            difference(&mut c, "g, n, s, c", "nn_st", query),
            0,
            "round {round}"
        );
    }
}
