//! The analysed defining query, kept beside its text as PostgreSQL keeps a
//! view's (`pg_rewrite.ev_action`). It refers to tables and columns by OID
//! and attribute number, so printed again after a rename it carries the new
//! names: that is how stream tables follow renamed sources.

use crate::spi;
use pgrx::is_a;
use pgrx::pg_sys;
use pgtrickle_core::quote::literal;
use std::ffi::{c_void, CStr, CString};

/// Node strings may change between major versions: the stored form starts
/// with the major version that wrote it, and another one is not read.
fn major() -> u32 {
    pg_sys::PG_VERSION_NUM / 10000
}

pub fn encode(query: *mut pg_sys::Query) -> String {
    let node = unsafe { CStr::from_ptr(pg_sys::nodeToString(query as *const c_void)) };
    format!("{}:{}", major(), node.to_string_lossy())
}

/// The query stored by `encode`, if this server can read it.
pub fn decode(text: &str) -> Option<*mut pg_sys::Query> {
    let (version, node) = text.split_once(':')?;
    if version.parse::<u32>().ok()? != major() {
        return None;
    }
    let node = CString::new(node).ok()?;
    let parsed = unsafe { pg_sys::stringToNode(node.as_ptr()) } as *mut pg_sys::Node;
    if parsed.is_null() || !unsafe { is_a(parsed, pg_sys::NodeTag::T_Query) } {
        return None;
    }
    Some(parsed as *mut pg_sys::Query)
}

/// The query printed by PostgreSQL with `*` expanded and every name
/// schema-qualified (search_path emptied while printing).
pub fn print(query: *mut pg_sys::Query) -> String {
    let saved =
        spi::query_value("SELECT pg_catalog.current_setting('search_path')").unwrap_or_default();
    spi::execute("SELECT pg_catalog.set_config('search_path', '', true)");
    let text = unsafe { CStr::from_ptr(pg_sys::pg_get_querydef(query, false)) }
        .to_string_lossy()
        .into_owned();
    spi::execute(&format!(
        "SELECT pg_catalog.set_config('search_path', {}, true)",
        literal(&saved)
    ));
    text
}
