//! Bringing stream tables back after `pg_dump` / `pg_restore`.
//!
//! A restore brings back the catalog rows (registered with
//! `pg_extension_config_dump`), the storage tables and, as ordinary objects,
//! the change buffers and capture triggers — but every table has a new OID,
//! while the catalog still holds the old ones, and the transaction ids in the
//! buffers and frontiers belong to another database. So before any work the
//! extension checks that each stream table's OID still names its table and
//! that its frontier was written in this database; if not, it rebuilds the
//! catalog's references from names and the defining queries, replaces the
//! restored capture objects with fresh ones and makes the next refresh of
//! every stream table a full one.

use crate::catalog;
use crate::cdc;
use crate::dvm::analyze::analyze;
use crate::error::PgtResult;
use crate::lifecycle::{probe_dependencies, record_dependencies};
use crate::spi;
use pgrx::pg_sys;
use pgtrickle_core::quote::{ident, literal};

/// Key of the advisory lock serialising repairs (class of refresh locks, 0).
const REPAIR_LOCK: &str = "pg_catalog.pg_advisory_xact_lock(7366516, 0)";

/// SQL: a pg_restore session (other than this one) is connected to this
/// database.
pub(crate) const RESTORE_SESSION_CONNECTED: &str =
    "EXISTS (SELECT FROM pg_catalog.pg_stat_activity \
      WHERE datname = pg_catalog.current_database() AND application_name = 'pg_restore' \
        AND pid <> pg_catalog.pg_backend_pid())";

/// True while a pg_restore session is connected to this database.
pub fn restore_running() -> bool {
    spi::query_value(&format!("SELECT {RESTORE_SESSION_CONNECTED}::text")).as_deref()
        == Some("true")
}

/// True when the catalog no longer matches this database.
pub(crate) fn restored() -> bool {
    spi::query_value_kept(
        "SELECT EXISTS (
            SELECT FROM pgtrickle.pgt_stream_tables s
             -- a stream table's name now names another table (a missing
             -- table is not evidence: it may be being dropped right now)
             WHERE pg_catalog.to_regclass(pg_catalog.format('%I.%I', s.pgt_schema, s.pgt_name))::oid <> s.pgt_relid
                OR (s.frontier ? 'system_identifier' AND s.frontier->>'system_identifier' IS DISTINCT FROM
                    (SELECT system_identifier::text FROM pg_catalog.pg_control_system()))
                OR (s.frontier ? 'database' AND (s.frontier->>'database')::oid IS DISTINCT FROM
                    (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())))::text",
    )
    .as_deref()
        == Some("true")
}

/// Storage tables whose stream table's name now names another table.
fn renamed_storage() -> Vec<pg_sys::Oid> {
    spi::query(
        "SELECT s.pgt_relid::oid::bigint::text FROM pgtrickle.pgt_stream_tables s \
          WHERE pg_catalog.to_regclass(pg_catalog.format('%I.%I', s.pgt_schema, s.pgt_name))::oid <> s.pgt_relid",
    )
    .into_iter()
    .filter_map(|r| r[0].as_deref().and_then(|v| v.parse::<u32>().ok()))
    .map(pg_sys::Oid::from)
    .collect()
}

/// Repairs the catalog after a restore, if it needs it. Cheap when it does
/// not: one query over pgt_stream_tables.
pub fn repair_if_restored() -> PgtResult<()> {
    spi::as_role(spi::superuser(), || {
        if !restored() {
            return Ok(());
        }
        // A promotion that renamed stream tables while `restored` ran looks
        // like a restore to a backend whose caches predate it: the query's
        // snapshot has the new catalog rows, the name lookup the old names.
        // Locking the tables waits for the promotion to finish and brings
        // in its cache invalidations (before the repair lock, which a
        // promotion may wait for while holding them).
        for relid in renamed_storage() {
            unsafe { pg_sys::LockRelationOid(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
        }
        spi::execute(&format!("SELECT {REPAIR_LOCK}"));
        if !restored() {
            return Ok(()); // a promotion, or another session repaired it meanwhile
        }
        pgrx::warning!(
            "pg_trickle: the catalog refers to tables of another database (restored from a dump?); \
             rebuilding change capture, every stream table will be refreshed in full"
        );
        drop_restored_capture();
        let mut missing = Vec::new();
        for st in catalog::all() {
            let relid = spi::query_value(&format!(
                "SELECT pg_catalog.to_regclass({})::oid::bigint::text",
                literal(&st.qualified_name())
            ));
            let Some(relid) = relid else {
                spi::execute(&format!(
                    "UPDATE pgtrickle.pgt_stream_tables SET status = 'ERROR', last_error = {} WHERE pgt_id = {}",
                    literal(&format!("storage table {} is missing after a restore", st.display_name())),
                    st.pgt_id
                ));
                missing.push(st.pgt_id);
                continue;
            };
            spi::execute(&format!(
                "UPDATE pgtrickle.pgt_stream_tables SET pgt_relid = {relid}, frontier = NULL, needs_reinit = true \
                 WHERE pgt_id = {}",
                st.pgt_id
            ));
        }
        // Dependencies between stream tables need the new storage OIDs first.
        spi::execute("DELETE FROM pgtrickle.pgt_dependencies");
        for st in catalog::all() {
            if missing.contains(&st.pgt_id) {
                continue;
            }
            // One stream table whose query no longer analyses (a source
            // missing from the dump) must not keep the others broken.
            let repaired = spi::in_subtransaction(|| -> PgtResult<()> {
                let analysis = analyze(&st.defining_query)?;
                catalog::set_query(st.pgt_id, &st.defining_query, analysis.query);
                let deps = probe_dependencies(&st.defining_query);
                let base: Vec<u32> = analysis.base_tables().iter().map(|o| o.to_u32()).collect();
                record_dependencies(st.pgt_id, &deps, &base);
                // Retired tables are kept as they were, consuming nothing.
                if st.refresh_mode != "FULL" && st.retired_by.is_none() {
                    let owner = st.owner();
                    for source in analysis.base_tables() {
                        cdc::track(source, st.pgt_id, owner);
                    }
                }
                Ok(())
            });
            let failure = match repaired {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.message),
                Err(message) => Some(message),
            };
            if let Some(message) = failure {
                spi::execute(&format!(
                    "UPDATE pgtrickle.pgt_stream_tables SET status = 'ERROR', last_error = {} WHERE pgt_id = {}",
                    literal(&format!(
                        "after a restore, the query of {} no longer analyses: {message}",
                        st.display_name()
                    )),
                    st.pgt_id
                ));
            }
        }
        Ok(())
    })
}

/// Drops the capture triggers, functions and buffers a restore brought
/// back (named after OIDs of the dumped database), and their catalog rows.
fn drop_restored_capture() {
    let triggers = spi::query(
        "SELECT pg_catalog.quote_ident(t.tgname), t.tgrelid::regclass::text FROM pg_catalog.pg_trigger t \
          JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid \
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE t.tgname LIKE 'pg\\_trickle\\_cdc\\_%' \
           AND (p.proname LIKE 'pg\\_trickle\\_cdc\\_%' OR p.oid = pg_catalog.to_regprocedure('pgtrickle.pg_trickle_capture()'))",
    );
    for row in triggers {
        if let (Some(name), Some(table)) = (&row[0], &row[1]) {
            spi::execute(&format!("DROP TRIGGER IF EXISTS {name} ON {table}"));
        }
    }
    let schemas: Vec<String> = spi::query(
        "SELECT DISTINCT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
          WHERE c.relname LIKE 'changes\\_%' AND c.relkind = 'r' \
            AND (n.nspname = 'pgtrickle_changes' OR n.nspname = pg_catalog.current_setting('pg_trickle.change_buffer_schema'))",
    )
    .into_iter()
    .filter_map(|r| r.into_iter().next().flatten())
    .collect();
    for schema in schemas {
        let objects = spi::query(&format!(
            "SELECT 'DROP FUNCTION ' || p.oid::regprocedure::text FROM pg_catalog.pg_proc p \
              WHERE p.pronamespace = {s}::regnamespace AND p.proname LIKE 'pg\\_trickle\\_cdc\\_%' \
             UNION ALL \
             SELECT 'DROP TABLE ' || c.oid::regclass::text FROM pg_catalog.pg_class c \
              WHERE c.relnamespace = {s}::regnamespace AND c.relkind = 'r' AND c.relname LIKE 'changes\\_%'",
            s = literal(&ident(&schema))
        ));
        for row in objects {
            if let Some(statement) = row.into_iter().next().flatten() {
                spi::execute(&statement);
            }
        }
    }
    spi::execute("DELETE FROM pgtrickle.pgt_change_tracking");
}
