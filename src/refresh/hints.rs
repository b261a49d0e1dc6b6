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
use pgrx::pg_sys;
use std::ffi::{CStr, CString};

/// The settings the hints change, with their session values.
type Settings = Vec<(&'static str, String)>;

pub struct PlannerHints {
    /// The session's values, when the hints are on.
    session: Option<Settings>,
    /// (sorts off, cheap index probes) as currently set.
    in_effect: (bool, bool),
}

impl PlannerHints {
    /// Raises `work_mem`, keeping the session's values to restore.
    pub fn start() -> PlannerHints {
        let session = config::MERGE_PLANNER_HINTS.get().then(|| {
            let session: Settings = ["work_mem", "enable_sort", "random_page_cost"]
                .into_iter()
                .map(|name| (name, current_setting(name)))
                .collect();
            set_local(
                "work_mem",
                &format!("{}MB", config::MERGE_WORK_MEM_MB.get()),
            );
            session
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
        let original = |name: &str| -> &str {
            session
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        set_local(
            "enable_sort",
            if wanted.0 {
                "off"
            } else {
                original("enable_sort")
            },
        );
        let cost = original("random_page_cost");
        if wanted.1 {
            set_local("random_page_cost", &cheap_probes(cost));
        } else {
            set_local("random_page_cost", cost);
        }
        self.in_effect = wanted;
    }

    /// Puts the session's settings back.
    pub fn finish(self) {
        if let Some(session) = self.session {
            for (name, value) in &session {
                set_local(name, value);
            }
        }
    }
}

/// `random_page_cost` for statements that probe an index once per changed
/// row: the session's value, at most 1.1.
fn cheap_probes(session_value: &str) -> String {
    match session_value.parse::<f64>() {
        Ok(cost) if cost <= 1.1 => session_value.to_string(),
        _ => "1.1".to_string(),
    }
}

/// The value of setting `name` as `current_setting` shows it.
fn current_setting(name: &str) -> String {
    let name = CString::new(name).expect("setting name");
    // SAFETY: the name is a valid C string; the result is a palloc'd copy.
    unsafe {
        let value = pg_sys::GetConfigOptionByName(name.as_ptr(), std::ptr::null_mut(), false);
        CStr::from_ptr(value).to_string_lossy().into_owned()
    }
}

/// Sets `name` to `value` for the rest of the transaction, as
/// `set_config(name, value, true)` does (without a statement to run).
fn set_local(name: &str, value: &str) {
    let name = CString::new(name).expect("setting name");
    let value = CString::new(value).expect("setting value");
    // SAFETY: valid C strings; an invalid value raises an ERROR (elevel 0).
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            0,
            false,
        );
    }
}
