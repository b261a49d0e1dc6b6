//! The messages that stop a stream table: the problem, its impact, the fix
//! as runnable SQL, and the alternatives.

use crate::catalog::StreamTable;
use pgtrickle_core::quote::literal;

/// `what` says what happened, e.g. `column "v" was dropped`.
pub fn stop_message(st: &StreamTable, table: &str, what: &str) -> String {
    let name = literal(&st.display_name());
    format!(
        "pg_trickle: on table {table}, {what}, and stream table {st_name} uses it. \
         Impact: {st_name} cannot be refreshed any more; it stays in status ERROR with its last contents. \
         Fix: recreate it for the new columns: SELECT pgtrickle.drop_stream_table({name}); then \
         SELECT pgtrickle.create_stream_table({name}, <query using the new columns>). \
         Alternatives: undo the change on {table} and SELECT pgtrickle.alter_stream_table({name}, status => 'ACTIVE'); \
         or SET pg_trickle.block_source_ddl = on to have such changes rejected.",
        st_name = st.display_name(),
    )
}

pub fn dropped_message(st: &StreamTable, table: &str) -> String {
    let name = literal(&st.display_name());
    format!(
        "pg_trickle: table {table} was dropped, and stream table {st_name} reads it. \
         Impact: {st_name} cannot be refreshed any more; it stays in status ERROR with its last contents. \
         Fix: SELECT pgtrickle.drop_stream_table({name}); \
         Alternatives: recreate the table and the stream table; \
         or SET pg_trickle.block_source_ddl = on to have such DROPs rejected.",
        st_name = st.display_name(),
    )
}
