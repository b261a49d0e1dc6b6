//! A scheduler worker serving one database.

use super::due::due_stream_tables;
use crate::catalog;
use crate::config;
use crate::refresh::{self, Initiator};
use crate::spi;
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use pgtrickle_core::quote::literal;
use std::time::{Duration, Instant};

const RETENTION_EVERY: Duration = Duration::from_secs(3600);

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_trickle_scheduler_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = pg_sys::Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    super::IN_SCHEDULER.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut swept = std::collections::HashMap::new();
    let mut last_retention: Option<Instant> = None;
    let mut warned_version = false;
    loop {
        if !BackgroundWorker::transaction(extension_installed) {
            return; // the launcher looks again later
        }
        let mismatch = BackgroundWorker::transaction(catalog::version_mismatch);
        if let Some(message) = &mismatch {
            if !warned_version {
                pgrx::warning!("{message}");
                warned_version = true;
            }
        } else {
            warned_version = false;
        }
        // Nothing while pg_restore is filling this database: its catalog
        // rows, tables and triggers arrive in stages, and repairing (or
        // refreshing) in between would race its DDL.
        let restoring = BackgroundWorker::transaction(crate::restore::restore_running);
        if config::ENABLED.get() && mismatch.is_none() && !restoring {
            BackgroundWorker::transaction(|| {
                if let Err(message) = spi::in_subtransaction(crate::restore::repair_if_restored) {
                    pgrx::warning!(
                        "pg_trickle: repairing the catalog after a restore failed: {message}"
                    );
                }
            });
            for pgt_id in BackgroundWorker::transaction(due_stream_tables) {
                if BackgroundWorker::sigterm_received() {
                    return;
                }
                BackgroundWorker::transaction(|| refresh_one(pgt_id));
            }
            // Changes every consumer has applied: each buffer in a
            // transaction of its own.
            let due = std::panic::AssertUnwindSafe(|| refresh::cleanup::sweep_due(&mut swept));
            for (source, frontiers) in BackgroundWorker::transaction(due) {
                let one = std::panic::AssertUnwindSafe(|| {
                    refresh::cleanup::sweep_one(source, frontiers, &mut swept)
                });
                BackgroundWorker::transaction(one);
            }
            if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
                BackgroundWorker::transaction(prune_history);
                last_retention = Some(Instant::now());
            }
        }
        let interval = Duration::from_millis(config::SCHEDULER_INTERVAL_MS.get().max(10) as u64);
        if !BackgroundWorker::wait_latch(Some(interval)) {
            return;
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
}

fn extension_installed() -> bool {
    spi::query_value("SELECT 1::text FROM pg_catalog.pg_extension WHERE extname = 'pg_trickle'")
        .is_some()
}

fn refresh_one(pgt_id: i64) {
    if !refresh::lock(pgt_id, false) {
        return; // a manual refresh is running; the next tick retries
    }
    let Some(st) = catalog::load(pgt_id) else {
        return;
    };
    if st.status != "ACTIVE" && st.status != "INITIALIZING" {
        return;
    }
    let start = spi::query_value("SELECT pg_catalog.clock_timestamp()::text").unwrap_or_default();
    match spi::in_subtransaction(|| refresh::refresh_locked(&st, Initiator::Scheduler)) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => record_failure(&st, &start, &e.message),
        Err(message) => record_failure(&st, &start, &message),
    }
}

fn record_failure(st: &catalog::StreamTable, start: &str, message: &str) {
    let errors = st.consecutive_errors + 1;
    let max = config::MAX_CONSECUTIVE_ERRORS.get();
    let to_error = errors >= max;
    spi::execute(&format!(
        "UPDATE pgtrickle.pgt_stream_tables SET consecutive_errors = {errors}, last_error = {}, \
         status = CASE WHEN {to_error} THEN 'ERROR' ELSE status END, updated_at = pg_catalog.now() WHERE pgt_id = {}",
        literal(message),
        st.pgt_id
    ));
    let requested = if st.refresh_mode == "FULL" || !st.is_populated {
        "FULL"
    } else {
        "DIFFERENTIAL"
    };
    catalog::insert_history(&catalog::HistoryEntry {
        pgt_id: st.pgt_id,
        action: requested,
        requested_action: requested,
        status: "FAILED",
        initiated_by: "SCHEDULER",
        start_time: start,
        rows_inserted: 0,
        rows_deleted: 0,
        delta_rows: None,
        reason: None,
        error_message: Some(message),
    });
    if to_error {
        let payload = serde_json::json!({
            "event": "stream_table_error",
            "schema": st.schema,
            "name": st.name,
            "consecutive_errors": errors,
            "error": message,
        });
        spi::execute(&format!(
            "SELECT pg_catalog.pg_notify('pg_trickle_alert', {})",
            literal(&payload.to_string())
        ));
    }
}

fn prune_history() {
    let days = config::HISTORY_RETENTION_DAYS.get();
    if days > 0 {
        spi::execute(&format!(
            "DELETE FROM pgtrickle.pgt_refresh_history WHERE start_time < pg_catalog.now() - interval '{days} days'"
        ));
    }
}
