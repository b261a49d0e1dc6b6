-- pg_trickle catalog. Both schemas are created here, not named in the
-- control file, so that they belong to the extension and DROP EXTENSION
-- removes them.

CREATE SCHEMA pgtrickle;
COMMENT ON SCHEMA pgtrickle IS 'pg_trickle public API and catalog';
GRANT USAGE ON SCHEMA pgtrickle TO PUBLIC;

CREATE SCHEMA pgtrickle_changes;
COMMENT ON SCHEMA pgtrickle_changes IS 'pg_trickle change buffers (internal)';
-- Change buffers hold other roles' row images: closed to PUBLIC.
REVOKE ALL ON SCHEMA pgtrickle_changes FROM PUBLIC;

CREATE TABLE pgtrickle.pgt_stream_tables (
    pgt_id             BIGSERIAL PRIMARY KEY,
    pgt_relid          OID NOT NULL UNIQUE,
    pgt_name           TEXT NOT NULL,
    pgt_schema         TEXT NOT NULL,
    defining_query     TEXT NOT NULL,
    original_query     TEXT,
    schedule           TEXT,
    refresh_mode       TEXT NOT NULL DEFAULT 'DIFFERENTIAL'
                       CHECK (refresh_mode IN ('FULL', 'DIFFERENTIAL', 'AUTO')),
    status             TEXT NOT NULL DEFAULT 'INITIALIZING'
                       CHECK (status IN ('INITIALIZING', 'ACTIVE', 'SUSPENDED', 'ERROR')),
    is_populated       BOOLEAN NOT NULL DEFAULT FALSE,
    data_timestamp     TIMESTAMPTZ,
    frontier           JSONB,
    last_refresh_at    TIMESTAMPTZ,
    consecutive_errors INT NOT NULL DEFAULT 0,
    needs_reinit       BOOLEAN NOT NULL DEFAULT FALSE,
    auto_threshold     DOUBLE PRECISION,
    last_full_ms       DOUBLE PRECISION,
    functions_used     TEXT[],
    last_error         TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Blue-green (src/bluegreen/): a green is being prepared to replace the
    -- stream table green_of; a retired one was replaced by retired_by and is
    -- kept as it was, for rollback_green.
    green_of           BIGINT REFERENCES pgtrickle.pgt_stream_tables (pgt_id) ON DELETE SET NULL,
    retired_by         BIGINT REFERENCES pgtrickle.pgt_stream_tables (pgt_id) ON DELETE SET NULL,
    pipeline_group     TEXT,
    -- The analysed defining query (nodeToString, prefixed with the major
    -- version), printed again to follow renames of sources (src/dvm/tree.rs).
    query_tree         TEXT,
    UNIQUE (pgt_schema, pgt_name)
);
COMMENT ON TABLE pgtrickle.pgt_stream_tables IS 'pg_trickle: one row per stream table';

CREATE TABLE pgtrickle.pgt_dependencies (
    pgt_id                BIGINT NOT NULL
                          REFERENCES pgtrickle.pgt_stream_tables (pgt_id) ON DELETE CASCADE,
    source_relid          OID NOT NULL,
    source_type           TEXT NOT NULL
                          CHECK (source_type IN ('TABLE', 'STREAM_TABLE', 'VIEW')),
    columns_used          TEXT[],
    column_snapshot       JSONB,
    schema_fingerprint    TEXT,
    cdc_mode              TEXT DEFAULT 'TRIGGER'
                          CHECK (cdc_mode IN ('TRIGGER', 'TRANSITIONING', 'WAL')),
    slot_name             TEXT,
    decoder_confirmed_lsn PG_LSN,
    transition_started_at TIMESTAMPTZ,
    PRIMARY KEY (pgt_id, source_relid)
);
CREATE INDEX pgt_dependencies_source_idx ON pgtrickle.pgt_dependencies (source_relid);
COMMENT ON TABLE pgtrickle.pgt_dependencies IS 'pg_trickle: the sources each stream table reads';

CREATE TABLE pgtrickle.pgt_refresh_history (
    refresh_id         BIGSERIAL PRIMARY KEY,
    pgt_id             BIGINT NOT NULL
                       REFERENCES pgtrickle.pgt_stream_tables (pgt_id) ON DELETE CASCADE,
    data_timestamp     TIMESTAMPTZ NOT NULL,
    start_time         TIMESTAMPTZ NOT NULL,
    end_time           TIMESTAMPTZ,
    action             TEXT NOT NULL
                       CHECK (action IN ('NO_DATA', 'FULL', 'DIFFERENTIAL', 'REINITIALIZE', 'SKIP')),
    rows_inserted      BIGINT DEFAULT 0,
    rows_deleted       BIGINT DEFAULT 0,
    error_message      TEXT,
    status             TEXT NOT NULL
                       CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED')),
    initiated_by       TEXT
                       CHECK (initiated_by IN ('MANUAL', 'SCHEDULER', 'INITIAL')),
    freshness_deadline TIMESTAMPTZ,
    requested_action   TEXT,
    reason             TEXT,
    delta_rows         BIGINT
);
CREATE INDEX pgt_refresh_history_pgt_time_idx
    ON pgtrickle.pgt_refresh_history (pgt_id, start_time);
COMMENT ON TABLE pgtrickle.pgt_refresh_history IS 'pg_trickle: one row per refresh';

CREATE TABLE pgtrickle.pgt_change_tracking (
    source_relid       OID PRIMARY KEY,
    slot_name          TEXT NOT NULL,
    last_consumed_lsn  PG_LSN,
    tracked_by_pgt_ids BIGINT[]
);
COMMENT ON TABLE pgtrickle.pgt_change_tracking IS 'pg_trickle: change capture per source table';

CREATE TABLE pgtrickle.pgt_schema_version (
    version     TEXT NOT NULL PRIMARY KEY,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    description TEXT
);
COMMENT ON TABLE pgtrickle.pgt_schema_version IS 'pg_trickle: catalog versions installed';
-- A fresh install records the version it installs; each upgrade script adds
-- the row of the version it reaches.
INSERT INTO pgtrickle.pgt_schema_version (version, description)
VALUES ('0.2.0', 'Fresh install of 0.2.0');

-- pg_dump carries the catalog contents (not pgt_schema_version: CREATE
-- EXTENSION writes its rows, and restoring them again would collide).
SELECT pg_catalog.pg_extension_config_dump('pgtrickle.pgt_stream_tables', '');
SELECT pg_catalog.pg_extension_config_dump('pgtrickle.pgt_stream_tables_pgt_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgtrickle.pgt_dependencies', '');
SELECT pg_catalog.pg_extension_config_dump('pgtrickle.pgt_refresh_history', '');
SELECT pg_catalog.pg_extension_config_dump('pgtrickle.pgt_refresh_history_refresh_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgtrickle.pgt_change_tracking', '');
