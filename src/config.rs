//! The extension's settings (`pg_trickle.*`). `docs/CONFIGURATION.md`
//! documents each one; an end-to-end test checks that the two agree.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};
use std::ffi::CString;

pub static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static SCHEDULER_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
pub static MIN_SCHEDULE_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(60);
pub static MAX_CONSECUTIVE_ERRORS: GucSetting<i32> = GucSetting::<i32>::new(3);
pub static CHANGE_BUFFER_SCHEMA: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"pgtrickle_changes"));
pub static MAX_CONCURRENT_REFRESHES: GucSetting<i32> = GucSetting::<i32>::new(4);
pub static DIFFERENTIAL_MAX_CHANGE_RATIO: GucSetting<f64> = GucSetting::<f64>::new(0.15);
pub static CLEANUP_USE_TRUNCATE: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static MERGE_PLANNER_HINTS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static MERGE_WORK_MEM_MB: GucSetting<i32> = GucSetting::<i32>::new(64);
pub static MERGE_STRATEGY: GucSetting<MergeStrategy> =
    GucSetting::<MergeStrategy>::new(MergeStrategy::Auto);
pub static USE_PREPARED_STATEMENTS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static USER_TRIGGERS: GucSetting<UserTriggers> =
    GucSetting::<UserTriggers>::new(UserTriggers::Auto);
pub static CDC_MODE: GucSetting<CdcMode> = GucSetting::<CdcMode>::new(CdcMode::Trigger);
pub static WAL_TRANSITION_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(300);
pub static BLOCK_SOURCE_DDL: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static HISTORY_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(30);
pub static DDL_MESSAGES: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static ALLOW_DIRECT_WRITES: GucSetting<bool> = GucSetting::<bool>::new(false);

/// How a differential refresh writes its delta into the storage table.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PostgresGucEnum)]
pub enum MergeStrategy {
    #[name = c"auto"]
    Auto,
    #[name = c"merge"]
    Merge,
    #[name = c"delete_insert"]
    DeleteInsert,
}

/// Whether user triggers on a stream table fire during refreshes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PostgresGucEnum)]
pub enum UserTriggers {
    #[name = c"auto"]
    Auto,
    #[name = c"on"]
    On,
    #[name = c"off"]
    Off,
}

/// How changes of source tables are captured.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PostgresGucEnum)]
pub enum CdcMode {
    #[name = c"trigger"]
    Trigger,
    #[name = c"auto"]
    Auto,
    #[name = c"wal"]
    Wal,
}

/// The schema that holds change buffers, as configured.
pub fn change_buffer_schema() -> String {
    CHANGE_BUFFER_SCHEMA
        .get()
        .and_then(|s| s.into_string().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "pgtrickle_changes".to_string())
}

/// Registers every setting. Called once from `_PG_init`.
pub fn register() {
    GucRegistry::define_bool_guc(
        c"pg_trickle.enabled",
        c"Whether the background scheduler refreshes stream tables.",
        c"When off, stream tables are only refreshed by refresh_stream_table().",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.scheduler_interval_ms",
        c"How often the scheduler wakes up to look for due stream tables.",
        c"",
        &SCHEDULER_INTERVAL_MS,
        10,
        600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.min_schedule_seconds",
        c"The shortest schedule a stream table may be given.",
        c"Shorter schedules are rejected by create_stream_table and alter_stream_table.",
        &MIN_SCHEDULE_SECONDS,
        0,
        86_400,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.max_consecutive_errors",
        c"Failed refreshes in a row after which a stream table is put in ERROR status.",
        c"",
        &MAX_CONSECUTIVE_ERRORS,
        1,
        1_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_trickle.change_buffer_schema",
        c"Schema in which change buffer tables are created.",
        c"Applies to change buffers created after the setting changes.",
        &CHANGE_BUFFER_SCHEMA,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.max_concurrent_refreshes",
        c"Refreshes the scheduler runs at the same time, per database.",
        c"",
        &MAX_CONCURRENT_REFRESHES,
        1,
        64,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"pg_trickle.differential_max_change_ratio",
        c"Change ratio above which an AUTO stream table refreshes in FULL.",
        c"Pending changes divided by the rows of the sources.",
        &DIFFERENTIAL_MAX_CHANGE_RATIO,
        0.0,
        1.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_trickle.cleanup_use_truncate",
        c"Empty a fully consumed change buffer with TRUNCATE instead of DELETE.",
        c"",
        &CLEANUP_USE_TRUNCATE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_trickle.merge_planner_hints",
        c"Tune planner settings for the statement that applies a delta.",
        c"",
        &MERGE_PLANNER_HINTS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.merge_work_mem_mb",
        c"work_mem used while applying a delta, when merge_planner_hints is on.",
        c"",
        &MERGE_WORK_MEM_MB,
        1,
        65_536,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pg_trickle.merge_strategy",
        c"How a delta is applied: auto, merge or delete_insert.",
        c"",
        &MERGE_STRATEGY,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_trickle.use_prepared_statements",
        c"Reuse prepared plans for the statements of a differential refresh.",
        c"",
        &USE_PREPARED_STATEMENTS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pg_trickle.user_triggers",
        c"Whether user triggers on stream tables fire during refreshes: auto, on or off.",
        c"",
        &USER_TRIGGERS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pg_trickle.cdc_mode",
        c"How changes of source tables are captured: trigger, auto or wal.",
        c"",
        &CDC_MODE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.wal_transition_timeout",
        c"Seconds a source may spend moving from trigger to WAL capture before falling back.",
        c"",
        &WAL_TRANSITION_TIMEOUT,
        1,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"pg_trickle.block_source_ddl",
        c"Reject DDL on a source that would stop a stream table.",
        c"When off, such DDL is allowed and the stream table goes to ERROR status.",
        &BLOCK_SOURCE_DDL,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.history_retention_days",
        c"Days of refresh history the scheduler keeps.",
        c"Older rows of pgtrickle.pgt_refresh_history are deleted by the scheduler.",
        &HISTORY_RETENTION_DAYS,
        0,
        36_500,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_trickle.ddl_messages",
        c"Write DDL and lifecycle events of stream tables into the WAL as logical messages.",
        c"Prefixes pg_trickle.ddl and pg_trickle.lifecycle, transactional.",
        &DDL_MESSAGES,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_trickle.allow_direct_writes",
        c"Allow INSERT, UPDATE, DELETE and TRUNCATE on stream tables by users.",
        c"Off: only refreshes write a stream table. Rows written directly are not undone by differential refreshes.",
        &ALLOW_DIRECT_WRITES,
        GucContext::Userset,
        GucFlags::default(),
    );
}
