//! Deleting changes every consumer has applied.

use crate::catalog;
use crate::cdc::CdcObjects;
use crate::config;
use crate::spi;
use pgrx::pg_sys::{self, Oid};
use pgtrickle_core::quote::literal;

/// Below this size a buffer is emptied with DELETE: TRUNCATE costs a scan
/// of all of shared_buffers (to drop the old file's pages) and a lock that
/// makes writers wait, whatever the buffer holds.
const TRUNCATE_MIN_BYTES: i64 = 1 << 20;

/// Removes from each source's buffer the changes all its consumers have
/// consumed; empties a large, fully consumed buffer with TRUNCATE when
/// `pg_trickle.cleanup_use_truncate` is on and nobody is writing to it.
pub fn consumed_changes(sources: &[Oid]) {
    for &source in sources {
        let Some(objects) = CdcObjects::existing(source) else {
            continue;
        };
        let buffer = objects.buffer_name();
        let (empty, bytes) = spi::query(&format!(
            "SELECT (NOT EXISTS (SELECT 1 FROM {buffer}))::text, pg_catalog.pg_relation_size({})::text",
            literal(&buffer)
        ))
        .into_iter()
        .next()
        .map(|r| {
            (
                r[0].as_deref() == Some("true"),
                r[1].as_deref().and_then(|b| b.parse::<i64>().ok()).unwrap_or(0),
            )
        })
        .unwrap_or((false, 0));
        if empty {
            continue;
        }
        // Locks the consumer list: a stream table being created over this
        // source waits, and is seen once it commits.
        let consumers = spi::query_value(&format!(
            "SELECT tracked_by_pgt_ids::text FROM pgtrickle.pgt_change_tracking WHERE source_relid = {} FOR UPDATE",
            source.to_u32()
        ));
        let ids: Vec<i64> = consumers
            .unwrap_or_default()
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let mut conditions = Vec::new();
        for id in &ids {
            match catalog::load(*id).and_then(|st| st.frontier) {
                Some(f) => conditions.push(f.consumed(source, "r")),
                None => {
                    conditions.clear();
                    break;
                }
            }
        }
        if conditions.is_empty() {
            continue;
        }
        let consumed = conditions.join(" AND ");
        if config::CLEANUP_USE_TRUNCATE.get()
            && bytes >= TRUNCATE_MIN_BYTES
            && truncate_if_all_consumed(&buffer, &consumed)
        {
            continue;
        }
        spi::execute(&format!("DELETE FROM {buffer} r WHERE {consumed}"));
    }
}

/// Empties the buffer with TRUNCATE when every row in it has been consumed
/// by every consumer; `false` when it could not (rows remain, or a writer
/// holds the buffer, or the snapshot is too old to tell).
fn truncate_if_all_consumed(buffer: &str, consumed: &str) -> bool {
    // Only a fresh snapshot taken after the lock sees every committed row;
    // under REPEATABLE READ rows committed later would be missed.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        return false;
    }
    let relid = spi::query_value(&format!(
        "SELECT {}::regclass::oid::bigint::text",
        literal(buffer)
    ));
    let Some(relid) = relid.and_then(|r| r.parse::<u32>().ok()) else {
        return false;
    };
    // Never wait for writers: with the lock, none is writing until commit.
    let locked = unsafe {
        pg_sys::ConditionalLockRelationOid(
            Oid::from(relid),
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        )
    };
    if !locked {
        return false;
    }
    let pending = spi::query_value(&format!(
        "SELECT EXISTS (SELECT 1 FROM {buffer} r WHERE NOT ({consumed}))::text"
    ));
    if pending.as_deref() != Some("false") {
        return false;
    }
    spi::execute(&format!("TRUNCATE {buffer}"));
    true
}
