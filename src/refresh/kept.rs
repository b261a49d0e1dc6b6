//! What a refresh derives from a stream table's defining query alone, kept
//! for the session: the storage plan, the relations of each block of the
//! differential plan, and the differential statements for each set of
//! changed sources. Parsing and analysing the query and printing those
//! statements again costs about a tenth of a refresh of 1% of the
//! join+aggregate benchmark.
//!
//! It is kept as PostgreSQL keeps plans: until an invalidation of a
//! relation the query reads (its tables and views, found as the plan cache
//! finds them), or of any function, type, operator, cast or schema. A
//! refresh first locks the relations as the analysis would, which takes in
//! the invalidations of every change committed before it, then looks.
//! Statements print constants with the session's date, time and number
//! settings, so they are kept per value of those settings too.

use crate::catalog::StreamTable;
use crate::dvm::analyze::Analysis;
use crate::dvm::plan::Plan;
use crate::dvm::sqlgen::Statement;
use pgrx::pg_sys::{self, Oid};
use pgrx::PgList;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};

/// What `decide` needs of the analysis.
#[derive(Clone)]
pub struct Derived {
    pub plan: Plan,
    /// The relations of each block of the differential plan, or the
    /// construct DIFFERENTIAL cannot maintain.
    pub blocks: Result<Vec<Vec<Oid>>, String>,
}

impl Derived {
    pub fn of(analysis: &Analysis) -> Derived {
        Derived {
            plan: super::plan_for(analysis),
            blocks: match &analysis.differential {
                Ok((_, blocks)) => Ok(blocks
                    .iter()
                    .map(|b| b.relations().iter().map(|r| r.relid).collect())
                    .collect()),
                Err(unsupported) => Err(unsupported.construct.clone()),
            },
        }
    }
}

struct Entry {
    generation: u64,
    derived: Derived,
    relations: Vec<Oid>,
    /// Differential statements by the signature of the changed sources.
    statements: HashMap<String, Vec<Statement>>,
}

/// Entries beyond which all are let go.
const MAX_ENTRIES: usize = 256;

thread_local! {
    static ENTRIES: RefCell<HashMap<String, Entry>> = RefCell::new(HashMap::new());
    /// Bumped by every invalidation that may concern an entry; an entry
    /// made under another generation is stale.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    /// The relations some entry depends on.
    static WATCHED: RefCell<HashSet<u32>> = RefCell::new(HashSet::new());
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

fn bump() {
    GENERATION.with(|g| g.set(g.get() + 1));
}

unsafe extern "C-unwind" fn relation_changed(_arg: pg_sys::Datum, relid: Oid) {
    // InvalidOid: every relation. A watched set in use (never borrowed
    // across a call into PostgreSQL, so not expected) counts as a match.
    let watched = relid == pg_sys::InvalidOid
        || WATCHED.with(|w| w.try_borrow().map_or(true, |w| w.contains(&relid.to_u32())));
    if watched {
        bump();
    }
}

unsafe extern "C-unwind" fn catalog_changed(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    bump();
}

fn register() {
    if REGISTERED.with(|r| r.replace(true)) {
        return;
    }
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relation_changed), pg_sys::Datum::from(0));
        for cache in [
            pg_sys::SysCacheIdentifier::PROCOID,
            pg_sys::SysCacheIdentifier::TYPEOID,
            pg_sys::SysCacheIdentifier::OPEROID,
            pg_sys::SysCacheIdentifier::CASTSOURCETARGET,
            pg_sys::SysCacheIdentifier::NAMESPACEOID,
        ] {
            pg_sys::CacheRegisterSyscacheCallback(
                cache as i32,
                Some(catalog_changed),
                pg_sys::Datum::from(0),
            );
        }
    }
}

/// The session settings printed constants depend on.
fn settings() -> String {
    [
        "DateStyle",
        "IntervalStyle",
        "TimeZone",
        "extra_float_digits",
        "search_path",
    ]
    .iter()
    .map(|name| {
        let name = CString::new(*name).expect("no NUL");
        let value = unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) };
        if value.is_null() {
            String::new()
        } else {
            unsafe { CStr::from_ptr(value) }
                .to_string_lossy()
                .into_owned()
        }
    })
    .collect::<Vec<_>>()
    .join("\u{1}")
}

fn key(st: &StreamTable) -> String {
    format!(
        "{}\u{0}{}\u{0}{}\u{0}{}",
        st.pgt_id,
        st.qualified_name(),
        st.defining_query,
        settings()
    )
}

/// What was derived for `st`'s query, if still valid; its relations are
/// then locked ACCESS SHARE, as the analysis would have locked them.
pub fn lookup(st: &StreamTable) -> Option<Derived> {
    let key = key(st);
    let relations = ENTRIES.with(|e| e.borrow().get(&key).map(|entry| entry.relations.clone()))?;
    for relid in relations {
        // takes in the invalidations of changes committed before
        unsafe { pg_sys::LockRelationOid(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
    }
    let generation = GENERATION.with(Cell::get);
    ENTRIES.with(|e| {
        let mut entries = e.borrow_mut();
        match entries.get(&key) {
            Some(entry) if entry.generation == generation => Some(entry.derived.clone()),
            Some(_) => {
                entries.remove(&key);
                None
            }
            None => None,
        }
    })
}

/// Keeps what was derived from `analysis`, made in this transaction after
/// its relations were locked.
pub fn keep(st: &StreamTable, analysis: &Analysis, derived: &Derived) {
    register();
    let relations = unsafe { relations_of(analysis.query) };
    WATCHED.with(|w| w.borrow_mut().extend(relations.iter().map(|r| r.to_u32())));
    let generation = GENERATION.with(Cell::get);
    ENTRIES.with(|e| {
        let mut entries = e.borrow_mut();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            key(st),
            Entry {
                generation,
                derived: derived.clone(),
                relations,
                statements: HashMap::new(),
            },
        );
    });
}

/// The relations `query` reads, views included, as the plan cache finds
/// them.
unsafe fn relations_of(query: *mut pg_sys::Query) -> Vec<Oid> {
    let mut relations: *mut pg_sys::List = std::ptr::null_mut();
    let mut items: *mut pg_sys::List = std::ptr::null_mut();
    let mut row_security = false;
    pg_sys::extract_query_dependencies(
        query as *mut pg_sys::Node,
        &mut relations,
        &mut items,
        &mut row_security,
    );
    let mut oids: Vec<Oid> = PgList::<Oid>::from_pg(relations).iter_oid().collect();
    oids.sort_by_key(|o| o.to_u32());
    oids.dedup();
    oids
}

/// The differential statements kept for `signature`, if the entry of `st`
/// is valid.
pub fn statements(st: &StreamTable, signature: &str) -> Option<Vec<Statement>> {
    let generation = GENERATION.with(Cell::get);
    ENTRIES.with(|e| {
        let entries = e.borrow();
        let entry = entries.get(&key(st))?;
        if entry.generation != generation {
            return None;
        }
        entry.statements.get(signature).cloned()
    })
}

/// Keeps differential statements made under a valid entry of `st`.
pub fn keep_statements(st: &StreamTable, signature: String, statements: &[Statement]) {
    let generation = GENERATION.with(Cell::get);
    ENTRIES.with(|e| {
        if let Some(entry) = e.borrow_mut().get_mut(&key(st)) {
            if entry.generation == generation {
                entry.statements.insert(signature, statements.to_vec());
            }
        }
    });
}
