//! The SQL surface: thin `#[pg_extern]` functions that validate their input
//! and call into the engine.

mod bluegreen;
mod ddl;
mod explain;
mod guard;
mod lifecycle;
mod migrate;
mod util;
