#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/, with AddressSanitizer) and runs one, or all, for a time.
#
#   tools/fuzz.sh TARGET|all SECONDS [extra libFuzzer flags]
#
# Targets: pack-trailer index-segment tree content-list snapshot-record config writer-reply job-file.
# Each starts from the committed seeds in Fuzz/corpus/TARGET and keeps what it finds in
# .build-fuzz/corpus/TARGET; a crash is written to .build-fuzz/artifacts/TARGET/ and fails the run.
# The last line per target is libFuzzer's: runs, exec/s, coverage. See docs/FUZZING.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${1:?target: pack-trailer, index-segment, tree, content-list, snapshot-record, config, writer-reply, job-file or all}
seconds=${2:?seconds to run each target}
shift 2
all=(pack-trailer index-segment tree content-list snapshot-record config writer-reply job-file)
if [ "$target" = all ]; then targets=("${all[@]}"); else targets=("$target"); fi

scratch=$root/.build-fuzz
(cd "$root/Fuzz" && swift build --scratch-path "$scratch" -Xswiftc -sanitize=fuzzer,address --product shadowmover-fuzz 2>&1 |
    grep -v "Cannot export local symbol" | tail -3)
binary=$scratch/debug/shadowmover-fuzz

# One target; prints its libFuzzer summary, or the crash and where its input is (and fails).
fuzz_one() {
    local t=$1
    shift
    local work=$scratch/corpus/$t artifacts=$scratch/artifacts/$t log=$scratch/$t.log
    mkdir -p "$work" "$artifacts"
    rm -f "$scratch/$t.failed"
    echo "== $t for ${seconds}s"
    # -rss_limit_mb: any input that makes a parser allocate beyond its size by this much is a finding.
    # SWIFT_BACKTRACE=enable=no: a Swift trap then prints its message and dies in libFuzzer's handler;
    # the runtime's own backtracer trips AddressSanitizer and hides what the trap was.
    if ! SWIFT_BACKTRACE=enable=no SHADOWMOVER_FUZZ_TARGET=$t "$binary" "$work" "$root/Fuzz/corpus/$t" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" "$@" >"$log" 2>&1; then
        touch "$scratch/$t.failed"
        grep -E -A1 "Fatal error|ERROR: |SUMMARY: " "$log" | head -20 || true
        grep -E "^ +#[0-9]+ .* in " "$log" | head -16 || true
        echo "FAIL: $t found a crash (input in $artifacts; replay: SHADOWMOVER_FUZZ_TARGET=$t $binary FILE)"
        return 1
    fi
    grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" "$log" | tr '\n' ' ' || true
    grep -E "cov: [0-9]+" "$log" | tail -1 | sed -E 's/.*(cov: [0-9]+ ft: [0-9]+).*/ \1/' || true
    echo
}

# As many targets at once as there are cores (each runs on one); reports in target order. A failed
# target leaves a marker file, so no exit status can be lost to the throttling waits.
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n || true; done
    fuzz_one "$t" "$@" >"$scratch/$t.summary" 2>&1 &
done
wait
failed=0
for t in "${targets[@]}"; do
    cat "$scratch/$t.summary"
    if [ -e "$scratch/$t.failed" ]; then failed=1; fi
done
if [ "$failed" -ne 0 ]; then
    echo "FAIL: a fuzz target found a crash (above)" >&2
    exit 1
fi
