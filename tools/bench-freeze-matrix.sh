#!/usr/bin/env bash
# The freeze-window matrix of the coordinator issue: every provider at 1,000 and 10,000 files and at
# 100 MB and 1 GB, 2 writers appending and fsyncing, REPEAT shadow copies each (default 20).
#   tools/bench-freeze-matrix.sh [REPEAT] [BINARY]
set -euo pipefail
repeat=${1:-20}
bin=${2:-$(dirname "$0")/../.build/release/shadowmover}
printf "%-8s %-6s %6s %6s  %10s %10s %10s %10s  %10s\n" provider fs files size median_ms p99_ms min_ms max_ms stall_ms
for provider in btrfs reflink copy; do
    for files in 1000 10000; do
        for size in 100M 1G; do
            out=$("$bin" bench freeze --provider "$provider" --files "$files" --size "$size" --writers 2 --repeat "$repeat" --json)
            python3 - "$provider" "$files" "$size" <<PY
import json, sys
r = json.loads('''$out''')
w = r["freezeWindowMs"]
print("%-8s %-6s %6s %6s  %10.2f %10.2f %10.2f %10.2f  %10.2f" % (sys.argv[1], r["filesystem"], sys.argv[2], sys.argv[3], w["median"], w["p99"], w["min"], w["max"], r["longestWriteStallMs"]))
PY
        done
    done
done
