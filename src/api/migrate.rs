//! migrate(): bring per-stream-table objects to this version's shape.

use crate::cdc;
use pgrx::prelude::*;

/// Brings the change buffers, capture functions and triggers of every
/// tracked source to the shape this version creates; reports each object
/// and what was done (`created`, `replaced` or `unchanged`). Idempotent.
#[pg_extern(schema = "pgtrickle")]
fn migrate() -> TableIterator<'static, (name!(object, String), name!(action, String))> {
    TableIterator::new(cdc::migrate_all())
}
