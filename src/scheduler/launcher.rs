//! The launcher: one scheduler worker per database.

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, SignalWakeFlags,
};
use pgrx::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

/// How often the launcher looks for databases without a running worker.
const RECHECK: Duration = Duration::from_secs(5);

/// Registers the launcher; called from `_PG_init` when preloaded.
pub fn register() {
    BackgroundWorkerBuilder::new("pg_trickle launcher")
        .set_type("pg_trickle launcher")
        .set_library("pg_trickle")
        .set_function("pg_trickle_launcher_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_trickle_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(Some("postgres"), None);
    let mut workers: HashMap<u32, pgrx::bgworkers::DynamicBackgroundWorker> = HashMap::new();
    loop {
        let databases: Vec<(u32, String)> = BackgroundWorker::transaction(|| {
            crate::spi::query(
                "SELECT oid::bigint::text, datname FROM pg_catalog.pg_database \
                 WHERE datallowconn AND NOT datistemplate ORDER BY oid",
            )
            .into_iter()
            .filter_map(|r| Some((r[0].as_ref()?.parse().ok()?, r[1].clone()?)))
            .collect()
        });
        for (oid, name) in databases {
            let running = workers.get(&oid).map(|w| w.pid().is_ok()).unwrap_or(false)
                || matches!(
                    workers.get(&oid).map(|w| w.pid()),
                    Some(Err(BackgroundWorkerStatus::NotYetStarted))
                );
            if running {
                continue;
            }
            let started = BackgroundWorkerBuilder::new(&format!("pg_trickle scheduler {name}"))
                .set_type("pg_trickle scheduler")
                .set_library("pg_trickle")
                .set_function("pg_trickle_scheduler_main")
                .set_argument(Some(pg_sys::Datum::from(oid as usize)))
                .enable_spi_access()
                .set_restart_time(None)
                .load_dynamic();
            if let Ok(worker) = started {
                workers.insert(oid, worker);
            }
        }
        if !BackgroundWorker::wait_latch(Some(RECHECK)) {
            break;
        }
    }
}
