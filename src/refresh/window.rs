//! How many changes of one source are new since a stream table's frontier.

use super::frontier::Frontier;
use crate::catalog::relation;
use crate::cdc::CdcObjects;
use crate::config;
use crate::spi::{self, PinnedSnapshot};
use pgrx::pg_sys::{self, Oid};

pub struct SourceWindow {
    pub source: Oid,
    pub name: String,
    pub buffer: String,
    /// Row images (inserts + deletes, an update counting as both) in the
    /// window; when not `counted`, 1 if there is any.
    pub changes: i64,
    /// A TRUNCATE happened in the window.
    pub truncated: bool,
    /// The planner's estimate of the source's size, for AUTO's ratio;
    /// negative when the table was never analysed or vacuumed.
    pub estimated_rows: f64,
    /// Row-level security applies to the source: change buffers bypass it,
    /// so such sources are refreshed in full.
    pub row_security: bool,
    /// The buffer has the columns of old values, so it may hold `U` rows.
    pub holds_old_values: bool,
    /// The buffer's size in pages.
    pub buffer_pages: u32,
    /// Source columns (attnums) whose change made every update in the
    /// window a `D` and an `I` row, when the capture was told so before
    /// the window began (see `cdc::split_columns_in_force`).
    pub split_on: Option<Vec<i16>>,
}

impl SourceWindow {
    /// Looks at the changes of `sources[index]` after `frontier`. Counting
    /// them all costs a scan of the window, which only AUTO's ratio needs;
    /// otherwise it is enough to know whether there is any.
    pub fn measure(
        sources: &[Oid],
        index: usize,
        frontier: &Frontier,
        snapshot: &PinnedSnapshot,
        count: bool,
    ) -> SourceWindow {
        let source = sources[index];
        let oid = source.to_u32();
        let (name, estimated_rows, row_security) = match relation::facts(source) {
            Some(facts) => (
                relation::display_name(source),
                facts.reltuples,
                facts.row_security,
            ),
            None => (format!("(dropped table {oid})"), 0.0, false),
        };
        let Some(objects) = CdcObjects::existing(source) else {
            return SourceWindow {
                source,
                name,
                buffer: String::new(),
                changes: 0,
                truncated: false,
                estimated_rows,
                row_security,
                holds_old_values: false,
                buffer_pages: 0,
                split_on: None,
            };
        };
        let buffer = objects.buffer_name();
        let holds_old_values = objects.holds_old_values(source);
        let buffer_pages = objects.relid().map_or(0, |relid| unsafe {
            // locked as the refresh's statements will lock it anyway
            let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            let pages =
                pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM);
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            pages
        });
        let mut window = SourceWindow {
            source,
            name,
            buffer,
            changes: 0,
            truncated: false,
            estimated_rows,
            row_security,
            holds_old_values,
            buffer_pages,
            split_on: split_before(source, frontier),
        };
        if buffer_pages == 0 {
            // An empty file holds no change, committed or not: a transaction
            // extends the file before it commits the rows it wrote there.
            return window;
        }
        let buffer = &window.buffer;
        // With kept plans, the frontier's values are parameters.
        let kept = config::USE_PREPARED_STATEMENTS.get();
        let w = if kept {
            Frontier::window_by_params(index, "r")
        } else {
            frontier.window(source, "r")
        };
        // Planned per size class, like the differential statements
        // (`size_plans`): the search for a TRUNCATE marker uses their index
        // only when the buffer is large enough.
        let mark = if kept {
            size_class_mark(u64::from(buffer_pages))
        } else {
            String::new()
        };
        let sql = if count {
            format!(
                "{mark}SELECT coalesce(sum(CASE r.action WHEN 'U' THEN 2 ELSE 1 END) FILTER (WHERE r.action <> 'T'), 0)::text, \
                        coalesce(bool_or(r.action = 'T'), false)::text \
                 FROM {buffer} r WHERE {w}"
            )
        } else {
            format!(
                "{mark}SELECT EXISTS (SELECT FROM {buffer} r WHERE r.action <> 'T' AND {w})::int::text, \
                        EXISTS (SELECT FROM {buffer} r WHERE r.action = 'T' AND {w})::text"
            )
        };
        let row = spi::as_role(spi::superuser(), || {
            if kept {
                spi::run_kept(&sql, &frontier.window_params(sources), Some(snapshot), true).1
            } else {
                spi::query_at(&sql, snapshot)
            }
        });
        let row = row.into_iter().next().unwrap_or_default();
        window.changes = row
            .first()
            .cloned()
            .flatten()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        window.truncated = row.get(1).cloned().flatten().as_deref() == Some("true");
        window
    }
}

/// A comment naming the size class of change buffers of `pages` pages
/// (about the base-4 logarithm), put in front of a statement whose plan is
/// kept: a kept plan is made for the buffers as they were when it was
/// planned, and emptying a buffer no longer invalidates it
/// (`cleanup::cut_in_place`), so a plan made for ten rows would otherwise
/// be used for a million. Each class gets a plan of its own.
pub fn size_class_mark(pages: u64) -> String {
    let class = (64 - pages.leading_zeros()).div_ceil(2);
    format!("/* change buffers of class {class} */ ")
}

/// The columns whose change splits updates of `source` in every change
/// after `frontier`: those the capture splits on now, if it was told so by
/// a transaction that had finished when the frontier's snapshot was taken
/// (and was not the one taking it). Writers hold off that transaction until
/// they commit, so every change the frontier has not seen came after it.
pub(super) fn split_before(source: Oid, frontier: &Frontier) -> Option<Vec<i16>> {
    let (columns, since) = crate::cdc::split_columns_in_force(source)?;
    let own = frontier
        .own_xid
        .as_deref()
        .and_then(|x| x.parse::<u64>().ok());
    (own != Some(since)
        && pgtrickle_core::buffer::finished_before(&frontier.snapshot, since) == Some(true))
    .then_some(columns)
}
