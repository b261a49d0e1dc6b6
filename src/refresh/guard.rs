//! Whether the storage table being written is being written by a refresh.
//! The `pg_trickle_guard` trigger asks (`catalog/storage_guard.sql`); a
//! refresh marks its backend while it runs.

use crate::config;
use crate::error::{ErrorKind, PgtError, PgtResult};
use crate::spi;
use pgrx::pg_sys::Oid;
use pgtrickle_core::quote::literal;
use std::cell::Cell;

thread_local! {
    static REFRESHING: Cell<u32> = const { Cell::new(0) };
}

/// Marks this backend as refreshing for as long as the value lives
/// (errors unwind through its Drop).
pub struct Refreshing(());

impl Refreshing {
    pub fn start() -> Refreshing {
        REFRESHING.with(|r| r.set(r.get() + 1));
        Refreshing(())
    }
}

impl Drop for Refreshing {
    fn drop(&mut self) {
        REFRESHING.with(|r| r.set(r.get().saturating_sub(1)));
    }
}

/// Raises unless a write of `op` on `relid` is a refresh's, opted into, or
/// not on a stream table this catalog knows by that OID (a pg_restore
/// loading data while the catalog still holds the dumped OIDs).
pub fn check_direct_write(relid: Oid, op: &str) -> PgtResult<()> {
    if REFRESHING.with(|r| r.get()) > 0 || config::ALLOW_DIRECT_WRITES.get() {
        return Ok(());
    }
    let name = spi::as_role(spi::superuser(), || {
        spi::query_value(&format!(
            "SELECT pg_catalog.format('%I.%I', pgt_schema, pgt_name) FROM pgtrickle.pgt_stream_tables \
              WHERE pgt_relid = {}",
            relid.to_u32()
        ))
    });
    let Some(name) = name else {
        return Ok(());
    };
    Err(PgtError::new(
        ErrorKind::ObjectState,
        format!("cannot {op} stream table {name}: its contents are written by its refreshes"),
    )
    .with_detail("Rows written directly would not be undone by differential refreshes.")
    .with_hint(format!(
        "Change the defining query instead (pgtrickle.create_green({}, query => ...)), or SET pg_trickle.allow_direct_writes = on to write anyway.",
        literal(&name)
    )))
}
