//! The completeness check of upgrades: an inventory of every object that
//! belongs to the extension in a database (functions with their arguments,
//! defaults, results and attributes; tables, columns with types and
//! defaults; indexes; constraints; views with their definitions; sequences;
//! event triggers; schemas; privileges; tables dumped by pg_dump), and the
//! difference between two inventories.

use postgres::Client;
use std::collections::BTreeSet;

const INVENTORY: &str = r#"
WITH ext AS (SELECT oid, extconfig FROM pg_extension WHERE extname = 'pg_trickle'),
members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
rels AS (
    SELECT c.* FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid)
SELECT 'function ' || p.oid::regprocedure::text || ' (' || pg_get_function_arguments(p.oid) || ') returns '
       || pg_get_function_result(p.oid) || ' volatility=' || p.provolatile::text || ' parallel=' || p.proparallel::text
       || CASE WHEN p.proisstrict THEN ' strict' ELSE '' END
       || CASE WHEN p.prosecdef THEN ' security definer' ELSE '' END
       || coalesce(' config=' || p.proconfig::text, '') || ' acl=' || coalesce(p.proacl::text, 'default')
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
UNION ALL
SELECT 'relation ' || c.relkind::text || ' ' || c.oid::regclass::text || ' acl=' || coalesce(c.relacl::text, 'default')
  FROM rels c
UNION ALL
SELECT 'column ' || c.oid::regclass::text || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
  FROM rels c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM rels c JOIN pg_index i ON i.indrelid = c.oid
UNION ALL
SELECT 'constraint ' || con.conrelid::regclass::text || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid)
  FROM rels c JOIN pg_constraint con ON con.conrelid = c.oid
UNION ALL
SELECT 'view ' || c.oid::regclass::text || ' ' || pg_get_viewdef(c.oid) || ' options=' || coalesce(c.reloptions::text, '')
  FROM rels c WHERE c.relkind = 'v'
UNION ALL
SELECT 'event trigger ' || e.evtname || ' on ' || e.evtevent || ' executes ' || e.evtfoid::regproc::text
       || coalesce(' when ' || e.evttags::text, '')
  FROM members m JOIN pg_event_trigger e ON m.classid = 'pg_event_trigger'::regclass AND e.oid = m.objid
UNION ALL
SELECT 'schema ' || n.nspname || ' acl=' || coalesce(n.nspacl::text, 'default')
  FROM members m JOIN pg_namespace n ON m.classid = 'pg_namespace'::regclass AND n.oid = m.objid
UNION ALL
SELECT 'type ' || t.oid::regtype::text
  FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
UNION ALL
SELECT 'dumped by pg_dump ' || cfg::regclass::text FROM ext, unnest(ext.extconfig) AS cfg
"#;

/// Every object of the extension installed in the database `client` is
/// connected to, one line each.
pub fn extension_inventory(client: &mut Client) -> BTreeSet<String> {
    client
        .query(INVENTORY, &[])
        .expect("inventory query")
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect()
}

/// What differs between the inventory of a fresh install (`expected`) and
/// of an upgraded one (`actual`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InventoryDiff {
    /// In a fresh install, missing after the upgrade.
    pub missing: Vec<String>,
    /// After the upgrade, not in a fresh install.
    pub unexpected: Vec<String>,
}

impl InventoryDiff {
    pub fn between(expected: &BTreeSet<String>, actual: &BTreeSet<String>) -> InventoryDiff {
        InventoryDiff {
            missing: expected.difference(actual).cloned().collect(),
            unexpected: actual.difference(expected).cloned().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }

    /// A report naming every object, for assertion messages and CI logs.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for m in &self.missing {
            out.push_str(&format!("missing after upgrade: {m}\n"));
        }
        for u in &self.unexpected {
            out.push_str(&format!("not in a fresh install: {u}\n"));
        }
        out
    }
}
