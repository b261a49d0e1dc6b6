//! pg_trickle: stream tables for PostgreSQL.

use pgrx::prelude::*;

mod api;
mod bluegreen;
mod catalog;
mod cdc;
mod config;
mod ddl;
mod dvm;
mod error;
mod lifecycle;
mod refresh;
mod restore;
mod scheduler;
mod spi;

::pgrx::pg_module_magic!();

extension_sql_file!("catalog/schema.sql", name = "catalog_schema", bootstrap);
extension_sql_file!(
    "catalog/ddl_tracking.sql",
    name = "ddl_tracking",
    requires = [
        "catalog_schema",
        _source_altered,
        _source_dropped,
        _storage_altered
    ]
);
extension_sql_file!(
    "catalog/storage_guard.sql",
    name = "storage_guard",
    requires = ["catalog_schema", _check_direct_write]
);
extension_sql_file!(
    "catalog/monitoring.sql",
    name = "monitoring",
    requires = ["catalog_schema", parse_duration_seconds]
);

/// The API schema. `catalog/schema.sql` creates it (so that it belongs to
/// the extension); this module lets `#[pg_extern(schema = "pgtrickle")]` name it.
#[pg_schema]
mod pgtrickle {}

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    config::register();
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        scheduler::register();
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Used by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_trickle'"]
    }
}
