//! Small utility functions: durations, row hashing, version.

use crate::error::{OrRaise, PgtError};
use pgrx::prelude::*;

/// Seconds in a duration such as `30s`, `5m`, `1h30m`, `2d` or `1w`.
#[pg_extern(schema = "pgtrickle", immutable, parallel_safe, strict)]
fn parse_duration_seconds(input: &str) -> i64 {
    pgtrickle_core::duration::parse_duration_seconds(input)
        .map_err(|e| {
            PgtError::invalid(format!("invalid duration \"{input}\": {e}")).with_hint(e.hint())
        })
        .or_raise()
}

/// Stable 64-bit row-identity hash of one text value.
#[pg_extern(schema = "pgtrickle", immutable, parallel_safe, strict)]
fn pg_trickle_hash(input: &str) -> i64 {
    pgtrickle_core::hash::hash_text(input)
}

/// Stable 64-bit row-identity hash of a list of nullable text values.
#[pg_extern(schema = "pgtrickle", immutable, parallel_safe, strict)]
fn pg_trickle_hash_multi(inputs: Array<&str>) -> i64 {
    pgtrickle_core::hash::hash_multi(inputs.iter())
}

/// The version of the loaded pg_trickle library.
#[pg_extern(schema = "pgtrickle", immutable, parallel_safe)]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
