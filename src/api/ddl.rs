//! Entry points of the DDL event triggers (`catalog/ddl_tracking.sql`).

use crate::ddl;
use crate::error::OrRaise;
use pgrx::prelude::*;

/// Called by the `ddl_command_end` event trigger for a source table.
#[pg_extern(schema = "pgtrickle")]
fn _source_altered(relid: pg_sys::Oid) {
    ddl::source_altered(relid).or_raise()
}

/// Called by the `ddl_command_end` event trigger for a stream table's storage.
#[pg_extern(schema = "pgtrickle")]
fn _storage_altered(relid: pg_sys::Oid) {
    ddl::storage_altered(relid).or_raise()
}

/// Called by the `sql_drop` event trigger for a dropped source table.
#[pg_extern(schema = "pgtrickle")]
fn _source_dropped(relid: pg_sys::Oid, identity: &str) {
    ddl::source_dropped(relid, identity).or_raise()
}
