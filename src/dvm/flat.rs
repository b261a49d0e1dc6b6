//! Printing a block's select-project-join core with each table replaced by
//! a *variant*: its full contents or its change window.
//!
//! The block's query tree is copied; every table's range-table entry becomes
//! a subquery (parsed and analysed from generated SQL) that outputs the
//! table's columns at their attribute numbers, followed by the row's
//! identity and weight, so the query's own Vars still point at the right
//! columns. The target list is replaced by the core outputs, and the whole
//! tree is printed back to SQL with PostgreSQL's `pg_get_querydef`.

use super::analyze::{parse_select, Block, Instance, Relation};
use crate::error::PgtResult;
use pgrx::pg_sys::{self, Oid};
use pgrx::PgList;
use pgtrickle_core::quote::{ident, qualified};
use std::collections::HashMap;
use std::ffi::{CStr, CString};

/// What a table contributes to a core.
#[derive(Debug, Clone)]
pub enum Variant {
    /// The table's current contents, weight +1.
    Full,
    /// Rows of the change buffer matching `window` (a predicate over the
    /// buffer's `xid` and `action`), weight +1 for inserts, -1 for deletes.
    Delta { buffer: String, window: String },
}

/// Attribute layout of a table: names by attnum, `None` for dropped ones.
#[derive(Debug, Clone)]
pub struct TableShape {
    pub qualified_name: String,
    pub attributes: Vec<Option<String>>,
}

impl TableShape {
    /// Name and attributes from the relation cache (no query to plan).
    pub fn load(relid: Oid) -> TableShape {
        // SAFETY: the relation is open (and locked) only while it is read
        // here; the refresh holds AccessShareLock on it until commit anyway,
        // from analysing the query that reads it.
        let rel = unsafe {
            pgrx::PgRelation::with_lock(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE)
        };
        let qualified_name = qualified(rel.namespace(), rel.name());
        let attributes = rel
            .tuple_desc()
            .iter()
            .map(|att| (!att.is_dropped()).then(|| att.name().to_string()))
            .collect();
        TableShape {
            qualified_name,
            attributes,
        }
    }

    fn live_columns(&self) -> impl Iterator<Item = &String> {
        self.attributes.iter().flatten()
    }
}

/// Column names of a table variant, in output order.
fn variant_columns(shape: &TableShape) -> Vec<String> {
    let mut names: Vec<String> = shape
        .attributes
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.clone()
                .unwrap_or_else(|| format!("__pgt_dropped_{}", i + 1))
        })
        .collect();
    names.push("__pgt_rid".into());
    names.push("__pgt_w".into());
    names
}

/// The identity of a table row: a hash of all its column values.
pub fn row_identity(shape: &TableShape, alias: &str) -> String {
    let parts: Vec<String> = shape
        .live_columns()
        .map(|c| format!("{alias}.{}::text", ident(c)))
        .collect();
    format!(
        "pgtrickle.pg_trickle_hash_multi(ARRAY[{}]::text[])",
        parts.join(", ")
    )
}

fn variant_sql(rel: &Relation, shape: &TableShape, variant: &Variant) -> String {
    let cols: Vec<String> = shape
        .attributes
        .iter()
        .enumerate()
        .map(|(i, a)| match a {
            Some(name) => format!("r.{}", ident(name)),
            None => format!("NULL::integer AS __pgt_dropped_{}", i + 1),
        })
        .collect();
    let rid = row_identity(shape, "r");
    match variant {
        Variant::Full => format!(
            "SELECT {}, {rid} AS __pgt_rid, 1::bigint AS __pgt_w FROM {}{} r",
            cols.join(", "),
            if rel.inh { "" } else { "ONLY " },
            shape.qualified_name
        ),
        Variant::Delta { buffer, window } => format!(
            "SELECT {}, {rid} AS __pgt_rid, (CASE WHEN r.action = 'I' THEN 1 ELSE -1 END)::bigint AS __pgt_w \
             FROM {buffer} r WHERE r.action IN ('I', 'D') AND {window}",
            cols.join(", ")
        ),
    }
}

/// Prints cores; caches table shapes across the cores of one refresh.
#[derive(Default)]
pub struct Printer {
    shapes: HashMap<Oid, TableShape>,
}

impl Printer {
    pub fn shape(&mut self, relid: Oid) -> &TableShape {
        self.shapes
            .entry(relid)
            .or_insert_with(|| TableShape::load(relid))
    }

    /// The core of `block` with `variants` (one per table of
    /// `block.relations()`, in that order).
    pub fn core(&mut self, block: &Block, variants: &[Variant]) -> PgtResult<String> {
        let mut next = variants.iter();
        let sql = self.print(block, &mut next, true)?;
        debug_assert!(next.next().is_none(), "one variant per table");
        Ok(sql)
    }

    /// Like `core`, without the block's WHERE clause: the rows the join
    /// itself makes, for finding which rows a change touches (a WHERE such
    /// as `b.id IS NULL` would hide exactly the rows that changed).
    pub fn core_without_where(&mut self, block: &Block, variants: &[Variant]) -> PgtResult<String> {
        let mut next = variants.iter();
        self.print(block, &mut next, false)
    }

    fn print(
        &mut self,
        block: &Block,
        variants: &mut std::slice::Iter<'_, Variant>,
        keep_where: bool,
    ) -> PgtResult<String> {
        // Replacement subqueries and their column names, per range-table index.
        let mut replacements: Vec<(i32, String, Vec<String>)> = Vec::new();
        for instance in &block.instances {
            match instance {
                Instance::Relation(rel) => {
                    let variant = variants.next().expect("a variant per table");
                    let shape = self.shape(rel.relid).clone();
                    replacements.push((
                        rel.rtindex,
                        variant_sql(rel, &shape, variant),
                        variant_columns(&shape),
                    ));
                }
                Instance::Nested {
                    rtindex,
                    block: inner,
                } => {
                    let inner_sql = self.print(inner, variants, true)?;
                    let n_inner = inner.instances.len();
                    let outs: Vec<String> = (0..inner.targets.len())
                        .map(|i| format!("f.c{i}"))
                        .collect();
                    let rids: Vec<String> = (0..n_inner)
                        .map(|i| format!("f.__pgt_rid_{i}::text"))
                        .collect();
                    let ws: Vec<String> = (0..n_inner).map(|i| format!("f.__pgt_w_{i}")).collect();
                    let sql = format!(
                        "SELECT {}{}pgtrickle.pg_trickle_hash_multi(ARRAY[{}]::text[]) AS __pgt_rid, ({})::bigint AS __pgt_w FROM ({inner_sql}) f",
                        outs.join(", "),
                        if outs.is_empty() { "" } else { ", " },
                        rids.join(", "),
                        if ws.is_empty() { "1".to_string() } else { ws.join(" * ") },
                    );
                    let mut names: Vec<String> =
                        (0..inner.targets.len()).map(|i| format!("c{i}")).collect();
                    names.push("__pgt_rid".into());
                    names.push("__pgt_w".into());
                    replacements.push((*rtindex, sql, names));
                }
            }
        }
        unsafe { print_with_replacements(block, &replacements, keep_where) }
    }
}

fn c_string(s: &str) -> *mut std::ffi::c_char {
    let c = CString::new(s).expect("identifier without NUL");
    unsafe { pg_sys::pstrdup(c.as_ptr()) }
}

unsafe fn print_with_replacements(
    block: &Block,
    replacements: &[(i32, String, Vec<String>)],
    keep_where: bool,
) -> PgtResult<String> {
    let query = pg_sys::copyObjectImpl(block.query.cast()) as *mut pg_sys::Query;
    if !keep_where {
        (*(*query).jointree).quals = std::ptr::null_mut();
    }
    let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg((*query).rtable);
    let mut extra_targets: Vec<(i32, i16)> = Vec::new();
    for (rtindex, sql, names) in replacements {
        let sub = parse_select(sql)?;
        let rte = rtable
            .get_ptr(*rtindex as usize - 1)
            .expect("range table entry");
        (*rte).rtekind = pg_sys::RTEKind::RTE_SUBQUERY;
        (*rte).subquery = sub;
        (*rte).relid = Oid::INVALID;
        (*rte).relkind = 0;
        (*rte).rellockmode = 0;
        (*rte).inh = false;
        (*rte).tablesample = std::ptr::null_mut();
        #[cfg(not(feature = "pg15"))]
        {
            (*rte).perminfoindex = 0;
        }
        let mut colnames = PgList::<pg_sys::Node>::new();
        for name in names {
            colnames.push(pg_sys::makeString(c_string(name)).cast());
        }
        (*(*rte).eref).colnames = colnames.into_pg();
        // A user alias with column names (FROM t AS x(a, b)) would now be too short.
        if !(*rte).alias.is_null() {
            (*(*rte).alias).colnames = std::ptr::null_mut();
        }
        extra_targets.push((*rtindex, names.len() as i16 - 1));
    }
    let mut tlist = PgList::<pg_sys::TargetEntry>::new();
    let mut resno: i16 = 1;
    for (i, expr) in block.targets.iter().enumerate() {
        let copy = pg_sys::copyObjectImpl((*expr).cast()) as *mut pg_sys::Expr;
        tlist.push(pg_sys::makeTargetEntry(
            copy,
            resno,
            c_string(&format!("c{i}")),
            false,
        ));
        resno += 1;
    }
    for (k, (rtindex, rid_attno)) in extra_targets.iter().enumerate() {
        for (attno, name) in [
            (*rid_attno, format!("__pgt_rid_{k}")),
            (*rid_attno + 1, format!("__pgt_w_{k}")),
        ] {
            let var = pg_sys::makeVar(*rtindex, attno, pg_sys::INT8OID, -1, Oid::INVALID, 0);
            tlist.push(pg_sys::makeTargetEntry(
                var.cast(),
                resno,
                c_string(&name),
                false,
            ));
            resno += 1;
        }
    }
    (*query).targetList = tlist.into_pg();
    (*query).groupClause = std::ptr::null_mut();
    (*query).havingQual = std::ptr::null_mut();
    (*query).hasAggs = false;
    (*query).distinctClause = std::ptr::null_mut();
    (*query).sortClause = std::ptr::null_mut();
    #[cfg(feature = "pg18")]
    {
        (*query).hasGroupRTE = false;
    }
    let text = pg_sys::pg_get_querydef(query, false);
    Ok(CStr::from_ptr(text).to_string_lossy().into_owned())
}
