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

/// The image of a table's columns as it is now (also stored as the
/// snapshot): attnum, name, type with typmod, nullability, default,
/// generated and identity kind, and membership in the primary key.
pub fn snapshot_json(source: Oid) -> String {
    spi::query_value(&format!(
        "SELECT coalesce(jsonb_agg(jsonb_build_object(
                    'attnum', a.attnum, 'name', a.attname,
                    'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
                    'not_null', a.attnotnull,
                    'default', pg_catalog.pg_get_expr(d.adbin, d.adrelid),
                    'generated', nullif(a.attgenerated::text, ''),
                    'identity', nullif(a.attidentity::text, ''),
                    'primary_key', coalesce(a.attnum = ANY(i.indkey::int2[]), false)) ORDER BY a.attnum), '[]')::text
           FROM pg_catalog.pg_attribute a
           LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           LEFT JOIN pg_catalog.pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
          WHERE a.attrelid = {} AND a.attnum > 0 AND NOT a.attisdropped",
        source.to_u32()
    ))
    .unwrap_or_else(|| "[]".into())
}
