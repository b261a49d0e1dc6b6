#!/bin/bash
# Instructions one execution of a statement costs, which unlike its time do
# not move with the machine's load: for comparing variants of a delta query.
#
#   scripts/bench/instructions.sh DATADIR DATABASE file.sql ...
#
# Each file holds one SELECT. It is prepared, then executed 1 and 4 times by
# a single-user backend (`postgres --single`, so the cluster must be
# stopped) under `valgrind --tool=cachegrind --cache-sim=no`; the difference
# over 3 is one execution, without parsing, planning or the backend's start.
# It runs with `enable_sort` off, as a refresh runs its delta statements
# (`src/refresh/hints.rs`). PG_BIN (default: /tmp/pg_trickle-bench/pg18/bin)
# and RUN_AS (default: postgres) select the server and the OS user.
set -euo pipefail
datadir=$1 database=$2
shift 2
bin=${PG_BIN:-/tmp/pg_trickle-bench/pg18/bin}
user=${RUN_AS:-postgres}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
count() { # file, executions -> instructions of the whole run
    {
        echo "SET enable_sort = off;"
        echo
        echo "PREPARE q AS $(cat "$1")"
        echo
        for _ in $(seq "$2"); do echo "EXECUTE q;"; echo; done
    } > "$work/in.sql"
    runuser -u "$user" -- valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        "$bin/postgres" --single -j -D "$datadir" "$database" < "$work/in.sql" > "$work/out.txt" 2> "$work/err.txt"
    if grep -q "ERROR" "$work/out.txt" "$work/err.txt"; then
        grep -h "ERROR" "$work/out.txt" "$work/err.txt" >&2
        exit 1
    fi
    grep 'I *refs' "$work/err.txt" | sed 's/.*refs: *//; s/,//g'
}
for file in "$@"; do
    once=$(count "$file" 1)
    four=$(count "$file" 4)
    awk -v f="$file" -v a="$once" -v b="$four" 'BEGIN { printf "%-40s %6.1f M instructions per execution\n", f, (b - a) / 3 / 1e6 }'
done
