-- pg_trickle 0.1.0 -> 0.2.0
--
-- Hand-written and idempotent: every statement may run again without harm.
-- Checklist for the next version step: docs/UPGRADING.md.

-- 1. Refuse to run on anything but a 0.1.0 catalog.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgtrickle.pgt_schema_version WHERE version IN ('0.1.0', '0.2.0')) THEN
        RAISE EXCEPTION 'pg_trickle: expected catalog version 0.1.0, found %',
            (SELECT string_agg(version, ', ' ORDER BY applied_at) FROM pgtrickle.pgt_schema_version)
            USING HINT = 'Upgrade through each intermediate version in order.';
    END IF;
END
$$;

-- 2. New functions.
CREATE OR REPLACE FUNCTION pgtrickle."migrate"() RETURNS TABLE (
    "object" TEXT,
    "action" TEXT
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'migrate_wrapper';

-- 3. Record the version reached.
INSERT INTO pgtrickle.pgt_schema_version (version, description)
VALUES ('0.2.0', 'Upgrade from 0.1.0: migrate()')
ON CONFLICT (version) DO NOTHING;
