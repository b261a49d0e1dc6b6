//! A source's columns before (the snapshot stored at creation) and after a
//! DDL statement, matched by attribute number.

use crate::spi;
use pgrx::pg_sys::Oid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub attnum: i64,
    pub name: String,
    pub type_sql: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnChange {
    Added {
        name: String,
        type_sql: String,
    },
    Dropped {
        name: String,
    },
    Renamed {
        from: String,
        to: String,
    },
    Retyped {
        name: String,
        from: String,
        to: String,
    },
}

impl ColumnChange {
    /// Whether the change affects one of `used` (the stream table's columns).
    pub fn touches(&self, used: &[String]) -> bool {
        match self {
            ColumnChange::Added { .. } => false,
            ColumnChange::Dropped { name } | ColumnChange::Retyped { name, .. } => {
                used.contains(name)
            }
            ColumnChange::Renamed { from, .. } => used.contains(from),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ColumnChange::Added { name, type_sql } => {
                format!("column \"{name}\" ({type_sql}) was added")
            }
            ColumnChange::Dropped { name } => format!("column \"{name}\" was dropped"),
            ColumnChange::Renamed { from, to } => {
                format!("column \"{from}\" was renamed to \"{to}\"")
            }
            ColumnChange::Retyped { name, from, to } => {
                format!("column \"{name}\" changed type from {from} to {to}")
            }
        }
    }
}

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

/// Column changes from `before` to `after`.
pub fn changes(before: &[Column], after: &[Column]) -> Vec<ColumnChange> {
    let mut out = Vec::new();
    for old in before {
        match after.iter().find(|c| c.attnum == old.attnum) {
            None => out.push(ColumnChange::Dropped {
                name: old.name.clone(),
            }),
            Some(new) => {
                if new.name != old.name {
                    out.push(ColumnChange::Renamed {
                        from: old.name.clone(),
                        to: new.name.clone(),
                    });
                }
                if new.type_sql != old.type_sql {
                    out.push(ColumnChange::Retyped {
                        name: old.name.clone(),
                        from: old.type_sql.clone(),
                        to: new.type_sql.clone(),
                    });
                }
            }
        }
    }
    for new in after {
        if !before.iter().any(|c| c.attnum == new.attnum) {
            out.push(ColumnChange::Added {
                name: new.name.clone(),
                type_sql: new.type_sql.clone(),
            });
        }
    }
    out
}
