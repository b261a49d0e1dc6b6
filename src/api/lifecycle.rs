//! create / alter / drop / refresh of stream tables.

use crate::error::OrRaise;
use crate::lifecycle::{self, AlterRequest, CreateRequest};
use pgrx::prelude::*;

/// Creates a stream table named `name` holding the result of `query`.
#[pg_extern(schema = "pgtrickle")]
fn create_stream_table(
    name: &str,
    query: &str,
    schedule: default!(Option<&str>, "'1m'"),
    refresh_mode: default!(&str, "'DIFFERENTIAL'"),
    initialize: default!(bool, true),
) {
    lifecycle::create(CreateRequest {
        name,
        query,
        schedule,
        refresh_mode,
        initialize,
    })
    .or_raise()
}

/// Changes the schedule, refresh mode or status of a stream table; NULL
/// arguments keep the current value.
#[pg_extern(schema = "pgtrickle")]
fn alter_stream_table(
    name: &str,
    schedule: default!(Option<&str>, "NULL"),
    refresh_mode: default!(Option<&str>, "NULL"),
    status: default!(Option<&str>, "NULL"),
) {
    lifecycle::alter(AlterRequest {
        name,
        schedule,
        refresh_mode,
        status,
    })
    .or_raise()
}

/// Drops a stream table: its storage, catalog rows and the change capture
/// no other stream table needs.
#[pg_extern(schema = "pgtrickle")]
fn drop_stream_table(name: &str) {
    lifecycle::drop(name).or_raise()
}

/// Refreshes a stream table now, in the caller's transaction.
#[pg_extern(schema = "pgtrickle")]
fn refresh_stream_table(name: &str) {
    lifecycle::refresh_now(name).or_raise();
}
