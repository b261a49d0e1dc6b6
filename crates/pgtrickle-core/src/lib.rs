//! Logic of pg_trickle that needs no PostgreSQL backend: duration parsing,
//! row hashing and SQL quoting. The extension and the CLI both link it, and
//! `cargo test -p pgtrickle-core` tests it without a database.

pub mod buffer;
pub mod dag;
pub mod duration;
pub mod dvm;
pub mod hash;
pub mod quote;
pub mod schedule;
pub mod schema_change;
