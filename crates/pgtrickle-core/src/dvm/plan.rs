//! What a stream table maintains, independent of PostgreSQL internals.

/// A visible output column of the defining query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type` of the column, e.g. `numeric(10,2)`.
    pub type_sql: String,
    /// How its value enters a group's row id when it is a group key.
    pub key_form: ValueForm,
}

/// How a value enters a row-identity hash: as a text that must not depend
/// on the session's settings (a refresh by the scheduler and one by a
/// client with another `TimeZone` must find the same rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueForm {
    /// Its text output, for types whose output no setting changes.
    Text,
    /// Hex of its binary output (`send` is the function's qualified name),
    /// for types whose text output follows settings (`DateStyle`,
    /// `TimeZone`, `IntervalStyle`, `extra_float_digits`, `bytea_output`,
    /// `lc_monetary`).
    Binary { send: String },
    /// Its hash under the type's hash operator class (`function`, the
    /// qualified extended hash function): equal values hash alike, as
    /// `GROUP BY` groups them (`1.0` and `1.00`, `'a'` and `'A'` under a
    /// case-insensitive collation).
    Hash { function: String },
}

impl ValueForm {
    /// SQL text of `expr` in this form (NULL stays NULL).
    pub fn text_of(&self, expr: &str) -> String {
        match self {
            ValueForm::Text => format!("{expr}::text"),
            ValueForm::Binary { send } => format!("pg_catalog.encode({send}({expr}), 'hex')"),
            ValueForm::Hash { function } => format!("{function}({expr}, 0)::text"),
        }
    }
}

/// The aggregates DIFFERENTIAL maintains from their state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggKind {
    CountStar,
    Count,
    Sum,
    /// Average = running sum (of `state_type`) / non-null count.
    Avg {
        state_type: String,
    },
    Min,
    Max,
}

impl AggKind {
    pub fn name(&self) -> &'static str {
        match self {
            AggKind::CountStar => "count(*)",
            AggKind::Count => "count",
            AggKind::Sum => "sum",
            AggKind::Avg { .. } => "avg",
            AggKind::Min => "min",
            AggKind::Max => "max",
        }
    }
}

/// One aggregate output column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agg {
    pub kind: AggKind,
    /// Index of the visible column that shows it.
    pub column: usize,
    /// Index of its argument among the core's outputs (`None` for count(*)).
    pub arg: Option<usize>,
    /// The argument is never NULL (a NOT NULL column, read without outer
    /// joins): its non-NULL count is the group's row count, with no count
    /// of its own to compute per change row.
    pub never_null: bool,
    /// Values of the summed type that a running sum cannot let go of
    /// (sum and avg only).
    pub non_finite: NonFinite,
}

/// Values a sum cannot subtract again: `Infinity - Infinity` is NaN, and
/// NaN stays NaN. A group whose stored sum is one of them after a
/// differential refresh is recomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFinite {
    /// Integers and money.
    None,
    /// `float4`, `float8`, `numeric`: NaN and ±Infinity, whose arithmetic
    /// yields NaN rather than an error.
    NanOrInfinity,
    /// `interval` (infinite since PostgreSQL 17): adding opposite
    /// infinities is an error, so the arithmetic on sums is guarded.
    Infinity,
}

/// How the stream table is maintained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// Recomputed on every refresh.
    FullOnly,
    /// Rows of select-project-join cores (one per UNION ALL branch); the core
    /// outputs are the visible columns.
    Rows { branches: usize },
    /// Groups of one core. The core outputs the group keys (`group_columns`,
    /// visible column indexes, in core order) and then the aggregate
    /// arguments. No group keys: a scalar aggregate, always one row.
    Groups {
        group_columns: Vec<usize>,
        aggs: Vec<Agg>,
    },
    /// Groups of one core (which outputs the group keys only) whose
    /// aggregates cannot be kept as state (HAVING, other aggregates,
    /// expressions over aggregates): every group a change touches is
    /// recomputed with the defining query.
    RecomputedGroups { group_columns: Vec<usize> },
    /// Rows of one core with LEFT JOINs (outputs: the visible columns). The
    /// rows of every `anchor` row (the leftmost table's, never
    /// null-extended) that a change touches are recomputed; each stored row
    /// keeps the identities of the source rows it came from, so that rows
    /// built from deleted source rows can be found.
    AnchoredRows { anchor: usize },
}

/// Why DIFFERENTIAL cannot maintain a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub construct: String,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub columns: Vec<Column>,
    pub shape: Shape,
}

pub const ROW_ID: &str = "__pgt_row_id";
pub const COUNT: &str = "__pgt_count";
pub const ANCHOR: &str = "__pgt_anchor";
pub const SOURCE_ROWS: &str = "__pgt_source_rows";

/// Hidden state column names of aggregate `agg`.
pub fn sum_state(agg: &Agg) -> String {
    format!("__pgt_sum_{}", agg.column)
}

pub fn nonnull_state(agg: &Agg) -> String {
    format!("__pgt_nn_{}", agg.column)
}

impl Plan {
    /// Every column of the storage table, user columns first: (name, type).
    pub fn storage_columns(&self) -> Vec<(String, String)> {
        self.columns
            .iter()
            .map(|c| (c.name.clone(), c.type_sql.clone()))
            .chain(self.internal_columns())
            .collect()
    }

    /// Storage columns beyond the visible ones: (name, type).
    pub fn internal_columns(&self) -> Vec<(String, String)> {
        let mut cols = vec![(ROW_ID.to_string(), "bigint".to_string())];
        match &self.shape {
            Shape::FullOnly | Shape::RecomputedGroups { .. } => {}
            Shape::AnchoredRows { .. } => {
                cols.push((COUNT.to_string(), "bigint".to_string()));
                cols.push((ANCHOR.to_string(), "bigint".to_string()));
                cols.push((SOURCE_ROWS.to_string(), "bigint[]".to_string()));
            }
            Shape::Rows { .. } => cols.push((COUNT.to_string(), "bigint".to_string())),
            Shape::Groups { aggs, .. } => {
                cols.push((COUNT.to_string(), "bigint".to_string()));
                for agg in aggs {
                    match &agg.kind {
                        AggKind::CountStar | AggKind::Count => {}
                        AggKind::Sum | AggKind::Min | AggKind::Max => {
                            cols.push((nonnull_state(agg), "bigint".to_string()))
                        }
                        AggKind::Avg { state_type } => {
                            cols.push((sum_state(agg), state_type.clone()));
                            cols.push((nonnull_state(agg), "bigint".to_string()));
                        }
                    }
                }
            }
        }
        cols
    }

    /// Secondary indexes of the storage table: (method, column).
    pub fn internal_indexes(&self) -> Vec<(&'static str, &'static str)> {
        match self.shape {
            Shape::AnchoredRows { .. } => vec![("btree", ANCHOR), ("gin", SOURCE_ROWS)],
            _ => vec![],
        }
    }

    pub fn is_differential(&self) -> bool {
        !matches!(self.shape, Shape::FullOnly)
    }

    /// A one-line description of the maintenance, for explain_st.
    pub fn describe(&self) -> String {
        match &self.shape {
            Shape::FullOnly => "full recomputation".to_string(),
            Shape::Rows { branches } if *branches > 1 => {
                format!("UNION ALL of {branches} select-project-join cores, rows keyed by source row identity")
            }
            Shape::Rows { .. } => {
                "select-project-join, rows keyed by source row identity".to_string()
            }
            Shape::AnchoredRows { .. } => {
                "rows with LEFT JOINs, recomputed per row of the leftmost table that a change touches".to_string()
            }
            Shape::RecomputedGroups { group_columns } => {
                let keys: Vec<&str> = group_columns
                    .iter()
                    .map(|&i| self.columns[i].name.as_str())
                    .collect();
                format!(
                    "grouped by ({}); groups touched by a change are recomputed",
                    keys.join(", ")
                )
            }
            Shape::Groups {
                group_columns,
                aggs,
            } => {
                let aggs: Vec<&str> = aggs.iter().map(|a| a.kind.name()).collect();
                if group_columns.is_empty() {
                    format!("scalar aggregate [{}]", aggs.join(", "))
                } else {
                    let keys: Vec<&str> = group_columns
                        .iter()
                        .map(|&i| self.columns[i].name.as_str())
                        .collect();
                    format!(
                        "grouped by ({}) with [{}], state kept per group",
                        keys.join(", "),
                        aggs.join(", ")
                    )
                }
            }
        }
    }
}
