//! Classifying a change of a table's columns, matched by attribute number:
//! which columns were added, dropped, renamed or retyped, whether a change
//! touches the columns a stream table uses, and what that means for the
//! stream table (PRODUCT §5).

pub mod widening;

use widening::is_safe_widening;

/// What happens to a stream table when a source's columns change; ordered
/// from mildest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Decision {
    /// Nothing to do.
    Continue,
    /// The stored query is printed again from its analysed form, which
    /// refers to columns by number: it then carries the new names.
    Rewrite,
    /// Storage columns retyped where the query's types changed, then one
    /// FULL refresh, then differential again.
    Reinitialize,
    /// No further refresh: ERROR with the reason (or the DDL rejected).
    Stop,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Continue => "continue",
            Decision::Rewrite => "rewrite",
            Decision::Reinitialize => "reinitialize",
            Decision::Stop => "stop",
        }
    }
}

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

impl ColumnChange {
    /// The decision for a stream table that uses the columns `used` of
    /// the table, and its whole row too if `whole_row` (`t::text`).
    ///
    /// Row identities hash only the columns a stream table reads, so a
    /// column it does not read enters neither its rows nor their
    /// identities: adding, dropping, retyping or renaming one changes
    /// nothing for it. The whole row changes with every column.
    pub fn decide(&self, used: &[String], whole_row: bool) -> Decision {
        match self {
            ColumnChange::Dropped { .. } if self.touches(used) => Decision::Stop,
            ColumnChange::Retyped { from, to, .. }
                if self.touches(used) && !is_safe_widening(from, to) =>
            {
                Decision::Stop
            }
            _ if whole_row => Decision::Reinitialize,
            ColumnChange::Retyped { .. } if self.touches(used) => Decision::Reinitialize,
            ColumnChange::Renamed { .. } if self.touches(used) => Decision::Rewrite,
            ColumnChange::Added { .. }
            | ColumnChange::Dropped { .. }
            | ColumnChange::Retyped { .. }
            | ColumnChange::Renamed { .. } => Decision::Continue,
        }
    }
}

/// The decision for a stream table: the strongest of its changes'.
pub fn decide(changes: &[ColumnChange], used: &[String], whole_row: bool) -> Decision {
    changes
        .iter()
        .map(|c| c.decide(used, whole_row))
        .max()
        .unwrap_or(Decision::Continue)
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

    /// Every row of PRODUCT §5's table that concerns columns, for a stream
    /// table that uses the column and one that does not.
    #[test]
    fn each_row_of_the_schema_change_table_decides_as_documented() {
        let uses_v = used(&["id", "v"]);
        let not_v = used(&["id"]);
        let added = ColumnChange::Added {
            name: "x".into(),
            type_sql: "text".into(),
        };
        let dropped = ColumnChange::Dropped { name: "v".into() };
        let renamed = ColumnChange::Renamed {
            from: "v".into(),
            to: "w".into(),
        };
        let retyped = |from: &str, to: &str| ColumnChange::Retyped {
            name: "v".into(),
            from: from.into(),
            to: to.into(),
        };
        // (change, decision when the column is used, when it is not, when
        // the whole row is read and the column is not)
        let rows: Vec<(&str, ColumnChange, Decision, Decision, Decision)> = vec![
            (
                "column added",
                added,
                Decision::Continue,
                Decision::Continue,
                Decision::Reinitialize,
            ),
            (
                "column dropped",
                dropped,
                Decision::Stop,
                Decision::Continue,
                Decision::Reinitialize,
            ),
            (
                "column renamed",
                renamed,
                Decision::Rewrite,
                Decision::Continue,
                Decision::Reinitialize,
            ),
            (
                "safely widened",
                retyped("integer", "bigint"),
                Decision::Reinitialize,
                Decision::Continue,
                Decision::Reinitialize,
            ),
            (
                "varchar lengthened",
                retyped("character varying(5)", "text"),
                Decision::Reinitialize,
                Decision::Continue,
                Decision::Reinitialize,
            ),
            (
                "lossy retype",
                retyped("bigint", "integer"),
                Decision::Stop,
                Decision::Continue,
                Decision::Reinitialize,
            ),
            (
                "unknown retype",
                retyped("integer", "text"),
                Decision::Stop,
                Decision::Continue,
                Decision::Reinitialize,
            ),
        ];
        for (what, change, when_used, when_unused, whole_row) in rows {
            assert_eq!(
                change.decide(&uses_v, false),
                when_used,
                "{what}, column used"
            );
            assert_eq!(
                change.decide(&not_v, false),
                when_unused,
                "{what}, column unused"
            );
            assert_eq!(
                change.decide(&not_v, true),
                whole_row,
                "{what}, whole row read"
            );
            // reading the whole row never softens what using the column means
            assert_eq!(
                change.decide(&uses_v, true),
                when_used.max(Decision::Reinitialize),
                "{what}, column used and whole row read"
            );
        }
        // No column change (NOT NULL, DEFAULT, constraints, indexes): continue.
        assert_eq!(decide(&[], &uses_v, true), Decision::Continue);
        // Several changes in one ALTER: the strongest decides.
        let both = [
            ColumnChange::Renamed {
                from: "v".into(),
                to: "w".into(),
            },
            ColumnChange::Added {
                name: "x".into(),
                type_sql: "int".into(),
            },
        ];
        assert_eq!(decide(&both, &uses_v, false), Decision::Rewrite);
        assert_eq!(decide(&both, &uses_v, true), Decision::Reinitialize);
        let widened = [retyped("integer", "bigint"), both[1].clone()];
        assert_eq!(decide(&widened, &uses_v, false), Decision::Reinitialize);
    }
}
