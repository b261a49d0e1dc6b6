//! The extension installs the catalog of seed 000 (with its fixes), its
//! settings and first functions, and leaves nothing behind when dropped.

use pgtrickle_e2e::{cluster_with_extension, db_error, Client, Cluster};
use std::collections::BTreeSet;

/// (table, column, type, not null, default contains) of every catalog column.
const CATALOG_COLUMNS: &[(&str, &str, &str, bool, Option<&str>)] = &[
    (
        "pgt_stream_tables",
        "pgt_id",
        "bigint",
        true,
        Some("nextval"),
    ),
    ("pgt_stream_tables", "pgt_relid", "oid", true, None),
    ("pgt_stream_tables", "pgt_name", "text", true, None),
    ("pgt_stream_tables", "pgt_schema", "text", true, None),
    ("pgt_stream_tables", "defining_query", "text", true, None),
    ("pgt_stream_tables", "original_query", "text", false, None),
    ("pgt_stream_tables", "schedule", "text", false, None),
    (
        "pgt_stream_tables",
        "refresh_mode",
        "text",
        true,
        Some("'DIFFERENTIAL'"),
    ),
    (
        "pgt_stream_tables",
        "status",
        "text",
        true,
        Some("'INITIALIZING'"),
    ),
    (
        "pgt_stream_tables",
        "is_populated",
        "boolean",
        true,
        Some("false"),
    ),
    (
        "pgt_stream_tables",
        "data_timestamp",
        "timestamp with time zone",
        false,
        None,
    ),
    ("pgt_stream_tables", "frontier", "jsonb", false, None),
    (
        "pgt_stream_tables",
        "last_refresh_at",
        "timestamp with time zone",
        false,
        None,
    ),
    (
        "pgt_stream_tables",
        "consecutive_errors",
        "integer",
        true,
        Some("0"),
    ),
    (
        "pgt_stream_tables",
        "needs_reinit",
        "boolean",
        true,
        Some("false"),
    ),
    (
        "pgt_stream_tables",
        "auto_threshold",
        "double precision",
        false,
        None,
    ),
    (
        "pgt_stream_tables",
        "last_full_ms",
        "double precision",
        false,
        None,
    ),
    ("pgt_stream_tables", "functions_used", "ARRAY", false, None),
    ("pgt_stream_tables", "last_error", "text", false, None),
    (
        "pgt_stream_tables",
        "created_at",
        "timestamp with time zone",
        true,
        Some("now()"),
    ),
    (
        "pgt_stream_tables",
        "updated_at",
        "timestamp with time zone",
        true,
        Some("now()"),
    ),
    ("pgt_dependencies", "pgt_id", "bigint", true, None),
    ("pgt_dependencies", "source_relid", "oid", true, None),
    ("pgt_dependencies", "source_type", "text", true, None),
    ("pgt_dependencies", "columns_used", "ARRAY", false, None),
    ("pgt_dependencies", "column_snapshot", "jsonb", false, None),
    (
        "pgt_dependencies",
        "schema_fingerprint",
        "text",
        false,
        None,
    ),
    (
        "pgt_dependencies",
        "cdc_mode",
        "text",
        false,
        Some("'TRIGGER'"),
    ),
    ("pgt_dependencies", "slot_name", "text", false, None),
    (
        "pgt_dependencies",
        "decoder_confirmed_lsn",
        "pg_lsn",
        false,
        None,
    ),
    (
        "pgt_dependencies",
        "transition_started_at",
        "timestamp with time zone",
        false,
        None,
    ),
    (
        "pgt_refresh_history",
        "refresh_id",
        "bigint",
        true,
        Some("nextval"),
    ),
    ("pgt_refresh_history", "pgt_id", "bigint", true, None),
    (
        "pgt_refresh_history",
        "data_timestamp",
        "timestamp with time zone",
        true,
        None,
    ),
    (
        "pgt_refresh_history",
        "start_time",
        "timestamp with time zone",
        true,
        None,
    ),
    (
        "pgt_refresh_history",
        "end_time",
        "timestamp with time zone",
        false,
        None,
    ),
    ("pgt_refresh_history", "action", "text", true, None),
    (
        "pgt_refresh_history",
        "rows_inserted",
        "bigint",
        false,
        Some("0"),
    ),
    (
        "pgt_refresh_history",
        "rows_deleted",
        "bigint",
        false,
        Some("0"),
    ),
    ("pgt_refresh_history", "error_message", "text", false, None),
    ("pgt_refresh_history", "status", "text", true, None),
    ("pgt_refresh_history", "initiated_by", "text", false, None),
    (
        "pgt_refresh_history",
        "freshness_deadline",
        "timestamp with time zone",
        false,
        None,
    ),
    (
        "pgt_refresh_history",
        "requested_action",
        "text",
        false,
        None,
    ),
    ("pgt_refresh_history", "reason", "text", false, None),
    ("pgt_refresh_history", "delta_rows", "bigint", false, None),
    ("pgt_change_tracking", "source_relid", "oid", true, None),
    ("pgt_change_tracking", "slot_name", "text", true, None),
    (
        "pgt_change_tracking",
        "last_consumed_lsn",
        "pg_lsn",
        false,
        None,
    ),
    (
        "pgt_change_tracking",
        "tracked_by_pgt_ids",
        "ARRAY",
        false,
        None,
    ),
    ("pgt_schema_version", "version", "text", true, None),
    (
        "pgt_schema_version",
        "applied_at",
        "timestamp with time zone",
        true,
        Some("now()"),
    ),
    ("pgt_schema_version", "description", "text", false, None),
];

/// (name, default as shown by pg_settings) of every setting.
const SETTINGS: &[(&str, &str)] = &[
    ("pg_trickle.allow_direct_writes", "off"),
    ("pg_trickle.block_source_ddl", "off"),
    ("pg_trickle.cdc_mode", "trigger"),
    ("pg_trickle.change_buffer_schema", "pgtrickle_changes"),
    ("pg_trickle.cleanup_use_truncate", "on"),
    ("pg_trickle.ddl_messages", "on"),
    ("pg_trickle.differential_max_change_ratio", "0.15"),
    ("pg_trickle.enabled", "on"),
    ("pg_trickle.history_retention_days", "30"),
    ("pg_trickle.max_concurrent_refreshes", "4"),
    ("pg_trickle.max_consecutive_errors", "3"),
    ("pg_trickle.merge_planner_hints", "on"),
    ("pg_trickle.merge_strategy", "auto"),
    ("pg_trickle.merge_work_mem_mb", "64"),
    ("pg_trickle.min_schedule_seconds", "60"),
    ("pg_trickle.scheduler_interval_ms", "1000"),
    ("pg_trickle.use_prepared_statements", "on"),
    ("pg_trickle.user_triggers", "auto"),
    ("pg_trickle.wal_transition_timeout", "300"),
];

/// Names of everything a database holds outside the system schemas.
fn object_inventory(client: &mut Client) -> BTreeSet<String> {
    let sql = "
        SELECT 'schema ' || nspname FROM pg_namespace
         WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
        UNION ALL
        SELECT 'rel ' || c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
        UNION ALL
        SELECT 'proc ' || p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
        UNION ALL
        SELECT 'event trigger ' || evtname FROM pg_event_trigger
        UNION ALL
        SELECT 'type ' || t.oid::regtype::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')";
    client
        .query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

#[test]
fn create_and_drop_leave_nothing_behind() {
    let cluster = Cluster::start();
    let mut client = cluster.connect();
    let before = object_inventory(&mut client);
    client.batch_execute("CREATE EXTENSION pg_trickle").unwrap();
    let installed = object_inventory(&mut client);
    assert!(installed.contains("schema pgtrickle"), "{installed:?}");
    assert!(installed.contains("schema pgtrickle_changes"));
    assert!(installed.contains("rel pgtrickle.pgt_stream_tables"));
    let row = client
        .query_one(
            "SELECT pgtrickle.version(), extversion FROM pg_extension WHERE extname = 'pg_trickle'",
            &[],
        )
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        row.get::<_, String>(1),
        "library and SQL versions agree"
    );
    client.batch_execute("DROP EXTENSION pg_trickle").unwrap();
    assert_eq!(object_inventory(&mut client), before);
    // And again: a second install after a drop works the same.
    client
        .batch_execute("CREATE EXTENSION pg_trickle; DROP EXTENSION pg_trickle")
        .unwrap();
    assert_eq!(object_inventory(&mut client), before);
}

#[test]
fn catalog_has_every_column_of_the_seed() {
    let (_cluster, mut client) = cluster_with_extension();
    let rows = client
        .query(
            "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text,
                    column_default::text
               FROM information_schema.columns
              WHERE table_schema = 'pgtrickle'
              ORDER BY table_name, ordinal_position",
            &[],
        )
        .unwrap();
    for (table, column, ty, not_null, default) in CATALOG_COLUMNS {
        let row = rows
            .iter()
            .find(|r| r.get::<_, String>(0) == *table && r.get::<_, String>(1) == *column)
            .unwrap_or_else(|| panic!("missing column {table}.{column}"));
        assert_eq!(row.get::<_, String>(2), *ty, "{table}.{column} type");
        assert_eq!(
            row.get::<_, String>(3) == "NO",
            *not_null,
            "{table}.{column} nullability"
        );
        let actual_default: Option<String> = row.get(4);
        match default {
            Some(want) => assert!(
                actual_default.as_deref().is_some_and(|d| d.contains(want)),
                "{table}.{column} default {actual_default:?}, want {want}"
            ),
            None => assert_eq!(actual_default, None, "{table}.{column} default"),
        }
    }
}

#[test]
fn catalog_constraints_carry_the_fixes() {
    let (_cluster, mut client) = cluster_with_extension();
    // No CHECK constraint lists a value twice.
    let checks = client
        .query(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint
              WHERE contype = 'c' AND connamespace = 'pgtrickle'::regnamespace",
            &[],
        )
        .unwrap();
    assert!(
        checks.len() >= 6,
        "expected the CHECK constraints of the seed"
    );
    for row in &checks {
        let def: String = row.get(1);
        let values: Vec<&str> = def.split('\'').skip(1).step_by(2).collect();
        let unique: BTreeSet<&str> = values.iter().copied().collect();
        assert_eq!(values.len(), unique.len(), "duplicate value in {def}");
    }
    let refresh_mode_check: String = client
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint
              WHERE conrelid = 'pgtrickle.pgt_stream_tables'::regclass AND contype = 'c'
                AND pg_get_constraintdef(oid) LIKE '%refresh_mode%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(refresh_mode_check.contains("'FULL'") && refresh_mode_check.contains("'DIFFERENTIAL'"));
    // History rows go with their stream table.
    let cascade: String = client
        .query_one(
            "SELECT confdeltype::text FROM pg_constraint
              WHERE conrelid = 'pgtrickle.pgt_refresh_history'::regclass AND contype = 'f'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(cascade, "c");
    let versions: Vec<String> = client
        .query(
            "SELECT v.version FROM pgtrickle.pgt_schema_version v, pg_extension e
              WHERE e.extname = 'pg_trickle' AND v.version = e.extversion",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions.len(), 1, "a fresh install records its own version");
    // pg_dump carries the catalog tables.
    let dumped: Vec<String> = client
        .query(
            "SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'pg_trickle'
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for table in [
        "pgt_stream_tables",
        "pgt_dependencies",
        "pgt_refresh_history",
        "pgt_change_tracking",
    ] {
        assert!(
            dumped.contains(&format!("pgtrickle.{table}")),
            "{table} not in extconfig: {dumped:?}"
        );
    }
}

#[test]
fn change_buffer_schema_is_closed_to_public() {
    let (_cluster, mut client) = cluster_with_extension();
    client.batch_execute("CREATE ROLE app LOGIN").unwrap();
    let row = client
        .query_one(
            "SELECT has_schema_privilege('app', 'pgtrickle_changes', 'USAGE'),
                    has_schema_privilege('app', 'pgtrickle_changes', 'CREATE'),
                    has_schema_privilege('app', 'pgtrickle', 'USAGE')",
            &[],
        )
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    assert!(!row.get::<_, bool>(1));
    assert!(
        row.get::<_, bool>(2),
        "the public API schema must be usable"
    );
}

#[test]
fn settings_exist_with_their_defaults_and_are_documented() {
    let (_cluster, mut client) = cluster_with_extension();
    let rows = client
        .query(
            "SELECT name, boot_val FROM pg_settings WHERE name LIKE 'pg\\_trickle.%' ORDER BY name",
            &[],
        )
        .unwrap();
    let actual: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected: Vec<(String, String)> = SETTINGS
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    assert_eq!(actual, expected);

    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/CONFIGURATION.md"
    ))
    .expect("docs/CONFIGURATION.md");
    let documented: BTreeSet<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    let registered: BTreeSet<String> = SETTINGS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        documented, registered,
        "docs/CONFIGURATION.md and the registered settings differ"
    );
}

#[test]
fn settings_reject_values_out_of_range() {
    let (_cluster, mut client) = cluster_with_extension();
    let err = client
        .batch_execute("SET pg_trickle.merge_strategy = 'sideways'")
        .unwrap_err();
    assert_eq!(db_error(&err).0, "22023");
    let err = client
        .batch_execute("SET pg_trickle.differential_max_change_ratio = 2")
        .unwrap_err();
    assert_eq!(db_error(&err).0, "22023");
}

#[test]
fn parse_duration_seconds_explains_bad_input() {
    let (_cluster, mut client) = cluster_with_extension();
    let v: i64 = client
        .query_one("SELECT pgtrickle.parse_duration_seconds('1h30m')", &[])
        .unwrap()
        .get(0);
    assert_eq!(v, 5400);
    for (input, message) in [
        ("", "duration is empty"),
        ("90", "number 90 has no unit"),
        ("5 minutes", "unknown unit \"minutes\""),
        ("1h1h", "unit \"h\" appears more than once"),
    ] {
        let err = client
            .query_one("SELECT pgtrickle.parse_duration_seconds($1)", &[&input])
            .unwrap_err();
        let (code, msg, _, hint) = db_error(&err);
        assert_eq!(code, "22023", "{input}");
        assert_eq!(
            msg,
            format!("pg_trickle: invalid duration \"{input}\": {message}")
        );
        assert!(hint.unwrap_or_default().contains("'1h30m'"));
    }
    let null: Option<i64> = client
        .query_one("SELECT pgtrickle.parse_duration_seconds(NULL)", &[])
        .unwrap()
        .get(0);
    assert_eq!(null, None);
}

#[test]
fn hash_functions_are_stable_and_null_aware() {
    let (_cluster, mut client) = cluster_with_extension();
    let row = client
        .query_one(
            "SELECT pgtrickle.pg_trickle_hash('abc'), pgtrickle.pg_trickle_hash('abc'),
                    pgtrickle.pg_trickle_hash_multi(ARRAY['a', NULL]),
                    pgtrickle.pg_trickle_hash_multi(ARRAY['a', ''])",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), row.get::<_, i64>(1));
    assert_ne!(row.get::<_, i64>(2), row.get::<_, i64>(3));
}

#[test]
fn survives_restart_and_crash() {
    let (cluster, mut client) = cluster_with_extension();
    client
        .batch_execute("INSERT INTO pgtrickle.pgt_schema_version VALUES ('test', now(), 'x')")
        .unwrap();
    drop(client);
    cluster.restart();
    cluster.crash();
    cluster.start_again();
    let mut client = cluster.connect();
    let n: i64 = client
        .query_one("SELECT count(*) FROM pgtrickle.pgt_schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let loaded: String = client
        .query_one("SHOW shared_preload_libraries", &[])
        .unwrap()
        .get(0);
    assert_eq!(loaded, "pg_trickle");
}
