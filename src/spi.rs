//! Running SQL from inside the backend.
//!
//! One small wrapper over SPI used everywhere: statements run either with a
//! fresh snapshot (catalog work) or with a given snapshot, so that every
//! statement of a refresh sees the sources as of the same instant while
//! still seeing the refresh's own earlier writes.

use pgrx::pg_sys;
use std::ffi::{CStr, CString};

/// A registered MVCC snapshot, released on drop.
pub struct PinnedSnapshot(pg_sys::Snapshot);

impl PinnedSnapshot {
    /// The snapshot a new statement would get now.
    pub fn take() -> PinnedSnapshot {
        unsafe {
            let snap = pg_sys::GetTransactionSnapshot();
            PinnedSnapshot(pg_sys::RegisterSnapshot(snap))
        }
    }

    fn raw(&self) -> pg_sys::Snapshot {
        self.0
    }
}

impl Drop for PinnedSnapshot {
    fn drop(&mut self) {
        unsafe { pg_sys::UnregisterSnapshot(self.0) }
    }
}

/// Rows of text values (NULL as `None`).
pub type Rows = Vec<Vec<Option<String>>>;

struct Connection;

impl Connection {
    fn open() -> Connection {
        unsafe {
            pg_sys::SPI_connect();
        }
        Connection
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        unsafe {
            pg_sys::SPI_finish();
        }
    }
}

fn run(sql: &str, snapshot: Option<&PinnedSnapshot>, want_rows: bool) -> (u64, Rows) {
    let _conn = Connection::open();
    let c_sql = CString::new(sql).expect("SQL text contains a NUL byte");
    unsafe {
        let plan = pg_sys::SPI_prepare(c_sql.as_ptr(), 0, std::ptr::null_mut());
        if plan.is_null() {
            pgrx::error!("pg_trickle: could not prepare internal statement: {sql}");
        }
        let result = execute_plan(plan, sql, &[], snapshot, want_rows);
        pg_sys::SPI_freeplan(plan);
        result
    }
}

/// Executes a prepared plan inside an SPI connection.
///
/// # Safety
/// `plan` must be a valid plan taking `params`, inside `SPI_connect`.
unsafe fn execute_plan(
    plan: pg_sys::SPIPlanPtr,
    sql: &str,
    params: &[Param],
    snapshot: Option<&PinnedSnapshot>,
    want_rows: bool,
) -> (u64, Rows) {
    let mut values: Vec<pg_sys::Datum> = Vec::with_capacity(params.len());
    let mut nulls: Vec<std::ffi::c_char> = Vec::with_capacity(params.len());
    for param in params {
        values.push(param.datum());
        nulls.push(if param.value.is_some() { b' ' } else { b'n' } as std::ffi::c_char);
    }
    let snap = snapshot.map(|s| s.raw()).unwrap_or(std::ptr::null_mut());
    let rc = pg_sys::SPI_execute_snapshot(
        plan,
        values.as_mut_ptr(),
        nulls.as_ptr(),
        snap,
        std::ptr::null_mut(),
        false,
        true,
        0,
    );
    if rc < 0 {
        pgrx::error!("pg_trickle: internal statement failed ({rc}): {sql}");
    }
    let processed = pg_sys::SPI_processed;
    let mut rows = Vec::new();
    let table = pg_sys::SPI_tuptable;
    if want_rows && !table.is_null() {
        let tupdesc = (*table).tupdesc;
        let natts = (*tupdesc).natts;
        for i in 0..processed as usize {
            let tuple = *(*table).vals.add(i);
            let mut row = Vec::with_capacity(natts as usize);
            for col in 1..=natts {
                let value = pg_sys::SPI_getvalue(tuple, tupdesc, col);
                if value.is_null() {
                    row.push(None);
                } else {
                    row.push(Some(CStr::from_ptr(value).to_string_lossy().into_owned()));
                    pg_sys::pfree(value.cast());
                }
            }
            rows.push(row);
        }
    }
    (processed, rows)
}

/// A parameter of a statement: its type and its value as text.
#[derive(Debug, Clone)]
pub struct Param {
    pub type_oid: pg_sys::Oid,
    pub value: Option<String>,
}

impl Param {
    /// A `text` parameter.
    pub fn text(value: Option<&str>) -> Param {
        Param {
            type_oid: pg_sys::TEXTOID,
            value: value.map(str::to_string),
        }
    }

    /// A `bigint` parameter.
    pub fn int8(value: Option<i64>) -> Param {
        Param {
            type_oid: pg_sys::INT8OID,
            value: value.map(|v| v.to_string()),
        }
    }

    /// A `timestamptz` parameter, from its text form.
    pub fn timestamptz(value: &str) -> Param {
        Param {
            type_oid: pg_sys::TIMESTAMPTZOID,
            value: Some(value.to_string()),
        }
    }

    /// The value, through the type's input function.
    fn datum(&self) -> pg_sys::Datum {
        let Some(text) = &self.value else {
            return pg_sys::Datum::from(0usize);
        };
        let c_text = CString::new(text.as_str()).expect("parameter contains a NUL byte");
        unsafe {
            let mut input = pg_sys::Oid::INVALID;
            let mut io_param = pg_sys::Oid::INVALID;
            pg_sys::getTypeInputInfo(self.type_oid, &mut input, &mut io_param);
            pg_sys::OidInputFunctionCall(input, c_text.as_ptr() as *mut _, io_param, -1)
        }
    }
}

/// Plans kept for the rest of the session, by statement text (at most
/// `MAX_KEPT_PLANS`; beyond that all are let go and planning starts over).
/// PostgreSQL's plan cache replans a kept plan when an object it uses
/// changes.
const MAX_KEPT_PLANS: usize = 256;

thread_local! {
    static KEPT_PLANS: std::cell::RefCell<std::collections::HashMap<String, KeptPlan>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
    /// Kept plans executing now (a statement's triggers may run more).
    static KEPT_RUNNING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

struct KeptPlan(pg_sys::SPIPlanPtr);

/// Counts a kept plan as executing until dropped (also on error).
struct Running;

impl Running {
    fn start() -> Running {
        KEPT_RUNNING.with(|n| n.set(n.get() + 1));
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        KEPT_RUNNING.with(|n| n.set(n.get() - 1));
    }
}

/// Runs `sql` with `params` as of `snapshot` (a fresh one if `None`),
/// through a plan kept for the session: the statement is parsed, analysed
/// and planned once, not on every call. For statements a refresh runs
/// every time with the same text. Returns the rows processed and, if
/// `want_rows`, the rows.
pub fn run_kept(
    sql: &str,
    params: &[Param],
    snapshot: Option<&PinnedSnapshot>,
    want_rows: bool,
) -> (u64, Rows) {
    let _conn = Connection::open();
    // The parameter types are part of what was prepared.
    let types: Vec<pg_sys::Oid> = params.iter().map(|p| p.type_oid).collect();
    let key = format!("{types:?} {sql}");
    if let Some(plan) = KEPT_PLANS.with(|kept| kept.borrow().get(&key).map(|p| p.0)) {
        let _running = Running::start();
        return unsafe { execute_plan(plan, sql, params, snapshot, want_rows) };
    }
    let c_sql = CString::new(sql).expect("SQL text contains a NUL byte");
    let mut types = types;
    unsafe {
        // Always the generic plan: a custom one would be planned again at
        // every call, which is what keeping the plan is to avoid.
        let plan = pg_sys::SPI_prepare_cursor(
            c_sql.as_ptr(),
            types.len() as i32,
            types.as_mut_ptr(),
            pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
        );
        if plan.is_null() {
            pgrx::error!("pg_trickle: could not prepare internal statement: {sql}");
        }
        // Plans are let go only while none executes: one of them may be
        // running further up the stack.
        let full = KEPT_PLANS.with(|kept| kept.borrow().len() >= MAX_KEPT_PLANS);
        if full && KEPT_RUNNING.with(|n| n.get()) > 0 {
            let result = execute_plan(plan, sql, params, snapshot, want_rows);
            pg_sys::SPI_freeplan(plan);
            return result;
        }
        if full {
            KEPT_PLANS.with(|kept| {
                for (_, old) in kept.borrow_mut().drain() {
                    pg_sys::SPI_freeplan(old.0);
                }
            });
        }
        pg_sys::SPI_keepplan(plan);
        KEPT_PLANS.with(|kept| kept.borrow_mut().insert(key, KeptPlan(plan)));
        let _running = Running::start();
        execute_plan(plan, sql, params, snapshot, want_rows)
    }
}

/// Whether statements run through kept plans
/// (`pg_trickle.use_prepared_statements`).
pub fn keeps_plans() -> bool {
    crate::config::USE_PREPARED_STATEMENTS.get()
}

/// Runs a statement with parameters as of `snapshot`, planned for this
/// call only.
pub fn run_with_params(sql: &str, params: &[Param], snapshot: &PinnedSnapshot) -> (u64, Rows) {
    run_params(sql, params, Some(snapshot))
}

/// Runs a statement with parameters and a fresh snapshot, through a kept
/// plan when `pg_trickle.use_prepared_statements` allows; returns the rows
/// it processed.
pub fn execute_with_params(sql: &str, params: &[Param]) -> u64 {
    if keeps_plans() {
        run_kept(sql, params, None, false).0
    } else {
        run_params(sql, params, None).0
    }
}

fn run_params(sql: &str, params: &[Param], snapshot: Option<&PinnedSnapshot>) -> (u64, Rows) {
    let _conn = Connection::open();
    let c_sql = CString::new(sql).expect("SQL text contains a NUL byte");
    let mut types: Vec<pg_sys::Oid> = params.iter().map(|p| p.type_oid).collect();
    unsafe {
        let plan = pg_sys::SPI_prepare(c_sql.as_ptr(), types.len() as i32, types.as_mut_ptr());
        if plan.is_null() {
            pgrx::error!("pg_trickle: could not prepare internal statement: {sql}");
        }
        let result = execute_plan(plan, sql, params, snapshot, false);
        pg_sys::SPI_freeplan(plan);
        result
    }
}

/// A query through a kept plan (see `run_kept`) when
/// `pg_trickle.use_prepared_statements` is on, planned anew otherwise.
fn query_maybe_kept(sql: &str, snapshot: Option<&PinnedSnapshot>) -> Rows {
    if keeps_plans() {
        run_kept(sql, &[], snapshot, true).1
    } else {
        run(sql, snapshot, true).1
    }
}

/// `query`, through a kept plan when the setting allows.
pub fn query_kept(sql: &str) -> Rows {
    query_maybe_kept(sql, None)
}

/// `query_at`, through a kept plan when the setting allows.
pub fn query_at_kept(sql: &str, snapshot: &PinnedSnapshot) -> Rows {
    query_maybe_kept(sql, Some(snapshot))
}

/// `query_value`, through a kept plan when the setting allows.
pub fn query_value_kept(sql: &str) -> Option<String> {
    first_value(query_kept(sql))
}

/// The first column of the first row, if any.
fn first_value(rows: Rows) -> Option<String> {
    rows.into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
}

/// Runs a statement with a fresh snapshot; returns the rows it processed.
pub fn execute(sql: &str) -> u64 {
    run(sql, None, false).0
}

/// Runs a query with a fresh snapshot; returns its rows as text.
pub fn query(sql: &str) -> Rows {
    run(sql, None, true).1
}

/// The first column of the first row, if any.
pub fn query_value(sql: &str) -> Option<String> {
    first_value(query(sql))
}

/// Runs a statement as of `snapshot` (plus this transaction's own writes).
pub fn execute_at(sql: &str, snapshot: &PinnedSnapshot) -> u64 {
    run(sql, Some(snapshot), false).0
}

/// Runs a query as of `snapshot`.
pub fn query_at(sql: &str, snapshot: &PinnedSnapshot) -> Rows {
    run(sql, Some(snapshot), true).1
}

/// Runs `f` as `role` (for reading sources with a stream table owner's
/// privileges, or for maintenance as the bootstrap superuser), restoring
/// the previous user afterwards, also on error.
pub fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    switch_user(role, pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32, f)
}

/// Runs `f` as `role` in a security-restricted operation, as PostgreSQL
/// runs maintenance of a table as its owner (`REFRESH MATERIALIZED VIEW`,
/// index builds): for DDL on a user's table, whose expressions (CHECK
/// constraints, generated columns, index expressions) run as that user and
/// may not change the session.
pub fn as_owner_restricted<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    switch_user(
        role,
        pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        f,
    )
}

fn switch_user<R>(role: pg_sys::Oid, flags: i32, f: impl FnOnce() -> R) -> R {
    let mut saved_user = pg_sys::Oid::INVALID;
    let mut saved_context = 0;
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(role, saved_context | flags);
    }
    struct Restore(pg_sys::Oid, i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) }
        }
    }
    let _restore = Restore(saved_user, saved_context);
    f()
}

/// The bootstrap superuser, which owns the extension's internal objects.
pub fn superuser() -> pg_sys::Oid {
    pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID)
}

/// The role running the current statement.
pub fn current_user() -> pg_sys::Oid {
    unsafe { pg_sys::GetUserId() }
}

/// Runs `f` in a subtransaction; on error rolls it back and returns the
/// error's message, leaving the outer transaction usable.
pub fn in_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        let result = pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(move || Ok(f())))
            .catch_others(|e| {
                Err(match e {
                    pgrx::pg_sys::panic::CaughtError::PostgresError(r)
                    | pgrx::pg_sys::panic::CaughtError::ErrorReport(r) => r.message().to_string(),
                    pgrx::pg_sys::panic::CaughtError::RustPanic { ereport, .. } => {
                        ereport.message().to_string()
                    }
                })
            })
            .execute();
        match &result {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        result
    }
}
