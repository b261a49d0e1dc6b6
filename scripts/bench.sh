#!/usr/bin/env bash
# pg_trickle benchmark (issue 3, "Speed"): one command that
#   * runs scripts/setup.sh (installs whatever is missing),
#   * copies the PostgreSQL 18 tree to a private directory and installs a
#     RELEASE build of pg_trickle there (the shared installation used by the
#     tests is left alone),
#   * starts a throwaway cluster with pg_trickle preloaded,
#   * measures refresh times against REFRESH MATERIALIZED VIEW, single-row
#     write throughput (pgbench) and batch UPDATEs with and without a stream
#     table, and prints the tables (scripts/bench/report.sql),
#   * stops the cluster.
#
# Settings (environment):
#   PGT_BENCH_ORDERS            rows in orders (default 1000000; e.g. 100000 for a quick check)
#   PGT_BENCH_CUSTOMERS         rows in customers (default 10000)
#   PGT_BENCH_REPS              repetitions of each timed statement, median reported (default 5)
#   PGT_BENCH_PGBENCH_SECONDS   length of each pgbench run (default 15)
#   PGT_BENCH_ROUNDS            pgbench rounds, best reported (default 3)
#   PGT_BENCH_PORT              cluster port (default 54339)
#   PGT_BENCH_DIR               work directory (default /tmp/pg_trickle-bench)
#   PGT_BENCH_SKIP_BUILD=1      reuse the release build already installed in PGT_BENCH_DIR/pg18
#   PGT_BENCH_KEEP=1            leave the cluster running at the end
# Output: the tables on stdout; raw results and logs in $PGT_BENCH_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ORDERS=${PGT_BENCH_ORDERS:-1000000}
CUSTOMERS=${PGT_BENCH_CUSTOMERS:-10000}
REPS=${PGT_BENCH_REPS:-5}
PGBENCH_SECONDS=${PGT_BENCH_PGBENCH_SECONDS:-15}
ROUNDS=${PGT_BENCH_ROUNDS:-3}
PORT=${PGT_BENCH_PORT:-54339}
BENCH_DIR=${PGT_BENCH_DIR:-/tmp/pg_trickle-bench}
PG_COPY=$BENCH_DIR/pg18
DATA=$BENCH_DIR/data
RESULTS=$BENCH_DIR/timings.tsv

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- 1. installation -------------------------------------------------------
PG_CONFIG=$("$ROOT/scripts/setup.sh" | tail -n1)
PG_ROOT=$(dirname "$(dirname "$PG_CONFIG")")
BIN=$PG_COPY/bin

run_pg() {  # server-side commands run as the postgres OS user (initdb refuses root)
    if [ "$(id -u)" -eq 0 ]; then env -u RUST_BACKTRACE runuser -u postgres -- "$@"; else env -u RUST_BACKTRACE "$@"; fi
}
stop_cluster() {
    if [ -f "$DATA/postmaster.pid" ]; then
        run_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
}

mkdir -p "$BENCH_DIR"
stop_cluster   # a cluster left behind by an interrupted run
if [ -z "${PGT_BENCH_SKIP_BUILD:-}" ] || [ ! -x "$BIN/pg_config" ]; then
    log "copying $PG_ROOT to $PG_COPY"
    rm -rf "$PG_COPY"
    cp -a "$PG_ROOT" "$PG_COPY"
    log "building and installing a release build of pg_trickle into $PG_COPY (log: $BENCH_DIR/build.log)"
    if ! cargo pgrx install --release --no-default-features --features pg18 \
            --pg-config "$BIN/pg_config" >"$BENCH_DIR/build.log" 2>&1; then
        tail -n 40 "$BENCH_DIR/build.log" >&2
        exit 1
    fi
fi

# --- 2. the throwaway cluster ------------------------------------------------
rm -rf "$DATA" "$BENCH_DIR/sock"
mkdir -p "$BENCH_DIR/sock"
[ "$(id -u)" -ne 0 ] || chown postgres "$BENCH_DIR" "$BENCH_DIR/sock"
cleanup() {
    if [ -z "${PGT_BENCH_KEEP:-}" ]; then
        stop_cluster
        rm -rf "$DATA"
    else
        echo "cluster left running: $BIN/psql -h 127.0.0.1 -p $PORT -U postgres" >&2
    fi
}
trap cleanup EXIT

log "initdb in $DATA, port $PORT"
run_pg "$BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C >/dev/null
cat >>"$DATA/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$BENCH_DIR/sock'
shared_preload_libraries = 'pg_trickle'
pg_trickle.min_schedule_seconds = 1
pg_trickle.scheduler_interval_ms = 200
shared_buffers = 1GB
work_mem = 64MB
maintenance_work_mem = 256MB
# fsync stays on; commits do not wait for the WAL flush.
fsync = on
synchronous_commit = off
max_wal_size = 8GB
checkpoint_timeout = 30min
log_min_duration_statement = -1
CONF
run_pg "$BIN/pg_ctl" -D "$DATA" -l "$BENCH_DIR/server.log" -w start >/dev/null

PSQL=(env -u RUST_BACKTRACE "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
sql() { "${PSQL[@]}" -Atc "$1"; }

log "loading $ORDERS orders and $CUSTOMERS customers"
"${PSQL[@]}" -v orders="$ORDERS" -v customers="$CUSTOMERS" -f "$ROOT/scripts/bench/schema.sql" >"$BENCH_DIR/load.log"
: >"$RESULTS"

# --- helpers that write psql scripts ----------------------------------------
# timed SCENARIO STEP REP SQL: the statement's client-side time lands in $RESULTS
timed() {
    printf '\\echo @@ %s %s %s\n\\timing on\n%s\n\\timing off\n' "$1" "$2" "$3" "$4"
}
# hist SCENARIO STEP REP: keep the history row of the refresh just made
hist() {
    printf "INSERT INTO bench.hist SELECT '%s', '%s', %s, action, delta_rows, rows_inserted, rows_deleted,
        extract(epoch FROM end_time - start_time) * 1000, reason
   FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1;\n" "$1" "$2" "$3"
}
# check SCENARIO STEP ST QUERY COLS: stream table vs fresh evaluation
check() {
    printf "INSERT INTO bench.checks SELECT '%s', '%s', count(*) FROM (
      (SELECT %s FROM %s EXCEPT ALL (%s)) UNION ALL ((%s) EXCEPT ALL SELECT %s FROM %s)) d;\n" \
        "$1" "$2" "$5" "$3" "$4" "$4" "$5" "$3"
}
# run_script NAME: runs $BENCH_DIR/NAME.sql in one session, collects the timings
run_script() {
    "${PSQL[@]}" -f "$BENCH_DIR/$1.sql" >"$BENCH_DIR/$1.log" 2>&1 || {
        tail -n 30 "$BENCH_DIR/$1.log" >&2; exit 1; }
    awk '/^@@ / { key = $2 "\t" $3 "\t" $4 }
         /^Time: / { print key "\t" $2 }' "$BENCH_DIR/$1.log" >>"$RESULTS"
}

# --- 3. refresh benchmarks ----------------------------------------------------
# Change fractions: rep r updates the rows with id % (1/f) = r (spread over all
# customers and all regions; disjoint between repetitions).
FRACTIONS=("0.1pct 1000" "1pct 100" "10pct 10")

refresh_scenario() {  # NAME QUERY COLS
    local name=$1 query=$2 cols=$3 rep f
    {
        echo "SET client_min_messages = warning;"
        echo "VACUUM ANALYZE orders;"
        echo "CHECKPOINT;"
        echo "CREATE MATERIALIZED VIEW bench_mv AS $query;"
        for rep in $(seq "$REPS"); do timed "$name" matview "$rep" "REFRESH MATERIALIZED VIEW bench_mv;"; done
        echo "DROP MATERIALIZED VIEW bench_mv;"

        echo "SELECT pgtrickle.create_stream_table('bench_st_full', \$q\$$query\$q\$, NULL, 'FULL') \\g /dev/null"
        for rep in $(seq "$REPS"); do
            timed "$name" st_full "$rep" "SELECT pgtrickle.refresh_stream_table('bench_st_full') \\g /dev/null"
            hist "$name" st_full "$rep"
        done
        echo "SELECT pgtrickle.drop_stream_table('bench_st_full') \\g /dev/null"

        echo "SELECT pgtrickle.create_stream_table('bench_st', \$q\$$query\$q\$, NULL, 'DIFFERENTIAL') \\g /dev/null"
        for rep in $(seq "$REPS"); do
            timed "$name" diff_none "$rep" "SELECT pgtrickle.refresh_stream_table('bench_st') \\g /dev/null"
            hist "$name" diff_none "$rep"
        done
        for f in "${FRACTIONS[@]}"; do
            set -- $f
            # One untimed round first (rows id % n = 0): the first refresh of
            # a window of a new size plans its statements for that size, once
            # per session, as a long-running deployment has long done.
            echo "UPDATE orders SET amount = amount + 1 WHERE id % $2 = 0;"
            echo "SELECT pgtrickle.refresh_stream_table('bench_st') \\g /dev/null"
            for rep in $(seq "$REPS"); do
                timed "$name" "upd_$1" "$rep" "UPDATE orders SET amount = amount + 1 WHERE id % $2 = $rep;"
                timed "$name" "diff_$1" "$rep" "SELECT pgtrickle.refresh_stream_table('bench_st') \\g /dev/null"
                hist "$name" "diff_$1" "$rep"
            done
            check "$name" "after_$1" bench_st "$query" "$cols"
        done
        echo "SELECT pgtrickle.drop_stream_table('bench_st') \\g /dev/null"
    } >"$BENCH_DIR/$name.sql"
    run_script "$name"
}

Q_JOIN_AGG="SELECT c.region, count(*) AS order_count, sum(o.amount) AS revenue FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region"
Q_FILTER="SELECT id, amount FROM orders WHERE amount > 900"
Q_AGG="SELECT customer_id % 100 AS bucket, count(*) AS order_count, sum(amount) AS revenue FROM orders GROUP BY customer_id % 100"

log "1. join + aggregate"
refresh_scenario join_agg "$Q_JOIN_AGG" "region, order_count, revenue"
log "2a. single-table filter"
refresh_scenario filter "$Q_FILTER" "id, amount"
log "2b. single-table aggregate"
refresh_scenario agg "$Q_AGG" "bucket, order_count, revenue"

# --- 4. batch UPDATEs with and without a stream table ---------------------------
# The same contiguous id range each time, after a warm-up pass, a VACUUM and a
# CHECKPOINT, so that both sides see the same page state.
BATCHES=($((ORDERS / 100)) $((ORDERS / 10)))   # 10,000 and 100,000 rows at 1M
# Also the server-side cost of single-row UPDATE statements without any client
# round trip: a DO block running LOOP of them (one transaction, random ids).
LOOP=10000
LOOP_SQL="DO \$\$ BEGIN FOR i IN 1..$LOOP LOOP UPDATE orders SET amount = amount + 1 WHERE id = 1 + (i * 7919) % $ORDERS; END LOOP; END \$\$;"
log "3b. batch updates of ${BATCHES[*]} rows"
{
    echo "SET client_min_messages = warning;"
    echo "UPDATE orders SET amount = amount WHERE id <= ${BATCHES[1]};"
    for rep in $(seq "$REPS"); do
        for n in "${BATCHES[@]}"; do
            echo "VACUUM orders;"; echo "CHECKPOINT;"
            timed "batch_$n" no_st "$rep" "UPDATE orders SET amount = amount + 1 WHERE id <= $n;"
        done
        echo "VACUUM orders;"; echo "CHECKPOINT;"
        timed "loop_$LOOP" no_st "$rep" "$LOOP_SQL"
        echo "SELECT pgtrickle.create_stream_table('bench_st', \$q\$$Q_JOIN_AGG\$q\$, NULL, 'DIFFERENTIAL') \\g /dev/null"
        for n in "${BATCHES[@]}"; do
            echo "VACUUM orders;"; echo "CHECKPOINT;"
            timed "batch_$n" with_st "$rep" "UPDATE orders SET amount = amount + 1 WHERE id <= $n;"
            timed "batch_$n" refresh "$rep" "SELECT pgtrickle.refresh_stream_table('bench_st') \\g /dev/null"
            hist "batch_$n" refresh "$rep"
        done
        echo "VACUUM orders;"; echo "CHECKPOINT;"
        timed "loop_$LOOP" with_st "$rep" "$LOOP_SQL"
        echo "SELECT pgtrickle.refresh_stream_table('bench_st') \\g /dev/null"
        check batch "after_rep$rep" bench_st "$Q_JOIN_AGG" "region, order_count, revenue"
        echo "SELECT pgtrickle.drop_stream_table('bench_st') \\g /dev/null"
    done
} >"$BENCH_DIR/batch.sql"
run_script batch

# --- 5. single-row UPDATE throughput (pgbench) -------------------------------------
PGBENCH=(env -u RUST_BACKTRACE "$BIN/pgbench" -n -M prepared -h 127.0.0.1 -p "$PORT" -U postgres
         -f "$ROOT/scripts/bench/update_one.sql" -D orders="$ORDERS" -T "$PGBENCH_SECONDS")

pgbench_run() {  # SETUP(none/capture/scheduled) CLIENTS THREADS ROUND
    local setup=$1 clients=$2 threads=$3 round=$4 out tps lat t0 sampler
    sql "VACUUM orders" >/dev/null
    sql "CHECKPOINT" >/dev/null
    t0=$(sql "SELECT clock_timestamp()")
    # what the writers wait on: pg_stat_activity sampled every 0.2 s in one session
    for _ in $(seq $((PGBENCH_SECONDS * 5 - 5))); do
        echo "SELECT pg_sleep(0.2);"
        echo "INSERT INTO bench.waits SELECT '$setup', $clients,
                CASE WHEN state <> 'active' THEN state || ' (pgbench side)'
                     ELSE coalesce(wait_event_type || ':' || wait_event, 'on CPU') END, count(*)
              FROM pg_stat_activity WHERE application_name = 'pgbench' GROUP BY 3;"
    done | "${PSQL[@]}" >/dev/null 2>&1 &
    sampler=$!
    out=$("${PGBENCH[@]}" -c "$clients" -j "$threads" postgres 2>&1) || { echo "$out" >&2; exit 1; }
    wait "$sampler" || true
    echo "$out" >>"$BENCH_DIR/pgbench.log"
    tps=$(echo "$out" | awk '/^tps = / { print $3; exit }')
    lat=$(echo "$out" | awk '/^latency average = / { print $4; exit }')
    log "   pgbench setup=$setup clients=$clients round=$round: $tps tps"
    sql "INSERT INTO bench.pgbench VALUES ('$setup', $clients, $round, $tps, $lat)" >/dev/null
    if [ "$setup" = scheduled ]; then
        sql "INSERT INTO bench.sched
             SELECT $clients, $round, count(*) FILTER (WHERE status = 'COMPLETED'),
                    count(*) FILTER (WHERE status = 'FAILED'),
                    avg(extract(epoch FROM end_time - start_time) * 1000) FILTER (WHERE status = 'COMPLETED'),
                    max(extract(epoch FROM end_time - start_time) * 1000) FILTER (WHERE status = 'COMPLETED'),
                    sum(delta_rows), string_agg(DISTINCT action, '/')
               FROM pgtrickle.pgt_refresh_history
              WHERE initiated_by = 'SCHEDULER' AND start_time >= '$t0'" >/dev/null
    fi
}

# Three setups per round: no stream table; the join+aggregate stream table
# with no schedule (the capture triggers alone); the same on a 1s schedule
# (capture + the scheduler refreshing concurrently).
log "3a. pgbench single-row updates, ${PGBENCH_SECONDS}s per run, $ROUNDS round(s)"
for round in $(seq "$ROUNDS"); do
    [ "$(sql "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal")" = 0 ] || {
        echo "orders still has triggers before the no-stream-table run" >&2; exit 1; }
    pgbench_run none 1 1 "$round"
    pgbench_run none 4 2 "$round"
    sql "SELECT pgtrickle.create_stream_table('bench_st', \$q\$$Q_JOIN_AGG\$q\$, NULL, 'DIFFERENTIAL')" >/dev/null
    pgbench_run capture 1 1 "$round"
    sql "SELECT pgtrickle.refresh_stream_table('bench_st')" >/dev/null
    pgbench_run capture 4 2 "$round"
    sql "SELECT pgtrickle.refresh_stream_table('bench_st')" >/dev/null
    sql "SELECT pgtrickle.alter_stream_table('bench_st', schedule => '1s')" >/dev/null
    pgbench_run scheduled 1 1 "$round"
    pgbench_run scheduled 4 2 "$round"
    # after the writers stop: catch up once and compare with the query
    {
        timed pgbench catch_up "$round" "SELECT pgtrickle.refresh_stream_table('bench_st') \\g /dev/null"
        check pgbench "after_round$round" bench_st "$Q_JOIN_AGG" "region, order_count, revenue"
        echo "SELECT pgtrickle.drop_stream_table('bench_st') \\g /dev/null"
    } >"$BENCH_DIR/pgbench_round.sql"
    run_script pgbench_round
done

# --- 6. report ----------------------------------------------------------------------
"${PSQL[@]}" -c "\\copy bench.timing FROM '$RESULTS'"
echo
echo "pg_trickle benchmark: $ORDERS orders, $CUSTOMERS customers, $REPS repetitions, pgbench ${PGBENCH_SECONDS}s x $ROUNDS round(s)"
echo "$("$BIN/postgres" --version), release build of $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src crates Cargo.toml 2>/dev/null || echo ' + uncommitted changes'), $(nproc) CPUs"
"${PSQL[@]}" -f "$ROOT/scripts/bench/report.sql"
# the raw results, to re-print the tables later: load into any database, then run report.sql
env -u RUST_BACKTRACE "$BIN/pg_dump" -h 127.0.0.1 -p "$PORT" -U postgres -n bench postgres >"$BENCH_DIR/results.sql"
echo "(raw results: $BENCH_DIR/results.sql; logs and psql scripts: $BENCH_DIR)"
if [ "$(sql "SELECT count(*) FROM bench.checks WHERE mismatches <> 0")" != 0 ]; then
    echo "WARNING: a stream table differed from its query (see the Correctness table)" >&2
fi
