//! The pure parts of `pg_trickle_dump`: ordering stream tables and writing
//! the replayable SQL script. No database access here (see `main.rs`), so
//! `cargo test -p pgtrickle-cli --lib` needs no server.

use pgtrickle_core::quote::{literal, qualified};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// One row of `pgtrickle.pgt_stream_tables`, as far as a dump needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamTableDef {
    pub pgt_id: i64,
    pub schema: String,
    pub name: String,
    /// Expanded, schema-qualified query (independent of `search_path`).
    pub defining_query: String,
    /// The query as the user gave it (NULL in old catalogs).
    pub original_query: Option<String>,
    /// `None`: manual refreshes only.
    pub schedule: Option<String>,
    /// `FULL`, `DIFFERENTIAL` or `AUTO`.
    pub refresh_mode: String,
    /// `INITIALIZING`, `ACTIVE`, `SUSPENDED` or `ERROR`.
    pub status: String,
    pub is_populated: bool,
    /// Role owning the storage table (informational).
    pub owner: Option<String>,
    /// `last_error` of the catalog (informational, for ERROR).
    pub last_error: Option<String>,
}

impl StreamTableDef {
    /// `"schema"."name"`.
    pub fn qualified_name(&self) -> String {
        qualified(&self.schema, &self.name)
    }

    /// The query the dump replays.
    pub fn query(&self, expanded: bool) -> &str {
        match (&self.original_query, expanded) {
            (Some(q), false) if !q.trim().is_empty() => q,
            _ => &self.defining_query,
        }
    }

    /// Whether replay should populate the stream table at creation: only
    /// when it was populated in the source, and not for ERROR (its refresh
    /// failed; populating could fail the same way and abort the replay).
    pub fn initialize(&self) -> bool {
        self.is_populated && self.status != "ERROR"
    }
}

/// Everything the header comment reports.
#[derive(Clone, Debug, Default)]
pub struct DumpHeader {
    pub tool_version: String,
    /// `"db" on host:port` or similar; never a password.
    pub source: String,
    pub dumped_at: String,
    /// `pgtrickle.version()`: the loaded library.
    pub pgtrickle_version: String,
    /// `pg_extension.extversion`: the installed SQL.
    pub extension_version: String,
    pub server_version: String,
}

/// Options of the generated script.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScriptOptions {
    /// Replay `defining_query` (expanded, schema-qualified) instead of the
    /// original query.
    pub expanded: bool,
}

/// Stream tables in dependency order (upstream first; ties by `pgt_id`).
/// `edges` are `(downstream pgt_id, upstream pgt_id)`. `Err` names the
/// stream tables on (or behind) a cycle, which a consistent catalog never has.
pub fn dependency_order(
    sts: &[StreamTableDef],
    edges: &[(i64, i64)],
) -> Result<Vec<StreamTableDef>, Vec<String>> {
    let ids: Vec<i64> = sts.iter().map(|s| s.pgt_id).collect();
    let by_id = |id: i64| sts.iter().find(|s| s.pgt_id == id).expect("known id");
    match pgtrickle_core::dag::topological_order(&ids, edges) {
        Ok(order) => Ok(order.into_iter().map(|id| by_id(id).clone()).collect()),
        Err(stuck) => Err(stuck
            .into_iter()
            .map(|id| by_id(id).qualified_name())
            .collect()),
    }
}

/// Text safe inside a `--` comment: one line, control characters blanked.
fn comment_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The `create_stream_table` call replaying `st`.
pub fn create_call(st: &StreamTableDef, opts: ScriptOptions) -> String {
    format!(
        "SELECT pgtrickle.create_stream_table(\n    name => {},\n    query => {},\n    schedule => {},\n    refresh_mode => {},\n    initialize => {}\n);\n",
        literal(&st.qualified_name()),
        literal(st.query(opts.expanded)),
        st.schedule
            .as_deref()
            .map(literal)
            .unwrap_or_else(|| "NULL".to_string()),
        literal(&st.refresh_mode),
        st.initialize(),
    )
}

/// The statements (with comments) restoring a non-ACTIVE status after all
/// stream tables exist; empty for ACTIVE and INITIALIZING.
pub fn status_restore(st: &StreamTableDef) -> String {
    let suspend = format!(
        "SELECT pgtrickle.alter_stream_table(name => {}, status => 'SUSPENDED');\n",
        literal(&st.qualified_name())
    );
    match st.status.as_str() {
        "SUSPENDED" => suspend,
        "ERROR" => {
            let mut s = String::new();
            let _ = writeln!(
                s,
                "-- {} was in status ERROR in the source database{}.",
                comment_text(&st.qualified_name()),
                st.last_error
                    .as_deref()
                    .map(|e| format!(" (last error: {})", comment_text(e)))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                s,
                "-- ERROR is a consequence of failed refreshes and cannot be recreated: it is created unpopulated and SUSPENDED instead."
            );
            let _ = writeln!(
                s,
                "-- Once the cause is fixed: SELECT pgtrickle.alter_stream_table(name => {}, status => 'ACTIVE');",
                comment_text(&literal(&st.qualified_name()))
            );
            s.push_str(&suspend);
            s
        }
        _ => String::new(),
    }
}

/// The whole script: header, `BEGIN`, schemas, creates in the given order
/// (call [`dependency_order`] first), status restores, `COMMIT`.
pub fn render_script(header: &DumpHeader, sts: &[StreamTableDef], opts: ScriptOptions) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "--");
    let _ = writeln!(out, "-- pg_trickle stream tables dump");
    let _ = writeln!(out, "--");
    let _ = writeln!(
        out,
        "-- Dumped by pg_trickle_dump {}",
        comment_text(&header.tool_version)
    );
    let _ = writeln!(out, "-- Source database: {}", comment_text(&header.source));
    let _ = writeln!(out, "-- Dumped at: {}", comment_text(&header.dumped_at));
    let _ = writeln!(
        out,
        "-- pg_trickle version: {} (extension SQL version {})",
        comment_text(&header.pgtrickle_version),
        comment_text(&header.extension_version)
    );
    let _ = writeln!(
        out,
        "-- PostgreSQL version: {}",
        comment_text(&header.server_version)
    );
    let _ = writeln!(out, "-- Stream tables: {}", sts.len());
    let _ = writeln!(
        out,
        "-- Queries: {}",
        if opts.expanded {
            "expanded (schema-qualified, independent of search_path)"
        } else {
            "as originally given (resolved with the replaying session's search_path)"
        }
    );
    let _ = writeln!(out, "--");
    let _ = writeln!(
        out,
        "-- Replay into a database that has CREATE EXTENSION pg_trickle and the source"
    );
    let _ = writeln!(
        out,
        "-- tables, e.g.: psql -v ON_ERROR_STOP=1 -d target -f this_file.sql"
    );
    let _ = writeln!(
        out,
        "-- Only definitions are carried: stream tables are (re)populated from the sources."
    );
    let _ = writeln!(out, "--");
    out.push('\n');
    out.push_str("BEGIN;\n\n");

    let schemas: BTreeSet<&str> = sts
        .iter()
        .map(|s| s.schema.as_str())
        .filter(|s| *s != "public")
        .collect();
    for schema in &schemas {
        let _ = writeln!(
            out,
            "CREATE SCHEMA IF NOT EXISTS {};",
            pgtrickle_core::quote::ident(schema)
        );
    }
    if !schemas.is_empty() {
        out.push('\n');
    }

    for st in sts {
        let _ = writeln!(
            out,
            "-- {} (source pgt_id {}, owner {}, status {}{})",
            comment_text(&st.qualified_name()),
            st.pgt_id,
            comment_text(st.owner.as_deref().unwrap_or("?")),
            comment_text(&st.status),
            if st.is_populated {
                ""
            } else {
                ", never populated"
            }
        );
        out.push_str(&create_call(st, opts));
        out.push('\n');
    }

    let restores: Vec<String> = sts
        .iter()
        .map(status_restore)
        .filter(|s| !s.is_empty())
        .collect();
    if !restores.is_empty() {
        out.push_str("-- Statuses other than ACTIVE\n");
        for r in restores {
            out.push_str(&r);
        }
        out.push('\n');
    }
    out.push_str("COMMIT;\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(id: i64, schema: &str, name: &str, query: &str) -> StreamTableDef {
        StreamTableDef {
            pgt_id: id,
            schema: schema.into(),
            name: name.into(),
            defining_query: format!("SELECT expanded FROM ({query}) q"),
            original_query: Some(query.into()),
            schedule: Some("1m".into()),
            refresh_mode: "DIFFERENTIAL".into(),
            status: "ACTIVE".into(),
            is_populated: true,
            owner: Some("alice".into()),
            last_error: None,
        }
    }

    fn header() -> DumpHeader {
        DumpHeader {
            tool_version: "0.1.0".into(),
            source: "\"db\" on localhost:5432".into(),
            dumped_at: "2025-01-01T00:00:00Z".into(),
            pgtrickle_version: "0.1.0".into(),
            extension_version: "0.1.0".into(),
            server_version: "18.6".into(),
        }
    }

    #[test]
    fn upstream_first_even_when_ids_say_otherwise() {
        // 1 reads 3, 3 reads 2; 4 is independent.
        let sts = vec![
            st(1, "public", "c", "SELECT * FROM b"),
            st(2, "public", "a", "SELECT 1"),
            st(3, "public", "b", "SELECT * FROM a"),
            st(4, "public", "d", "SELECT 2"),
        ];
        let order = dependency_order(&sts, &[(1, 3), (3, 2)]).unwrap();
        let ids: Vec<i64> = order.iter().map(|s| s.pgt_id).collect();
        assert_eq!(ids, vec![2, 3, 1, 4]);
    }

    #[test]
    fn cycles_are_named() {
        let sts = vec![st(1, "public", "x", "q"), st(2, "s", "y", "q")];
        assert_eq!(
            dependency_order(&sts, &[(1, 2), (2, 1)]),
            Err(vec![
                "\"public\".\"x\"".to_string(),
                "\"s\".\"y\"".to_string()
            ])
        );
    }

    #[test]
    fn names_and_queries_are_quoted() {
        let mut s = st(
            7,
            "My \"Schema\"",
            "Weird Name's",
            "SELECT 'it''s' AS a, E'back\\\\slash' AS b FROM \"T\"",
        );
        s.schedule = Some("*/5 * * * *".into());
        let sql = create_call(&s, ScriptOptions::default());
        assert!(
            sql.contains("name => '\"My \"\"Schema\"\"\".\"Weird Name''s\"'"),
            "{sql}"
        );
        // Backslash present: E'' form with doubled backslashes and quotes.
        assert!(
            sql.contains(
                "query => E'SELECT ''it''''s'' AS a, E''back\\\\\\\\slash'' AS b FROM \"T\"'"
            ),
            "{sql}"
        );
        assert!(sql.contains("schedule => '*/5 * * * *'"), "{sql}");
        assert!(sql.contains("refresh_mode => 'DIFFERENTIAL'"), "{sql}");
        assert!(sql.contains("initialize => true"), "{sql}");
    }

    #[test]
    fn manual_schedule_is_null_and_unpopulated_is_not_initialized() {
        let mut s = st(1, "public", "m", "SELECT 1");
        s.schedule = None;
        s.status = "INITIALIZING".into();
        s.is_populated = false;
        let sql = create_call(&s, ScriptOptions::default());
        assert!(sql.contains("schedule => NULL"), "{sql}");
        assert!(sql.contains("initialize => false"), "{sql}");
        assert_eq!(status_restore(&s), "");
    }

    #[test]
    fn original_query_by_default_expanded_on_request() {
        let s = st(1, "public", "m", "SELECT x FROM t");
        assert!(create_call(&s, ScriptOptions::default()).contains("query => 'SELECT x FROM t'"));
        assert!(create_call(&s, ScriptOptions { expanded: true })
            .contains("query => 'SELECT expanded FROM (SELECT x FROM t) q'"));
        let mut old = s.clone();
        old.original_query = None;
        assert!(create_call(&old, ScriptOptions::default()).contains("SELECT expanded"));
    }

    #[test]
    fn statuses_are_restored_after_all_creates() {
        let mut a = st(1, "public", "a", "SELECT 1");
        a.status = "SUSPENDED".into();
        let mut b = st(2, "sales", "b", "SELECT * FROM a");
        b.status = "ERROR".into();
        b.last_error = Some("division by zero\nCONTEXT: line 2".into());
        let c = st(3, "public", "c", "SELECT 3");
        let script = render_script(&header(), &[a, b.clone(), c], ScriptOptions::default());
        let last_create = script.rfind("create_stream_table(").unwrap();
        let first_alter = script.find("alter_stream_table(name").unwrap();
        assert!(last_create < first_alter, "{script}");
        assert!(script.contains(
            "SELECT pgtrickle.alter_stream_table(name => '\"public\".\"a\"', status => 'SUSPENDED');"
        ));
        assert!(script.contains(
            "SELECT pgtrickle.alter_stream_table(name => '\"sales\".\"b\"', status => 'SUSPENDED');"
        ));
        assert!(script.contains("cannot be recreated"), "{script}");
        // The multi-line error stays inside one comment line.
        assert!(
            script.contains("(last error: division by zero CONTEXT: line 2)"),
            "{script}"
        );
        // An ERROR stream table is not populated at replay.
        assert!(!b.initialize());
        assert!(create_call(&b, ScriptOptions::default()).contains("initialize => false"));
    }

    #[test]
    fn script_shape() {
        let s1 = st(1, "public", "a", "SELECT 1");
        let s2 = st(2, "sales", "b", "SELECT 2");
        let s3 = st(3, "Odd Schema", "c", "SELECT 3");
        let script = render_script(&header(), &[s1, s2, s3], ScriptOptions::default());
        assert!(script.starts_with("--\n-- pg_trickle stream tables dump\n"));
        assert!(script.contains("-- Dumped by pg_trickle_dump 0.1.0\n"));
        assert!(script.contains("-- pg_trickle version: 0.1.0 (extension SQL version 0.1.0)\n"));
        assert!(script.contains("\nBEGIN;\n"));
        assert!(script.ends_with("COMMIT;\n"));
        assert!(script.contains("CREATE SCHEMA IF NOT EXISTS \"Odd Schema\";\n"));
        assert!(script.contains("CREATE SCHEMA IF NOT EXISTS \"sales\";\n"));
        assert!(!script.contains("CREATE SCHEMA IF NOT EXISTS \"public\""));
        assert!(
            script.find("CREATE SCHEMA").unwrap() < script.find("create_stream_table").unwrap()
        );
        assert!(!script.contains("alter_stream_table(name"));
    }

    #[test]
    fn empty_dump_is_still_a_valid_script() {
        let script = render_script(&header(), &[], ScriptOptions::default());
        assert!(script.contains("-- Stream tables: 0\n"));
        assert!(script.contains("BEGIN;\n\nCOMMIT;\n"), "{script}");
    }
}
