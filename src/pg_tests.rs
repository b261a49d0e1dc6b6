//! In-backend tests (`cargo pgrx test`): SQL functions called through SPI.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn parse_duration_seconds_accepts_documented_forms() {
        let cases = [
            ("30s", 30),
            ("5m", 300),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("1w", 604_800),
        ];
        for (input, want) in cases {
            let got = Spi::get_one_with_args::<i64>(
                "SELECT pgtrickle.parse_duration_seconds($1)",
                &[input.into()],
            );
            assert_eq!(got, Ok(Some(want)), "{input}");
        }
    }

    #[pg_test(error = "pg_trickle: invalid duration \"5 minutes\": unknown unit \"minutes\"")]
    fn parse_duration_seconds_rejects_unknown_unit() {
        Spi::run("SELECT pgtrickle.parse_duration_seconds('5 minutes')").unwrap();
    }

    #[pg_test]
    fn parse_duration_seconds_is_immutable_and_parallel_safe() {
        let row = Spi::get_two::<String, String>(
            "SELECT provolatile::text, proparallel::text FROM pg_proc \
             WHERE oid = 'pgtrickle.parse_duration_seconds(text)'::regprocedure",
        );
        assert_eq!(row, Ok((Some("i".into()), Some("s".into()))));
    }

    #[pg_test]
    fn hashes_match_the_core_library() {
        let got = Spi::get_one::<i64>("SELECT pgtrickle.pg_trickle_hash('abc')").unwrap();
        assert_eq!(got, Some(pgtrickle_core::hash::hash_text("abc")));
        let multi =
            Spi::get_one::<i64>("SELECT pgtrickle.pg_trickle_hash_multi(ARRAY['a', NULL, 'c'])")
                .unwrap();
        assert_eq!(
            multi,
            Some(pgtrickle_core::hash::hash_multi([
                Some("a"),
                None,
                Some("c")
            ]))
        );
    }

    #[pg_test]
    fn version_reports_the_crate_version() {
        let v = Spi::get_one::<String>("SELECT pgtrickle.version()").unwrap();
        assert_eq!(v.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    }

    #[pg_test]
    fn schema_version_row_is_present() {
        let v = Spi::get_one::<String>("SELECT version FROM pgtrickle.pgt_schema_version").unwrap();
        assert_eq!(v.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    }

    #[pg_test]
    fn differential_refresh_in_one_transaction_matches_the_query() {
        Spi::run(
            "CREATE TABLE t (id int PRIMARY KEY, g int, v int);
             INSERT INTO t SELECT i, i % 3, i FROM generate_series(1, 30) i;
             SELECT pgtrickle.create_stream_table('s', 'SELECT g, count(*) AS n, sum(v) AS total FROM t GROUP BY g', NULL);
             UPDATE t SET g = 0 WHERE id < 10;
             DELETE FROM t WHERE id > 25;
             SELECT pgtrickle.refresh_stream_table('s');",
        )
        .unwrap();
        let diff = Spi::get_one::<i64>(
            "SELECT count(*) FROM ((SELECT g, n, total FROM s EXCEPT ALL SELECT g, count(*), sum(v) FROM t GROUP BY g)
              UNION ALL (SELECT g, count(*), sum(v) FROM t GROUP BY g EXCEPT ALL SELECT g, n, total FROM s)) d",
        );
        assert_eq!(diff, Ok(Some(0)));
        let action = Spi::get_one::<String>(
            "SELECT action FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1",
        );
        assert_eq!(action, Ok(Some("DIFFERENTIAL".to_string())));
    }
}
