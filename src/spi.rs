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
        let snap = snapshot.map(|s| s.raw()).unwrap_or(std::ptr::null_mut());
        let rc = pg_sys::SPI_execute_snapshot(
            plan,
            std::ptr::null_mut(),
            std::ptr::null(),
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
        pg_sys::SPI_freeplan(plan);
        (processed, rows)
    }
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
    query(sql)
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
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
