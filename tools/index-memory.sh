#!/usr/bin/env bash
# Measures the dedup index's resident memory per chunk on a store of more than a million chunks.
#
#   tools/index-memory.sh [SIZE_MB]     (default 1200: ~1.2 million chunks of ~1 KiB)
#
# `shadowmover debug index-memory` opens the small-chunk store and looks up every chunk: the RSS growth
# per chunk is the index's own cost. Then, for the whole process: two stores back up the same random file: one with ~1 KiB chunks (min 256, avg 1 KiB, max 4 KiB),
# one with the default 1 MiB chunks (a few hundred chunks: the baseline). For the first backup (every
# chunk new: the in-memory part of the index) and a forced re-read (every chunk looked up in the
# memory-mapped segments), the peak RSS difference divided by the number of chunks is the index's
# cost per chunk.
set -euo pipefail
size=${1:-1200}
here=$(cd "$(dirname "$0")/.." && pwd)
sm=${SHADOWMOVER:-$here/.build/release/shadowmover}
work=$(mktemp -d /var/tmp/index-memory.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data"
head -c "$((size << 20))" /dev/urandom > "$work/data/random"
peak() { /usr/bin/time -f "%M" -o "$work/time" "$@" > "$work/out" 2>/dev/null; cat "$work/time"; }
"$sm" init --store "$work/small" --min 256 --avg 1024 --max 4096 --codec none > /dev/null
"$sm" init --store "$work/large" --codec none > /dev/null
a_small=$(peak "$sm" backup --no-shadow-copy --json --store "$work/small" "$work/data")
chunks=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])['summary']['chunks'])" "$work/out")
a_large=$(peak "$sm" backup --no-shadow-copy --store "$work/large" "$work/data")
b_small=$(peak "$sm" backup --no-shadow-copy --force --store "$work/small" "$work/data")
b_large=$(peak "$sm" backup --no-shadow-copy --force --store "$work/large" "$work/data")
"$sm" debug index-memory --store "$work/small"
segments=$(ls "$work/small/index" | wc -l)
index_bytes=$(du -sb "$work/small/index" | cut -f1)
python3 - "$chunks" "$a_small" "$a_large" "$b_small" "$b_large" "$segments" "$index_bytes" <<'PY'
import sys
chunks, a_s, a_l, b_s, b_l, segs, idx = map(int, sys.argv[1:])
print(f"chunks: {chunks}   index segments: {segs}, {idx/chunks:.1f} bytes per chunk on disk")
print(f"first backup (all chunks new):   peak RSS {a_s/1024:.0f} MiB vs {a_l/1024:.0f} MiB baseline -> {(a_s-a_l)*1024/chunks:.1f} bytes per chunk")
print(f"forced re-read (all chunks known): peak RSS {b_s/1024:.0f} MiB vs {b_l/1024:.0f} MiB baseline -> {(b_s-b_l)*1024/chunks:.1f} bytes per chunk")
PY
