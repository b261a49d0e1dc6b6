//! The frontier: up to where a stream table has consumed its sources'
//! changes.
//!
//! A change is identified by the transaction that made it (`xid8`). A
//! refresh reads the sources with one MVCC snapshot; every change visible
//! in that snapshot is in the stream table afterwards, and no other change
//! is. Changes made earlier in the refreshing transaction itself are
//! visible to it but not "visible in the snapshot", so the frontier also
//! records that transaction id and, per source, the last of its changes
//! that were consumed. The JSON form is internal (tier 3).

use crate::spi::Param;
use pgrx::pg_sys::{self, Oid};
use pgtrickle_core::quote::literal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The types of the parameters of `Frontier::window_by_params`.
pub const WINDOW_PARAM_TYPES: [Oid; 3] = [
    pg_sys::PG_SNAPSHOTOID,
    pg_sys::XID8OID,
    pg_sys::INT8ARRAYOID,
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Frontier {
    /// `pg_snapshot` text of the refresh's snapshot.
    pub snapshot: String,
    /// The refreshing transaction, when it had written anything.
    pub own_xid: Option<String>,
    /// Per source OID: highest `change_id` of `own_xid` consumed.
    pub own_max_change: BTreeMap<String, i64>,
    /// WAL insert position at the refresh, for lag reporting.
    pub lsn: String,
    /// When the snapshot was taken.
    pub data_timestamp: String,
    /// The cluster (`pg_control_system().system_identifier`) and database
    /// whose transaction ids the snapshot speaks of; absent in frontiers
    /// written by 0.1.0. After a restore elsewhere they differ, and the
    /// frontier means nothing.
    #[serde(default)]
    pub system_identifier: Option<String>,
    #[serde(default)]
    pub database: Option<u32>,
}

impl Frontier {
    pub fn from_json(text: &str) -> Option<Frontier> {
        serde_json::from_str(text).ok()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("frontier serializes")
    }

    /// SQL predicate: the buffer row `alias` of `source` was consumed.
    pub fn consumed(&self, source: Oid, alias: &str) -> String {
        let visible = format!(
            "pg_catalog.pg_visible_in_snapshot({alias}.xid, {}::pg_catalog.pg_snapshot)",
            literal(&self.snapshot)
        );
        match &self.own_xid {
            None => format!("({visible})"),
            // A snapshot does not list its own transaction as running, so
            // pg_visible_in_snapshot may call it visible: the refreshing
            // transaction's changes count only up to what it consumed.
            Some(xid) => {
                let max = self
                    .own_max_change
                    .get(&source.to_u32().to_string())
                    .copied()
                    .unwrap_or(0);
                let own = literal(xid);
                format!(
                    "(CASE WHEN {alias}.xid = {own}::pg_catalog.xid8 THEN {alias}.change_id <= {max} ELSE {visible} END)"
                )
            }
        }
    }

    /// SQL predicate: the buffer row `alias` of `source` is new since this frontier.
    pub fn window(&self, source: Oid, alias: &str) -> String {
        format!("NOT {}", self.consumed(source, alias))
    }

    /// `window` with the frontier's values as the parameters of
    /// `window_params` (`source_index`: the source's place in the list
    /// given there), so that the statement's text, and with it its kept
    /// plan, stays the same from one refresh to the next.
    pub fn window_by_params(source_index: usize, alias: &str) -> String {
        format!(
            "NOT (CASE WHEN {alias}.xid = $2::pg_catalog.xid8 THEN {alias}.change_id <= ($3::bigint[])[{}] \
             ELSE pg_catalog.pg_visible_in_snapshot({alias}.xid, $1::pg_catalog.pg_snapshot) END)",
            source_index + 1
        )
    }

    /// The parameters of `window_by_params` for `sources`: the snapshot,
    /// the refreshing transaction (NULL if it had not written), and the
    /// last change of each source that transaction consumed.
    pub fn window_params(&self, sources: &[Oid]) -> Vec<Param> {
        let own_max: Vec<String> = sources
            .iter()
            .map(|source| {
                self.own_max_change
                    .get(&source.to_u32().to_string())
                    .copied()
                    .unwrap_or(0)
                    .to_string()
            })
            .collect();
        vec![
            Param {
                type_oid: WINDOW_PARAM_TYPES[0],
                value: Some(self.snapshot.clone()),
            },
            Param {
                type_oid: WINDOW_PARAM_TYPES[1],
                value: self.own_xid.clone(),
            },
            Param {
                type_oid: WINDOW_PARAM_TYPES[2],
                value: Some(format!("{{{}}}", own_max.join(","))),
            },
        ]
    }
}
