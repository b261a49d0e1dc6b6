//! The SQL surface: thin `#[pg_extern]` functions that validate their input
//! and call into the engine.

mod explain;
mod lifecycle;
mod migrate;
mod util;
