//! Pairing: an update's old and new images joined once.
//!
//! A buffer holds an updated row as one `U` row with its old and new values.
//! For a grouped core (sums and counts) whose one changed table is such a
//! buffer, an update that keeps every column the block joins, filters and
//! groups on (its *structural* columns) produces the same joined rows for
//! both images, differing only in the aggregate arguments; so the window
//! is read as one row per such update, joined once, and the core carries
//! the old arguments beside the new ones (`flat`'s `paired_core`). Other
//! changes are read as in the plain delta variant.

use super::analyze::{Analysis, Block, Instance, Relation};
use super::flat::{filtered_union, identity_of, select_list, TableShape, Variant};
use super::identity::read_attnos;
use super::value_form::binary_output_function;
use pgrx::pg_sys::{self, Oid};
use pgrx::PgList;
use pgtrickle_core::buffer::{old_column, value_column};
use pgtrickle_core::quote::ident;

/// The change window of a table for a paired core: like the delta variant,
/// but an update that keeps every `structural` column is one row, its new
/// values in the usual columns at +1 and its old ones in `__pgt_o_<attno>`
/// columns at weight `__pgt_wo` = -1. Other rows have `__pgt_wo` = 0 (and
/// old values only if they are updates that moved, which then weigh
/// nothing); such updates come as a row per image, as in the delta variant.
///
/// With `moved_updates` false, no `U` row in the window changed a
/// structural column (the capture splits such updates into a `D` and an
/// `I` row; see `moved_updates_split`), and the second read of the window,
/// for the old images of those that did, is left out.
pub(super) fn variant_sql(
    shape: &TableShape,
    buffer: &str,
    window: &str,
    structural: &[Structural],
    moved_updates: bool,
) -> String {
    let new = |c: &str| format!("r.{}", ident(&value_column(c)));
    let old = |c: &str| format!("r.{}", ident(&old_column(c)));
    let same = if structural.is_empty() {
        "true".to_string()
    } else {
        structural
            .iter()
            .map(|s| match &s.unchanged {
                Unchanged::Equal => {
                    format!("{} IS NOT DISTINCT FROM {}", new(&s.name), old(&s.name))
                }
                // by binary form, so that equal yet distinguishable values
                // (1.0 and 1.00, -0 and 0) count as changed, whatever the
                // session's output settings (extra_float_digits)
                Unchanged::SameBinary(send) => format!(
                    "{send}({}) IS NOT DISTINCT FROM {send}({})",
                    new(&s.name),
                    old(&s.name)
                ),
                Unchanged::Unknown => "false".to_string(),
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let old_list: String = shape
        .attributes
        .iter()
        .enumerate()
        .map(|(i, a)| match a {
            Some(name) => format!("{} AS __pgt_o_{}", old(name), i + 1),
            None => format!("NULL::integer AS __pgt_o_{}", i + 1),
        })
        .collect::<Vec<_>>()
        .join(", ");
    // Without moved updates, every `U` row kept its structural columns.
    let kept_structure = if moved_updates {
        format!("r.action = 'U' AND {same}")
    } else {
        "r.action = 'U'".to_string()
    };
    let mut branches = vec![(
        format!(
            "{}, {} AS __pgt_rid, CASE WHEN r.action = 'D' THEN -1::bigint ELSE 1::bigint END AS __pgt_w, \
             {old_list}, CASE WHEN {kept_structure} THEN -1::bigint ELSE 0::bigint END AS __pgt_wo",
            select_list(shape, new),
            identity_of(shape, new),
        ),
        format!("r.action <> 'T' AND {window}"),
    )];
    if moved_updates {
        branches.push((
            format!(
                "{}, {} AS __pgt_rid, -1::bigint AS __pgt_w, {old_list}, 0::bigint AS __pgt_wo",
                select_list(shape, old),
                identity_of(shape, old),
            ),
            format!("r.action = 'U' AND NOT ({same}) AND {window}"),
        ));
    }
    filtered_union(buffer, &branches)
}

/// Whether the window can hold a `U` row that changed a `structural`
/// column: unless the capture splits updates of all of them (`split_on`,
/// source attnums; see `Variant::Delta`), or a column's change cannot be
/// told from its bytes (`Unchanged::Unknown` counts every update as one).
pub(super) fn moved_updates(structural: &[Structural], split_on: Option<&[i16]>) -> bool {
    let Some(split_on) = split_on else {
        return true;
    };
    structural
        .iter()
        .any(|s| matches!(s.unchanged, Unchanged::Unknown) || !split_on.contains(&s.attno))
}

/// A column a paired core joins, filters or groups on.
pub(super) struct Structural {
    name: String,
    attno: i16,
    unchanged: Unchanged,
}

/// How to tell that an update kept a column's value.
enum Unchanged {
    /// Equal values of its type are identical (its default btree operator
    /// class says so, as btree deduplication relies on).
    Equal,
    /// Its binary output function (qualified name) gives the same bytes.
    SameBinary(String),
    /// Neither: every update counts as changing it.
    Unknown,
}

impl Unchanged {
    unsafe fn for_type(typid: Oid, collation: Oid) -> Unchanged {
        if equality_is_identity(typid, collation) {
            return Unchanged::Equal;
        }
        match binary_output_function(typid) {
            Some(send) => Unchanged::SameBinary(send),
            None => Unchanged::Unknown,
        }
    }
}

/// Whether equality of `typid` under `collation` implies identical values:
/// the "equalimage" support function of its default btree operator class.
unsafe fn equality_is_identity(typid: Oid, collation: Oid) -> bool {
    const BTEQUALIMAGE_PROC: i16 = 4; // nbtree.h
    let opclass = pg_sys::GetDefaultOpClass(typid, pg_sys::BTREE_AM_OID);
    if opclass == Oid::INVALID {
        return false;
    }
    let family = pg_sys::get_opclass_family(opclass);
    let input = pg_sys::get_opclass_input_type(opclass);
    let proc = pg_sys::get_opfamily_proc(family, input, input, BTEQUALIMAGE_PROC);
    if proc == Oid::INVALID {
        return false;
    }
    pg_sys::OidFunctionCall1Coll(proc, collation, pg_sys::Datum::from(input)).value() != 0
}

/// Which table of a core is paired, and how.
pub(super) struct Pairing {
    /// Index among the block's tables.
    pub relation: usize,
    pub rtindex: i32,
    /// Core outputs from this index on are aggregate arguments.
    pub group_outputs: usize,
}

/// The structural columns of table `rel` in `block`, by name, with how to
/// tell whether an update changed them.
pub(super) fn structural(block: &Block, rel: &Relation, group_outputs: usize) -> Vec<Structural> {
    let attnos = unsafe { structural_columns(block, rel.rtindex, group_outputs) };
    // SAFETY: read under the lock the refresh holds on the source.
    let table = unsafe {
        pgrx::PgRelation::with_lock(rel.relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE)
    };
    let desc = table.tuple_desc();
    attnos
        .into_iter()
        .filter_map(|attno| {
            let att = desc.get(attno - 1).filter(|a| !a.is_dropped())?;
            Some(Structural {
                name: att.name().to_string(),
                attno: attno as i16,
                unchanged: unsafe { Unchanged::for_type(att.atttypid, att.attcollation) },
            })
        })
        .collect()
}

/// The columns of `source` (attnums) whose change breaks the pairing of an
/// update in some core of `analysis` (`group_outputs`: see `Pairing`):
/// the structural columns of `source` in each block where it can be the
/// paired table. The capture splits updates that change one of them.
pub fn split_columns(analysis: &Analysis, group_outputs: usize, source: Oid) -> Vec<i16> {
    let Ok((_, blocks)) = &analysis.differential else {
        return Vec::new();
    };
    let mut columns = std::collections::BTreeSet::new();
    for block in blocks {
        let relations = block.relations();
        for (i, rel) in relations.iter().enumerate() {
            if rel.relid != source {
                continue;
            }
            let mut variants = vec![Variant::Full; relations.len()];
            variants[i] = Variant::Delta {
                buffer: String::new(),
                window: String::new(),
                holds_old_values: true,
                split_on: None,
            };
            if unsafe { pairing(block, &variants, group_outputs) }.is_some() {
                let read = unsafe { structural_columns(block, rel.rtindex, group_outputs) };
                columns.extend(read.into_iter().map(|a| a as i16));
            }
        }
    }
    columns.into_iter().collect()
}

/// The pairing of a core, if it can have one: a block of tables only,
/// joined by inner joins, without sublinks, whose one changed table holds
/// old values and whose columns are read as plain Vars (no whole-row or
/// system columns, no join alias Vars standing for them).
pub(super) unsafe fn pairing(
    block: &Block,
    variants: &[Variant],
    group_outputs: usize,
) -> Option<Pairing> {
    let query = block.query;
    if (*query).hasSubLinks || block.instances.len() != variants.len() {
        return None;
    }
    let mut changed = variants
        .iter()
        .enumerate()
        .filter(|(_, v)| matches!(v, Variant::Delta { .. }));
    let (relation, variant) = changed.next()?;
    if changed.next().is_some()
        || !matches!(
            variant,
            Variant::Delta {
                holds_old_values: true,
                ..
            }
        )
    {
        return None;
    }
    let Instance::Relation(rel) = &block.instances[relation] else {
        return None;
    };
    if block
        .instances
        .iter()
        .any(|i| !matches!(i, Instance::Relation(_)))
    {
        return None;
    }
    let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg((*query).rtable);
    let mut ok = inner_joins_only((*query).jointree.cast());
    for node in read_nodes(block, block.targets.len()) {
        let vars = PgList::<pg_sys::Var>::from_pg(pg_sys::pull_var_clause(node, 0));
        for var in vars.iter_ptr() {
            let rte = rtable.get_ptr((*var).varno as usize - 1);
            let plain_table =
                rte.is_some_and(|rte| (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION);
            if (*var).varlevelsup != 0
                || !plain_table
                || ((*var).varno == rel.rtindex && (*var).varattno <= 0)
            {
                ok = false;
            }
        }
    }
    ok.then_some(Pairing {
        relation,
        rtindex: rel.rtindex,
        group_outputs,
    })
}

/// Whether every join in a join tree is an inner join.
unsafe fn inner_joins_only(node: *mut pg_sys::Node) -> bool {
    if node.is_null() {
        return true;
    }
    match (*node).type_ {
        pg_sys::NodeTag::T_FromExpr => {
            PgList::<pg_sys::Node>::from_pg((*(node as *mut pg_sys::FromExpr)).fromlist)
                .iter_ptr()
                .all(|n| inner_joins_only(n))
        }
        pg_sys::NodeTag::T_JoinExpr => {
            let join = node as *mut pg_sys::JoinExpr;
            (*join).jointype == pg_sys::JoinType::JOIN_INNER
                && inner_joins_only((*join).larg)
                && inner_joins_only((*join).rarg)
        }
        _ => true,
    }
}

/// The nodes a block reads: its join tree (join conditions and WHERE) and
/// its first `outputs` targets.
unsafe fn read_nodes(block: &Block, outputs: usize) -> Vec<*mut pg_sys::Node> {
    let mut nodes = vec![(*block.query).jointree as *mut pg_sys::Node];
    nodes.extend(block.targets.iter().take(outputs).copied());
    nodes
}

/// Attribute numbers of table `rtindex` that the block joins, filters or
/// groups on: those its join tree or its first `group_outputs` targets read.
unsafe fn structural_columns(block: &Block, rtindex: i32, group_outputs: usize) -> Vec<usize> {
    let (_, read) = read_attnos(&read_nodes(block, group_outputs), rtindex);
    read.into_iter().map(|a| a as usize).collect()
}
