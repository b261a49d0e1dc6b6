//! What a refresh needs to know of a relation, read from the system
//! caches: no statement to run for facts PostgreSQL keeps at hand.

use pgrx::pg_sys::{self, Oid};
use std::ffi::CStr;

/// The `pg_class` facts of a relation that a refresh reads.
pub struct ClassFacts {
    pub owner: Oid,
    /// The planner's estimate of its rows; negative when never analysed.
    pub reltuples: f64,
    pub row_security: bool,
}

/// The facts of `relid`, or `None` when it does not exist (any more).
pub fn facts(relid: Oid) -> Option<ClassFacts> {
    // SAFETY: a syscache lookup by oid; the tuple is released before
    // returning and only copied fields leave this block.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as _,
            pg_sys::Datum::from(relid),
        );
        if tuple.is_null() {
            return None;
        }
        let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple);
        let facts = ClassFacts {
            owner: (*form).relowner,
            reltuples: f64::from((*form).reltuples),
            row_security: (*form).relrowsecurity,
        };
        pg_sys::ReleaseSysCache(tuple);
        Some(facts)
    }
}

/// `relid::regclass::text`: the name, schema-qualified unless the search
/// path finds it, quoted as needed.
pub fn display_name(relid: Oid) -> String {
    // SAFETY: regclassout takes an oid and returns a palloc'd C string; an
    // oid without a relation prints as the number.
    unsafe {
        let text = pgrx::direct_function_call::<&CStr>(
            pg_sys::regclassout,
            &[pgrx::IntoDatum::into_datum(relid)],
        )
        .expect("regclassout returns a name");
        text.to_string_lossy().into_owned()
    }
}
