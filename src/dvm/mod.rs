//! Differential view maintenance: from a defining query, analysed by
//! PostgreSQL itself, to the SQL that computes its full result and delta.
//!
//! * `analyze` — parse and analyse the query, decide what DIFFERENTIAL can
//!   maintain, and describe it as a `Plan` over blocks (select-project-join
//!   cores, possibly grouped, possibly UNION ALL'ed);
//! * `flat` — print a block's core with each source replaced by its full
//!   contents or its change window (query-tree surgery + `pg_get_querydef`);
//! * `identity` — which columns of a source row its identity hashes;
//! * `paired` — when a grouped core may read an update as one row, joined
//!   once for its old and new values;
//! * `tree` — the analysed query kept in the catalog, printed again after
//!   renames;
//! * `value_form` — how values of each type enter row identities;
//! * `pgtrickle_core::dvm` — pure: the storage layout and the refresh SQL
//!   built around the printed cores.

pub mod analyze;
pub mod flat;
pub mod identity;
mod paired;
pub use paired::split_columns;
pub mod tree;
mod value_form;

pub use pgtrickle_core::dvm::{plan, sqlgen};
