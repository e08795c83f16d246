#!/usr/bin/env bash
# Two ShadowMover binaries and restic side by side on one directory, alternating round by round:
# first backup, forced re-read, restore (seconds, hot cache). For "before and after" figures.
#
#   tools/compare-versions.sh OLD_BINARY NEW_BINARY [PATH] [ROUNDS]
#
# Each binary makes its own default store (`init`; the password below serves encrypted ones), so an
# older binary without encryption is compared as it shipped. restic is installed when missing.
set -euo pipefail
old=${1:?usage: compare-versions.sh OLD_BINARY NEW_BINARY [PATH] [ROUNDS]}
new=${2:?usage: compare-versions.sh OLD_BINARY NEW_BINARY [PATH] [ROUNDS]}
path=${3:-/opt/swift/usr/bin}
rounds=${4:-3}
command -v restic > /dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic > /dev/null
scratch=$(mktemp -d /var/tmp/shadowmover-versions.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export SHADOWMOVER_PASSWORD=compare RESTIC_PASSWORD=compare XDG_CACHE_HOME="$scratch/cache" RESTIC_CACHE_DIR="$scratch/restic-cache"
seconds() { local s e; s=$(date +%s.%N); "$@" > /dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
echo "round tool backup reread restore"
for r in $(seq 1 "$rounds"); do
    for tool in old new restic; do
        rm -rf "$scratch/repo" "$scratch/target"
        if [ "$tool" = restic ]; then
            restic init --repo "$scratch/repo" -q > /dev/null
            b=$(seconds restic -r "$scratch/repo" backup -q "$path")
            f=$(seconds restic -r "$scratch/repo" backup -q --force "$path")
            x=$(seconds restic -r "$scratch/repo" restore latest -q --target "$scratch/target")
        else
            bin=$old; [ "$tool" = new ] && bin=$new
            "$bin" init --store "$scratch/repo" > /dev/null 2>&1
            b=$(seconds "$bin" backup --no-shadow-copy --store "$scratch/repo" "$path")
            f=$(seconds "$bin" backup --no-shadow-copy --force --store "$scratch/repo" "$path")
            x=$(seconds "$bin" restore latest --store "$scratch/repo" --target "$scratch/target")
        fi
        echo "$r $tool $b $f $x"
    done
done | tee "$scratch/results"
python3 - "$scratch/results" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1]) if l[0].isdigit()]
med = {t: [statistics.median(float(r[i]) for r in rows if r[1] == t) for i in (2, 3, 4)] for t in ("old", "new", "restic")}
for t, m in med.items():
    print("%-7s median s: backup %.2f  re-read %.2f  restore %.2f" % (t, *m))
for t in ("old", "new"):
    print("%-7s / restic: %.2fx  %.2fx  %.2fx" % (t, *(med["restic"][i] / med[t][i] for i in range(3))))
PY
