//! One error type for the extension and one place that turns it into a
//! PostgreSQL error report (SQLSTATE, message, DETAIL, HINT).

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Who has to act on an error decides its SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad argument: fix the call.
    InvalidParameter,
    /// The object named does not exist.
    UndefinedObject,
    /// The name is already taken.
    DuplicateObject,
    /// The query or construct is not supported in the requested mode.
    FeatureNotSupported,
    /// The caller lacks a privilege.
    InsufficientPrivilege,
    /// The object is in a state that forbids the operation.
    ObjectState,
}

#[derive(Debug, Clone)]
pub struct PgtError {
    pub kind: ErrorKind,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

pub type PgtResult<T> = Result<T, PgtError>;

impl PgtError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PgtError {
            kind,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, message)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn sqlstate(&self) -> PgSqlErrorCode {
        match self.kind {
            ErrorKind::InvalidParameter => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            ErrorKind::UndefinedObject => PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            ErrorKind::DuplicateObject => PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            ErrorKind::FeatureNotSupported => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            ErrorKind::InsufficientPrivilege => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            ErrorKind::ObjectState => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        }
    }

    /// Raises the error in the current backend; does not return.
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(
            self.sqlstate(),
            format!("pg_trickle: {}", self.message),
            "pg_trickle",
        );
        if let Some(detail) = self.detail {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR reports do not return")
    }
}

/// Unwraps a result at the SQL boundary, raising the error if there is one.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for PgtResult<T> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| e.raise())
    }
}
