//! Which stream tables are due, in the order to refresh them.

use crate::catalog;
use crate::spi;
use chrono::{DateTime, TimeZone, Utc};
use pgtrickle_core::dag::topological_order;
use pgtrickle_core::schedule::Schedule;

fn epoch(seconds: f64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds.floor() as i64, ((seconds.fract()) * 1e9) as u32)
        .single()
        .unwrap_or_else(Utc::now)
}

/// Ids of the stream tables to refresh now, upstream first.
pub fn due_stream_tables() -> Vec<i64> {
    let rows = spi::query(
        "SELECT pgt_id::text, schedule, extract(epoch FROM coalesce(last_refresh_at, created_at))::float8::text, \
                is_populated::text, extract(epoch FROM pg_catalog.now())::float8::text \
           FROM pgtrickle.pgt_stream_tables \
          WHERE status IN ('ACTIVE', 'INITIALIZING') AND schedule IS NOT NULL",
    );
    let mut due = Vec::new();
    for row in rows {
        let (Some(id), Some(schedule), Some(last), Some(populated), Some(now)) = (
            row[0].as_ref(),
            row[1].as_ref(),
            row[2].as_ref(),
            row[3].as_ref(),
            row[4].as_ref(),
        ) else {
            continue;
        };
        let Ok(schedule) = Schedule::parse(schedule) else {
            continue;
        };
        let (Ok(last), Ok(now)) = (last.parse::<f64>(), now.parse::<f64>()) else {
            continue;
        };
        if populated == "false" || schedule.next_due(epoch(last)) <= epoch(now) {
            if let Ok(id) = id.parse::<i64>() {
                due.push(id);
            }
        }
    }
    if due.is_empty() {
        return due;
    }
    let all: Vec<i64> = catalog::all().iter().map(|st| st.pgt_id).collect();
    let order = topological_order(&all, &catalog::stream_table_edges()).unwrap_or(all);
    order.into_iter().filter(|id| due.contains(id)).collect()
}
