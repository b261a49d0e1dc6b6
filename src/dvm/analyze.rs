//! Parse and analyse a defining query with PostgreSQL's own parser and
//! analyser, and decide how it can be maintained.

use super::identity::{expression_nodes, read_attnos};
use super::plan::{Agg, AggKind, Column, NonFinite, Shape, Unsupported};
use crate::error::{PgtError, PgtResult};
use pgrx::pg_sys::{self, NodeTag, Oid};
use pgrx::{is_a, PgList};
use std::collections::HashSet;
use std::ffi::{CStr, CString};

/// A table scanned by a block (one per occurrence in FROM).
#[derive(Debug, Clone)]
pub struct Relation {
    pub rtindex: i32,
    pub relid: Oid,
    /// Scan inheritance children / partitions (not `ONLY`).
    pub inh: bool,
}

/// A FROM item of a block: a table, or a subquery (a view, inlined) that is
/// itself a select-project-join block.
#[derive(Debug)]
pub enum Instance {
    Relation(Relation),
    Nested { rtindex: i32, block: Box<Block> },
}

/// A select-project-join core: the query tree (palloc'd, valid for the
/// current statement) and the expressions it outputs.
#[derive(Debug)]
pub struct Block {
    pub query: *mut pg_sys::Query,
    pub targets: Vec<*mut pg_sys::Node>,
    pub instances: Vec<Instance>,
}

impl Block {
    /// Every table under this block, depth first, in the order `flat`
    /// consumes variants.
    pub fn relations(&self) -> Vec<&Relation> {
        let mut out = Vec::new();
        for instance in &self.instances {
            match instance {
                Instance::Relation(r) => out.push(r),
                Instance::Nested { block, .. } => out.extend(block.relations()),
            }
        }
        out
    }
}

/// An analysed defining query.
pub struct Analysis {
    pub query: *mut pg_sys::Query,
    pub columns: Vec<Column>,
    /// How DIFFERENTIAL maintains it, or why it cannot.
    pub differential: Result<(Shape, Vec<Block>), Unsupported>,
}

impl Analysis {
    /// The tables a differential refresh reads changes of, sorted, each
    /// once; none when DIFFERENTIAL cannot maintain the query.
    pub fn base_tables(&self) -> Vec<Oid> {
        let mut oids: Vec<Oid> = match &self.differential {
            Ok((_, blocks)) => blocks
                .iter()
                .flat_map(|b| b.relations())
                .map(|r| r.relid)
                .collect(),
            Err(_) => Vec::new(),
        };
        oids.sort_by_key(|o| o.to_u32());
        oids.dedup();
        oids
    }

    /// An error naming what DIFFERENTIAL cannot maintain, if anything.
    pub fn require_differential(&self) -> PgtResult<()> {
        match &self.differential {
            Ok(_) => Ok(()),
            Err(unsupported) => Err(PgtError::new(
                crate::error::ErrorKind::FeatureNotSupported,
                format!("DIFFERENTIAL refresh does not support {}", unsupported.construct),
            )
            .with_hint(
                "Use refresh_mode => 'AUTO' (differential where possible, FULL otherwise) or 'FULL'.",
            )),
        }
    }
}

fn unsupported<T>(construct: impl Into<String>) -> Result<T, Unsupported> {
    Err(Unsupported {
        construct: construct.into(),
    })
}

fn cstr(ptr: *const std::ffi::c_char) -> String {
    if ptr.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(ptr).to_string_lossy().into_owned() }
    }
}

/// Parses and analyses (and rewrites: views become subqueries) one SELECT.
pub fn parse_select(sql: &str) -> PgtResult<*mut pg_sys::Query> {
    parse(sql, &[])
}

/// `parse_select` for generated SQL that may refer to parameters `$1`...
/// of `param_types`.
pub fn parse_generated_select(
    sql: &str,
    param_types: &[pg_sys::Oid],
) -> PgtResult<*mut pg_sys::Query> {
    parse(sql, param_types)
}

fn parse(sql: &str, param_types: &[pg_sys::Oid]) -> PgtResult<*mut pg_sys::Query> {
    let c_sql =
        CString::new(sql).map_err(|_| PgtError::invalid("the query contains a NUL byte"))?;
    unsafe {
        let raws = PgList::<pg_sys::RawStmt>::from_pg(pg_sys::pg_parse_query(c_sql.as_ptr()));
        if raws.len() != 1 {
            return Err(PgtError::invalid(format!(
                "the defining query must be exactly one SELECT statement, found {} statements",
                raws.len()
            )));
        }
        let raw = raws.get_ptr(0).expect("one statement");
        if !is_a((*raw).stmt, NodeTag::T_SelectStmt) {
            return Err(PgtError::invalid("the defining query must be a SELECT statement")
                .with_hint("Pass the query only, for example 'SELECT region, sum(amount) FROM orders GROUP BY region'."));
        }
        if !(*((*raw).stmt as *mut pg_sys::SelectStmt))
            .intoClause
            .is_null()
        {
            return Err(
                PgtError::invalid("SELECT INTO cannot define a stream table")
                    .with_hint("Remove the INTO clause; the stream table is the target."),
            );
        }
        let queries = PgList::<pg_sys::Query>::from_pg(pg_sys::pg_analyze_and_rewrite_fixedparams(
            raw,
            c_sql.as_ptr(),
            param_types.as_ptr(),
            param_types.len() as i32,
            std::ptr::null_mut(),
        ));
        match (queries.len(), queries.get_ptr(0)) {
            (1, Some(q)) if (*q).commandType == pg_sys::CmdType::CMD_SELECT => Ok(q),
            _ => Err(PgtError::invalid(
                "the defining query must rewrite to a single SELECT",
            )),
        }
    }
}

/// Analyses `sql`: its visible columns and how it can be maintained.
pub fn analyze(sql: &str) -> PgtResult<Analysis> {
    let query = parse_select(sql)?;
    unsafe {
        let columns = output_columns(query)?;
        let differential = plan_query(query).and_then(|plan| {
            require_timeless(query)?;
            Ok(plan)
        });
        Ok(Analysis {
            query,
            columns,
            differential,
        })
    }
}

/// DIFFERENTIAL evaluates the query's expressions for changed rows only,
/// when it refreshes them. The current time (`now()`, `CURRENT_DATE`, ...)
/// moves without any change to the rows, so rows that did not change would
/// keep what an earlier time gave them, where a fresh evaluation gives
/// another result. Row-level security policies of the sources are not
/// looked at: a source with them is refreshed in full anyway.
unsafe fn require_timeless(q: *mut pg_sys::Query) -> Result<(), Unsupported> {
    let mut found: Vec<String> = Vec::new();
    find_current_time(q.cast(), (&mut found as *mut Vec<String>).cast());
    found.sort();
    found.dedup();
    if found.is_empty() {
        return Ok(());
    }
    unsupported(format!(
        "the current time ({}): it changes without any change to the rows",
        found.join(", ")
    ))
}

unsafe extern "C-unwind" fn find_current_time(
    node: *mut pg_sys::Node,
    context: *mut std::ffi::c_void,
) -> bool {
    use pg_sys::SQLValueFunctionOp as Op;
    if node.is_null() {
        return false;
    }
    let found = &mut *(context as *mut Vec<String>);
    if is_a(node, NodeTag::T_Query) {
        // The range table without its security quals: subqueries (views
        // inlined) and the expressions of functions and VALUES in FROM.
        let q = node as *mut pg_sys::Query;
        for rte in PgList::<pg_sys::RangeTblEntry>::from_pg((*q).rtable).iter_ptr() {
            let parts: [*mut pg_sys::Node; 3] = [
                (*rte).subquery.cast(),
                (*rte).functions.cast(),
                (*rte).values_lists.cast(),
            ];
            for part in parts {
                if find_current_time(part, context) {
                    return true;
                }
            }
        }
        return pg_sys::query_tree_walker(
            q,
            Some(find_current_time),
            context,
            pg_sys::QTW_IGNORE_RANGE_TABLE as i32,
        );
    }
    if is_a(node, NodeTag::T_SQLValueFunction) {
        let name = match (*(node as *mut pg_sys::SQLValueFunction)).op {
            Op::SVFOP_CURRENT_DATE => Some("CURRENT_DATE"),
            Op::SVFOP_CURRENT_TIME | Op::SVFOP_CURRENT_TIME_N => Some("CURRENT_TIME"),
            Op::SVFOP_CURRENT_TIMESTAMP | Op::SVFOP_CURRENT_TIMESTAMP_N => {
                Some("CURRENT_TIMESTAMP")
            }
            Op::SVFOP_LOCALTIME | Op::SVFOP_LOCALTIME_N => Some("LOCALTIME"),
            Op::SVFOP_LOCALTIMESTAMP | Op::SVFOP_LOCALTIMESTAMP_N => Some("LOCALTIMESTAMP"),
            _ => None,
        };
        found.extend(name.map(String::from));
    }
    pg_sys::check_functions_in_node(node, Some(note_current_time), context);
    pg_sys::expression_tree_walker(node, Some(find_current_time), context)
}

/// Records `function` if it reads the current time: `now()` and its
/// synonyms, and `age()` of one argument (the time since then).
unsafe extern "C-unwind" fn note_current_time(
    function: pg_sys::Oid,
    context: *mut std::ffi::c_void,
) -> bool {
    if pg_sys::get_func_namespace(function) != pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE) {
        return false;
    }
    let name = cstr(pg_sys::get_func_name(function));
    let reads_time = matches!(
        name.as_str(),
        "now" | "transaction_timestamp" | "statement_timestamp"
    ) || (name == "age" && pg_sys::get_func_nargs(function) == 1);
    if reads_time {
        (*(context as *mut Vec<String>)).push(format!("{name}()"));
    }
    false
}

unsafe fn output_columns(q: *mut pg_sys::Query) -> PgtResult<Vec<Column>> {
    let mut columns: Vec<Column> = Vec::new();
    let tlist = PgList::<pg_sys::TargetEntry>::from_pg((*q).targetList);
    for (i, tle) in tlist.iter_ptr().enumerate() {
        if (*tle).resjunk {
            continue;
        }
        let name = cstr((*tle).resname);
        if name.is_empty() || name == "?column?" {
            return Err(PgtError::invalid(format!(
                "output column {} of the query has no name",
                i + 1
            ))
            .with_hint("Give every expression an alias, for example SELECT count(*) AS n."));
        }
        if name.starts_with("__pgt_") {
            return Err(
                PgtError::invalid(format!("output column name \"{name}\" is reserved"))
                    .with_detail("Names starting with __pgt_ are pg_trickle's internal columns.")
                    .with_hint("Rename the column with an alias."),
            );
        }
        if columns.iter().any(|c| c.name == name) {
            return Err(PgtError::invalid(format!(
                "the query returns more than one column named \"{name}\""
            ))
            .with_hint("Give the columns distinct aliases."));
        }
        let expr = (*tle).expr as *mut pg_sys::Node;
        let typid = pg_sys::exprType(expr);
        let type_sql = cstr(pg_sys::format_type_with_typemod(
            typid,
            pg_sys::exprTypmod(expr),
        ));
        columns.push(Column {
            name,
            type_sql,
            key_form: super::value_form::key_form(typid),
        });
    }
    if columns.is_empty() {
        return Err(PgtError::invalid("the defining query returns no columns"));
    }
    Ok(columns)
}

unsafe fn rt_fetch(q: *mut pg_sys::Query, rtindex: i32) -> *mut pg_sys::RangeTblEntry {
    PgList::<pg_sys::RangeTblEntry>::from_pg((*q).rtable)
        .get_ptr(rtindex as usize - 1)
        .expect("range table index in range")
}

unsafe fn common_checks(q: *mut pg_sys::Query) -> Result<(), Unsupported> {
    let q = &*q;
    if q.hasWindowFuncs {
        return unsupported("window functions");
    }
    if q.hasTargetSRFs {
        return unsupported("set-returning functions in the select list");
    }
    if q.hasSubLinks {
        return unsupported("subqueries in expressions (IN, EXISTS, scalar subqueries)");
    }
    if !q.cteList.is_null() || q.hasRecursive {
        return unsupported("WITH queries");
    }
    if q.hasDistinctOn {
        return unsupported("DISTINCT ON");
    }
    if !q.groupingSets.is_null() {
        return unsupported("GROUPING SETS, ROLLUP or CUBE");
    }
    if !q.limitCount.is_null() || !q.limitOffset.is_null() {
        return unsupported("LIMIT or OFFSET");
    }
    if q.hasForUpdate {
        return unsupported("FOR UPDATE / FOR SHARE");
    }
    Ok(())
}

unsafe fn plan_query(q: *mut pg_sys::Query) -> Result<(Shape, Vec<Block>), Unsupported> {
    common_checks(q)?;
    if !(*q).setOperations.is_null() {
        let mut leaves = Vec::new();
        collect_union_all(q, (*q).setOperations, &mut leaves)?;
        let blocks = leaves
            .into_iter()
            .map(|sub| spj_block(sub))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((
            Shape::Rows {
                branches: blocks.len(),
            },
            blocks,
        ));
    }
    if (*q).hasAggs || !(*q).groupClause.is_null() || !(*q).havingQual.is_null() {
        return grouped_block(q);
    }
    if !(*q).distinctClause.is_null() {
        let block = Block {
            query: q,
            targets: visible_exprs(q),
            instances: from_items(q, false)?,
        };
        let group_columns = (0..block.targets.len()).collect();
        return Ok((
            Shape::Groups {
                group_columns,
                aggs: vec![],
            },
            vec![block],
        ));
    }
    if !has_left_join(q) {
        return Ok((Shape::Rows { branches: 1 }, vec![spj_block(q)?]));
    }
    // With LEFT JOINs: rows are recomputed per row of the leftmost table,
    // which no outer join can null-extend.
    let block = Block {
        query: q,
        targets: visible_exprs(q),
        instances: from_items(q, true)?,
    };
    if block
        .instances
        .iter()
        .any(|i| matches!(i, Instance::Nested { .. }))
    {
        return unsupported("LEFT JOIN together with views or subqueries in FROM");
    }
    let anchor_rt = leftmost_rtindex((*q).jointree as *mut pg_sys::Node);
    let anchor = block
        .instances
        .iter()
        .position(|i| matches!(i, Instance::Relation(r) if Some(r.rtindex) == anchor_rt));
    match anchor {
        Some(anchor) => Ok((Shape::AnchoredRows { anchor }, vec![block])),
        None => unsupported("a LEFT JOIN whose leftmost item is not a table"),
    }
}

unsafe fn has_left_join(q: *mut pg_sys::Query) -> bool {
    PgList::<pg_sys::RangeTblEntry>::from_pg((*q).rtable)
        .iter_ptr()
        .any(|rte| {
            (*rte).rtekind == pg_sys::RTEKind::RTE_JOIN
                && (*rte).jointype == pg_sys::JoinType::JOIN_LEFT
        })
}

/// The range-table index of the leftmost table of a join tree.
unsafe fn leftmost_rtindex(node: *mut pg_sys::Node) -> Option<i32> {
    if node.is_null() {
        return None;
    }
    if is_a(node, NodeTag::T_RangeTblRef) {
        return Some((*(node as *mut pg_sys::RangeTblRef)).rtindex);
    }
    if is_a(node, NodeTag::T_JoinExpr) {
        return leftmost_rtindex((*(node as *mut pg_sys::JoinExpr)).larg);
    }
    if is_a(node, NodeTag::T_FromExpr) {
        let from = PgList::<pg_sys::Node>::from_pg((*(node as *mut pg_sys::FromExpr)).fromlist);
        return from.get_ptr(0).and_then(|n| leftmost_rtindex(n));
    }
    None
}

unsafe fn collect_union_all(
    q: *mut pg_sys::Query,
    node: *mut pg_sys::Node,
    leaves: &mut Vec<*mut pg_sys::Query>,
) -> Result<(), Unsupported> {
    if is_a(node, NodeTag::T_RangeTblRef) {
        let rte = rt_fetch(q, (*(node as *mut pg_sys::RangeTblRef)).rtindex);
        leaves.push((*rte).subquery);
        return Ok(());
    }
    let op = node as *mut pg_sys::SetOperationStmt;
    if (*op).op != pg_sys::SetOperation::SETOP_UNION || !(*op).all {
        let name = match (*op).op {
            pg_sys::SetOperation::SETOP_UNION => "UNION (without ALL)",
            pg_sys::SetOperation::SETOP_INTERSECT => "INTERSECT",
            _ => "EXCEPT",
        };
        return unsupported(name);
    }
    collect_union_all(q, (*op).larg, leaves)?;
    collect_union_all(q, (*op).rarg, leaves)
}

unsafe fn visible_exprs(q: *mut pg_sys::Query) -> Vec<*mut pg_sys::Node> {
    PgList::<pg_sys::TargetEntry>::from_pg((*q).targetList)
        .iter_ptr()
        .filter(|tle| !(**tle).resjunk)
        .map(|tle| (*tle).expr as *mut pg_sys::Node)
        .collect()
}

/// A select-project-join block without grouping.
unsafe fn spj_block(q: *mut pg_sys::Query) -> Result<Block, Unsupported> {
    common_checks(q)?;
    if !(*q).setOperations.is_null() {
        return unsupported("set operations nested inside a subquery or branch");
    }
    if (*q).hasAggs || !(*q).groupClause.is_null() || !(*q).havingQual.is_null() {
        return unsupported("aggregates inside a subquery, view or UNION ALL branch");
    }
    if !(*q).distinctClause.is_null() {
        return unsupported("DISTINCT inside a subquery, view or UNION ALL branch");
    }
    Ok(Block {
        query: q,
        targets: visible_exprs(q),
        instances: from_items(q, false)?,
    })
}

/// The FROM items of a block; LEFT JOINs only where `allow_left`.
unsafe fn from_items(
    q: *mut pg_sys::Query,
    allow_left: bool,
) -> Result<Vec<Instance>, Unsupported> {
    let mut instances = Vec::new();
    let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg((*q).rtable);
    for (i, rte) in rtable.iter_ptr().enumerate() {
        let rtindex = i as i32 + 1;
        match (*rte).rtekind {
            pg_sys::RTEKind::RTE_RELATION => {
                if !(*rte).inFromCl {
                    continue; // PG15 keeps a view's OLD/NEW placeholders here
                }
                if !(*rte).tablesample.is_null() {
                    return unsupported("TABLESAMPLE");
                }
                match (*rte).relkind as u8 {
                    b'r' | b'p' => instances.push(Instance::Relation(Relation {
                        rtindex,
                        relid: (*rte).relid,
                        inh: (*rte).inh,
                    })),
                    b'm' => {
                        return unsupported(
                            "materialized views as sources (make it a stream table)",
                        )
                    }
                    b'f' => return unsupported("foreign tables as sources"),
                    _ => return unsupported("this kind of relation as a source"),
                }
            }
            pg_sys::RTEKind::RTE_SUBQUERY => {
                if uses_whole_row(q, rtindex) {
                    return unsupported(
                        "a whole-row reference to a subquery or view (name its columns instead)",
                    );
                }
                let block = spj_block((*rte).subquery)?;
                instances.push(Instance::Nested {
                    rtindex,
                    block: Box::new(block),
                });
            }
            pg_sys::RTEKind::RTE_JOIN => {
                let left_ok = allow_left && (*rte).jointype == pg_sys::JoinType::JOIN_LEFT;
                if (*rte).jointype != pg_sys::JoinType::JOIN_INNER && !left_ok {
                    return unsupported(match (*rte).jointype {
                        pg_sys::JoinType::JOIN_LEFT => {
                            "LEFT JOIN under aggregates, DISTINCT or UNION ALL, or inside a view or subquery"
                        }
                        pg_sys::JoinType::JOIN_RIGHT => "RIGHT JOIN (write it as a LEFT JOIN)",
                        pg_sys::JoinType::JOIN_FULL => "FULL JOIN",
                        _ => "this kind of join",
                    });
                }
            }
            pg_sys::RTEKind::RTE_FUNCTION => return unsupported("functions in FROM"),
            pg_sys::RTEKind::RTE_VALUES => return unsupported("VALUES lists in FROM"),
            pg_sys::RTEKind::RTE_CTE => return unsupported("WITH queries"),
            pg_sys::RTEKind::RTE_TABLEFUNC => return unsupported("XMLTABLE / JSON_TABLE"),
            _ => {} // RTE_GROUP (PG18) and RTE_RESULT carry no rows of their own
        }
    }
    Ok(instances)
}

/// Whether `q` uses the row of its FROM item `rtindex` as a value (`s`,
/// `s.*` in an expression).
unsafe fn uses_whole_row(q: *mut pg_sys::Query, rtindex: i32) -> bool {
    read_attnos(&expression_nodes(q), rtindex).0
}

/// Resolves a PG18 grouping Var (pointing at the RTE_GROUP entry) to the
/// grouped expression; other nodes are returned unchanged.
#[allow(unused_variables)]
unsafe fn resolve_group_var(q: *mut pg_sys::Query, node: *mut pg_sys::Node) -> *mut pg_sys::Node {
    #[cfg(feature = "pg18")]
    if is_a(node, NodeTag::T_Var) {
        let var = node as *mut pg_sys::Var;
        if (*var).varlevelsup == 0 {
            let rte = rt_fetch(q, (*var).varno);
            if (*rte).rtekind == pg_sys::RTEKind::RTE_GROUP {
                return PgList::<pg_sys::Node>::from_pg((*rte).groupexprs)
                    .get_ptr((*var).varattno as usize - 1)
                    .expect("grouping expression");
            }
        }
    }
    node
}

/// Whether a join tree has an outer join (which may pad columns with NULLs).
unsafe fn has_outer_join(node: *mut pg_sys::Node) -> bool {
    if node.is_null() {
        return false;
    }
    if is_a(node, NodeTag::T_JoinExpr) {
        let join = node as *mut pg_sys::JoinExpr;
        return (*join).jointype != pg_sys::JoinType::JOIN_INNER
            || has_outer_join((*join).larg)
            || has_outer_join((*join).rarg);
    }
    if is_a(node, NodeTag::T_FromExpr) {
        return PgList::<pg_sys::Node>::from_pg((*(node as *mut pg_sys::FromExpr)).fromlist)
            .iter_ptr()
            .any(|item| has_outer_join(item));
    }
    false
}

/// Whether `expr` is a column of a table `q` reads that a validated NOT NULL
/// constraint covers.
unsafe fn not_null_column(q: *mut pg_sys::Query, expr: *mut pg_sys::Node) -> bool {
    if !is_a(expr, NodeTag::T_Var) {
        return false;
    }
    let var = expr as *mut pg_sys::Var;
    if (*var).varlevelsup != 0 || (*var).varattno <= 0 {
        return false;
    }
    let rte = rt_fetch(q, (*var).varno);
    if (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION {
        return false;
    }
    let rel = pgrx::PgRelation::open((*rte).relid);
    // The children of an inheritance parent may drop the constraint
    // (partitions cannot).
    let form = rel.rd_rel;
    if (*rte).inh
        && (*form).relhassubclass
        && (*form).relkind != pg_sys::RELKIND_PARTITIONED_TABLE as std::ffi::c_char
    {
        return false;
    }
    let index = (*var).varattno as usize - 1;
    let desc = rel.tuple_desc();
    let declared = desc
        .get(index)
        .is_some_and(|att| att.attnotnull && !att.attisdropped);
    // PostgreSQL 18 has NOT NULL constraints that are NOT VALID: existing
    // rows may still hold NULLs.
    #[cfg(feature = "pg18")]
    let declared = declared && {
        let raw = rel.rd_att;
        index < (*raw).natts as usize
            && (*(*raw).compact_attrs.as_ptr().add(index)).attnullability
                == pg_sys::ATTNULLABLE_VALID as std::ffi::c_char
    };
    declared
}

/// A grouped block: aggregates kept as per-group state when they are all
/// among count/sum/avg/min/max and there is no HAVING; otherwise the groups
/// a change touches are recomputed. Either way every GROUP BY expression
/// must be an output column, to find a group's row.
unsafe fn grouped_block(q: *mut pg_sys::Query) -> Result<(Shape, Vec<Block>), Unsupported> {
    if !(*q).distinctClause.is_null() {
        return unsupported("DISTINCT together with GROUP BY or aggregates");
    }
    let instances = from_items(q, false)?;
    let group_refs: HashSet<u32> = PgList::<pg_sys::SortGroupClause>::from_pg((*q).groupClause)
        .iter_ptr()
        .map(|sgc| (*sgc).tleSortGroupRef)
        .collect();
    let mut visible_refs = HashSet::new();
    let mut group_columns = Vec::new();
    let mut group_exprs = Vec::new();
    let mut aggs: Vec<(AggKind, usize, Option<*mut pg_sys::Node>)> = Vec::new();
    let mut keeps_state = (*q).havingQual.is_null();
    let tlist = PgList::<pg_sys::TargetEntry>::from_pg((*q).targetList);
    let mut col = 0;
    for tle in tlist.iter_ptr() {
        if (*tle).resjunk {
            continue;
        }
        let expr = (*tle).expr as *mut pg_sys::Node;
        if (*tle).ressortgroupref != 0 && group_refs.contains(&(*tle).ressortgroupref) {
            visible_refs.insert((*tle).ressortgroupref);
            group_columns.push(col);
            group_exprs.push(resolve_group_var(q, expr));
        } else if is_a(expr, NodeTag::T_Aggref) {
            match aggregate(expr as *mut pg_sys::Aggref) {
                Ok((kind, arg)) => aggs.push((kind, col, arg)),
                Err(_) => keeps_state = false,
            }
        } else {
            keeps_state = false;
        }
        col += 1;
    }
    if visible_refs.len() != group_refs.len() {
        return unsupported("GROUP BY expressions that are not in the select list");
    }
    if !keeps_state {
        let block = Block {
            query: q,
            targets: group_exprs,
            instances,
        };
        return Ok((Shape::RecomputedGroups { group_columns }, vec![block]));
    }
    let mut targets = group_exprs;
    let mut plan_aggs = Vec::new();
    let outer_join = has_outer_join((*q).jointree as *mut pg_sys::Node);
    for (kind, column, arg) in aggs {
        let never_null = !outer_join && arg.is_some_and(|a| not_null_column(q, a));
        let non_finite = match (&kind, arg) {
            (AggKind::Sum | AggKind::Avg { .. }, Some(a)) => match pg_sys::exprType(a) {
                pg_sys::FLOAT4OID | pg_sys::FLOAT8OID | pg_sys::NUMERICOID => {
                    NonFinite::NanOrInfinity
                }
                pg_sys::INTERVALOID => NonFinite::Infinity,
                _ => NonFinite::None,
            },
            _ => NonFinite::None,
        };
        let arg_index = arg.map(|a| {
            targets.push(a);
            targets.len() - 1
        });
        plan_aggs.push(Agg {
            kind,
            column,
            arg: arg_index,
            never_null,
            non_finite,
        });
    }
    let block = Block {
        query: q,
        targets,
        instances,
    };
    Ok((
        Shape::Groups {
            group_columns,
            aggs: plan_aggs,
        },
        vec![block],
    ))
}

unsafe fn aggregate(
    agg: *mut pg_sys::Aggref,
) -> Result<(AggKind, Option<*mut pg_sys::Node>), Unsupported> {
    let name = cstr(pg_sys::get_func_name((*agg).aggfnoid));
    let builtin =
        pg_sys::get_func_namespace((*agg).aggfnoid) == Oid::from(pg_sys::PG_CATALOG_NAMESPACE);
    if !(*agg).aggdistinct.is_null() {
        return unsupported(format!("{name}(DISTINCT ...)"));
    }
    if !(*agg).aggfilter.is_null() {
        return unsupported(format!("FILTER on {name}()"));
    }
    if !(*agg).aggorder.is_null() {
        return unsupported(format!("ORDER BY inside {name}()"));
    }
    let args: Vec<*mut pg_sys::Node> = PgList::<pg_sys::TargetEntry>::from_pg((*agg).args)
        .iter_ptr()
        .map(|tle| (*tle).expr as *mut pg_sys::Node)
        .collect();
    let arg = args.first().copied();
    // A row value counts when it is not NULL itself, while the deltas'
    // IS NOT NULL (like MIN/MAX's) holds only when all its fields are not.
    if arg.is_some_and(|a| pg_sys::type_is_rowtype(pg_sys::exprType(a))) {
        return unsupported(format!("{name}() of a row value"));
    }
    let kind = match (builtin, name.as_str(), args.len()) {
        (true, "count", 0) if (*agg).aggstar => AggKind::CountStar,
        (true, "count", 1) => AggKind::Count,
        (true, "sum", 1) => AggKind::Sum,
        (true, "min", 1) => AggKind::Min,
        (true, "max", 1) => AggKind::Max,
        (true, "avg", 1) => {
            let ty = pg_sys::exprType(arg.expect("one argument"));
            let state_type = match ty {
                pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID | pg_sys::NUMERICOID => {
                    "numeric"
                }
                pg_sys::FLOAT4OID | pg_sys::FLOAT8OID => "double precision",
                pg_sys::INTERVALOID => "interval",
                _ => return unsupported("avg() over this type"),
            };
            AggKind::Avg {
                state_type: state_type.to_string(),
            }
        }
        _ => return unsupported(format!("the aggregate function {name}()")),
    };
    let arg = if kind == AggKind::CountStar {
        None
    } else {
        arg
    };
    Ok((kind, arg))
}

unsafe extern "C-unwind" fn record_function(func: Oid, context: *mut std::ffi::c_void) -> bool {
    let found = &mut *(context as *mut Vec<Oid>);
    if !found.contains(&func) {
        found.push(func);
    }
    false
}

unsafe extern "C-unwind" fn collect_functions(
    node: *mut pg_sys::Node,
    context: *mut std::ffi::c_void,
) -> bool {
    if node.is_null() {
        return false;
    }
    pg_sys::check_functions_in_node(node, Some(record_function), context);
    if is_a(node, NodeTag::T_Query) {
        return pg_sys::query_tree_walker(
            node as *mut pg_sys::Query,
            Some(collect_functions),
            context,
            0,
        );
    }
    pg_sys::expression_tree_walker(node, Some(collect_functions), context)
}

/// Every function the query calls, operators' functions included, in the
/// order first met.
pub fn functions_used(query: *mut pg_sys::Query) -> Vec<Oid> {
    let mut found: Vec<Oid> = Vec::new();
    unsafe {
        pg_sys::query_tree_walker(
            query,
            Some(collect_functions),
            (&mut found as *mut Vec<Oid>).cast(),
            0,
        );
    }
    found
}
