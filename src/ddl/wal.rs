//! DDL and lifecycle events written into the WAL as transactional logical
//! messages: ordered with the data changes of the same transaction, gone
//! with it on rollback. The JSON is documented in docs/DDL_MESSAGES.md.

use crate::config;
use crate::spi;
use pgtrickle_core::quote::literal;
use serde_json::{json, Value};

pub const DDL_PREFIX: &str = "pg_trickle.ddl";
pub const LIFECYCLE_PREFIX: &str = "pg_trickle.lifecycle";

/// Version of the message format; fields are only ever added.
const FORMAT: u32 = 1;

fn emit(prefix: &str, mut payload: Value) {
    if !config::DDL_MESSAGES.get() {
        return;
    }
    payload["format"] = json!(FORMAT);
    let sql = format!(
        "SELECT pg_catalog.pg_logical_emit_message(true, {}, {})",
        literal(prefix),
        literal(&payload.to_string())
    );
    spi::as_role(spi::superuser(), || spi::execute(&sql));
}

/// One message per table per DDL command.
pub fn ddl(payload: Value) {
    emit(DDL_PREFIX, payload);
}

/// A stream table was created, dropped, reinitialized or changed status.
pub fn lifecycle(event: &str, schema: &str, name: &str, detail: Value) {
    emit(
        LIFECYCLE_PREFIX,
        json!({ "event": event, "stream_table": { "schema": schema, "name": name }, "detail": detail }),
    );
}
