//! pg_trickle: stream tables for PostgreSQL.

use pgrx::prelude::*;

mod api;
mod config;
mod error;

::pgrx::pg_module_magic!();

extension_sql_file!("catalog/schema.sql", name = "catalog_schema", bootstrap);

/// The API schema. `catalog/schema.sql` creates it (so that it belongs to
/// the extension); this module lets `#[pg_extern(schema = "pgtrickle")]` name it.
#[pg_schema]
mod pgtrickle {}

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    config::register();
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
