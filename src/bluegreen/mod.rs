//! Blue-green redeployment of stream tables (PRODUCT §8; seed 002,
//! approach A with the light metadata of approach C).
//!
//! A green is an ordinary stream table named `<blue>__pgt_green`, with its
//! own frontier and storage, that shares the blue's change buffers (cleanup
//! waits for every consumer). Promotion renames the blue to
//! `<blue>__pgt_retired` and the green to the blue's name in one
//! transaction. The retired stream table is kept as it was, consuming no
//! changes, until it is dropped; rolling back brings it up to date with a
//! full refresh and swaps again.

mod converge;
mod create;
mod swap;

pub use converge::status;
pub use create::{create_green, GreenRequest};
pub use swap::{promote, promote_all, rollback};

use crate::catalog::{self, StreamTable};
use crate::error::{ErrorKind, PgtError, PgtResult};
use crate::lifecycle::check_owner;
use crate::spi;
use pgtrickle_core::quote::{literal, suffixed};

const GREEN_SUFFIX: &str = "__pgt_green";
const RETIRED_SUFFIX: &str = "__pgt_retired";

fn green_name(blue: &StreamTable) -> String {
    suffixed(&blue.name, GREEN_SUFFIX)
}

fn retired_name(blue: &StreamTable) -> String {
    suffixed(&blue.name, RETIRED_SUFFIX)
}

/// The stream table whose `column` (green_of or retired_by) is `pgt_id`.
fn linked_to(column: &str, pgt_id: i64) -> Option<StreamTable> {
    let id = spi::as_role(spi::superuser(), || {
        spi::query_value(&format!(
            "SELECT pgt_id::text FROM pgtrickle.pgt_stream_tables WHERE {column} = {pgt_id}"
        ))
    })?;
    catalog::load(id.parse().ok()?)
}

/// The green being prepared for `blue`, if any.
fn green_of(blue: &StreamTable) -> Option<StreamTable> {
    linked_to("green_of", blue.pgt_id)
}

/// The retired stream table that `current` replaced, if it was kept.
fn retired_of(current: &StreamTable) -> Option<StreamTable> {
    linked_to("retired_by", current.pgt_id)
}

fn relation_exists(schema: &str, name: &str) -> bool {
    spi::query_value(&format!(
        "SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', {}, {}))::text",
        literal(schema),
        literal(name)
    ))
    .is_some()
}

/// (blue, green) for `name`, which names either of them.
fn pair(name: &str) -> PgtResult<(StreamTable, StreamTable)> {
    let st = catalog::find(name)?;
    if let Some(blue_id) = st.green_of {
        let blue = catalog::load(blue_id).expect("green_of references a stream table");
        return Ok((blue, st));
    }
    match green_of(&st) {
        Some(green) => Ok((st, green)),
        None => Err(PgtError::new(
            ErrorKind::ObjectState,
            format!("stream table {} has no green", st.display_name()),
        )
        .with_hint(format!(
            "Create one first: SELECT pgtrickle.create_green({}, query => '...').",
            literal(&st.display_name())
        ))),
    }
}

/// Refuses to drop a stream table that a green or a retired one is tied to:
/// the way out is the blue-green function that ends that tie.
pub fn check_droppable(st: &StreamTable) -> PgtResult<()> {
    if let Some(green) = green_of(st) {
        return Err(PgtError::new(
            ErrorKind::ObjectState,
            format!(
                "stream table {} has a green in preparation, {}",
                st.display_name(),
                green.display_name()
            ),
        )
        .with_hint(format!(
            "Cancel it first: SELECT pgtrickle.cancel_green({}).",
            literal(&st.display_name())
        )));
    }
    if let Some(retired) = retired_of(st) {
        return Err(PgtError::new(
            ErrorKind::ObjectState,
            format!(
                "stream table {} keeps its retired predecessor {} for rollback",
                st.display_name(),
                retired.display_name()
            ),
        )
        .with_hint(format!(
            "Drop that first: SELECT pgtrickle.drop_retired({}).",
            literal(&st.display_name())
        )));
    }
    Ok(())
}

/// Refuses to refresh or alter a retired stream table: it is kept as it
/// was at promotion, for rollback_green.
pub fn check_not_retired(st: &StreamTable) -> PgtResult<()> {
    let Some(current) = st.retired_by.and_then(catalog::load) else {
        return Ok(());
    };
    Err(PgtError::new(
        ErrorKind::ObjectState,
        format!(
            "stream table {} is retired (replaced by {}) and kept as it was for rollback",
            st.display_name(),
            current.display_name()
        ),
    )
    .with_hint(format!(
        "SELECT pgtrickle.rollback_green({0}) brings it back up to date under the name; \
         SELECT pgtrickle.drop_retired({0}) drops it.",
        literal(&current.display_name())
    )))
}

/// Drops the green of `name` (the blue's or the green's name), with its
/// storage and its change consumption.
pub fn cancel(name: &str) -> PgtResult<String> {
    crate::restore::repair_if_restored()?;
    let (blue, green) = pair(name)?;
    check_owner(&blue)?;
    crate::lifecycle::drop(&green.qualified_name())?;
    crate::ddl::wal::lifecycle(
        "green_cancelled",
        &blue.schema,
        &blue.name,
        serde_json::json!({ "green": green.display_name() }),
    );
    Ok(green.display_name())
}

/// Drops the retired stream table that the stream table `name` replaced
/// (or the retired one itself, named directly).
pub fn drop_retired(name: &str) -> PgtResult<String> {
    crate::restore::repair_if_restored()?;
    let st = catalog::find(name)?;
    let retired = if st.retired_by.is_some() {
        st
    } else {
        retired_of(&st).ok_or_else(|| {
            PgtError::new(
                ErrorKind::ObjectState,
                format!("stream table {} has no retired predecessor", st.display_name()),
            )
            .with_hint("promote_green keeps the replaced stream table as <name>__pgt_retired until it is dropped.")
        })?
    };
    crate::lifecycle::drop(&retired.qualified_name())?;
    Ok(retired.display_name())
}
