-- Stream tables are written by their refreshes only: a statement trigger
-- on every storage table (created with it, src/lifecycle.rs) rejects
-- INSERT, UPDATE, DELETE and TRUNCATE by users unless they opt in with
-- pg_trickle.allow_direct_writes. The check itself is in Rust
-- (src/refresh/guard.rs): it knows whether a refresh of this backend is
-- writing.
CREATE FUNCTION pgtrickle._guard_storage() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgtrickle._check_direct_write(TG_RELID, TG_OP);
    RETURN NULL;
END
$$;
