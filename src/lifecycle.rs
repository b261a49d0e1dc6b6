//! Creating, altering and dropping stream tables.

use crate::catalog::{self, StreamTable};
use crate::cdc;
use crate::config;
use crate::dvm::analyze::{analyze, Analysis};
use crate::dvm::plan::Plan;
use crate::error::{ErrorKind, PgtError, PgtResult};
use crate::refresh::{self, Initiator};
use crate::spi;
use pgrx::pg_sys::{self, Oid};
use pgtrickle_core::quote::{ident, literal, qualified};
use pgtrickle_core::schedule::Schedule;
use std::collections::BTreeMap;

/// `FULL`, `DIFFERENTIAL` or `AUTO`, case-insensitively.
pub fn parse_mode(mode: &str) -> PgtResult<String> {
    let upper = mode.trim().to_uppercase();
    match upper.as_str() {
        "FULL" | "DIFFERENTIAL" | "AUTO" => Ok(upper),
        _ => Err(
            PgtError::invalid(format!("invalid refresh mode \"{mode}\""))
                .with_hint("Use 'FULL', 'DIFFERENTIAL' or 'AUTO'."),
        ),
    }
}

/// A schedule accepted by the scheduler and not shorter than
/// `pg_trickle.min_schedule_seconds`.
pub fn validate_schedule(schedule: Option<&str>) -> PgtResult<Option<String>> {
    let Some(text) = schedule else {
        return Ok(None);
    };
    let parsed = Schedule::parse(text).map_err(|e| {
        PgtError::invalid(e.message).with_hint(
            "A schedule is a duration such as '30s', '5m', '1h30m', a cron expression such as '*/5 * * * *' or '@hourly', or NULL for manual refreshes only.",
        )
    })?;
    let min = config::MIN_SCHEDULE_SECONDS.get() as i64;
    let interval = parsed.min_interval_seconds();
    if interval < min {
        return Err(PgtError::invalid(format!(
            "schedule \"{text}\" refreshes every {interval}s, more often than pg_trickle.min_schedule_seconds ({min}s) allows"
        ))
        .with_hint("Use a longer schedule, or lower pg_trickle.min_schedule_seconds (superuser)."));
    }
    Ok(Some(text.trim().to_string()))
}

/// Splits a possibly qualified name; the schema defaults to current_schema().
fn resolve_new_name(name: &str) -> PgtResult<(String, String)> {
    let parts: Vec<Option<String>> = spi::query(&format!(
        "SELECT unnest(pg_catalog.parse_ident({}))",
        literal(name)
    ))
    .into_iter()
    .map(|r| r.into_iter().next().flatten())
    .collect();
    match parts.as_slice() {
        [Some(table)] => {
            let schema =
                spi::query_value("SELECT pg_catalog.current_schema()::text").ok_or_else(|| {
                    PgtError::invalid("no schema to create the stream table in")
                        .with_hint("Qualify the name: schema.name.")
                })?;
            Ok((schema, table.clone()))
        }
        [Some(schema), Some(table)] => Ok((schema.clone(), table.clone())),
        _ => Err(
            PgtError::invalid(format!("invalid stream table name \"{name}\""))
                .with_hint("Use name or schema.name."),
        ),
    }
}

fn quoted_user_query(query: &str) -> String {
    query.trim().trim_end_matches(';').to_string()
}

/// What a probe view of the query depends on.
pub(crate) struct Dependencies {
    /// Per relation: kind (relkind) and the columns used.
    relations: BTreeMap<u32, (String, Vec<String>)>,
}

/// (signature, provolatile) of every function the query calls.
fn functions_of(analysis: &Analysis) -> Vec<(String, String)> {
    let oids: Vec<String> = crate::dvm::analyze::functions_used(analysis.query)
        .iter()
        .map(|o| o.to_u32().to_string())
        .collect();
    if oids.is_empty() {
        return Vec::new();
    }
    spi::query(&format!(
        "SELECT p.oid::regprocedure::text, p.provolatile::text FROM pg_catalog.pg_proc p \
          WHERE p.oid = ANY('{{{}}}'::oid[]) ORDER BY 1",
        oids.join(",")
    ))
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap_or_default(),
            r[1].clone().unwrap_or_default(),
        )
    })
    .collect()
}

/// Creates a temporary view of the query to learn, from pg_depend, which
/// relations and columns it uses.
pub(crate) fn probe_dependencies(query: &str) -> Dependencies {
    spi::execute(&format!("CREATE TEMP VIEW pgt_probe AS {query}"));
    let relations = spi::query(
        "SELECT d.refobjid::bigint::text, c.relkind::text, \
                coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attname IS NOT NULL), '{}')::text \
           FROM pg_catalog.pg_depend d \
           JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
           JOIN pg_catalog.pg_class c ON c.oid = d.refobjid \
           LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid AND d.refobjsubid > 0 \
          WHERE r.ev_class = 'pg_temp.pgt_probe'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass \
            AND d.refobjid <> 'pg_temp.pgt_probe'::regclass \
          GROUP BY d.refobjid, c.relkind",
    )
    .into_iter()
    .map(|r| {
        let oid: u32 = r[0].as_deref().unwrap_or("0").parse().unwrap_or(0);
        let cols = r[2]
            .as_deref()
            .unwrap_or("{}")
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_matches('"').to_string())
            .collect();
        (oid, (r[1].clone().unwrap_or_default(), cols))
    })
    .collect();
    spi::execute("DROP VIEW pg_temp.pgt_probe");
    Dependencies { relations }
}

/// The query printed back by PostgreSQL with `*` expanded and every name
/// schema-qualified.
pub(crate) fn expanded_query(analysis: &Analysis) -> String {
    crate::dvm::tree::print(analysis.query)
}

fn is_stream_table(relid: u32) -> bool {
    spi::query_value(&format!(
        "SELECT 1::text FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = {relid}"
    ))
    .is_some()
}

fn column_snapshot(relid: u32) -> String {
    crate::ddl::columns::snapshot_json(Oid::from(relid))
}

/// Records the sources of a stream table in pgt_dependencies: the relations
/// the query names (views included) and the tables a differential refresh
/// reads. Runs as the caller of the catalog writes (the bootstrap superuser).
pub(crate) fn record_dependencies(pgt_id: i64, deps: &Dependencies, base_tables: &[u32]) {
    let mut dependency_oids: Vec<u32> = deps.relations.keys().copied().collect();
    dependency_oids.extend(base_tables.iter().copied());
    dependency_oids.sort();
    dependency_oids.dedup();
    for oid in dependency_oids {
        let (relkind, columns) = deps.relations.get(&oid).cloned().unwrap_or_default();
        let source_type = if relkind == "v" {
            "VIEW"
        } else if is_stream_table(oid) {
            "STREAM_TABLE"
        } else {
            "TABLE"
        };
        let snapshot = column_snapshot(oid);
        spi::execute(&format!(
            "INSERT INTO pgtrickle.pgt_dependencies (pgt_id, source_relid, source_type, columns_used, column_snapshot, \
             schema_fingerprint) VALUES ({pgt_id}, {oid}, {}, {}::text[], {}::jsonb, \
             pgtrickle.pg_trickle_hash({})::text)",
            literal(source_type),
            literal(&format!("{{{}}}", columns.iter().map(|c| format!("\"{}\"", c.replace('"', "\\\""))).collect::<Vec<_>>().join(","))),
            literal(&snapshot),
            literal(&snapshot),
        ));
    }
}

pub struct CreateRequest<'a> {
    pub name: &'a str,
    pub query: &'a str,
    pub schedule: Option<&'a str>,
    pub refresh_mode: &'a str,
    pub initialize: bool,
}

/// A manual call still works with mismatched versions, but says so;
/// returns whether they differ.
fn warn_on_version_mismatch() -> bool {
    let mismatch = catalog::version_mismatch();
    if let Some(message) = &mismatch {
        pgrx::warning!("{message}");
    }
    mismatch.is_some()
}

pub fn create(req: CreateRequest) -> PgtResult<()> {
    warn_on_version_mismatch();
    crate::restore::repair_if_restored()?;
    let mode = parse_mode(req.refresh_mode)?;
    let schedule = validate_schedule(req.schedule)?;
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        return Err(PgtError::new(
            ErrorKind::ObjectState,
            "create_stream_table cannot run in a REPEATABLE READ or SERIALIZABLE transaction",
        )
        .with_detail(
            "Its snapshot could predate changes that the new change capture would then miss.",
        )
        .with_hint("Run it in a READ COMMITTED transaction (the default)."));
    }
    let (schema, table) = resolve_new_name(req.name)?;
    let qualified_name = qualified(&schema, &table);
    if spi::query_value(&format!(
        "SELECT pg_catalog.to_regclass({})::text",
        literal(&qualified_name)
    ))
    .is_some()
    {
        return Err(PgtError::new(
            ErrorKind::DuplicateObject,
            format!("relation \"{schema}.{table}\" already exists"),
        )
        .with_hint("Choose another name, or drop the existing relation first."));
    }
    let query = quoted_user_query(req.query);
    let analysis = analyze(&query)?;
    if mode == "DIFFERENTIAL" {
        analysis.require_differential()?;
    }
    // Reading the sources as the caller: fails with PostgreSQL's own
    // "permission denied" (row-level security applies too).
    spi::execute(&format!("SELECT FROM ({query}) pgt_probe LIMIT 0"));
    let deps = probe_dependencies(&query);
    let functions = functions_of(&analysis);
    let volatile: Vec<&str> = functions
        .iter()
        .filter(|(_, v)| v == "v")
        .map(|(f, _)| f.as_str())
        .collect();
    if !volatile.is_empty() {
        return Err(PgtError::invalid(format!(
            "the defining query calls volatile function(s): {}",
            volatile.join(", ")
        ))
        .with_detail("A volatile function can return something else on every evaluation, so no refresh could reproduce the query's result.")
        .with_hint("Replace it with a column of a source table, or compute it outside the stream table."));
    }
    let plan = refresh::plan_for(&analysis);
    create_storage(&qualified_name, &plan);
    let relid: u32 = spi::query_value(&format!(
        "SELECT {}::regclass::oid::bigint::text",
        literal(&qualified_name)
    ))
    .and_then(|v| v.parse().ok())
    .expect("storage table exists");
    let owner = spi::current_user();
    let expanded = expanded_query(&analysis);
    let functions: Vec<String> = functions.iter().map(|(f, _)| f.clone()).collect();
    let base_tables: Vec<u32> = analysis.base_tables().iter().map(|o| o.to_u32()).collect();
    let pgt_id = spi::as_role(spi::superuser(), || -> i64 {
        let id = spi::query_value(&format!(
            "INSERT INTO pgtrickle.pgt_stream_tables (pgt_relid, pgt_name, pgt_schema, defining_query, original_query, \
             schedule, refresh_mode, status, functions_used) \
             VALUES ({relid}, {}, {}, {}, {}, {}, {}, 'INITIALIZING', {}::text[]) RETURNING pgt_id::text",
            literal(&table),
            literal(&schema),
            literal(&expanded),
            literal(req.query),
            schedule.as_deref().map(literal).unwrap_or_else(|| "NULL".into()),
            literal(&mode),
            literal(&format!("{{{}}}", functions.iter().map(|f| format!("\"{}\"", f.replace('"', "\\\""))).collect::<Vec<_>>().join(","))),
        ))
        .and_then(|v| v.parse().ok())
        .expect("pgt_id");
        record_dependencies(id, &deps, &base_tables);
        catalog::set_query(id, &expanded, analysis.query);
        id
    });
    if mode != "FULL" {
        for &oid in &base_tables {
            cdc::track(Oid::from(oid), pgt_id, owner);
        }
    }
    crate::ddl::wal::lifecycle(
        "create",
        &schema,
        &table,
        serde_json::json!({ "query": expanded, "refresh_mode": mode, "schedule": schedule }),
    );
    if req.initialize {
        refresh::lock(pgt_id, true);
        let st = catalog::load(pgt_id).expect("just created");
        refresh::refresh_locked(&st, Initiator::Initial)?;
    }
    Ok(())
}

fn create_storage(qualified_name: &str, plan: &Plan) {
    let cols: Vec<String> = plan
        .storage_columns()
        .iter()
        .map(|(name, ty)| format!("{} {ty}", ident(name)))
        .collect();
    spi::execute(&format!(
        "CREATE TABLE {qualified_name} ({})",
        cols.join(", ")
    ));
    spi::execute(&format!(
        "CREATE UNIQUE INDEX ON {qualified_name} (__pgt_row_id)"
    ));
    add_write_guard(qualified_name);
    for (method, column) in plan.internal_indexes() {
        spi::execute(&format!(
            "CREATE INDEX ON {qualified_name} USING {method} ({column})"
        ));
    }
}

/// The trigger that keeps users' writes out of a storage table
/// (`catalog/storage_guard.sql`). Not before ALTER EXTENSION UPDATE has
/// created its function; migrate() adds it then.
pub(crate) fn add_write_guard(qualified_name: &str) {
    if spi::query_value("SELECT pg_catalog.to_regprocedure('pgtrickle._guard_storage()')::text")
        .is_none()
    {
        return;
    }
    spi::execute(&format!(
        "CREATE TRIGGER pg_trickle_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {qualified_name} \
         FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle._guard_storage()"
    ));
}

/// Adds the write guard to stream tables made before it existed; for
/// migrate().
pub fn guard_all() -> Vec<(String, String)> {
    spi::as_role(spi::superuser(), || {
        catalog::all()
            .into_iter()
            .filter(|st| {
                spi::query_value(&format!(
                    "SELECT 1::text FROM pg_catalog.pg_trigger WHERE tgrelid = {} AND tgname = 'pg_trickle_guard'",
                    st.relid.to_u32()
                ))
                .is_none()
            })
            .map(|st| {
                add_write_guard(&st.qualified_name());
                (format!("write guard of {}", st.display_name()), "created".to_string())
            })
            .collect()
    })
}

/// Raises unless the current user may act for the owner of `st`.
pub fn check_owner(st: &StreamTable) -> PgtResult<()> {
    // pg_has_role(current_user, owner, 'USAGE'): the owner's privileges.
    if unsafe { pg_sys::has_privs_of_role(spi::current_user(), st.owner()) } {
        Ok(())
    } else {
        Err(PgtError::new(
            ErrorKind::InsufficientPrivilege,
            format!("must be owner of stream table {}", st.display_name()),
        )
        .with_hint("Ask the owner or a superuser to run this."))
    }
}

pub fn drop(name: &str) -> PgtResult<()> {
    crate::restore::repair_if_restored()?;
    let st = catalog::find(name)?;
    check_owner(&st)?;
    crate::bluegreen::check_droppable(&st)?;
    let dependents: Vec<String> = catalog::dependents(st.pgt_id)
        .into_iter()
        .filter_map(catalog::load)
        .map(|d| d.display_name())
        .collect();
    if !dependents.is_empty() {
        return Err(PgtError::new(
            ErrorKind::ObjectState,
            format!(
                "stream table {} is read by {}",
                st.display_name(),
                dependents.join(", ")
            ),
        )
        .with_hint("Drop the dependent stream tables first."));
    }
    refresh::lock(st.pgt_id, true);
    cdc::untrack_all(st.pgt_id);
    // A downstream stream table may have captured this one's changes.
    cdc::drop_capture_of(st.relid);
    crate::ddl::wal::lifecycle("drop", &st.schema, &st.name, serde_json::json!({}));
    spi::as_role(spi::superuser(), || {
        spi::execute(&format!(
            "DELETE FROM pgtrickle.pgt_stream_tables WHERE pgt_id = {}",
            st.pgt_id
        ));
        spi::execute(&format!("DROP TABLE IF EXISTS {}", st.qualified_name()));
    });
    Ok(())
}

pub struct AlterRequest<'a> {
    pub name: &'a str,
    pub schedule: Option<&'a str>,
    pub refresh_mode: Option<&'a str>,
    pub status: Option<&'a str>,
}

pub fn alter(req: AlterRequest) -> PgtResult<()> {
    crate::restore::repair_if_restored()?;
    let st = catalog::find(req.name)?;
    check_owner(&st)?;
    crate::bluegreen::check_not_retired(&st)?;
    refresh::lock(st.pgt_id, true);
    let mut sets = Vec::new();
    if let Some(schedule) = req.schedule {
        // 'manual' (or an empty string) removes the schedule.
        if schedule.trim().is_empty() || schedule.trim().eq_ignore_ascii_case("manual") {
            sets.push("schedule = NULL".to_string());
        } else {
            let schedule = validate_schedule(Some(schedule))?.expect("a schedule");
            sets.push(format!("schedule = {}", literal(&schedule)));
        }
    }
    if let Some(mode) = req.refresh_mode {
        let mode = parse_mode(mode)?;
        let analysis = analyze(&st.defining_query)?;
        if mode == "DIFFERENTIAL" {
            analysis.require_differential()?;
        }
        let was_tracking = st.refresh_mode != "FULL";
        let tracks = mode != "FULL";
        if tracks && !was_tracking {
            let owner = st.owner();
            for source in analysis.base_tables() {
                cdc::track(source, st.pgt_id, owner);
            }
            // Changes before tracking started are unknown: start over.
            sets.push("needs_reinit = true".to_string());
        }
        if !tracks && was_tracking {
            cdc::untrack_all(st.pgt_id);
        }
        sets.push(format!("refresh_mode = {}", literal(&mode)));
    }
    if let Some(status) = req.status {
        let status = status.trim().to_uppercase();
        match status.as_str() {
            "ACTIVE" => {
                sets.push(
                    "status = 'ACTIVE', consecutive_errors = 0, last_error = NULL".to_string(),
                );
                if st.status == "ERROR" {
                    sets.push("needs_reinit = true".to_string());
                }
            }
            "SUSPENDED" => sets.push("status = 'SUSPENDED'".to_string()),
            _ => {
                return Err(PgtError::invalid(format!("invalid status \"{status}\""))
                    .with_hint("Use 'ACTIVE' or 'SUSPENDED'."))
            }
        }
    }
    if sets.is_empty() {
        return Ok(());
    }
    if let Some(status) = req.status {
        crate::ddl::wal::lifecycle(
            "status_change",
            &st.schema,
            &st.name,
            serde_json::json!({ "status": status.trim().to_uppercase() }),
        );
    }
    spi::as_role(spi::superuser(), || {
        spi::execute(&format!(
            "UPDATE pgtrickle.pgt_stream_tables SET {}, updated_at = pg_catalog.now() WHERE pgt_id = {}",
            sets.join(", "),
            st.pgt_id
        ));
    });
    Ok(())
}

/// Manual refresh in the caller's transaction.
pub fn refresh_now(name: &str) -> PgtResult<()> {
    let mismatch = warn_on_version_mismatch();
    crate::restore::repair_if_restored()?;
    let st = catalog::find(name)?;
    check_owner(&st)?;
    crate::bluegreen::check_not_retired(&st)?;
    refresh::lock(st.pgt_id, true);
    let mut st = catalog::load(st.pgt_id).expect("locked stream table exists");
    // Another version's library may have stored other row ids (its upgrade
    // script marks every stream table for reinitialization): only a full
    // refresh is safe until it has run.
    st.needs_reinit |= mismatch;
    refresh::refresh_locked(&st, Initiator::Manual)
}
