#!/usr/bin/env bash
# Measures prune's time and peak memory on a store of more than a million chunks.
#
#   tools/prune-memory.sh [files|one-file] [SIZE_MB]     (default: files 1200)
#
# Builds a store with ~1 KiB chunks (min 256, avg 1 KiB, max 4 KiB, codec none) from SIZE_MB of random
# data, backs it up, rewrites half of it, backs up again, forgets the first snapshot and runs
# `shadowmover prune` under /usr/bin/time. Shapes:
#   files     SIZE_MB files of 1 MiB in 16 directories (a tree of ordinary size)
#   one-file  a single file of SIZE_MB (the worst case for a tree: one node lists every chunk)
# The figure is peak RSS divided by the chunks the index held before prune; the same prune of a
# store with one small file gives the process's fixed cost (runtime, libraries), shown apart.
set -euo pipefail
shape=${1:-files}
size=${2:-1200}
here=$(cd "$(dirname "$0")/.." && pwd)
sm=${SHADOWMOVER:-$here/.build/release/shadowmover}
work=$(mktemp -d /var/tmp/prune-memory.XXXXXX)
[ -n "${KEEP:-}" ] && echo "keeping $work" >&2 || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data"

fill() {  # fill FRACTION: (re)write that share of the data with fresh random bytes
    python3 - "$work/data" "$shape" "$size" "$1" <<'PY'
import os, sys
root, shape, size, fraction = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
if shape == "one-file":
    path = f"{root}/big"
    mode = "r+b" if os.path.exists(path) else "wb"
    with open(path, mode) as f:
        for mb in range(size):
            if mode == "wb" or (mb % 2 == 0 and fraction < 1):
                f.seek(mb << 20)
                f.write(os.urandom(1 << 20))
else:
    for i in range(size):
        if fraction < 1 and i % 2: continue
        d = f"{root}/d{i % 16:02d}"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/f{i:05d}", "wb") as f: f.write(os.urandom(1 << 20))
PY
}

"$sm" init --store "$work/store" --min 256 --avg 1024 --max 4096 --codec none > /dev/null
fill 1
first=$("$sm" backup --no-shadow-copy --json --store "$work/store" "$work/data" | tail -1 | python3 -c "import json,sys; print(json.load(sys.stdin)['snapshot'])")
fill 0.5
"$sm" backup --no-shadow-copy --store "$work/store" "$work/data" > /dev/null
"$sm" forget --store "$work/store" --apply "$first" > /dev/null
chunks=$(python3 - "$work/store/index" <<'PY'
import os, struct, sys
print(sum(struct.unpack_from("<I", open(os.path.join(sys.argv[1], n), "rb").read(16), 12)[0] for n in os.listdir(sys.argv[1]) if not n.startswith(".")))
PY
)
/usr/bin/time -f "%e %M" -o "$work/time" "$sm" prune --store "$work/store" > "$work/prune.out"
read -r seconds peak < "$work/time"

# The fixed cost: the same prune on a store of one small file.
mkdir -p "$work/tiny"
head -c 100000 /dev/urandom > "$work/tiny/f"
"$sm" init --store "$work/tiny-store" --codec none > /dev/null
"$sm" backup --no-shadow-copy --store "$work/tiny-store" "$work/tiny" > /dev/null
/usr/bin/time -f "%M" -o "$work/time" "$sm" prune --store "$work/tiny-store" > /dev/null
base=$(cat "$work/time")

cat "$work/prune.out"
python3 - "$shape" "$size" "$chunks" "$seconds" "$peak" "$base" <<'PY'
import sys
shape, size, chunks, seconds, peak, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
print(f"store: {shape}, {size} MiB per snapshot, {chunks} chunks indexed before prune")
print(f"prune: {seconds:.2f} s, peak RSS {peak/1024:.1f} MiB = {peak*1024/chunks:.1f} bytes per chunk "
      f"({(peak-base)*1024/chunks:.1f} above the {base/1024:.1f} MiB of a prune of a one-file store)")
PY
