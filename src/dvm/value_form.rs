//! How values of a type enter row-identity hashes (`ValueForm`), decided
//! from the type's catalog entries.
//!
//! Two needs differ:
//! * the identity of a source row must tell every distinguishable value
//!   apart (an update from `1.0` to `1.00`, or `'a'` to `'A'` under a
//!   case-insensitive collation, must reach the stream table), and must not
//!   depend on the session that refreshes: `identity_form`;
//! * a group's key must hash like `GROUP BY` groups, so that values it
//!   treats as one group get one row id: `key_form`.

use pgrx::pg_sys::{self, Oid};
use pgtrickle_core::dvm::plan::ValueForm;
use pgtrickle_core::quote::qualified;
use std::ffi::CStr;

/// The form of `typid` in the identity of a row: its text output, or its
/// binary output where the text follows session settings.
pub fn identity_form(typid: Oid) -> ValueForm {
    // SAFETY: catalog lookups by OID inside a transaction.
    unsafe {
        if text_follows_settings(typid) {
            if let Some(send) = binary_output_function(typid) {
                return ValueForm::Binary { send };
            }
        }
    }
    ValueForm::Text
}

/// The form of `typid` as a group key: its extended hash function when its
/// default hash operator class has one (for arrays, ranges and composites
/// only if their members hash), otherwise its identity form.
pub fn key_form(typid: Oid) -> ValueForm {
    // SAFETY: the type cache entry stays valid for the transaction.
    let proc = unsafe {
        let entry = pg_sys::lookup_type_cache(typid, pg_sys::TYPECACHE_HASH_EXTENDED_PROC as i32);
        (*entry).hash_extended_proc
    };
    // SAFETY: catalog lookups by OID inside a transaction.
    let function = unsafe {
        if callable_with(proc, typid) {
            function_name(proc)
        } else {
            None
        }
    };
    match function {
        Some(function) => ValueForm::Hash { function },
        None => identity_form(typid),
    }
}

/// Whether SQL can call `proc` with a `typid` argument: a hash function may
/// be declared for another type of the same representation (PostgreSQL 15
/// hashes `boolean` with `hashcharextended("char")`).
unsafe fn callable_with(proc: Oid, typid: Oid) -> bool {
    if proc == Oid::INVALID {
        return false;
    }
    let mut argtypes: *mut Oid = std::ptr::null_mut();
    let mut nargs = 0;
    pg_sys::get_func_signature(proc, &mut argtypes, &mut nargs);
    nargs >= 1
        && pg_sys::can_coerce_type(
            1,
            &typid,
            argtypes,
            pg_sys::CoercionContext::COERCION_IMPLICIT,
        )
}

/// The qualified name of the binary output (send) function of `typid`.
pub fn binary_output_function(typid: Oid) -> Option<String> {
    let mut send = Oid::INVALID;
    let mut varlena = false;
    // SAFETY: a syscache lookup; errors only for a type that does not exist.
    unsafe {
        pg_sys::getTypeBinaryOutputInfo(typid, &mut send, &mut varlena);
        function_name(send)
    }
}

unsafe fn function_name(proc: Oid) -> Option<String> {
    if proc == Oid::INVALID {
        return None;
    }
    let namespace = pg_sys::get_namespace_name(pg_sys::get_func_namespace(proc));
    let name = pg_sys::get_func_name(proc);
    if namespace.is_null() || name.is_null() {
        return None;
    }
    Some(qualified(
        &CStr::from_ptr(namespace).to_string_lossy(),
        &CStr::from_ptr(name).to_string_lossy(),
    ))
}

/// Whether the text output of `typid` depends on session settings: the
/// date/time types (`DateStyle`, `TimeZone`, `IntervalStyle`), floating
/// point and geometric types (`extra_float_digits`), `bytea`
/// (`bytea_output`) and `money` (`lc_monetary`), and arrays and ranges of
/// them. Composite types are read as text: their binary output would carry
/// text fields in the client's encoding.
unsafe fn text_follows_settings(typid: Oid) -> bool {
    let base = pg_sys::getBaseType(typid);
    let element = pg_sys::get_element_type(base);
    if element != Oid::INVALID {
        return text_follows_settings(element);
    }
    if pg_sys::type_is_range(base) {
        return text_follows_settings(pg_sys::get_range_subtype(base));
    }
    if pg_sys::type_is_multirange(base) {
        return text_follows_settings(pg_sys::get_multirange_range(base));
    }
    if [
        pg_sys::FLOAT4OID,
        pg_sys::FLOAT8OID,
        pg_sys::BYTEAOID,
        pg_sys::MONEYOID,
    ]
    .contains(&base)
    {
        return true;
    }
    let mut category: std::ffi::c_char = 0;
    let mut preferred = false;
    pg_sys::get_type_category_preferred(base, &mut category, &mut preferred);
    // TYPCATEGORY_DATETIME, _TIMESPAN, _GEOMETRIC (pg_type.h)
    matches!(category as u8, b'D' | b'T' | b'G')
}
