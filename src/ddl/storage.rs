//! DDL by users on a stream table's own storage table.
//!
//! The table is pg_trickle's to maintain: a column may be added if rows
//! can be inserted without it (nullable or with a default; it is not
//! maintained, and a warning says so), and a rename of the table is
//! followed; dropping, renaming or retyping a maintained column, or adding
//! a NOT NULL column without a default, would make every refresh fail and
//! is rejected with the way to change a stream table's columns instead.

use crate::catalog::{self, StreamTable};
use crate::ddl::columns::live_columns;
use crate::dvm::analyze::analyze;
use crate::error::{ErrorKind, PgtError, PgtResult};
use crate::refresh;
use crate::spi;
use pgrx::pg_sys::Oid;
use pgtrickle_core::quote::literal;

pub fn storage_altered(relid: Oid) -> PgtResult<()> {
    spi::as_role(spi::superuser(), || {
        let Some(id) = spi::query_value(&format!(
            "SELECT pgt_id::text FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = {}",
            relid.to_u32()
        )) else {
            return Ok(());
        };
        let st = catalog::load(id.parse().unwrap_or(0)).expect("stream table exists");
        follow_rename(&st);
        let analysis = analyze(&st.defining_query)?;
        let plan = refresh::plan_for(&analysis);
        let maintained: Vec<(String, String)> = plan.storage_columns();
        let live = live_columns(relid);
        let mut broken = Vec::new();
        for (name, type_sql) in &maintained {
            match live.iter().find(|c| &c.name == name) {
                None => broken.push(format!("column \"{name}\" is gone (dropped or renamed)")),
                Some(c) if &c.type_sql != type_sql => broken.push(format!(
                    "column \"{name}\" is now {} but the query produces {type_sql}",
                    c.type_sql
                )),
                Some(_) => {}
            }
        }
        let extra: Vec<_> = live
            .iter()
            .filter(|c| !maintained.iter().any(|(n, _)| n == &c.name))
            .collect();
        let required = spi::query(&format!(
            "SELECT a.attname::text FROM pg_catalog.pg_attribute a \
              WHERE a.attrelid = {} AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull \
                AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = ''",
            relid.to_u32()
        ));
        for c in &extra {
            if required
                .iter()
                .any(|r| r[0].as_deref() == Some(c.name.as_str()))
            {
                broken.push(format!(
                    "column \"{}\" is NOT NULL without a default, and refreshes insert rows without it",
                    c.name
                ));
            }
        }
        if !broken.is_empty() {
            return Err(PgtError::new(
                ErrorKind::ObjectState,
                format!(
                    "this change to stream table {} would make its refreshes fail: {}",
                    st.display_name(),
                    broken.join("; ")
                ),
            )
            .with_detail("pg_trickle maintains the columns of a stream table from its defining query.")
            .with_hint(format!(
                "Change the query instead: SELECT pgtrickle.create_green({}, query => '...') then promote_green, \
                 or drop and recreate the stream table. A nullable column, or one with a default, may be added.",
                literal(&st.display_name())
            )));
        }
        for c in extra {
            pgrx::warning!(
                "pg_trickle: column \"{}\" of stream table {} is not maintained; refreshes leave it NULL or at its default",
                c.name,
                st.display_name()
            );
        }
        Ok(())
    })
}

/// ALTER TABLE ... RENAME / SET SCHEMA of the storage: the catalog follows.
fn follow_rename(st: &StreamTable) {
    spi::execute(&format!(
        "UPDATE pgtrickle.pgt_stream_tables s SET pgt_name = c.relname, pgt_schema = n.nspname, updated_at = pg_catalog.now() \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
          WHERE c.oid = s.pgt_relid AND s.pgt_id = {} AND (s.pgt_name, s.pgt_schema) IS DISTINCT FROM (c.relname::text, n.nspname::text)",
        st.pgt_id
    ));
}
