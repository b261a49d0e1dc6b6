//! Deleting changes every consumer has applied.
//!
//! When a scheduler worker serves the database, a refresh leaves this to it:
//! the worker sweeps the buffers after each tick, in transactions of its
//! own, and a manual refresh wakes it for a tick when it commits. A refresh then commits without scanning the buffers a second time,
//! and without the synchronous commit that dropping a truncated buffer's
//! old file forces. Without a worker sweeping (not preloaded,
//! `pg_trickle.enabled` off, or ticks paused for a pg_restore session or
//! until ALTER EXTENSION UPDATE) the refresh cleans up itself.

use crate::catalog;
use crate::cdc::CdcObjects;
use crate::config;
use crate::spi;
use pgrx::pg_sys::{self, Oid};
use pgtrickle_core::quote::literal;
use std::collections::HashMap;

/// Below this size a buffer is emptied with DELETE: TRUNCATE costs a scan
/// of all of shared_buffers (to drop the old file's pages) and a lock that
/// makes writers wait, whatever the buffer holds.
const TRUNCATE_MIN_BYTES: i64 = 1 << 20;

/// Who cleans up after a refresh.
pub enum Cleanup {
    /// The refresh itself, before it commits.
    Inline,
    /// The scheduler worker of this database, woken when the refresh
    /// commits (`None`: the refresh runs in the worker, which sweeps after
    /// every tick anyway).
    Scheduler(Option<i32>),
}

/// Who will clean up after a refresh committed now: the scheduler when it
/// is enabled, serves this database, and is not pausing its ticks (for a
/// pg_restore session, or until ALTER EXTENSION UPDATE); else the refresh.
pub fn cleaner() -> Cleanup {
    if !config::ENABLED.get() {
        return Cleanup::Inline;
    }
    if crate::scheduler::in_scheduler() {
        return Cleanup::Scheduler(None);
    }
    // The conditions of the worker's tick, in one query.
    let pid = spi::query_value_kept(&format!(
        "SELECT a.pid::text FROM pg_catalog.pg_stat_activity a \
          WHERE a.backend_type = 'pg_trickle scheduler' AND a.datname = pg_catalog.current_database() \
            AND NOT {} AND NOT {} LIMIT 1",
        crate::restore::RESTORE_SESSION_CONNECTED,
        catalog::VERSION_MISMATCH
    ));
    match pid.and_then(|p| p.parse().ok()) {
        Some(pid) => Cleanup::Scheduler(Some(pid)),
        None => Cleanup::Inline,
    }
}

/// Wakes the scheduler worker `pid` once the current transaction has
/// committed and released its locks, so that it sweeps the buffers this
/// refresh consumed right away: a sweep that comes before the next writes
/// can cut the buffer to nothing, while one that comes after them must
/// DELETE, and leaves dead rows for the next refresh to step over.
///
/// A transaction callback at commit would come too early: the sweep, woken
/// before this backend lets go of the buffers, would find them locked and
/// wait for the next tick (on a busy machine, about one time in three).
pub fn wake_scheduler_at_commit(pid: i32) {
    thread_local! {
        static HOOKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !HOOKED.with(|h| h.replace(true)) {
        // SAFETY: registered once per backend and never unregistered; the
        // callback only reads and clears WAKE_AFTER_LOCKS.
        unsafe {
            pg_sys::RegisterResourceReleaseCallback(Some(wake_after_locks), std::ptr::null_mut())
        };
    }
    WAKE_AFTER_LOCKS.with(|w| w.set(Some(pid)));
}

thread_local! {
    /// The scheduler to wake when the current transaction has released its
    /// locks.
    static WAKE_AFTER_LOCKS: std::cell::Cell<Option<i32>> = const { std::cell::Cell::new(None) };
}

/// Called as each resource owner is released. The last phase of a
/// top-level transaction's end comes after all its locks are gone; a
/// standalone owner released inside a transaction that goes on is told
/// apart by the transaction state, which is no longer "in progress" while
/// the transaction ends.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn wake_after_locks(
    phase: pg_sys::ResourceReleasePhase::Type,
    is_commit: bool,
    is_top_level: bool,
    _arg: *mut std::ffi::c_void,
) {
    if phase != pg_sys::ResourceReleasePhase::RESOURCE_RELEASE_AFTER_LOCKS
        || !is_top_level
        || pg_sys::IsTransactionState()
    {
        return;
    }
    let Some(pid) = WAKE_AFTER_LOCKS.with(|w| w.take()) else {
        return;
    };
    if is_commit {
        // SAFETY: the PGPROC comes from the proc array; a pid reused by
        // another backend only gets it a spurious wake-up.
        let proc = pg_sys::BackendPidGetProc(pid);
        if !proc.is_null() {
            pg_sys::SetLatch(&mut (*proc).procLatch);
        }
    }
}

/// What the scheduler remembers of a source between sweeps.
#[derive(Default)]
pub struct Swept {
    /// The consumers' frontiers at the last complete cleanup.
    frontiers: String,
    /// Sweeps in a row that found the buffer fully consumed but could not
    /// truncate it because a writer held it.
    busy: u32,
    /// Sweeps in a row that failed.
    failures: u32,
}

/// Sweeps that wait for a writer to let go of a fully consumed buffer
/// before emptying it with DELETE instead: TRUNCATE leaves nothing behind,
/// while deleted rows stay for the next refresh to step over until vacuum.
const BUSY_SWEEPS_BEFORE_DELETE: u32 = 10;

/// Failed sweeps of one buffer in a row before a WARNING (repeated every
/// 100 more).
const FAILURES_BEFORE_WARNING: u32 = 10;

/// The sources the scheduler's sweep should clean now: those whose
/// consumers' frontiers moved since their last complete cleanup.
pub fn sweep_due(state: &mut HashMap<u32, Swept>) -> Vec<(u32, String)> {
    let rows = spi::query(
        "SELECT ct.source_relid::bigint::text, \
                pg_catalog.string_agg(st.pgt_id::text || '@' || coalesce(st.frontier->>'snapshot', '-'), ',' ORDER BY st.pgt_id) \
           FROM pgtrickle.pgt_change_tracking ct \
           LEFT JOIN pgtrickle.pgt_stream_tables st ON st.pgt_id = ANY (ct.tracked_by_pgt_ids) \
          GROUP BY ct.source_relid",
    );
    let mut present = Vec::new();
    let mut due = Vec::new();
    for row in rows {
        let Some(source) = row[0].as_deref().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        present.push(source);
        let frontiers = row[1].clone().unwrap_or_default();
        if state.get(&source).map(|s| &s.frontiers) != Some(&frontiers) {
            due.push((source, frontiers));
        }
    }
    state.retain(|source, _| present.contains(source));
    due
}

/// Sweeps one source, in a subtransaction of the caller's transaction
/// (the scheduler gives each source a transaction of its own, so that a
/// TRUNCATE's lock is held only for its own commit). The sweep never waits
/// for a lock, so it cannot take part in a deadlock.
pub fn sweep_one(source: u32, frontiers: String, state: &mut HashMap<u32, Swept>) {
    let swept = state.entry(source).or_default();
    let by = Cleaner::Sweep {
        await_truncate: swept.busy < BUSY_SWEEPS_BEFORE_DELETE,
    };
    match spi::in_subtransaction(|| clean(Oid::from(source), by)) {
        Ok(Outcome::Done) => {
            swept.frontiers = frontiers;
            swept.busy = 0;
            swept.failures = 0;
        }
        Ok(Outcome::Busy) => swept.busy += 1,
        Err(message) => {
            swept.failures += 1;
            if swept.failures % 100 == FAILURES_BEFORE_WARNING {
                pgrx::warning!(
                    "pg_trickle: cleaning the change buffer of table {source} failed {} times in a row: {message}",
                    swept.failures
                );
            } else {
                pgrx::debug1!(
                    "pg_trickle: cleaning the change buffer of table {source} failed: {message}"
                );
            }
        }
    }
}

enum Outcome {
    Done,
    /// Left for the next sweep: the consumer list was locked, or the buffer
    /// is fully consumed but a writer kept it from being truncated.
    Busy,
}

#[derive(Clone, Copy)]
enum Cleaner {
    /// A refresh, before it commits.
    Refresh,
    /// The scheduler's sweep, which never waits: it skips a source whose
    /// consumer list is locked (a stream table being created or dropped
    /// over it), and with `await_truncate` leaves a fully consumed buffer
    /// that a writer holds for a later TRUNCATE rather than DELETE it.
    Sweep { await_truncate: bool },
}

/// Removes from each source's buffer the changes all its consumers have
/// consumed; empties a large, fully consumed buffer with TRUNCATE when
/// `pg_trickle.cleanup_use_truncate` is on and nobody is writing to it.
pub fn consumed_changes(sources: &[Oid]) {
    for &source in sources {
        clean(source, Cleaner::Refresh);
    }
}

/// Cleans one source's buffer.
fn clean(source: Oid, by: Cleaner) -> Outcome {
    let sweep = matches!(by, Cleaner::Sweep { .. });
    let Some(objects) = CdcObjects::existing(source) else {
        return Outcome::Done;
    };
    let buffer = objects.buffer_name();
    // A refresh looks before it locks (an empty buffer needs no lock); the
    // sweep locks first, and looks once it holds the buffer.
    let mut size = None;
    if !sweep {
        size = buffer_size(&buffer);
        if size.is_none() {
            return Outcome::Done;
        }
    }
    // Locks the consumer list: a stream table being created over this
    // source, or its last one being dropped, waits for the cleaner or is
    // skipped by the sweep, which then takes the buffer only if nobody holds
    // it (a source being dropped does, before it deletes this row).
    let consumers = spi::query_value(&format!(
        "SELECT tracked_by_pgt_ids::text FROM pgtrickle.pgt_change_tracking WHERE source_relid = {} FOR UPDATE{}",
        source.to_u32(),
        if sweep { " SKIP LOCKED" } else { "" }
    ));
    let Some(consumers) = consumers else {
        return if sweep { Outcome::Busy } else { Outcome::Done };
    };
    if sweep {
        let locked = objects.relid().is_some_and(|relid| unsafe {
            pg_sys::ConditionalLockRelationOid(relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE)
        });
        if !locked {
            return Outcome::Busy;
        }
        size = buffer_size(&buffer);
    }
    let Some(bytes) = size else {
        return Outcome::Done; // empty
    };
    let ids: Vec<i64> = consumers
        .trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut conditions = Vec::new();
    for id in &ids {
        match catalog::load(*id).and_then(|st| st.frontier) {
            Some(f) => conditions.push(f.consumed(source, "r")),
            None => return Outcome::Done, // a consumer not populated yet
        }
    }
    if conditions.is_empty() {
        return Outcome::Done;
    }
    let consumed = conditions.join(" AND ");
    if config::CLEANUP_USE_TRUNCATE.get() && bytes >= TRUNCATE_MIN_BYTES {
        // Only a sweep may cut in place: its transaction does nothing else,
        // so the frontiers it reads are committed. A refresh's own frontier
        // would return with a rollback, and the changes it consumed with it;
        // a cut would not.
        match truncate_if_all_consumed(&buffer, objects.relid(), &consumed, sweep) {
            Truncation::Done => return Outcome::Done,
            Truncation::Busy
                if matches!(
                    by,
                    Cleaner::Sweep {
                        await_truncate: true
                    }
                ) =>
            {
                return Outcome::Busy
            }
            Truncation::Busy | Truncation::RowsRemain => {}
        }
    }
    spi::execute(&format!("DELETE FROM {buffer} r WHERE {consumed}"));
    Outcome::Done
}

/// The buffer's size in bytes, or `None` when it holds no rows.
fn buffer_size(buffer: &str) -> Option<i64> {
    let row = spi::query(&format!(
        "SELECT (NOT EXISTS (SELECT 1 FROM {buffer}))::text, pg_catalog.pg_relation_size({})::text",
        literal(buffer)
    ))
    .into_iter()
    .next()?;
    if row[0].as_deref() == Some("true") {
        return None;
    }
    Some(row[1].as_deref().and_then(|b| b.parse().ok()).unwrap_or(0))
}

enum Truncation {
    Done,
    /// A writer holds the buffer (or the isolation level cannot tell).
    Busy,
    /// Some rows are not consumed by every consumer yet.
    RowsRemain,
}

/// Empties the buffer when every row in it has been consumed by every
/// consumer: cut in place if `in_place` allows, else with TRUNCATE.
fn truncate_if_all_consumed(
    buffer: &str,
    relid: Option<Oid>,
    consumed: &str,
    in_place: bool,
) -> Truncation {
    // Only a fresh snapshot taken after the lock sees every committed row;
    // under REPEATABLE READ rows committed later would be missed.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        return Truncation::RowsRemain;
    }
    let Some(relid) = relid else {
        return Truncation::RowsRemain;
    };
    // Look before locking: while writers are busy the buffer nearly always
    // holds changes no refresh has consumed yet, and then writers need not
    // wait at all. The look also counts the rows it saw.
    let look = spi::query(&format!(
        "SELECT (pg_catalog.bool_or(NOT ({consumed})) IS NOT TRUE)::text, count(*)::text FROM {buffer} r"
    ));
    let Some([Some(all_consumed), Some(seen)]) = look.first().map(|r| [r[0].clone(), r[1].clone()])
    else {
        return Truncation::RowsRemain;
    };
    if all_consumed != "true" {
        return Truncation::RowsRemain;
    }
    // Never wait for writers: with the lock, none is writing until commit.
    let locked = unsafe {
        pg_sys::ConditionalLockRelationOid(relid, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE)
    };
    if !locked {
        return Truncation::Busy;
    }
    // Under the lock, only a count: rows can only have been added since the
    // look (only a cleaner deletes, and it holds the consumer list), by
    // writers that have committed or aborted by now, so the same number of
    // rows is the same rows, all consumed. A plain count is a fraction of
    // the look's cost, and writers wait for no more than it.
    let now = spi::query_value(&format!("SELECT count(*)::text FROM {buffer}"));
    if now.as_deref() != Some(seen.as_str()) {
        return Truncation::RowsRemain;
    }
    if !(in_place && unsafe { cut_in_place(relid) }) {
        spi::execute(&format!("TRUNCATE {buffer}"));
    }
    Truncation::Done
}

/// Empties the buffer `relid`, locked ACCESS EXCLUSIVE and fully consumed
/// by committed frontiers, by cutting its file to nothing in place, as VACUUM cuts empty pages off
/// the end of a table; `false` (nothing done) when that is not safe.
///
/// TRUNCATE instead gives the buffer a new file, which invalidates every
/// plan that reads it: each refresh would then plan its statements again,
/// about a tenth of a 1% refresh of the join+aggregate benchmark. Cutting in
/// place is safe only while no index entry points into the heap: the
/// buffer's one index, of TRUNCATE markers, must not have held an entry
/// since it was built (its metapage alone). A cut cannot be rolled back,
/// but every row is consumed by a committed refresh and no writer can add
/// one while the lock is held, so an abort afterwards loses nothing.
unsafe fn cut_in_place(relid: Oid) -> bool {
    let exclusive = pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE;
    let rel = pg_sys::table_open(relid, exclusive);
    let indexes = pgrx::PgList::<pg_sys::Oid>::from_pg(pg_sys::RelationGetIndexList(rel));
    let untouched = indexes.iter_oid().all(|index| {
        let index = pg_sys::index_open(index, exclusive);
        let blocks =
            pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM);
        pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
        blocks <= 1
    });
    if untouched {
        pg_sys::RelationTruncate(rel, 0);
        pg_sys::pgstat_count_truncate(rel);
        let toast = (*(*rel).rd_rel).reltoastrelid;
        if toast != pg_sys::InvalidOid {
            let toast = pg_sys::table_open(toast, exclusive);
            if pg_sys::RelationGetNumberOfBlocksInFork(toast, pg_sys::ForkNumber::MAIN_FORKNUM) > 0
            {
                // rebuilds the toast index: an invalidation of the toast
                // table only, which no plan names
                pg_sys::heap_truncate_one_rel(toast);
            }
            pg_sys::table_close(toast, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
    }
    pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    untouched
}
