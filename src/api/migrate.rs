//! migrate(): bring per-stream-table objects to this version's shape.

use crate::cdc;
use pgrx::prelude::*;

/// Brings the change buffers, capture functions and triggers of every
/// tracked source to the shape this version creates, and stores the
/// analysed form of queries that lack it (to follow renames) and the write
/// guard of storage tables that lack it; reports each
/// object and what was done (`created`, `replaced`, `unchanged`, `stored`).
/// Idempotent.
#[pg_extern(schema = "pgtrickle")]
fn migrate() -> TableIterator<'static, (name!(object, String), name!(action, String))> {
    let mut report = cdc::migrate_all();
    report.extend(crate::ddl::rewrite::remember_queries());
    report.extend(crate::lifecycle::guard_all());
    TableIterator::new(report)
}
