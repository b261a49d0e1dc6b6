//! Planner settings for the statements of a refresh
//! (`pg_trickle.merge_planner_hints`), local to the transaction and
//! restored once the statements have run:
//!
//! * `work_mem` is raised to `pg_trickle.merge_work_mem_mb`;
//! * a statement computing a delta runs without sorts: the planner cannot
//!   estimate a change window (a visibility test per row) and picks sort +
//!   group aggregate for what a hash aggregate does faster;
//! * the statements of a differential refresh that apply a computed delta
//!   run with `random_page_cost` at most 1.1: they probe the storage table's
//!   `__pgt_row_id` index once per changed row, where the default cost of 4
//!   makes the planner hash the whole storage table instead (22 ms against
//!   4.7 ms for 2,000 changed rows of a 100,000-row stream table).
//!   Statements that read the sources (the delta, recomputations of groups
//!   or anchors) keep the session's value: the planner underestimates change
//!   windows, and a cheap index would turn their joins into an index probe
//!   per change.

use crate::config;
use crate::dvm::sqlgen::{Statement, Tally};
use crate::spi;
use pgtrickle_core::quote::literal;

type Settings = Vec<(&'static str, String)>;

pub struct PlannerHints {
    /// The session's values, when the hints are on.
    session: Option<Settings>,
    /// (sorts off, cheap index probes) as currently set.
    in_effect: (bool, bool),
}

impl PlannerHints {
    /// Raises `work_mem`, reading the session's settings in the same query.
    pub fn start() -> PlannerHints {
        let session = config::MERGE_PLANNER_HINTS.get().then(|| {
            set_local(&[
                (
                    "work_mem",
                    literal(&format!("{}MB", config::MERGE_WORK_MEM_MB.get())),
                ),
                (
                    "enable_sort",
                    "pg_catalog.current_setting('enable_sort')".into(),
                ),
                (
                    "random_page_cost",
                    "pg_catalog.current_setting('random_page_cost')".into(),
                ),
            ])
        });
        PlannerHints {
            session,
            in_effect: (false, false),
        }
    }

    /// Sets what `statement` should run with, if that differs from what is
    /// set.
    pub fn prepare(&mut self, statement: &Statement, differential: bool) {
        let Some(session) = &self.session else {
            return;
        };
        let computes_delta = matches!(statement.tally, Tally::Delta | Tally::Counts);
        let wanted = (
            computes_delta,
            differential && !computes_delta && !statement.reads_sources,
        );
        if wanted == self.in_effect {
            return;
        }
        let original = |name: &str| -> String {
            session
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| literal(v))
                .unwrap_or_default()
        };
        let sort = if wanted.0 {
            "'off'".to_string()
        } else {
            original("enable_sort")
        };
        let cost = if wanted.1 {
            format!("least({}::float8, 1.1)::text", original("random_page_cost"))
        } else {
            original("random_page_cost")
        };
        set_local(&[("enable_sort", sort), ("random_page_cost", cost)]);
        self.in_effect = wanted;
    }

    /// Puts the session's settings back.
    pub fn finish(self) {
        if let Some(session) = self.session {
            let values: Settings = session
                .iter()
                .map(|(name, value)| (*name, literal(value)))
                .collect();
            set_local(&values);
        }
    }
}

/// Sets settings (name, SQL expression of the value) for the rest of the
/// transaction, in one query; returns their previous values.
fn set_local(settings: &[(&'static str, String)]) -> Settings {
    let current: Vec<String> = settings
        .iter()
        .enumerate()
        .map(|(i, (name, _))| format!("pg_catalog.current_setting({}) AS s{i}", literal(name)))
        .collect();
    let set: Vec<String> = settings
        .iter()
        .map(|(name, value)| format!("pg_catalog.set_config({}, {value}, true)", literal(name)))
        .collect();
    // The fenced subquery reads the old values before the outer row sets
    // the new ones.
    let row = spi::query_kept(&format!(
        "SELECT old.*, {} FROM (SELECT {} OFFSET 0) old",
        set.join(", "),
        current.join(", ")
    ))
    .into_iter()
    .next()
    .unwrap_or_default();
    settings
        .iter()
        .zip(row)
        .map(|((name, _), value)| (*name, value.unwrap_or_default()))
        .collect()
}
