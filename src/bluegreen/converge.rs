//! Whether a green has caught up with its blue.
//!
//! The green has converged when it holds every change the blue holds: for
//! each source the green consumes, no change the blue's last refresh
//! consumed is still unconsumed by the green. A green that consumes no
//! changes (FULL) has converged when its last snapshot sees every
//! transaction the blue's saw. With a lag threshold, the green's data must
//! also be no older than the threshold.

use super::pair;
use crate::catalog::{self, StreamTable};
use crate::cdc::CdcObjects;
use crate::error::PgtResult;
use crate::lifecycle::check_owner;
use crate::refresh::frontier::Frontier;
use crate::spi;
use pgtrickle_core::quote::literal;

/// What `green_status` reports.
pub struct GreenStatus {
    pub green_name: String,
    pub status: String,
    pub lag_bytes: Option<i64>,
    pub lag_micros: Option<i64>,
    pub pending_changes: i64,
    pub blue_rows: i64,
    pub green_rows: i64,
    pub converged: bool,
    pub reason: Option<String>,
    pub content_matches: Option<bool>,
}

pub(super) struct Convergence {
    pub pending_changes: i64,
    pub converged: bool,
    pub reason: Option<String>,
}

/// `max_lag` is an SQL interval expression.
pub(super) fn convergence(
    blue: &StreamTable,
    green: &StreamTable,
    max_lag: Option<&str>,
) -> Convergence {
    let not = |pending: i64, reason: String| Convergence {
        pending_changes: pending,
        converged: false,
        reason: Some(reason),
    };
    if green.status == "ERROR" {
        return not(
            0,
            format!("the green {} is in ERROR status", green.display_name()),
        );
    }
    let Some(green_frontier) = green.frontier.as_ref().filter(|_| green.is_populated) else {
        return not(
            0,
            format!(
                "the green {} has not been populated yet",
                green.display_name()
            ),
        );
    };
    let Some(blue_frontier) = blue.frontier.as_ref() else {
        // The blue was never refreshed: there is nothing to reach.
        return Convergence {
            pending_changes: 0,
            converged: true,
            reason: None,
        };
    };
    let sources = catalog::tracked_sources(green.pgt_id);
    let pending = pending(&sources, blue_frontier, green_frontier);
    if !sources.is_empty() && pending > 0 {
        return not(
            pending,
            format!("the green has not yet consumed {pending} change(s) that the blue has"),
        );
    }
    // A green that consumes no changes (FULL) holds what its last snapshot
    // saw: enough when every transaction the blue's snapshot could see had
    // ended before the green's was taken.
    if sources.is_empty() && !sees_all_of(green_frontier, blue_frontier) {
        return not(
            0,
            "the green's last refresh does not yet see everything the blue's saw".to_string(),
        );
    }
    if let Some(max_lag) = max_lag {
        let too_old = spi::query_value(&format!(
            "SELECT (pg_catalog.now() - {}::timestamptz > {max_lag})::text",
            literal(&green_frontier.data_timestamp)
        ));
        if too_old.as_deref() == Some("true") {
            return not(
                pending,
                format!("the green's data is older than max_lag ({max_lag})"),
            );
        }
    }
    Convergence {
        pending_changes: pending,
        converged: true,
        reason: None,
    }
}

/// Whether the refresh behind frontier `a` saw every change the one behind
/// `b` saw: all transactions `b`'s snapshot (`pg_snapshot` text,
/// xmin:xmax:xip) could see had ended before `a`'s was taken (the
/// transaction of `b`'s refresh among them, unless both ran in it).
fn sees_all_of(a: &Frontier, b: &Frontier) -> bool {
    let bound = |text: &str, i: usize| text.split(':').nth(i).and_then(|v| v.parse::<u64>().ok());
    let snapshots = matches!(
        (bound(&a.snapshot, 0), bound(&b.snapshot, 1)),
        (Some(a_xmin), Some(b_xmax)) if a_xmin >= b_xmax
    );
    // Within one transaction the snapshots say nothing about its own
    // changes: then `a`'s refresh must have come after `b`'s.
    let own = match (&a.own_xid, &b.own_xid) {
        (Some(x), Some(y)) if x == y => {
            spi::query_value(&format!(
                "SELECT ({}::timestamptz >= {}::timestamptz)::text",
                literal(&a.data_timestamp),
                literal(&b.data_timestamp)
            ))
            .as_deref()
                == Some("true")
        }
        _ => true,
    };
    snapshots && own
}

/// Changes of `sources` that `ahead` consumed and `behind` did not.
fn pending(sources: &[pgrx::pg_sys::Oid], ahead: &Frontier, behind: &Frontier) -> i64 {
    spi::as_role(spi::superuser(), || {
        sources
            .iter()
            .filter_map(|&source| {
                let buffer = CdcObjects::existing(source)?.buffer_name();
                spi::query_value(&format!(
                    "SELECT count(*)::text FROM {buffer} c WHERE {} AND NOT {}",
                    ahead.consumed(source, "c"),
                    behind.consumed(source, "c")
                ))
                .and_then(|n| n.parse::<i64>().ok())
            })
            .sum()
    })
}

fn row_count(st: &StreamTable) -> i64 {
    spi::as_role(spi::superuser(), || {
        spi::query_value(&format!(
            "SELECT count(*)::text FROM {}",
            st.qualified_name()
        ))
    })
    .and_then(|n| n.parse().ok())
    .unwrap_or(0)
}

/// For identical queries at the same point: whether both hold the same rows.
/// None when the comparison would mean nothing.
fn same_content(blue: &StreamTable, green: &StreamTable) -> Option<bool> {
    // Printed once more by PostgreSQL, identical queries read identically.
    let printed = |st: &StreamTable| {
        crate::dvm::analyze::analyze(&st.defining_query)
            .ok()
            .map(|a| crate::lifecycle::expanded_query(&a))
    };
    if printed(blue)? != printed(green)? {
        return None;
    }
    let (b, g) = (blue.frontier.as_ref()?, green.frontier.as_ref()?);
    let mut sources = catalog::tracked_sources(green.pgt_id);
    sources.extend(catalog::tracked_sources(blue.pgt_id));
    sources.sort_by_key(|o| o.to_u32());
    sources.dedup();
    if sources.is_empty() || pending(&sources, b, g) != 0 || pending(&sources, g, b) != 0 {
        return None;
    }
    let columns = spi::query_value(&format!(
        "SELECT string_agg(pg_catalog.quote_ident(attname), ', ' ORDER BY attnum) FROM pg_catalog.pg_attribute \
          WHERE attrelid = {} AND attnum > 0 AND NOT attisdropped AND attname NOT LIKE '\\_\\_pgt\\_%'",
        blue.relid.to_u32()
    ))?;
    let (bt, gt) = (blue.qualified_name(), green.qualified_name());
    spi::as_role(spi::superuser(), || {
        spi::query_value(&format!(
            "SELECT (NOT EXISTS (SELECT {columns} FROM {bt} EXCEPT ALL SELECT {columns} FROM {gt}) \
                 AND NOT EXISTS (SELECT {columns} FROM {gt} EXCEPT ALL SELECT {columns} FROM {bt}))::text"
        ))
    })
    .map(|v| v == "true")
}

/// `green_status`: `name` is the blue's or the green's name.
pub fn status(name: &str, max_lag: Option<&str>, verify: bool) -> PgtResult<GreenStatus> {
    crate::restore::repair_if_restored()?;
    let (blue, green) = pair(name)?;
    check_owner(&blue)?;
    let c = convergence(&blue, &green, max_lag);
    let lag = match (blue.frontier.as_ref(), green.frontier.as_ref()) {
        (Some(b), Some(g)) => spi::query(&format!(
            "SELECT greatest(pg_catalog.pg_wal_lsn_diff({}::pg_lsn, {}::pg_lsn), 0)::bigint::text, \
                    greatest(extract(epoch FROM {}::timestamptz - {}::timestamptz) * 1000000, 0)::bigint::text",
            literal(&b.lsn),
            literal(&g.lsn),
            literal(&b.data_timestamp),
            literal(&g.data_timestamp)
        ))
        .into_iter()
        .next()
        .map(|r| {
            (
                r[0].as_deref().and_then(|v| v.parse().ok()),
                r[1].as_deref().and_then(|v| v.parse().ok()),
            )
        })
        .unwrap_or((None, None)),
        _ => (None, None),
    };
    Ok(GreenStatus {
        green_name: green.display_name(),
        status: green.status.clone(),
        lag_bytes: lag.0,
        lag_micros: lag.1,
        pending_changes: c.pending_changes,
        blue_rows: row_count(&blue),
        green_rows: row_count(&green),
        converged: c.converged,
        reason: c.reason,
        content_matches: if verify {
            same_content(&blue, &green)
        } else {
            None
        },
    })
}
