//! The check behind the `pg_trickle_guard` trigger of storage tables.

use crate::error::OrRaise;
use crate::refresh::guard;
use pgrx::prelude::*;

/// Raises unless this write of a stream table's storage is a refresh's or
/// the user opted in with `pg_trickle.allow_direct_writes`.
#[pg_extern(schema = "pgtrickle")]
fn _check_direct_write(relid: pg_sys::Oid, op: &str) {
    guard::check_direct_write(relid, op).or_raise()
}
