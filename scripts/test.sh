#!/usr/bin/env bash
# Sets up whatever is missing, then runs every test layer on PostgreSQL 18
# and 15:  unit tests (no database), in-backend #[pg_test] tests
# (cargo pgrx test), and end-to-end tests against real clusters.
#
#   scripts/test.sh            all layers, PG18 and PG15
#   PGT_PG_VERSIONS=18 scripts/test.sh    one version only
#   PGT_PROPTEST_CASES=200 scripts/test.sh  more random cases per property test
set -euo pipefail
cd "$(dirname "$0")/.."

"$(dirname "$0")/setup.sh" >/dev/null

VERSIONS=${PGT_PG_VERSIONS:-"18 15"}
PGRX_PGDATA_ROOT=${PGT_PGRX_PGDATA:-/tmp/pg_trickle-pgrx-test}
declare -a TIMINGS=()

step() {
    local name=$1; shift
    local start=$SECONDS
    printf '\n=== %s\n' "$name"
    "$@"
    TIMINGS+=("$(printf '%-44s %4ds' "$name" $((SECONDS - start)))")
}

pg_config_for() {
    sed -n "s/^pg$1 = \"\(.*\)\"/\1/p" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"
}

run_pg_tests() {
    local v=$1
    mkdir -p "$PGRX_PGDATA_ROOT"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres "$PGRX_PGDATA_ROOT"
        cargo pgrx test "pg$v" --runas postgres --pgdata "$PGRX_PGDATA_ROOT/pg$v"
    else
        cargo pgrx test "pg$v" --pgdata "$PGRX_PGDATA_ROOT/pg$v"
    fi
}

install_extension() {
    local v=$1
    # `cargo pgrx test` installs a build with test-only functions: replace it.
    cargo pgrx install --pg-config "$(pg_config_for "$v")" --no-default-features --features "pg$v"
}

run_e2e() {
    PGT_PG_VERSION=$1 cargo test -p pgtrickle-e2e -- --test-threads="${PGT_E2E_THREADS:-2}"
}

step "unit tests (pgtrickle-core)" cargo test -p pgtrickle-core
for v in $VERSIONS; do
    step "pg_test on PostgreSQL $v" run_pg_tests "$v"
    step "install into PostgreSQL $v" install_extension "$v"
    step "end-to-end on PostgreSQL $v" run_e2e "$v"
done

printf '\n=== timings\n'
printf '%s\n' "${TIMINGS[@]}"
printf 'total %ds\n' "$SECONDS"
