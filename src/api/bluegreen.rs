//! Blue-green redeployment: create_green, green_status, promote_green,
//! promote_all_green, cancel_green, rollback_green, drop_retired.

use crate::bluegreen::{self, GreenRequest};
use crate::error::OrRaise;
use pgrx::datum::Interval;
use pgrx::prelude::*;

/// An interval argument as an SQL expression.
fn interval_sql(i: Interval) -> String {
    format!(
        "pg_catalog.make_interval(months => {}, days => {}, secs => {}::float8 / 1000000)",
        i.months(),
        i.days(),
        i.micros()
    )
}

/// Creates the green of stream table `name`: a new stream table named
/// `<name>__pgt_green` with the given query (by default the blue's),
/// schedule, refresh mode and pipeline group, populated now and maintained
/// alongside the blue. Returns its name.
#[pg_extern(schema = "pgtrickle")]
fn create_green(
    name: &str,
    query: default!(Option<&str>, "NULL"),
    schedule: default!(Option<&str>, "NULL"),
    refresh_mode: default!(Option<&str>, "NULL"),
    pipeline_group: default!(Option<&str>, "NULL"),
) -> String {
    bluegreen::create_green(GreenRequest {
        name,
        query,
        schedule,
        refresh_mode,
        pipeline_group,
    })
    .or_raise()
}

/// How far the green of `name` is from its blue, and whether it may be
/// promoted. `max_lag` also requires the green's data to be that fresh;
/// `verify` compares contents when both run the same query at the same point.
#[pg_extern(schema = "pgtrickle")]
#[allow(clippy::type_complexity)]
fn green_status(
    name: &str,
    max_lag: default!(Option<Interval>, "NULL"),
    verify: default!(bool, false),
) -> TableIterator<
    'static,
    (
        name!(green_name, String),
        name!(status, String),
        name!(frontier_lag_bytes, Option<i64>),
        name!(frontier_lag, Option<Interval>),
        name!(pending_changes, i64),
        name!(blue_rows, i64),
        name!(green_rows, i64),
        name!(converged, bool),
        name!(reason, Option<String>),
        name!(content_matches, Option<bool>),
    ),
> {
    let s = bluegreen::status(name, max_lag.map(interval_sql).as_deref(), verify).or_raise();
    TableIterator::once((
        s.green_name,
        s.status,
        s.lag_bytes,
        s.lag_micros.and_then(|m| Interval::new(0, 0, m).ok()),
        s.pending_changes,
        s.blue_rows,
        s.green_rows,
        s.converged,
        s.reason,
        s.content_matches,
    ))
}

/// Promotes the green of `name` in one transaction: the blue becomes
/// `<name>__pgt_retired`, the green takes the name. Refused unless the
/// green has converged (see green_status), or `force`.
#[pg_extern(schema = "pgtrickle")]
fn promote_green(
    name: &str,
    force: default!(bool, false),
    max_lag: default!(Option<Interval>, "NULL"),
) {
    bluegreen::promote(name, force, max_lag.map(interval_sql).as_deref()).or_raise();
}

/// Promotes every ready green (of `pipeline_group`, or all), a group at a
/// time and only whole, in dependency order; one row per green.
#[pg_extern(schema = "pgtrickle")]
fn promote_all_green(
    pipeline_group: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(stream_table, String),
        name!(green_name, String),
        name!(action, String),
        name!(detail, String),
    ),
> {
    let outcomes = bluegreen::promote_all(pipeline_group).or_raise();
    TableIterator::new(
        outcomes
            .into_iter()
            .map(|o| (o.stream_table, o.green, o.action.to_string(), o.detail)),
    )
}

/// Drops the green of `name`: its storage, catalog rows and change
/// consumption. Returns the green's name.
#[pg_extern(schema = "pgtrickle")]
fn cancel_green(name: &str) -> String {
    bluegreen::cancel(name).or_raise()
}

/// Swaps the stream table `name` back for the one its promotion retired;
/// the replaced one becomes its green again.
#[pg_extern(schema = "pgtrickle")]
fn rollback_green(name: &str) {
    bluegreen::rollback(name).or_raise();
}

/// Drops the retired stream table that `name` replaced. Returns its name.
#[pg_extern(schema = "pgtrickle")]
fn drop_retired(name: &str) -> String {
    bluegreen::drop_retired(name).or_raise()
}
