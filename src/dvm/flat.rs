//! Printing a block's select-project-join core with each table replaced by
//! a *variant*: its full contents or its change window.
//!
//! The block's query tree is copied; every table's range-table entry becomes
//! a subquery (parsed and analysed from generated SQL) that outputs the
//! table's columns at their attribute numbers, followed by the row's
//! identity and weight, so the query's own Vars still point at the right
//! columns. The target list is replaced by the core outputs, and the whole
//! tree is printed back to SQL with PostgreSQL's `pg_get_querydef`.

use super::analyze::{parse_generated_select, Analysis, Block, Instance, Relation};
use super::identity::{identity_columns, IdentityColumns};
use super::paired::{self, Pairing};
use super::value_form::identity_form;
use crate::error::PgtResult;
use crate::refresh::frontier::WINDOW_PARAM_TYPES;
use pgrx::pg_sys::NodeTag;
use pgrx::pg_sys::{self, Oid};
use pgrx::{PgBox, PgList};
use pgtrickle_core::buffer::{old_column, value_column};
use pgtrickle_core::dvm::plan::ValueForm;
use pgtrickle_core::quote::{ident, qualified};
use std::collections::HashMap;
use std::ffi::{CStr, CString};

/// Per instance of `block` (a table, or a nested block), whether the core
/// with `variants` (one per table, in `block.relations()` order) reads it in
/// full, so that its rows all weigh 1 (`Core::full`).
pub fn full_instances(block: &Block, variants: &[Variant]) -> Vec<bool> {
    let mut next = 0;
    block
        .instances
        .iter()
        .map(|instance| {
            let tables = match instance {
                Instance::Relation(_) => 1,
                Instance::Nested { block, .. } => block.relations().len(),
            };
            let full = variants[next..next + tables]
                .iter()
                .all(|v| matches!(v, Variant::Full));
            next += tables;
            full
        })
        .collect()
}

/// What a table contributes to a core.
#[derive(Debug, Clone)]
pub enum Variant {
    /// The table's current contents, weight +1.
    Full,
    /// Rows of the change buffer matching `window` (a predicate over the
    /// buffer's `xid` and `change_id`), weight +1 for inserts, -1 for
    /// deletes; an update (`U` row, only in a buffer that `holds_old_values`)
    /// is both: its old values at -1 and its new values at +1.
    Delta {
        buffer: String,
        window: String,
        holds_old_values: bool,
        /// Source columns (attnums) whose change makes every update in the
        /// window a `D` and an `I` row rather than a `U` row, when known.
        split_on: Option<Vec<i16>>,
    },
}

/// Attribute layout of a table: names by attnum, `None` for dropped ones.
#[derive(Debug, Clone)]
pub struct TableShape {
    pub qualified_name: String,
    pub attributes: Vec<Option<String>>,
    /// How each attribute enters a row's identity, by attnum like
    /// `attributes`; `None` for those it leaves out (see `identity`).
    identity_forms: Vec<Option<ValueForm>>,
    /// Type, typmod and collation of each attribute, by attnum (`None` for
    /// dropped ones), for rebuilding whole-row references.
    types: Vec<Option<(Oid, i32, Oid)>>,
}

impl TableShape {
    /// Name and attributes from the relation cache (no query to plan);
    /// `identity` the columns that enter a row's identity.
    pub fn load(relid: Oid, identity: &IdentityColumns) -> TableShape {
        // SAFETY: the relation is open (and locked) only while it is read
        // here; the refresh holds AccessShareLock on it until commit anyway,
        // from analysing the query that reads it.
        let rel = unsafe {
            pgrx::PgRelation::with_lock(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE)
        };
        let qualified_name = qualified(rel.namespace(), rel.name());
        let tuple_desc = rel.tuple_desc();
        let attributes = tuple_desc
            .iter()
            .map(|att| (!att.is_dropped()).then(|| att.name().to_string()))
            .collect();
        let identity_forms = tuple_desc
            .iter()
            .map(|att| {
                (!att.is_dropped() && identity.includes(att.attnum))
                    .then(|| identity_form(att.type_oid().value()))
            })
            .collect();
        let types = tuple_desc
            .iter()
            .map(|att| {
                (!att.is_dropped()).then_some((att.atttypid, att.atttypmod, att.attcollation))
            })
            .collect();
        TableShape {
            qualified_name,
            attributes,
            identity_forms,
            types,
        }
    }
}

/// Column names of a table variant, in output order.
pub(super) fn variant_columns(shape: &TableShape) -> Vec<String> {
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

/// The identity of a table row: a hash of the values `column` gives for
/// each of its identity columns.
pub(super) fn identity_of(shape: &TableShape, column: impl Fn(&str) -> String) -> String {
    let parts: Vec<String> = shape
        .attributes
        .iter()
        .zip(&shape.identity_forms)
        .filter_map(|(c, form)| Some(form.as_ref()?.text_of(&column(c.as_deref()?))))
        .collect();
    format!(
        "pgtrickle.pg_trickle_hash_multi(ARRAY[{}]::text[])",
        parts.join(", ")
    )
}

/// The table's columns in attribute order, each read by `column` (dropped
/// ones as typed NULLs).
pub(super) fn select_list(shape: &TableShape, column: impl Fn(&str) -> String) -> String {
    let cols: Vec<String> = shape
        .attributes
        .iter()
        .enumerate()
        .map(|(i, a)| match a {
            Some(name) => format!("{} AS {}", column(name), ident(name)),
            None => format!("NULL::integer AS __pgt_dropped_{}", i + 1),
        })
        .collect();
    cols.join(", ")
}

/// The identities of the rows a change window deleted: deleted rows, and
/// the old values of updated ones.
pub fn deleted_identities(
    shape: &TableShape,
    buffer: &str,
    window: &str,
    holds_old_values: bool,
) -> String {
    let deletes = format!(
        "SELECT {} FROM {buffer} r WHERE r.action = 'D' AND {window}",
        identity_of(shape, |c| format!("r.{}", ident(&value_column(c))))
    );
    if !holds_old_values {
        return deletes;
    }
    format!(
        "{deletes} UNION ALL SELECT {} FROM {buffer} r WHERE r.action = 'U' AND {window}",
        identity_of(shape, |c| format!("r.{}", ident(&old_column(c))))
    )
}

pub(super) fn variant_sql(rel: &Relation, shape: &TableShape, variant: &Variant) -> String {
    let source = |c: &str| format!("r.{}", ident(c));
    let new = |c: &str| format!("r.{}", ident(&value_column(c)));
    match variant {
        Variant::Full => format!(
            "SELECT {}, {} AS __pgt_rid, 1::bigint AS __pgt_w FROM {}{} r",
            select_list(shape, source),
            identity_of(shape, source),
            if rel.inh { "" } else { "ONLY " },
            shape.qualified_name
        ),
        Variant::Delta {
            buffer,
            window,
            holds_old_values: false,
            ..
        } => format!(
            "SELECT {}, {} AS __pgt_rid, CASE WHEN r.action = 'I' THEN 1::bigint ELSE -1::bigint END AS __pgt_w \
             FROM {buffer} r WHERE r.action IN ('I', 'D') AND {window}",
            select_list(shape, new),
            identity_of(shape, new),
        ),
        Variant::Delta {
            buffer,
            window,
            holds_old_values: true,
            ..
        } => {
            let old = |c: &str| format!("r.{}", ident(&old_column(c)));
            filtered_union(
                buffer,
                &[
                    (
                        format!(
                            "{}, {} AS __pgt_rid, CASE WHEN r.action = 'D' THEN -1::bigint ELSE 1::bigint END AS __pgt_w",
                            select_list(shape, new),
                            identity_of(shape, new),
                        ),
                        format!("r.action <> 'T' AND {window}"),
                    ),
                    (
                        format!(
                            "{}, {} AS __pgt_rid, -1::bigint AS __pgt_w",
                            select_list(shape, old),
                            identity_of(shape, old),
                        ),
                        format!("r.action = 'U' AND {window}"),
                    ),
                ],
            )
        }
    }
}

/// Reads of one change buffer as a UNION ALL of `(select list, filter)`
/// branches. The filters are not the branches' WHERE clauses but a last
/// column, `__pgt_k`, that the union is filtered on: PostgreSQL keeps a
/// UNION ALL branch with a WHERE clause as a subquery of its own, which
/// projects every row a second time, while branches without one become
/// plain scans of the buffer, the filter pushed down into each.
pub(super) fn filtered_union(buffer: &str, branches: &[(String, String)]) -> String {
    let leaves: Vec<String> = branches
        .iter()
        .map(|(list, filter)| format!("SELECT {list}, ({filter}) AS {KEEP} FROM {buffer} r"))
        .collect();
    format!(
        "SELECT x.* FROM ({}) x WHERE x.{KEEP}",
        leaves.join(" UNION ALL ")
    )
}

/// The last column of a `filtered_union`.
const KEEP: &str = "__pgt_k";

/// Output column names of a table variant.
fn variant_names(shape: &TableShape, variant: &Variant) -> Vec<String> {
    let mut names = variant_columns(shape);
    if let Variant::Delta {
        holds_old_values: true,
        ..
    } = variant
    {
        names.push(KEEP.into());
    }
    names
}

/// A FROM item of a block replaced by generated SQL.
struct Replacement {
    rtindex: i32,
    sql: String,
    /// Output column names: the table's attributes (or the nested block's
    /// outputs), then `__pgt_rid` and `__pgt_w`, then any extra ones.
    names: Vec<String>,
    /// The table it stands for (`None` for a nested block).
    table: Option<TableShape>,
}

/// Prints cores of one defining query; caches table shapes across the
/// cores of one refresh.
pub struct Printer {
    identities: HashMap<Oid, IdentityColumns>,
    shapes: HashMap<Oid, TableShape>,
}

impl Printer {
    pub fn new(analysis: &Analysis) -> Printer {
        Printer {
            identities: identity_columns(analysis.query),
            shapes: HashMap::new(),
        }
    }

    pub fn shape(&mut self, relid: Oid) -> &TableShape {
        let identity = self.identities.get(&relid).unwrap_or(&IdentityColumns::All);
        self.shapes
            .entry(relid)
            .or_insert_with(|| TableShape::load(relid, identity))
    }

    /// The core of `block` with `variants` (one per table of
    /// `block.relations()`, in that order).
    pub fn core(&mut self, block: &Block, variants: &[Variant]) -> PgtResult<String> {
        let mut next = variants.iter();
        let sql = self.print(block, &mut next, true)?;
        debug_assert!(next.next().is_none(), "one variant per table");
        Ok(sql)
    }

    /// A core of `block` whose one changed table (the only `Delta` of
    /// `variants`, holding old values) reads its change window paired (see
    /// `paired::variant_sql`), so that an update that keeps the columns the
    /// block joins, filters and groups on is joined once: the rows it
    /// produces differ only in the aggregate arguments (outputs from
    /// `group_outputs` on). After the usual outputs come the old values of
    /// those arguments (`o<k>` for output k) and their weight `__pgt_wo`.
    /// `None` when the block is not a plain inner join of tables whose
    /// columns it reads directly.
    pub fn paired_core(
        &mut self,
        block: &Block,
        variants: &[Variant],
        group_outputs: usize,
    ) -> PgtResult<Option<String>> {
        let Some(pairing) = (unsafe { paired::pairing(block, variants, group_outputs) }) else {
            return Ok(None);
        };
        let mut next = variants.iter();
        let sql = self.print_paired(block, &mut next, &pairing)?;
        Ok(Some(sql))
    }

    /// Like `core`, without the block's WHERE clause: the rows the join
    /// itself makes, for finding which rows a change touches (a WHERE such
    /// as `b.id IS NULL` would hide exactly the rows that changed).
    pub fn core_without_where(&mut self, block: &Block, variants: &[Variant]) -> PgtResult<String> {
        let mut next = variants.iter();
        self.print(block, &mut next, false)
    }

    fn print_paired(
        &mut self,
        block: &Block,
        variants: &mut std::slice::Iter<'_, Variant>,
        pairing: &Pairing,
    ) -> PgtResult<String> {
        let mut replacements = Vec::new();
        for (i, instance) in block.instances.iter().enumerate() {
            let Instance::Relation(rel) = instance else {
                unreachable!("pairing needs a block of tables")
            };
            let variant = variants.next().expect("a variant per table");
            let shape = self.shape(rel.relid).clone();
            if i != pairing.relation {
                replacements.push(Replacement {
                    rtindex: rel.rtindex,
                    sql: variant_sql(rel, &shape, variant),
                    names: variant_names(&shape, variant),
                    table: Some(shape),
                });
                continue;
            }
            let Variant::Delta {
                buffer,
                window,
                split_on,
                ..
            } = variant
            else {
                unreachable!("the paired table is the changed one")
            };
            let structural = paired::structural(block, rel, pairing.group_outputs);
            let moved_updates = paired::moved_updates(&structural, split_on.as_deref());
            let mut names = variant_columns(&shape);
            names.extend((1..=shape.attributes.len()).map(|a| format!("__pgt_o_{a}")));
            names.push("__pgt_wo".into());
            names.push(KEEP.into());
            replacements.push(Replacement {
                rtindex: rel.rtindex,
                sql: paired::variant_sql(&shape, buffer, window, &structural, moved_updates),
                names,
                table: Some(shape),
            });
        }
        let natts = self
            .shape(block.relations()[pairing.relation].relid)
            .attributes
            .len();
        unsafe { print_with_replacements(block, &replacements, true, Some((pairing, natts))) }
    }

    fn print(
        &mut self,
        block: &Block,
        variants: &mut std::slice::Iter<'_, Variant>,
        keep_where: bool,
    ) -> PgtResult<String> {
        let mut replacements = Vec::new();
        for instance in &block.instances {
            match instance {
                Instance::Relation(rel) => {
                    let variant = variants.next().expect("a variant per table");
                    let shape = self.shape(rel.relid).clone();
                    replacements.push(Replacement {
                        rtindex: rel.rtindex,
                        sql: variant_sql(rel, &shape, variant),
                        names: variant_names(&shape, variant),
                        table: Some(shape),
                    });
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
                    replacements.push(Replacement {
                        rtindex: *rtindex,
                        sql,
                        names,
                        table: None,
                    });
                }
            }
        }
        unsafe { print_with_replacements(block, &replacements, keep_where, None) }
    }
}

fn c_string(s: &str) -> *mut std::ffi::c_char {
    let c = CString::new(s).expect("identifier without NUL");
    unsafe { pg_sys::pstrdup(c.as_ptr()) }
}

/// What `whole_row_of_table` needs to know of a replaced table.
struct WholeRow<'a> {
    table: &'a TableShape,
    /// The replacement's `__pgt_rid`, NULL exactly where an outer join
    /// null-extends the table.
    rid_attno: i16,
}

/// Rewrites the whole-row references to the table at `rtindex` (`t`, or
/// `t.*` as a value), which would otherwise be rows of its replacement
/// with identity and weight, into `ROW(t.a, t.b, ...)::t` over its columns,
/// NULL where an outer join null-extends the table.
unsafe fn rebuild_whole_rows(
    query: *mut pg_sys::Query,
    rtindex: i32,
    table: &TableShape,
) -> *mut pg_sys::Query {
    let mut whole = WholeRow {
        table,
        rid_attno: table.attributes.len() as i16 + 1,
    };
    pg_sys::replace_rte_variables(
        query.cast(),
        rtindex,
        0,
        Some(whole_row_of_table),
        (&mut whole as *mut WholeRow).cast(),
        std::ptr::null_mut(),
    )
    .cast()
}

unsafe extern "C-unwind" fn whole_row_of_table(
    var: *mut pg_sys::Var,
    context: *mut pg_sys::replace_rte_variables_context,
) -> *mut pg_sys::Node {
    if (*var).varattno != 0 {
        return pg_sys::copyObjectImpl(var.cast()).cast();
    }
    let whole = &*((*context).callback_arg as *const WholeRow);
    let (varno, up) = ((*var).varno, (*var).varlevelsup);
    // One field per attribute, dropped ones as NULLs, as a RowExpr of a
    // named type requires.
    let mut fields = PgList::<pg_sys::Node>::new();
    for (i, column) in whole.table.types.iter().enumerate() {
        fields.push(match column {
            Some((typid, typmod, collation)) => {
                pg_sys::makeVar(varno, (i + 1) as i16, *typid, *typmod, *collation, up).cast()
            }
            None => pg_sys::makeNullConst(pg_sys::INT4OID, -1, Oid::INVALID).cast(),
        });
    }
    let mut row = PgBox::<pg_sys::RowExpr>::alloc_node(NodeTag::T_RowExpr);
    row.args = fields.into_pg();
    row.row_typeid = (*var).vartype;
    // printed with its cast: a bare ROW(...) would be an anonymous record
    row.row_format = pg_sys::CoercionForm::COERCE_EXPLICIT_CAST;
    row.location = (*var).location;
    let mut absent = PgBox::<pg_sys::NullTest>::alloc_node(NodeTag::T_NullTest);
    absent.arg = pg_sys::makeVar(
        varno,
        whole.rid_attno,
        pg_sys::INT8OID,
        -1,
        Oid::INVALID,
        up,
    )
    .cast();
    absent.nulltesttype = pg_sys::NullTestType::IS_NULL;
    absent.location = -1;
    let mut when = PgBox::<pg_sys::CaseWhen>::alloc_node(NodeTag::T_CaseWhen);
    when.expr = absent.into_pg().cast();
    when.result = pg_sys::makeNullConst((*var).vartype, -1, Oid::INVALID).cast();
    when.location = -1;
    let mut whens = PgList::<pg_sys::CaseWhen>::new();
    whens.push(when.into_pg());
    let mut case = PgBox::<pg_sys::CaseExpr>::alloc_node(NodeTag::T_CaseExpr);
    case.casetype = (*var).vartype;
    case.args = whens.into_pg();
    case.defresult = row.into_pg().cast();
    case.location = -1;
    case.into_pg().cast()
}

unsafe fn print_with_replacements(
    block: &Block,
    replacements: &[Replacement],
    keep_where: bool,
    paired: Option<(&Pairing, usize)>,
) -> PgtResult<String> {
    let query = pg_sys::copyObjectImpl(block.query.cast()) as *mut pg_sys::Query;
    if !keep_where {
        (*(*query).jointree).quals = std::ptr::null_mut();
    }
    let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg((*query).rtable);
    let mut extra_targets: Vec<(i32, i16)> = Vec::new();
    for Replacement {
        rtindex,
        sql,
        names,
        ..
    } in replacements
    {
        let sub = parse_generated_select(sql, &WINDOW_PARAM_TYPES)?;
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
        let rid_attno = names
            .iter()
            .position(|n| n == "__pgt_rid")
            .expect("a row identity")
            + 1;
        extra_targets.push((*rtindex, rid_attno as i16));
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
    if let Some((pairing, natts)) = paired {
        // The old values of the aggregate arguments: the same expressions
        // over the paired table's `__pgt_o_<attno>` columns, which follow
        // its attributes, row identity and weight.
        let map = pg_sys::make_attrmap(natts as i32);
        for a in 0..natts {
            *(*map).attnums.add(a) = (natts + 2 + a + 1) as pg_sys::AttrNumber;
        }
        for (i, expr) in block.targets.iter().enumerate().skip(pairing.group_outputs) {
            let copy = pg_sys::copyObjectImpl((*expr).cast()) as *mut pg_sys::Node;
            let mut whole_row = false;
            let mapped = pg_sys::map_variable_attnos(
                copy,
                pairing.rtindex,
                0,
                map,
                Oid::INVALID,
                &mut whole_row,
            );
            tlist.push(pg_sys::makeTargetEntry(
                mapped.cast(),
                resno,
                c_string(&format!("o{i}")),
                false,
            ));
            resno += 1;
        }
        let wo = pg_sys::makeVar(
            pairing.rtindex,
            (2 * natts + 3) as i16,
            pg_sys::INT8OID,
            -1,
            Oid::INVALID,
            0,
        );
        tlist.push(pg_sys::makeTargetEntry(
            wo.cast(),
            resno,
            c_string("__pgt_wo"),
            false,
        ));
    }
    (*query).targetList = tlist.into_pg();
    let mut query = query;
    for replacement in replacements {
        if let Some(table) = &replacement.table {
            query = rebuild_whole_rows(query, replacement.rtindex, table);
        }
    }
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
