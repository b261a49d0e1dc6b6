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
ROOT=$PWD

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
    local pg_config
    pg_config=$(pg_config_for "$v")
    # `cargo pgrx test` installs a build with test-only functions: replace it.
    cargo pgrx install --pg-config "$pg_config" --no-default-features --features "pg$v"
    # Released install scripts, for the upgrade tests.
    cp sql/archive/pg_trickle--*.sql "$("$pg_config" --sharedir)/extension/"
}

# The library of the previous release, built from its tag, for the upgrade
# test that hands stream tables from the old library to the new one.
PREVIOUS_VERSION=0.1.0
PREVIOUS_ROOT=${PGT_PREVIOUS_ROOT:-/tmp/pg_trickle-previous}
build_previous_library() {
    local v=$1
    local rev
    rev=$(git rev-parse -q --verify "v$PREVIOUS_VERSION^{commit}" ||
          git log --format=%H -n1 --grep "^Release $PREVIOUS_VERSION")
    [ -n "$rev" ] || { echo "cannot find release $PREVIOUS_VERSION in git history" >&2; return 1; }
    local tree="$PREVIOUS_ROOT/source"
    if [ "$(cat "$tree/.rev" 2>/dev/null)" != "$rev" ]; then
        rm -rf "$tree"
        mkdir -p "$PREVIOUS_ROOT"
        git archive --format=tar --prefix=source/ "$rev" | tar -x -C "$PREVIOUS_ROOT"
        echo "$rev" > "$tree/.rev"
    fi
    # A target directory of its own: both builds write libpg_trickle.so.
    (cd "$tree" && CARGO_TARGET_DIR="$PREVIOUS_ROOT/target" cargo build --lib --no-default-features --features "pg$v")
    mkdir -p "$PREVIOUS_ROOT/pg$v"
    cp "$PREVIOUS_ROOT/target/debug/libpg_trickle.so" "$PREVIOUS_ROOT/pg$v/pg_trickle.so"
    chmod -R a+rX "$PREVIOUS_ROOT"
}

run_e2e() {
    PGT_PG_VERSION=$1 PGT_PREVIOUS_LIB_DIR="$PREVIOUS_ROOT/pg$1" \
        cargo test -p pgtrickle-e2e -p pgtrickle-cli -- --test-threads="${PGT_E2E_THREADS:-2}"
}

step "unit tests (pgtrickle-core)" cargo test -p pgtrickle-core
for v in $VERSIONS; do
    step "build release $PREVIOUS_VERSION for PostgreSQL $v" build_previous_library "$v"
    step "pg_test on PostgreSQL $v" run_pg_tests "$v"
    step "install into PostgreSQL $v" install_extension "$v"
    step "end-to-end on PostgreSQL $v" run_e2e "$v"
done

printf '\n=== timings\n'
printf '%s\n' "${TIMINGS[@]}"
printf 'total %ds\n' "$SECONDS"
