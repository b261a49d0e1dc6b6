//! Which columns of a source row its identity hashes: the columns the
//! stream table's query reads from that table, or all of them when it reads
//! the whole row (`t::text`).
//!
//! Rows that agree on those columns contribute the same to every output,
//! so sharing an identity only makes them copies of one row (stored with
//! its multiplicity). Columns the query does not read then cannot change
//! an identity: adding, dropping or retyping one leaves every stored row id
//! valid, and the stream table carries on without a full refresh.

use pgrx::pg_sys::{self, Oid};
use pgrx::PgList;
use std::collections::{BTreeSet, HashMap};

/// The columns of one table that enter its rows' identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityColumns {
    /// The query reads the whole row: every live column.
    All,
    /// These attribute numbers (every instance of the table in the query).
    Read(BTreeSet<i16>),
}

impl IdentityColumns {
    pub fn includes(&self, attnum: i16) -> bool {
        match self {
            IdentityColumns::All => true,
            IdentityColumns::Read(attnums) => attnums.contains(&attnum),
        }
    }

    fn add(&mut self, attnums: impl IntoIterator<Item = i16>) {
        if let IdentityColumns::Read(read) = self {
            read.extend(attnums);
        }
    }
}

/// The identity columns of every table `query` reads, at any depth (views
/// and subqueries inlined, UNION ALL branches).
pub fn identity_columns(query: *mut pg_sys::Query) -> HashMap<Oid, IdentityColumns> {
    let mut out = HashMap::new();
    unsafe { collect(query, &mut out) };
    out
}

/// Whether `query` reads the whole row of `table` (so that any change to
/// its columns changes what the stream table holds).
pub fn reads_whole_row(query: *mut pg_sys::Query, table: Oid) -> bool {
    identity_columns(query).get(&table) == Some(&IdentityColumns::All)
}

const WHOLE_ROW: i32 = -pg_sys::FirstLowInvalidHeapAttributeNumber;

unsafe fn collect(q: *mut pg_sys::Query, out: &mut HashMap<Oid, IdentityColumns>) {
    let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg((*q).rtable);
    let nodes = expression_nodes(q);
    // The whole row of a join stands for every column of its tables.
    let joined_whole_row = rtable.iter_ptr().enumerate().any(|(i, rte)| {
        (*rte).rtekind == pg_sys::RTEKind::RTE_JOIN && read_attnos(&nodes, i as i32 + 1).0
    });
    // Columns named through a join (USING, or a join's alias) stand for
    // the tables' own.
    let flat: Vec<*mut pg_sys::Node> = nodes
        .iter()
        .map(|&node| flatten_join_aliases(q, node))
        .collect();
    for (i, rte) in rtable.iter_ptr().enumerate() {
        match (*rte).rtekind {
            pg_sys::RTEKind::RTE_RELATION => {
                let (whole, read) = read_attnos(&flat, i as i32 + 1);
                let entry = out
                    .entry((*rte).relid)
                    .or_insert_with(|| IdentityColumns::Read(BTreeSet::new()));
                if whole || joined_whole_row {
                    *entry = IdentityColumns::All;
                } else {
                    entry.add(read);
                }
            }
            pg_sys::RTEKind::RTE_SUBQUERY if !(*rte).subquery.is_null() => {
                collect((*rte).subquery, out)
            }
            _ => {}
        }
    }
}

/// The expressions of one query level: its select list, join tree
/// (join conditions and WHERE), HAVING and, on PG18, grouped expressions
/// (kept in the RTE_GROUP entry).
pub(super) unsafe fn expression_nodes(q: *mut pg_sys::Query) -> Vec<*mut pg_sys::Node> {
    #[cfg_attr(not(feature = "pg18"), allow(unused_mut))]
    let mut nodes: Vec<*mut pg_sys::Node> = vec![
        (*q).targetList.cast(),
        (*q).jointree.cast(),
        (*q).havingQual,
    ];
    #[cfg(feature = "pg18")]
    for rte in PgList::<pg_sys::RangeTblEntry>::from_pg((*q).rtable).iter_ptr() {
        nodes.push((*rte).groupexprs.cast());
    }
    nodes
}

/// Whether `nodes` read the whole row of range-table entry `rtindex`, and
/// which of its columns they read (Vars of their own level only).
pub(super) unsafe fn read_attnos(nodes: &[*mut pg_sys::Node], rtindex: i32) -> (bool, Vec<i16>) {
    let mut set: *mut pg_sys::Bitmapset = std::ptr::null_mut();
    for &node in nodes {
        pg_sys::pull_varattnos(node, rtindex as _, &mut set);
    }
    let mut read = Vec::new();
    let mut member = -1;
    loop {
        member = pg_sys::bms_next_member(set, member);
        if member < 0 {
            break;
        }
        let attno = member + pg_sys::FirstLowInvalidHeapAttributeNumber;
        if attno > 0 {
            read.push(attno as i16);
        }
    }
    (pg_sys::bms_is_member(WHOLE_ROW, set), read)
}

unsafe fn flatten_join_aliases(
    q: *mut pg_sys::Query,
    node: *mut pg_sys::Node,
) -> *mut pg_sys::Node {
    if node.is_null() {
        return node;
    }
    #[cfg(feature = "pg15")]
    {
        pg_sys::flatten_join_alias_vars(q, node)
    }
    #[cfg(not(feature = "pg15"))]
    {
        pg_sys::flatten_join_alias_vars(std::ptr::null_mut(), q, node)
    }
}
