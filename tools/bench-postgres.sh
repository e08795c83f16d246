#!/usr/bin/env bash
# The freeze window of PostgreSQL backups under load: a throw-away cluster on a loop volume, pgbench
# running throughout, N backups with the built-in writer; prints each window and the median.
#
#   tools/bench-postgres.sh [FS] [N] [PROVIDER]     # FS: btrfs (default) or xfs; N: 20; PROVIDER: per volume
#
# Needs root (loop volumes), postgresql-15 and postgresql-contrib (pgbench), and a release build.
set -euo pipefail
fs=${1:-btrfs}
n=${2:-20}
provider=${3:-}
cd "$(dirname "$0")/.."
bin="$PWD/.build/release/shadowmover"
[ -x "$bin" ] || { echo "build first: swift build -c release" >&2; exit 1; }
pg=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
scratch=$(mktemp -d /var/tmp/shadowmover-bench-pg.XXXXXX)
chmod 755 "$scratch"  # the postgres user walks through it
port=5480
cleanup() {
    [ -n "${load:-}" ] && kill "$load" 2>/dev/null || true
    tools/postgres-cluster.sh stop "$scratch/vol/pg/data" || true
    tools/test-volume.sh remove "$scratch/vol" > /dev/null 2>&1 || true
    rm -rf "$scratch"
}
trap cleanup EXIT
tools/test-volume.sh create "$fs" "$scratch/vol" 4000 > /dev/null
conn=$(tools/postgres-cluster.sh start "$scratch/vol/pg/data" "$port" < /dev/null)
sock="/tmp/shadowmover-pg-$port"
"$pg/pgbench" -h "$sock" -p "$port" -U postgres -i -s 10 -q postgres > /dev/null 2>&1
"$pg/pgbench" -h "$sock" -p "$port" -U postgres -c 4 -j 2 -T 3600 -n postgres > "$scratch/pgbench.out" 2>&1 &
load=$!
sleep 2
export SHADOWMOVER_PASSWORD=bench XDG_CACHE_HOME="$scratch/cache" SHADOWMOVER_RUN_DIR="$scratch/run" SHADOWMOVER_STATE_DIR="$scratch/state"
"$bin" init --store "$scratch/store" > /dev/null
windows=()
for i in $(seq 1 "$n"); do
    if ! out=$("$bin" backup --store "$scratch/store" --json --writers-dir /nonexistent --postgres "$conn" \
        ${provider:+--provider "$provider"} "$scratch/vol/pg/data" 2>"$scratch/backup.err" | tail -1) || [ -z "$out" ]; then
        echo "backup $i failed:" >&2
        cat "$scratch/backup.err" >&2
        tail -n 5 "$scratch/vol/pg/data.log" >&2
        exit 1
    fi
    ms=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.2f" % d["shadowCopy"]["freezeWindow"]["totalMs"])' "$out")
    windows+=("$ms")
    echo "backup $i: freeze window $ms ms"
done
printf '%s\n' "${windows[@]}" | sort -n | python3 -c '
import sys
v = [float(x) for x in sys.stdin]
print("freeze window over %d backups under pgbench: median %.2f ms, min %.2f, max %.2f" % (len(v), v[len(v)//2] if len(v) % 2 else (v[len(v)//2-1] + v[len(v)//2]) / 2, v[0], v[-1]))'
