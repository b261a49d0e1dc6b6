//! The background scheduler.
//!
//! A launcher (registered in `_PG_init`) starts one worker per database
//! that allows connections; a worker finding no pg_trickle in its database
//! exits, and the launcher tries again later. A worker wakes every
//! `pg_trickle.scheduler_interval_ms`, refreshes the stream tables whose
//! schedule is due (upstream before downstream), each in its own
//! transaction, and prunes old refresh history.

mod due;
mod launcher;
mod worker;

pub use launcher::register;
