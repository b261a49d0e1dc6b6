//! A source's columns before (the snapshot stored at creation) and after a
//! DDL statement, read from the catalog; the classification itself is
//! `pgtrickle_core::schema_change`.

use crate::spi;
use pgrx::pg_sys::Oid;
pub use pgtrickle_core::schema_change::{changes, Column, ColumnChange};

pub fn live_columns(source: Oid) -> Vec<Column> {
    spi::query(&format!(
        "SELECT attnum::text, attname, pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute \
          WHERE attrelid = {} AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        source.to_u32()
    ))
    .into_iter()
    .map(|r| Column {
        attnum: r[0].as_deref().unwrap_or("0").parse().unwrap_or(0),
        name: r[1].clone().unwrap_or_default(),
        type_sql: r[2].clone().unwrap_or_default(),
    })
    .collect()
}

/// The column snapshot stored in pgt_dependencies.
pub fn snapshot_columns(json: &str) -> Vec<Column> {
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
    value
        .as_array()
        .map(|cols| {
            cols.iter()
                .map(|c| Column {
                    attnum: c["attnum"].as_i64().unwrap_or(0),
                    name: c["name"].as_str().unwrap_or("").to_string(),
                    type_sql: c["type"].as_str().unwrap_or("").to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The snapshot of a table's columns as it is now.
pub fn snapshot_json(source: Oid) -> String {
    spi::query_value(&format!(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('attnum', attnum, 'name', attname, \
                'type', pg_catalog.format_type(atttypid, atttypmod), 'not_null', attnotnull) ORDER BY attnum), '[]')::text \
           FROM pg_catalog.pg_attribute WHERE attrelid = {} AND attnum > 0 AND NOT attisdropped",
        source.to_u32()
    ))
    .unwrap_or_else(|| "[]".into())
}
