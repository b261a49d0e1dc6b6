#!/usr/bin/env bash
# Sets up whatever is missing, builds and installs pg_trickle into
# PostgreSQL 18, starts a throwaway cluster with the extension preloaded,
# runs scripts/demo.sql in it, and stops the cluster.
#
#   scripts/demo.sh                 run the demo and clean up
#   PGT_DEMO_KEEP=1 scripts/demo.sh leave the cluster running and print how to
#                                   connect and stop it
set -euo pipefail
cd "$(dirname "$0")/.."

PG_CONFIG=$("$(dirname "$0")/setup.sh" | tail -n1)
BINDIR=$("$PG_CONFIG" --bindir)

echo "== building and installing pg_trickle into $("$PG_CONFIG" --version)"
cargo pgrx install --pg-config "$PG_CONFIG" --no-default-features --features pg18 >/dev/null

DEMO_DIR=$(mktemp -d /tmp/pg_trickle-demo.XXXXXX)
PORT=${PGT_DEMO_PORT:-54329}
# pgrx adds a Rust backtrace to every error's DETAIL when RUST_BACKTRACE is set.
run_pg() {
    if [ "$(id -u)" -eq 0 ]; then env -u RUST_BACKTRACE runuser -u postgres -- "$@"; else env -u RUST_BACKTRACE "$@"; fi
}
[ "$(id -u)" -ne 0 ] || chown postgres "$DEMO_DIR"

stop_cluster() {
    run_pg "$BINDIR/pg_ctl" -D "$DEMO_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$DEMO_DIR"
}
if [ -z "${PGT_DEMO_KEEP:-}" ]; then trap stop_cluster EXIT; fi

echo "== starting a throwaway cluster in $DEMO_DIR on port $PORT"
run_pg "$BINDIR/initdb" -D "$DEMO_DIR/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >/dev/null
cat >> "$DEMO_DIR/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DEMO_DIR'
shared_preload_libraries = 'pg_trickle'
pg_trickle.min_schedule_seconds = 1
pg_trickle.scheduler_interval_ms = 200
wal_level = logical
CONF
run_pg "$BINDIR/pg_ctl" -D "$DEMO_DIR/data" -l "$DEMO_DIR/server.log" -w start >/dev/null

psql_demo() {
    env -u RUST_BACKTRACE "$BINDIR/psql" -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres "$@"
}
psql_demo -f scripts/demo.sql

# Blue-green, with a reader looping on the table being redeployed: it
# counts its reads, errors and empty results.
reader() {
    local reads=0 errors=0 empty=0 out
    while [ ! -e "$DEMO_DIR/stop-reader" ]; do
        if out=$(psql_demo -qtA -c "SELECT count(*) FROM revenue_by_region" 2>>"$DEMO_DIR/reader.err"); then
            [ "$out" != "0" ] || empty=$((empty + 1))
        else
            errors=$((errors + 1))
        fi
        reads=$((reads + 1))
    done
    echo "$reads $errors $empty" >"$DEMO_DIR/reader.out"
}
reader &
READER=$!
psql_demo -f scripts/demo_bluegreen.sql
touch "$DEMO_DIR/stop-reader"
wait "$READER"
read -r reads errors empty <"$DEMO_DIR/reader.out"
echo "-- the reader: $reads reads of revenue_by_region during the redeployment, $errors errors, $empty empty results"
[ "$errors" -eq 0 ] && [ "$empty" -eq 0 ] || { cat "$DEMO_DIR/reader.err"; exit 1; }

psql_demo -f scripts/demo_schema.sql

if [ -n "${PGT_DEMO_KEEP:-}" ]; then
    echo
    echo "The cluster is still running. Connect:  $BINDIR/psql -h 127.0.0.1 -p $PORT -U postgres"
    echo "Stop it:  runuser -u postgres -- $BINDIR/pg_ctl -D $DEMO_DIR/data stop && rm -rf $DEMO_DIR"
else
    echo
    echo "== demo done; stopping the cluster"
fi
