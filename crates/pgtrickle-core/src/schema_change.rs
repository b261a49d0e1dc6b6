//! Classifying a change of a table's columns, matched by attribute number:
//! which columns were added, dropped, renamed or retyped, and whether a
//! change touches the columns a stream table uses.

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

#[cfg(test)]
mod tests {
    use super::*;

    fn col(attnum: i64, name: &str, ty: &str) -> Column {
        Column {
            attnum,
            name: name.into(),
            type_sql: ty.into(),
        }
    }

    fn used(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_kind_of_change_is_found_by_attribute_number() {
        let before = vec![
            col(1, "id", "integer"),
            col(2, "v", "integer"),
            col(3, "note", "text"),
        ];
        let after = vec![
            col(1, "id", "integer"),
            col(2, "value", "bigint"),
            col(4, "extra", "text"),
        ];
        assert_eq!(
            changes(&before, &after),
            vec![
                ColumnChange::Renamed {
                    from: "v".into(),
                    to: "value".into()
                },
                ColumnChange::Retyped {
                    name: "v".into(),
                    from: "integer".into(),
                    to: "bigint".into()
                },
                ColumnChange::Dropped {
                    name: "note".into()
                },
                ColumnChange::Added {
                    name: "extra".into(),
                    type_sql: "text".into()
                },
            ]
        );
        assert!(changes(&before, &before).is_empty());
    }

    #[test]
    fn only_changes_of_used_columns_touch_a_stream_table() {
        let used = used(&["id", "v"]);
        assert!(ColumnChange::Dropped { name: "v".into() }.touches(&used));
        assert!(ColumnChange::Renamed {
            from: "v".into(),
            to: "w".into()
        }
        .touches(&used));
        assert!(ColumnChange::Retyped {
            name: "id".into(),
            from: "integer".into(),
            to: "bigint".into()
        }
        .touches(&used));
        assert!(!ColumnChange::Dropped {
            name: "note".into()
        }
        .touches(&used));
        assert!(!ColumnChange::Added {
            name: "v2".into(),
            type_sql: "int".into()
        }
        .touches(&used));
    }

    #[test]
    fn changes_describe_themselves() {
        assert_eq!(
            ColumnChange::Retyped {
                name: "v".into(),
                from: "integer".into(),
                to: "text".into()
            }
            .describe(),
            "column \"v\" changed type from integer to text"
        );
    }
}
