//! Refreshing a stream table: decide FULL, DIFFERENTIAL or NO_DATA, run the
//! statements with one snapshot as the stream table's owner, move the
//! frontier, clean up consumed changes, and record what happened.

pub mod cleanup;
pub mod frontier;
pub mod guard;
mod hints;
mod kept;
mod window;

use crate::catalog::{self, HistoryEntry, StreamTable};
use crate::config;
use crate::dvm::analyze::{analyze, Analysis, Block};
use crate::dvm::flat::{full_instances, Printer, Variant};
use crate::dvm::plan::{AggKind, Plan, Shape};
use crate::dvm::sqlgen::{self, Core, Scratch, Statement, Tally};
use crate::error::{ErrorKind, PgtError, PgtResult};
use crate::spi::{self, PinnedSnapshot};
use cleanup::Cleanup;
use frontier::Frontier;
use pgrx::pg_sys::{self, Oid};
use pgrx::IntoDatum;
use pgtrickle_core::quote::literal;
use std::collections::BTreeMap;
use window::SourceWindow;

/// Who asked for a refresh (`pgt_refresh_history.initiated_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    Manual,
    Scheduler,
    Initial,
}

impl Initiator {
    fn as_str(self) -> &'static str {
        match self {
            Initiator::Manual => "MANUAL",
            Initiator::Scheduler => "SCHEDULER",
            Initiator::Initial => "INITIAL",
        }
    }
}

/// Key of the advisory lock that serialises refreshes of one stream table.
const LOCK_CLASS: i32 = 0x0070_6774; // "pgt"

/// Takes the refresh lock of `pgt_id` for the rest of the transaction;
/// `false` if `wait` is off and another refresh holds it.
pub fn lock(pgt_id: i64, wait: bool) -> bool {
    let key = [LOCK_CLASS.into_datum(), (pgt_id as i32).into_datum()];
    // SAFETY: the advisory-lock functions take two int4 arguments; the
    // calls are pg_advisory_xact_lock(...) and pg_try_advisory_xact_lock(...)
    // without a statement around them.
    unsafe {
        if wait {
            pgrx::direct_function_call_as_datum(pg_sys::pg_advisory_xact_lock_int4, &key);
            true
        } else {
            pgrx::direct_function_call::<bool>(pg_sys::pg_try_advisory_xact_lock_int4, &key)
                .unwrap_or(false)
        }
    }
}

/// Maximum tables that may change in one window of a core before the
/// refresh falls back to FULL (inclusion–exclusion needs 2^n - 1 terms).
const MAX_CHANGED_TABLES: usize = 5;

/// The storage plan of a stream table's query. It depends on the query only
/// (not on the refresh mode), so that changing the mode keeps the storage.
pub fn plan_for(analysis: &Analysis) -> Plan {
    let shape = match &analysis.differential {
        Ok((shape, _)) => shape.clone(),
        Err(_) => Shape::FullOnly,
    };
    Plan {
        columns: analysis.columns.clone(),
        shape,
    }
}

/// Refreshes `st`, which the caller has locked, and records the refresh.
pub fn refresh_locked(st: &StreamTable, initiator: Initiator) -> PgtResult<()> {
    let _writing = guard::Refreshing::start();
    if st.status == "ERROR" {
        return Err(PgtError::new(
            ErrorKind::ObjectState,
            format!("stream table {} is in ERROR status", st.display_name()),
        )
        .with_hint(format!(
            "Fix the cause, then SELECT pgtrickle.alter_stream_table({}, status => 'ACTIVE').",
            literal(&st.display_name())
        )));
    }
    // When the refresh started, and whether this transaction wrote anything
    // before it: only then can the buffers hold changes of its own that the
    // refresh consumes.
    let start = spi::query_kept(
        "SELECT pg_catalog.clock_timestamp()::text, pg_catalog.pg_current_xact_id_if_assigned()::text",
    );
    let start_time = start[0][0].clone().expect("clock");
    let wrote_before = start[0][1].is_some();
    let owner = st.owner();
    // The analysis, or what an earlier refresh of the session derived from
    // it, whose relations are then locked as the analysis locks them.
    let mut analysis = None;
    let derived = match kept::lookup(st) {
        Some(derived) => derived,
        None => {
            let fresh = analyze(&st.defining_query)?;
            let derived = kept::Derived::of(&fresh);
            kept::keep(st, &fresh, &derived);
            analysis = Some(fresh);
            derived
        }
    };
    // After the sources are locked: the catalog the analysis read (a NOT
    // NULL constraint, say) then holds for the data this snapshot sees.
    let snapshot = PinnedSnapshot::take();
    let plan = derived.plan.clone();
    let requested = if st.refresh_mode == "FULL" || !plan.is_differential() {
        "FULL"
    } else {
        "DIFFERENTIAL"
    };

    let sources = catalog::tracked_sources(st.pgt_id);
    let windows: Vec<SourceWindow> = match &st.frontier {
        Some(f) if st.is_populated && plan.is_differential() => (0..sources.len())
            .map(|i| SourceWindow::measure(&sources, i, f, &snapshot, st.refresh_mode == "AUTO"))
            .collect(),
        _ => Vec::new(),
    };
    let decision = decide(st, &derived, &windows);
    let (tally, action) = spi::as_role(owner, || -> PgtResult<(RowCounts, &'static str)> {
        // Change buffers hold every row of the sources: check that the
        // owner may still read what the query reads, as a fresh query would.
        spi::query_kept(&format!(
            "SELECT FROM ({}) pgt_privilege_check LIMIT 0",
            st.defining_query
        ));
        match &decision {
            Decision::Full(_) => Ok((
                run(
                    &full_statements(st, &plan, analysed(&mut analysis, st)?)?,
                    &snapshot,
                    false,
                    None,
                ),
                "FULL",
            )),
            Decision::NoData => Ok(((0, 0, Some(0)), "NO_DATA")),
            Decision::Differential => {
                // With kept plans, the frontier's values are parameters
                // and the statements' text the same at every refresh.
                let kept = config::USE_PREPARED_STATEMENTS.get();
                let form = if kept {
                    Windows::Params
                } else {
                    Windows::Literal
                };
                let mut stmts = if kept {
                    let signature = signature(&windows);
                    match kept::statements(st, &signature) {
                        Some(stmts) => stmts,
                        None => {
                            let stmts = differential_statements(
                                st,
                                &plan,
                                analysed(&mut analysis, st)?,
                                &windows,
                                form,
                            )?;
                            kept::keep_statements(st, signature, &stmts);
                            stmts
                        }
                    }
                } else {
                    differential_statements(
                        st,
                        &plan,
                        analysed(&mut analysis, st)?,
                        &windows,
                        form,
                    )?
                };
                if kept {
                    size_plans(&mut stmts, &windows);
                }
                let params = kept.then(|| {
                    let sources: Vec<Oid> = windows.iter().map(|w| w.source).collect();
                    st.frontier
                        .as_ref()
                        .expect("frontier")
                        .window_params(&sources)
                });
                Ok((
                    run(&stmts, &snapshot, true, params.as_deref()),
                    "DIFFERENTIAL",
                ))
            }
        }
    })?;
    if st.needs_reinit && action == "FULL" {
        crate::ddl::wal::lifecycle(
            "reinitialize",
            &st.schema,
            &st.name,
            serde_json::json!({ "reason": reason_text(&decision) }),
        );
    }
    let new_frontier = capture_frontier(if wrote_before { &sources } else { &[] }, &snapshot);
    let delta_rows = tally.2;
    let reason = match &decision {
        Decision::Full(reason) => Some(reason.clone()),
        _ => None,
    };
    spi::as_role(spi::superuser(), || {
        // Texts without values, so that their plans are kept.
        let full = action == "FULL";
        let mut params = vec![
            spi::Param::int8(Some(st.pgt_id)),
            spi::Param {
                type_oid: pg_sys::JSONBOID,
                value: Some(new_frontier.to_json()),
            },
            spi::Param::timestamptz(&new_frontier.data_timestamp),
        ];
        if full {
            params.push(spi::Param::timestamptz(&start_time));
        }
        spi::execute_with_params(
            &format!(
                "UPDATE pgtrickle.pgt_stream_tables SET frontier = $2, data_timestamp = $3, \
                 last_refresh_at = pg_catalog.now(), is_populated = true, needs_reinit = false, \
                 status = CASE WHEN status = 'INITIALIZING' THEN 'ACTIVE' ELSE status END, \
                 consecutive_errors = 0, last_error = NULL, updated_at = pg_catalog.now() \
                 {} WHERE pgt_id = $1",
                if full {
                    ", last_full_ms = extract(epoch FROM pg_catalog.clock_timestamp() - $4) * 1000"
                } else {
                    ""
                },
            ),
            &params,
        );
        // A scheduler tick that found nothing to do is not history.
        let quiet = action == "NO_DATA" && initiator == Initiator::Scheduler;
        if !quiet {
            catalog::insert_history(&HistoryEntry {
                pgt_id: st.pgt_id,
                action,
                requested_action: requested,
                status: "COMPLETED",
                initiated_by: initiator.as_str(),
                start_time: &start_time,
                rows_inserted: tally.0,
                rows_deleted: tally.1,
                delta_rows,
                reason: reason.as_deref(),
                error_message: None,
            });
            notify_refresh(st, action, (tally.0, tally.1), &start_time);
        }
        match cleanup::cleaner() {
            Cleanup::Inline => cleanup::consumed_changes(&sources),
            Cleanup::Scheduler(Some(pid)) => cleanup::wake_scheduler_at_commit(pid),
            Cleanup::Scheduler(None) => {}
        }
    });
    Ok(())
}

fn reason_text(decision: &Decision) -> Option<&str> {
    match decision {
        Decision::Full(reason) => Some(reason),
        _ => None,
    }
}

enum Decision {
    Full(String),
    NoData,
    Differential,
}

/// The analysis of `st`'s query, made now if the refresh has none yet
/// (its relations are locked already).
fn analysed<'a>(analysis: &'a mut Option<Analysis>, st: &StreamTable) -> PgtResult<&'a Analysis> {
    if analysis.is_none() {
        *analysis = Some(analyze(&st.defining_query)?);
    }
    Ok(analysis.as_ref().expect("analysed"))
}

/// What differential statements depend on of the windows (with
/// `Windows::Params`): which sources changed, in which order, and their
/// buffers.
fn signature(windows: &[SourceWindow]) -> String {
    windows
        .iter()
        .map(|w| {
            format!(
                "{}:{}:{}:{}:{:?}",
                w.source.to_u32(),
                w.buffer,
                w.changes > 0,
                w.holds_old_values,
                w.split_on
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn decide(st: &StreamTable, derived: &kept::Derived, windows: &[SourceWindow]) -> Decision {
    if !st.is_populated {
        return Decision::Full("first population".into());
    }
    if st.needs_reinit {
        return Decision::Full("reinitialization".into());
    }
    if st.refresh_mode == "FULL" {
        return Decision::Full("refresh mode FULL".into());
    }
    if let Err(construct) = &derived.blocks {
        // AUTO, or a DIFFERENTIAL stream table made by a version that took
        // a construct this one refuses.
        return Decision::Full(format!(
            "{}: DIFFERENTIAL cannot maintain {construct}",
            st.refresh_mode
        ));
    }
    if st.frontier.is_none() {
        return Decision::Full("no frontier recorded".into());
    }
    if let Some(w) = windows.iter().find(|w| w.truncated) {
        return Decision::Full(format!("source {} was truncated", w.name));
    }
    if let Some(w) = windows.iter().find(|w| w.row_security && w.changes > 0) {
        return Decision::Full(format!("source {} has row-level security", w.name));
    }
    let changes: i64 = windows.iter().map(|w| w.changes).sum();
    if changes == 0 {
        return Decision::NoData;
    }
    // The ratio counts only sources whose size the planner knows.
    let sized: Vec<&SourceWindow> = windows.iter().filter(|w| w.estimated_rows >= 0.0).collect();
    if st.refresh_mode == "AUTO" && !sized.is_empty() {
        let rows: f64 = sized.iter().map(|w| w.estimated_rows).sum();
        let sized_changes: i64 = sized.iter().map(|w| w.changes).sum();
        let ratio = sized_changes as f64 / rows.max(1.0);
        let max = config::DIFFERENTIAL_MAX_CHANGE_RATIO.get();
        if ratio > max {
            return Decision::Full(format!(
                "AUTO: change ratio {ratio:.3} above pg_trickle.differential_max_change_ratio ({max})"
            ));
        }
    }
    if let Ok(blocks) = &derived.blocks {
        let changed: Vec<Oid> = windows
            .iter()
            .filter(|w| w.changes > 0)
            .map(|w| w.source)
            .collect();
        for relations in blocks {
            let n = relations.iter().filter(|r| changed.contains(r)).count();
            if n > MAX_CHANGED_TABLES {
                return Decision::Full(format!(
                    "{n} changed tables in one join (more than {MAX_CHANGED_TABLES})"
                ));
            }
        }
    }
    Decision::Differential
}

/// Marks each statement with the size class of the change buffers it
/// reads (`window::size_class_mark`), so that each class gets a kept plan
/// of its own.
fn size_plans(statements: &mut [Statement], windows: &[SourceWindow]) {
    let pages: u64 = windows
        .iter()
        .filter(|w| w.changes > 0)
        .map(|w| u64::from(w.buffer_pages))
        .sum();
    let mark = window::size_class_mark(pages);
    for statement in statements {
        statement.sql = format!("{mark}{}", statement.sql);
    }
}

/// Rows inserted, rows deleted, and rows of the netted delta if there was one.
type RowCounts = (i64, i64, Option<i64>);

/// Runs statements as of `snapshot`, under the planner hints of
/// `hints.rs`; with `params` (those of `Windows::Params`), through plans
/// kept for the session.
fn run(
    statements: &[Statement],
    snapshot: &PinnedSnapshot,
    differential: bool,
    params: Option<&[spi::Param]>,
) -> RowCounts {
    let mut hints = hints::PlannerHints::start();
    let mut tally = (0, 0, None);
    // Groups a delta statement listed for recomputation (`bigint[]`).
    let mut listed: Option<String> = None;
    for statement in statements {
        let listed_param;
        let params = if statement.for_listed_groups {
            let Some(list) = &listed else {
                continue;
            };
            listed_param = [spi::Param {
                type_oid: pg_sys::INT8ARRAYOID,
                value: Some(list.clone()),
            }];
            Some(&listed_param[..])
        } else {
            params
        };
        hints.prepare(statement, differential);
        let want_rows = statement.tally == Tally::Counts;
        let (processed, rows) = match params {
            Some(params) if spi::keeps_plans() || !statement.for_listed_groups => {
                spi::run_kept(&statement.sql, params, Some(snapshot), want_rows)
            }
            Some(params) => spi::run_with_params(&statement.sql, params, snapshot),
            None if want_rows => (0, spi::query_at(&statement.sql, snapshot)),
            None => (spi::execute_at(&statement.sql, snapshot), Vec::new()),
        };
        let n = if want_rows {
            let row = rows.into_iter().next().unwrap_or_default();
            let count = |i: usize| -> i64 {
                row.get(i)
                    .cloned()
                    .flatten()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            tally.0 += count(1);
            tally.1 += count(2);
            listed = row.get(3).cloned().flatten();
            count(0)
        } else {
            processed as i64
        };
        match statement.tally {
            Tally::Inserted => tally.0 += n,
            Tally::Deleted => tally.1 += n,
            Tally::Delta | Tally::Counts => tally.2 = Some(tally.2.unwrap_or(0) + n),
            Tally::None => {}
        }
    }
    hints.finish();
    tally
}

fn full_statements(
    st: &StreamTable,
    plan: &Plan,
    analysis: &Analysis,
) -> PgtResult<Vec<Statement>> {
    let table = st.qualified_name();
    let mut stmts = vec![Statement {
        sql: format!("DELETE FROM {table}"),
        tally: Tally::Deleted,
        reads_sources: false,
        for_listed_groups: false,
    }];
    match (&plan.shape, &analysis.differential) {
        (Shape::FullOnly, _) | (Shape::RecomputedGroups { .. }, _) | (_, Err(_)) => {
            stmts.extend(sqlgen::full_insert(plan, &table, &[], &st.defining_query));
        }
        (_, Ok((_, blocks))) => {
            let mut printer = Printer::new(analysis);
            let cores = blocks
                .iter()
                .enumerate()
                .map(|(b, block)| full_core(&mut printer, block, b))
                .collect::<PgtResult<Vec<_>>>()?;
            stmts.extend(sqlgen::full_insert(
                plan,
                &table,
                &cores,
                &st.defining_query,
            ));
        }
    }
    Ok(stmts)
}

fn full_core(printer: &mut Printer, block: &Block, branch: usize) -> PgtResult<Core> {
    let variants = vec![Variant::Full; block.relations().len()];
    Ok(Core {
        sql: printer.core(block, &variants)?,
        relations: block.instances.len(),
        full: full_instances(block, &variants),
        branch,
        sign: 1,
        paired: false,
    })
}

/// How the statements of a differential refresh select a source's changes
/// since the frontier: with its values written out (for reading, in
/// explain_st), or as parameters (for plans kept from one refresh to the
/// next; see `Frontier::window_params`).
#[derive(Clone, Copy)]
enum Windows {
    Literal,
    Params,
}

impl Windows {
    /// The predicate on buffer rows `r` of `source`.
    fn sql(self, frontier: &Frontier, windows: &[SourceWindow], source: Oid) -> String {
        match self {
            Windows::Literal => frontier.window(source, "r"),
            Windows::Params => Frontier::window_by_params(
                windows
                    .iter()
                    .position(|w| w.source == source)
                    .expect("window of a changed source"),
                "r",
            ),
        }
    }
}

fn differential_statements(
    st: &StreamTable,
    plan: &Plan,
    analysis: &Analysis,
    windows: &[SourceWindow],
    form: Windows,
) -> PgtResult<Vec<Statement>> {
    let Ok((_, blocks)) = &analysis.differential else {
        unreachable!("differential refresh of a query without a differential plan")
    };
    let table = st.qualified_name();
    let frontier = st
        .frontier
        .as_ref()
        .expect("differential refresh needs a frontier");
    let mut printer = Printer::new(analysis);
    if let Shape::AnchoredRows { .. } = plan.shape {
        return anchored_statements(st, plan, &blocks[0], frontier, windows, form, &mut printer);
    }
    let pairable_outputs = pairable_outputs(plan);
    let mut cores = Vec::new();
    for (b, block) in blocks.iter().enumerate() {
        let relations = block.relations();
        let changed: Vec<usize> = relations
            .iter()
            .enumerate()
            .filter(|(_, r)| windows.iter().any(|w| w.source == r.relid && w.changes > 0))
            .map(|(i, _)| i)
            .collect();
        // Inclusion–exclusion over the non-empty subsets of changed tables.
        for mask in 1u32..(1u32 << changed.len()) {
            let mut variants = vec![Variant::Full; relations.len()];
            let mut picked = 0;
            for (bit, &i) in changed.iter().enumerate() {
                if mask & (1 << bit) != 0 {
                    let w = windows
                        .iter()
                        .find(|w| w.source == relations[i].relid)
                        .expect("window");
                    variants[i] = Variant::Delta {
                        buffer: w.buffer.clone(),
                        window: form.sql(frontier, windows, w.source),
                        holds_old_values: w.holds_old_values,
                        split_on: w.split_on.clone(),
                    };
                    picked += 1;
                }
            }
            let sign = if picked % 2 == 1 { 1 } else { -1 };
            let paired = match pairable_outputs {
                Some(group_outputs) => printer.paired_core(block, &variants, group_outputs)?,
                None => None,
            };
            cores.push(Core {
                relations: block.instances.len(),
                full: full_instances(block, &variants),
                branch: b,
                sign,
                paired: paired.is_some(),
                sql: match paired {
                    Some(sql) => sql,
                    None => printer.core(block, &variants)?,
                },
            });
        }
    }
    let scratch = Scratch::for_stream_table(st.pgt_id);
    let full = full_core(&mut printer, &blocks[0], 0)?;
    Ok(sqlgen::differential_apply(
        plan,
        &table,
        &cores,
        &full,
        &st.defining_query,
        &scratch,
    ))
}

/// The group outputs of a plan whose deltas may pair the old and new
/// values of updates: grouped, with sums and counts only (not MIN/MAX,
/// whose candidates are netted per value).
pub(crate) fn pairable_outputs(plan: &Plan) -> Option<usize> {
    match &plan.shape {
        Shape::Groups {
            group_columns,
            aggs,
        } if !aggs
            .iter()
            .any(|a| matches!(a.kind, AggKind::Min | AggKind::Max)) =>
        {
            Some(group_columns.len())
        }
        _ => None,
    }
}

/// A stream table with LEFT JOINs: for each changed table, the join (without
/// WHERE) of its inserted and deleted row images with the other tables as
/// they are now, and the identities of its deleted rows (to find stored rows
/// built from them).
fn anchored_statements(
    st: &StreamTable,
    plan: &Plan,
    block: &Block,
    frontier: &Frontier,
    windows: &[SourceWindow],
    form: Windows,
    printer: &mut Printer,
) -> PgtResult<Vec<Statement>> {
    let relations = block.relations();
    let changed = |relid: Oid| windows.iter().find(|w| w.source == relid && w.changes > 0);
    let mut inserted = Vec::new();
    for (i, rel) in relations.iter().enumerate() {
        let Some(w) = changed(rel.relid) else {
            continue;
        };
        let mut variants = vec![Variant::Full; relations.len()];
        variants[i] = Variant::Delta {
            buffer: w.buffer.clone(),
            window: form.sql(frontier, windows, w.source),
            holds_old_values: w.holds_old_values,
            split_on: w.split_on.clone(),
        };
        let core = Core {
            sql: printer.core_without_where(block, &variants)?,
            relations: relations.len(),
            full: full_instances(block, &variants),
            branch: 0,
            sign: 1,
            paired: false,
        };
        inserted.push((core, i));
    }
    let mut deleted = Vec::new();
    let mut seen: Vec<Oid> = Vec::new();
    for rel in &relations {
        let Some(w) = changed(rel.relid) else {
            continue;
        };
        if seen.contains(&rel.relid) {
            continue;
        }
        seen.push(rel.relid);
        deleted.push(crate::dvm::flat::deleted_identities(
            printer.shape(rel.relid),
            &w.buffer,
            &form.sql(frontier, windows, w.source),
            w.holds_old_values,
        ));
    }
    let full = full_core(printer, block, 0)?;
    Ok(sqlgen::anchored_apply(
        plan,
        &st.qualified_name(),
        &inserted,
        &deleted,
        &full,
        &Scratch::for_stream_table(st.pgt_id),
    ))
}

/// The frontier of a refresh that read as of `snapshot`. `own_sources` are
/// the sources whose buffers may hold changes this transaction made before
/// the refresh (none when it had not written anything).
fn capture_frontier(own_sources: &[Oid], snapshot: &PinnedSnapshot) -> Frontier {
    let row = spi::query_at_kept(
        "SELECT pg_catalog.pg_current_snapshot()::text, pg_catalog.pg_current_xact_id_if_assigned()::text, \
         pg_catalog.pg_current_wal_insert_lsn()::text, pg_catalog.clock_timestamp()::text, \
         (SELECT system_identifier::text FROM pg_catalog.pg_control_system()), \
         (SELECT oid::bigint::text FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())",
        snapshot,
    )
    .into_iter()
    .next()
    .expect("one row");
    let own_xid = row[1].clone();
    let mut own_max_change = BTreeMap::new();
    if let Some(xid) = &own_xid {
        for &source in own_sources {
            if let Some(objects) = crate::cdc::CdcObjects::existing(source) {
                let max = spi::as_role(spi::superuser(), || {
                    spi::query_value(&format!(
                        "SELECT max(change_id)::text FROM {} WHERE xid = {}::pg_catalog.xid8",
                        objects.buffer_name(),
                        literal(xid)
                    ))
                });
                if let Some(max) = max.and_then(|m| m.parse().ok()) {
                    own_max_change.insert(source.to_u32().to_string(), max);
                }
            }
        }
    }
    Frontier {
        snapshot: row[0].clone().unwrap_or_default(),
        own_xid,
        own_max_change,
        lsn: row[2].clone().unwrap_or_default(),
        data_timestamp: row[3].clone().unwrap_or_default(),
        system_identifier: row[4].clone(),
        database: row[5].as_deref().and_then(|d| d.parse().ok()),
    }
}

fn notify_refresh(st: &StreamTable, action: &str, tally: (i64, i64), start_time: &str) {
    let payload = serde_json::json!({
        "schema": st.schema,
        "name": st.name,
        "action": action,
        "rows_inserted": tally.0,
        "rows_deleted": tally.1,
        "started_at": start_time,
    });
    // pg_notify without a statement to parse.
    unsafe {
        pgrx::direct_function_call_as_datum(
            pg_sys::pg_notify,
            &[
                "pg_trickle_refresh".into_datum(),
                payload.to_string().into_datum(),
            ],
        );
    }
}

/// The statements a differential refresh would run if every tracked source
/// had changed, for explain_st.
pub fn explain_delta_sql(
    st: &StreamTable,
    plan: &Plan,
    analysis: &Analysis,
) -> PgtResult<Vec<(String, String)>> {
    let mut st = st.clone();
    if st.frontier.is_none() {
        let snapshot = PinnedSnapshot::take();
        st.frontier = Some(capture_frontier(&[], &snapshot));
    }
    let windows: Vec<SourceWindow> = catalog::tracked_sources(st.pgt_id)
        .into_iter()
        .filter_map(|source| {
            let objects = crate::cdc::CdcObjects::existing(source)?;
            Some(SourceWindow {
                source,
                name: String::new(),
                buffer: objects.buffer_name(),
                changes: 1,
                truncated: false,
                estimated_rows: 0.0,
                row_security: false,
                holds_old_values: objects.holds_old_values(source),
                buffer_pages: 0,
                split_on: window::split_before(source, st.frontier.as_ref()?),
            })
        })
        .collect();
    if windows.is_empty() {
        return Ok(full_statements(&st, plan, analysis)?
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("full_sql[{i}]"), s.sql))
            .collect());
    }
    Ok(
        differential_statements(&st, plan, analysis, &windows, Windows::Literal)?
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("delta_sql[{i}]"), s.sql))
            .collect(),
    )
}
