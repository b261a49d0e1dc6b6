//! End-to-end harness: real PostgreSQL clusters started as the `postgres` OS
//! user on free ports, with `shared_preload_libraries = 'pg_trickle'`.
//!
//! Which server: `PGT_PG_CONFIG` (a pg_config path) if set, else the
//! `pgNN` entry of cargo-pgrx's `config.toml` for `PGT_PG_VERSION`
//! (default 18). The extension must already be installed into that server
//! (`cargo pgrx install --pg-config ...`, as `scripts/test.sh` does).

mod cluster;
pub mod inventory;
pub mod oracle;
mod pg_config;

pub use cluster::Cluster;
pub use pg_config::PgInstall;
pub use postgres::{Client, Error as PgError};

/// A started cluster with `pg_trickle` created in database `postgres`.
pub fn cluster_with_extension() -> (Cluster, Client) {
    let cluster = Cluster::start();
    let mut client = cluster.connect();
    client
        .batch_execute("CREATE EXTENSION pg_trickle")
        .expect("CREATE EXTENSION pg_trickle");
    (cluster, client)
}

/// The SQLSTATE and message of a failed statement, for asserting on errors.
pub fn db_error(err: &PgError) -> (String, String, Option<String>, Option<String>) {
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not a database error: {err}"));
    (
        db.code().code().to_string(),
        db.message().to_string(),
        db.detail().map(str::to_string),
        db.hint().map(str::to_string),
    )
}

/// The action and reason (empty if none) of the latest refresh recorded.
pub fn last_refresh(client: &mut Client) -> (String, String) {
    let row = client
        .query_one(
            "SELECT action, coalesce(reason, '') FROM pgtrickle.pgt_refresh_history
              ORDER BY refresh_id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// Rows that differ between a stream table's columns `cols` and a fresh
/// evaluation of `query` (`EXCEPT ALL` both ways).
pub fn difference(client: &mut Client, cols: &str, st: &str, query: &str) -> i64 {
    client
        .query_one(
            &format!(
                "SELECT count(*) FROM ((SELECT {cols} FROM {st} EXCEPT ALL SELECT * FROM ({query}) q) \
                 UNION ALL (SELECT * FROM ({query}) q EXCEPT ALL SELECT {cols} FROM {st})) d"
            ),
            &[],
        )
        .unwrap()
        .get(0)
}
