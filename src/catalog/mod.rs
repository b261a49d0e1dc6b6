//! Typed access to the catalog tables.
//!
//! Reads go through text (`::text` casts) to keep one simple SPI path;
//! every value written is quoted by `pgtrickle_core::quote` or passed as a
//! statement parameter.

pub mod relation;

use crate::error::{ErrorKind, PgtError, PgtResult};
use crate::refresh::frontier::Frontier;
use crate::spi;
use pgrx::pg_sys::Oid;
use pgtrickle_core::quote::literal;

#[derive(Debug, Clone)]
pub struct StreamTable {
    pub pgt_id: i64,
    pub relid: Oid,
    pub schema: String,
    pub name: String,
    pub defining_query: String,
    pub refresh_mode: String,
    pub status: String,
    pub is_populated: bool,
    pub needs_reinit: bool,
    pub frontier: Option<Frontier>,
    pub consecutive_errors: i32,
    pub schedule: Option<String>,
    /// Blue-green: the stream table this green is to replace.
    pub green_of: Option<i64>,
    /// Blue-green: the stream table that replaced this retired one.
    pub retired_by: Option<i64>,
    pub pipeline_group: Option<String>,
}

const COLUMNS_0_1: &str = "pgt_id::text, pgt_relid::oid::bigint::text, pgt_schema, pgt_name, defining_query, \
    refresh_mode, status, is_populated::text, needs_reinit::text, frontier::text, consecutive_errors::text, schedule";

thread_local! {
    /// Whether this database's catalog has the 0.2.0 columns; once seen,
    /// it keeps them (a backend serves one database).
    static HAS_0_2_COLUMNS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The columns `from_row` reads. A library of this version still reads a
/// 0.1.0 catalog (before ALTER EXTENSION UPDATE): the blue-green columns
/// are NULL there.
fn columns() -> String {
    let has = HAS_0_2_COLUMNS.with(|h| h.get())
        || spi::query_value(
            "SELECT 1::text FROM pg_catalog.pg_attribute \
              WHERE attrelid = 'pgtrickle.pgt_stream_tables'::regclass AND attname = 'green_of' AND NOT attisdropped",
        )
        .is_some();
    if has {
        HAS_0_2_COLUMNS.with(|h| h.set(true));
        format!("{COLUMNS_0_1}, green_of::text, retired_by::text, pipeline_group")
    } else {
        format!("{COLUMNS_0_1}, NULL, NULL, NULL")
    }
}

fn from_row(row: Vec<Option<String>>) -> StreamTable {
    let text = |i: usize| row[i].clone().unwrap_or_default();
    StreamTable {
        pgt_id: text(0).parse().expect("pgt_id"),
        relid: Oid::from(text(1).parse::<u32>().expect("relid")),
        schema: text(2),
        name: text(3),
        defining_query: text(4),
        refresh_mode: text(5),
        status: text(6),
        is_populated: text(7) == "true",
        needs_reinit: text(8) == "true",
        frontier: row[9].as_deref().and_then(Frontier::from_json),
        consecutive_errors: text(10).parse().unwrap_or(0),
        schedule: row[11].clone(),
        green_of: row[12].as_deref().and_then(|v| v.parse().ok()),
        retired_by: row[13].as_deref().and_then(|v| v.parse().ok()),
        pipeline_group: row[14].clone(),
    }
}

impl StreamTable {
    /// The storage table, quoted and schema-qualified.
    pub fn qualified_name(&self) -> String {
        pgtrickle_core::quote::qualified(&self.schema, &self.name)
    }

    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The role that owns the storage table; refreshes read as this role.
    pub fn owner(&self) -> Oid {
        // Never fall back to a privileged role: without its table there is
        // nobody to act for.
        match relation::facts(self.relid) {
            Some(facts) => facts.owner,
            None => pgrx::error!(
                "pg_trickle: the storage table of stream table {} is missing",
                self.display_name()
            ),
        }
    }
}

/// Catalog tables are closed to PUBLIC: reads run as the bootstrap
/// superuser. Their texts repeat (per stream table), so their plans are kept.
fn read(sql: &str) -> spi::Rows {
    spi::as_role(spi::superuser(), || spi::query_kept(sql))
}

pub fn load(pgt_id: i64) -> Option<StreamTable> {
    read(&format!(
        "SELECT {} FROM pgtrickle.pgt_stream_tables WHERE pgt_id = {pgt_id}",
        columns()
    ))
    .into_iter()
    .next()
    .map(from_row)
}

pub fn all() -> Vec<StreamTable> {
    read(&format!(
        "SELECT {} FROM pgtrickle.pgt_stream_tables ORDER BY pgt_id",
        columns()
    ))
    .into_iter()
    .map(from_row)
    .collect()
}

/// The stream table called `name` (schema-qualified or found through
/// search_path, like a table name).
pub fn find(name: &str) -> PgtResult<StreamTable> {
    let relid = spi::query_value_kept(&format!(
        "SELECT pg_catalog.to_regclass({})::oid::bigint::text",
        literal(name)
    ));
    let found = relid.and_then(|oid| {
        read(&format!(
            "SELECT {} FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = {oid}",
            columns()
        ))
        .into_iter()
        .next()
        .map(from_row)
    });
    found.ok_or_else(|| {
        PgtError::new(
            ErrorKind::UndefinedObject,
            format!("stream table \"{name}\" does not exist"),
        )
        .with_hint("SELECT * FROM pgtrickle.pgt_status() lists the stream tables.")
    })
}

/// The stored analysed query of `pgt_id` (`dvm::tree`), if any.
pub fn query_tree(pgt_id: i64) -> Option<String> {
    read(&format!(
        "SELECT to_jsonb(pgt_stream_tables)->>'query_tree' FROM pgtrickle.pgt_stream_tables WHERE pgt_id = {pgt_id}"
    ))
    .into_iter()
    .next()
    .and_then(|r| r.into_iter().next().flatten())
}

/// Stores the defining query of `pgt_id` with its analysed form (the
/// latter only once the catalog has the column: a 0.1.0 catalog before
/// ALTER EXTENSION UPDATE does not).
pub fn set_query(pgt_id: i64, text: &str, query: *mut pgrx::pg_sys::Query) {
    spi::as_role(spi::superuser(), || {
        let has_tree = spi::query_value(
            "SELECT 1::text FROM pg_catalog.pg_attribute \
              WHERE attrelid = 'pgtrickle.pgt_stream_tables'::regclass AND attname = 'query_tree' AND NOT attisdropped",
        )
        .is_some();
        let tree = if has_tree {
            format!(
                ", query_tree = {}",
                literal(&crate::dvm::tree::encode(query))
            )
        } else {
            String::new()
        };
        spi::execute(&format!(
            "UPDATE pgtrickle.pgt_stream_tables SET defining_query = {}{tree}, updated_at = pg_catalog.now() \
              WHERE pgt_id = {pgt_id}",
            literal(text),
        ))
    });
}

/// Stream tables that read `pgt_id` (directly).
pub fn dependents(pgt_id: i64) -> Vec<i64> {
    read(&format!(
        "SELECT d.pgt_id::text FROM pgtrickle.pgt_dependencies d \
         JOIN pgtrickle.pgt_stream_tables s ON s.pgt_relid = d.source_relid WHERE s.pgt_id = {pgt_id}"
    ))
    .into_iter()
    .filter_map(|r| r[0].as_ref().and_then(|v| v.parse().ok()))
    .collect()
}

/// (pgt_id, upstream pgt_id) edges between stream tables.
pub fn stream_table_edges() -> Vec<(i64, i64)> {
    read(
        "SELECT d.pgt_id::text, s.pgt_id::text FROM pgtrickle.pgt_dependencies d \
         JOIN pgtrickle.pgt_stream_tables s ON s.pgt_relid = d.source_relid",
    )
    .into_iter()
    .filter_map(|r| Some((r[0].as_ref()?.parse().ok()?, r[1].as_ref()?.parse().ok()?)))
    .collect()
}

/// Source tables whose changes `pgt_id` consumes.
pub fn tracked_sources(pgt_id: i64) -> Vec<Oid> {
    read(&format!(
        "SELECT source_relid::bigint::text FROM pgtrickle.pgt_change_tracking \
         WHERE {pgt_id} = ANY(tracked_by_pgt_ids) ORDER BY source_relid"
    ))
    .into_iter()
    .filter_map(|r| {
        r[0].as_ref()
            .and_then(|v| v.parse::<u32>().ok())
            .map(Oid::from)
    })
    .collect()
}

/// Records a refresh in pgt_refresh_history.
pub struct HistoryEntry<'a> {
    pub pgt_id: i64,
    pub action: &'a str,
    pub requested_action: &'a str,
    pub status: &'a str,
    pub initiated_by: &'a str,
    pub start_time: &'a str,
    pub rows_inserted: i64,
    pub rows_deleted: i64,
    pub delta_rows: Option<i64>,
    pub reason: Option<&'a str>,
    pub error_message: Option<&'a str>,
}

pub fn insert_history(e: &HistoryEntry) {
    let params = [
        spi::Param::int8(Some(e.pgt_id)),
        spi::Param::timestamptz(e.start_time),
        spi::Param::text(Some(e.action)),
        spi::Param::text(Some(e.requested_action)),
        spi::Param::text(Some(e.status)),
        spi::Param::text(Some(e.initiated_by)),
        spi::Param::int8(Some(e.rows_inserted)),
        spi::Param::int8(Some(e.rows_deleted)),
        spi::Param::int8(e.delta_rows),
        spi::Param::text(e.reason),
        spi::Param::text(e.error_message),
    ];
    spi::as_role(spi::superuser(), || {
        spi::execute_with_params(
            "INSERT INTO pgtrickle.pgt_refresh_history (pgt_id, data_timestamp, start_time, end_time, action, \
             requested_action, status, initiated_by, rows_inserted, rows_deleted, delta_rows, reason, error_message) \
             VALUES ($1, $2, $2, pg_catalog.clock_timestamp(), $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &params,
        )
    });
}

/// SQL: the installed SQL objects are of another version than the loaded
/// library (the condition of `version_mismatch`).
pub(crate) const VERSION_MISMATCH: &str = concat!(
    "EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_trickle' AND extversion <> '",
    env!("CARGO_PKG_VERSION"),
    "')"
);

/// When the loaded library and the installed SQL differ: a message saying
/// both versions and how to fix it.
pub fn version_mismatch() -> Option<String> {
    let library = env!("CARGO_PKG_VERSION");
    let installed = spi::query_value_kept(
        "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_trickle'",
    )?;
    (installed != library).then(|| {
        format!(
            "pg_trickle: the loaded library is version {library} but the extension's SQL objects are version \
             {installed}; run ALTER EXTENSION pg_trickle UPDATE (scheduled refreshes are paused until then)"
        )
    })
}
