#!/usr/bin/env bash
# Compares ShadowMover with restic and borg on the same directory, side by side, alternating the
# order each round, and prints medians and ShadowMover/peer ratios for: first backup, forced re-read
# (every file read again, every chunk already stored), restore, reading and verifying every chunk
# (check --read-data; borg check --verify-data), and peak memory. A restore's time runs until its data
# is written out (the restore, then sync).
#
#   tools/compare-peers.sh PATH [ROUNDS]        (default 3 rounds; build with `swift build -c release` first)
#   tools/compare-peers.sh small-files [ROUNDS] (100,000 files of 0–16 KiB, generated: `shadowmover bench generate`)
#   tools/compare-peers.sh large-file [ROUNDS]  (one 4 GiB file of mixed data, generated)
#
# RESTORE_FS=ext4|xfs|btrfs restores into a freshly made loop volume of that filesystem each time
# (root): file creation on a filesystem that has just deleted a restore's 100,000 files costs several
# times what it costs on a fresh one (ext4's inode allocator skips recently deleted inodes), which
# otherwise dominates the small-files shape. The loop device writes its image with O_DIRECT
# (TEST_VOLUME_DIRECT_IO), so the volume's writes are not cached twice.
# Environment: TOOLS (default "shadowmover restic borg"), SHADOWMOVER (binary, default .build/release/shadowmover), SCRATCH (work directory,
# default a new directory under /var/tmp, removed at the end). restic and borgbackup are installed from
# Debian's packages when missing. Peers use their defaults (restic: compression auto; borg: lz4, as in
# DESIGN.md's figures); ShadowMover its default (zstd level 1). Hot page cache: PATH is read first.
# With SHADOWMOVER_S3_ENDPOINT and the AWS keys set (tools/ceph-s3.sh start prints them), ShadowMover
# and restic also back up into and restore from that S3 endpoint (a new bucket each round): the S3 rows.
set -euo pipefail
shape=${1:?usage: compare-peers.sh PATH|small-files|large-file [ROUNDS]}
rounds=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
sm=${SHADOWMOVER:-$here/.build/release/shadowmover}
[ -x "$sm" ] || { echo "no $sm: run swift build -c release" >&2; exit 1; }
if ! command -v restic >/dev/null || ! command -v borg >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq restic borgbackup >/dev/null
fi
scratch=${SCRATCH:-$(mktemp -d /var/tmp/compare-peers.XXXXXX)}
mkdir -p "$scratch"
trap '[ -z "${RESTORE_FS:-}" ] || "$here/tools/test-volume.sh" remove "$scratch/volume" >/dev/null 2>&1; rm -rf "$scratch"' EXIT
case $shape in
    small-files|large-file) path="$scratch/$shape"; "$sm" bench generate "$shape" "$path" ;;
    *) path=$(cd "$shape" && pwd) ;;
esac
results="$scratch/results.csv"
: > "$results"
export RESTIC_PASSWORD=compare-peers SHADOWMOVER_PASSWORD=compare-peers BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export RESTIC_CACHE_DIR="$scratch/restic-cache" BORG_BASE_DIR="$scratch/borg-base"

bytes=$(find "$path" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%.0f", s}')
tar cf - "$path" 2>/dev/null | cat > /dev/null   # hot cache

# restore_target prints an empty directory to restore into: on a fresh loop volume with RESTORE_FS.
restore_target() {
    if [ -n "${RESTORE_FS:-}" ]; then
        TEST_VOLUME_DIRECT_IO=1 "$here/tools/test-volume.sh" create "$RESTORE_FS" "$scratch/volume" $((bytes / 1000000 * 2 + 1024)) > /dev/null
        mkdir "$scratch/volume/target" && echo "$scratch/volume/target"
    else
        rm -rf "$scratch/target" && mkdir "$scratch/target" && echo "$scratch/target"
    fi
}
release_target() {
    if [ -n "${RESTORE_FS:-}" ]; then "$here/tools/test-volume.sh" remove "$scratch/volume" > /dev/null; fi
    rm -rf "$scratch/target"
}

# warm REPO reads a repository into the page cache before its restore (the check after it finds it there too): ShadowMover writes
# packs with O_DIRECT, which leaves them out of the cache, while restic and borg write through it —
# without this only ShadowMover's restore would read its store from the disk (and share it with the
# restore's writes).
warm() { tar cf - "$1" 2>/dev/null | cat > /dev/null; }

measure() {  # tool phase round command...
    local tool=$1 phase=$2 round=$3; shift 3
    /usr/bin/time -f "%e %M" -o "$scratch/time" "$@" > /dev/null 2> "$scratch/err" || { cat "$scratch/err" >&2; exit 1; }
    read -r seconds kb < "$scratch/time"
    echo "$tool,$phase,$round,$seconds,$kb" >> "$results"
    printf "  %-12s %-10s %8.2f s %8d KiB\n" "$tool" "$phase" "$seconds" "$kb"
}

# A restore is measured until its data is on the target's device: the restore, then sync. restic and
# borg write through the page cache and exit while much of it is still to be written back;
# ShadowMover writes large files with O_DIRECT. The sync before it settles what earlier phases left.
measure_restore() {  # tool round command...
    local tool=$1 round=$2; shift 2
    sync
    measure "$tool" restore "$round" sh -c '"$@" && sync' sh "$@"
}

run_shadowmover() {
    local r=$1 repo="$scratch/sm-repo" target="$scratch/target"
    rm -rf "$repo" "$target"
    "$sm" init --store "$repo" > /dev/null
    measure shadowmover backup "$r" "$sm" backup --no-shadow-copy --store "$repo" "$path"
    measure shadowmover reread "$r" "$sm" backup --no-shadow-copy --force --store "$repo" "$path"
    target=$(restore_target); warm "$repo"
    measure_restore shadowmover "$r" "$sm" restore latest --store "$repo" --target "$target"
    release_target
    measure shadowmover check "$r" "$sm" check --read-data --store "$repo"
    rm -rf "$repo" "$target"
}

run_restic() {
    local r=$1 repo="$scratch/restic-repo" target="$scratch/target"
    rm -rf "$repo" "$target" "$RESTIC_CACHE_DIR"
    restic init --repo "$repo" -q > /dev/null
    measure restic backup "$r" restic -r "$repo" backup -q "$path"
    measure restic reread "$r" restic -r "$repo" backup -q --force "$path"
    target=$(restore_target); warm "$repo"
    measure_restore restic "$r" restic -r "$repo" restore latest -q --target "$target"
    release_target
    measure restic check "$r" restic -r "$repo" check -q --read-data
    rm -rf "$repo" "$target"
}

run_borg() {
    local r=$1 repo="$scratch/borg-repo" target="$scratch/target"
    rm -rf "$repo" "$target" "$BORG_BASE_DIR"
    borg init -e none "$repo"
    measure borg backup "$r" borg create --compression lz4 "$repo::a1" "$path"
    measure borg reread "$r" borg create --compression lz4 --files-cache=disabled "$repo::a2" "$path"
    target=$(restore_target); warm "$repo"
    (cd "$target" && measure_restore borg "$r" borg extract "$repo::a2")
    release_target
    measure borg check "$r" borg check --verify-data "$repo"
    rm -rf "$repo" "$target"
}

run_shadowmover_s3() {
    local r=$1 repo="s3:$SHADOWMOVER_S3_ENDPOINT/compare-sm-$r-$$/store" target="$scratch/target"
    rm -rf "$target"
    XDG_CACHE_HOME="$scratch/sm-cache" "$sm" init --store "$repo" > /dev/null
    measure shadowmover-s3 backup "$r" env XDG_CACHE_HOME="$scratch/sm-cache" "$sm" backup --no-shadow-copy --store "$repo" "$path"
    measure shadowmover-s3 reread "$r" env XDG_CACHE_HOME="$scratch/sm-cache" "$sm" backup --no-shadow-copy --force --store "$repo" "$path"
    measure_restore shadowmover-s3 "$r" env XDG_CACHE_HOME="$scratch/sm-cache" "$sm" restore latest --store "$repo" --target "$target"
    rm -rf "$target" "$scratch/sm-cache"
}

run_restic_s3() {
    local r=$1 repo="s3:$SHADOWMOVER_S3_ENDPOINT/compare-restic-$r-$$" target="$scratch/target"
    rm -rf "$target" "$RESTIC_CACHE_DIR"
    restic init --repo "$repo" -q > /dev/null
    measure restic-s3 backup "$r" restic -r "$repo" backup -q "$path"
    measure restic-s3 reread "$r" restic -r "$repo" backup -q --force "$path"
    measure_restore restic-s3 "$r" restic -r "$repo" restore latest -q --target "$target"
    rm -rf "$target"
}

tools=${TOOLS:-shadowmover restic borg}
[ -n "${SHADOWMOVER_S3_ENDPOINT:-}" ] && tools="$tools shadowmover_s3 restic_s3"
for r in $(seq 1 "$rounds"); do
    echo "round $r"
    order=$tools
    if [ $((r % 2)) -eq 0 ]; then order=$(echo "$tools" | tr ' ' '\n' | tac | tr '\n' ' '); fi
    for tool in $order; do "run_$tool" "$r"; done
done

python3 - "$results" "$bytes" "$path" <<'PY'
import csv, statistics, sys
rows = list(csv.reader(open(sys.argv[1])))
total = int(sys.argv[2])
med = {}
for tool, phase, _, seconds, kb in rows:
    med.setdefault((tool, phase), []).append((float(seconds), int(kb)))
def m(tool, phase, i):
    return statistics.median(v[i] for v in med[(tool, phase)])
print(f"\n{sys.argv[3]}: {total/1e9:.2f} GB, medians of {len(med[('shadowmover','backup')])} rounds")
phases = ("backup", "reread", "restore", "check")
print(f"{'':14}{'first backup':>16}{'forced re-read':>16}{'restore':>16}{'check --read':>16}{'peak memory':>14}")
tools = [t for t in ("shadowmover", "restic", "borg", "shadowmover-s3", "restic-s3") if (t, "backup") in med]
for tool in tools:
    cells = [f"{total/1e6/m(tool, p, 0):11.0f} MB/s" if (tool, p) in med else "-" for p in phases]
    mem = max(m(tool, p, 1) for p in phases if (tool, p) in med) / 1024
    print(f"{tool:14}" + "".join(f"{c:>16}" for c in cells) + f"{mem:10.0f} MiB")
pairs = [(a, b) for a, b in (("shadowmover", "restic"), ("shadowmover", "borg"), ("shadowmover-s3", "restic-s3")) if a in tools and b in tools]
for ours, peer in pairs:
    both = [p for p in phases if (ours, p) in med and (peer, p) in med]
    ratios = [f"{m(peer, p, 0) / m(ours, p, 0):15.2f}×" if p in both else "-" for p in phases]
    mem = max(m(ours, p, 1) for p in both) / max(m(peer, p, 1) for p in both)
    label = ("S3: SM/" if ours.endswith("-s3") else "ShadowMover/") + peer.replace("-s3", "")
    print(f"{label:14}" + "".join(f"{r:>16}" for r in ratios) + f"{mem:13.2f}×")
print("(throughput ratios > 1: ShadowMover faster; memory ratio < 1: ShadowMover smaller)")
PY
