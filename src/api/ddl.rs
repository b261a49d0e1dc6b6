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

/// What the changes of its sources mean for stream table `name`: the
/// decisions DDL tracking took in this transaction (run the DDL in a
/// transaction, look, roll back) and differences it has not seen yet.
#[pg_extern(schema = "pgtrickle")]
fn schema_diff(
    name: &str,
) -> TableIterator<
    'static,
    (
        name!(source, String),
        name!(change, String),
        name!(decision, String),
        name!(effect, String),
        name!(fix, String),
    ),
> {
    let rows = ddl::diff::schema_diff(name).or_raise();
    TableIterator::new(
        rows.into_iter()
            .map(|r| (r.source, r.change, r.decision, r.effect, r.fix)),
    )
}
