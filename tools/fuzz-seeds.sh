#!/usr/bin/env bash
# Seeds the fuzz corpora (Fuzz/corpus/TARGET/) from real objects: a small store made by the built
# `shadowmover` (a few files, one of more than 4,096 chunks so that content lists exist), plus job files
# and exec-writer replies. Run after `swift build`; the seeds are committed, so this is needed only
# when the formats change.
#
#   tools/fuzz-seeds.sh [SHADOWMOVER_BINARY]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/.build/debug/shadowmover}
corpus=$root/Fuzz/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

store=$work/store
src=$work/src
mkdir -p "$src/dir/sub"
printf 'hello\n' >"$src/dir/a.txt"
ln -s a.txt "$src/dir/link"
mkfifo "$src/dir/fifo"
head -c 300000 /dev/urandom >"$src/dir/sub/random"
setfattr -n user.note -v seed "$src/dir/a.txt" 2>/dev/null || true
# 4,096+ chunks of 4 KiB minimum: zeros cut at the maximum, so use a file of repeated random pages.
python3 - "$src/large" <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    for i in range(4200):
        f.write(os.urandom(4096))
PY
"$bin" init --store "$store" --min 4096 --avg 4096 --max 8192 --codec zstd:1 >/dev/null
"$bin" backup --store "$store" "$src" >/dev/null 2>&1
# A second store of only the small files: its pack and index segment are a few KiB, whole seeds.
tiny=$work/tiny
"$bin" init --store "$tiny" --min 4096 --avg 4096 --max 8192 --codec lz4 >/dev/null
"$bin" backup --store "$tiny" "$src/dir/a.txt" "$src/dir/link" >/dev/null 2>&1

mkdir -p "$corpus"/{pack-trailer,index-segment,tree,content-list,snapshot-record,config,writer-reply,job-file}
cp "$store/config" "$corpus/config/seed"
for f in "$store"/snapshots/*; do cp "$f" "$corpus/snapshot-record/$(basename "$f" | cut -c1-16)"; done
# Index segments and packs: only small ones (libFuzzer mutates better, and the corpus stays small).
for f in "$tiny"/index/*; do cp "$f" "$corpus/index-segment/$(basename "$f" | cut -c1-16)"; done
for f in $(find "$tiny/packs" -type f); do cp "$f" "$corpus/pack-trailer/$(basename "$f" | cut -c1-16)"; done
snapshot=$(ls "$store/snapshots" | head -1)
# Every tree and content list the snapshot reaches, through `inspect cat`.
python3 - "$bin" "$store" "$snapshot" "$corpus" <<'PY'
import json, subprocess, sys
bin, store, snapshot, corpus = sys.argv[1:]
def cat(kind, oid):
    return subprocess.run([bin, "inspect", "cat", kind, oid, "--store", store], check=True, capture_output=True).stdout
root = json.loads(cat("snapshot", snapshot))["tree"]
todo = [root]
while todo:
    tid = todo.pop()
    raw = cat("tree", tid)
    if len(raw) <= 65536:
        open(f"{corpus}/tree/{tid[:16]}", "wb").write(raw)
    for node in json.loads(raw)["nodes"]:
        if node.get("subtree"): todo.append(node["subtree"])
        ids = node.get("content", [])
        if len(ids) >= 64:  # a content list is the raw 32-byte ids of consecutive chunks
            open(f"{corpus}/content-list/{tid[:16]}", "wb").write(bytes.fromhex("".join(ids[:64])))
PY
cp "$root/tools/example-job.toml" "$corpus/job-file/example"
printf '{"ok": true, "metadata": {"components": [{"name": "db", "files": ["/srv/db"]}]}}\n{"ok": false, "failure": "retryable", "message": "busy"}\n' >"$corpus/writer-reply/replies"
printf '{"ok": true}\n' >"$corpus/writer-reply/ok"
echo "seeded: $(find "$corpus" -type f | wc -l) files in $corpus"
