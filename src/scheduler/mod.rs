//! The background scheduler.
//!
//! A launcher (registered in `_PG_init`) starts one worker per database
//! that allows connections; a worker finding no pg_trickle in its database
//! exits, and the launcher tries again later. A worker wakes every
//! `pg_trickle.scheduler_interval_ms`, refreshes the stream tables whose
//! schedule is due (upstream before downstream), each in its own
//! transaction, cleans up the change buffers and prunes old refresh
//! history.

mod due;
mod launcher;
mod worker;

pub use launcher::register;

use std::sync::atomic::{AtomicBool, Ordering};

static IN_SCHEDULER: AtomicBool = AtomicBool::new(false);

/// Whether this process is a scheduler worker.
pub fn in_scheduler() -> bool {
    IN_SCHEDULER.load(Ordering::Relaxed)
}
