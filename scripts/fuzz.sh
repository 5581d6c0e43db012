#!/bin/bash
# Build the libFuzzer targets (a clang tree with -Dfuzz=true) if needed and run each for a
# while on its seed corpus; prints one line per target: executions, crashes, corpus size.
# Usage: scripts/fuzz.sh [-t SECONDS | -n RUNS] [-j JOBS] [-b BUILD_DIR] [TARGET...]
#   TARGET: mesh safetensors conf options replay (default: all). Seeds come from tests/data
#   (and ../shared/meshes when present) through fuzz/make-seeds.py; each target's corpus
#   grows in BUILD_DIR/fuzz-work/<target>/corpus, its crashes land in .../artifacts.
# A crash whose ASan report has its first frame outside the sanitizer runtime and the C/C++
# runtimes inside libassimp is assimp's own (fuzz/README.md "Known"): counted apart, as "N
# inside libassimp", not as a crash of ours; p3samd imports in a helper process that such a
# crash kills alone (test-import-helper). A crash without a report counts as ours.
# Exit status: 0 when no target crashed in our code, 1 when one did, 2 on a usage or build error.
set -uo pipefail

cd "$(dirname "$0")/.."
secs=60 runs= jobs=1 build=/tmp/b-fuzz
while getopts "t:n:j:b:h" o; do
        case $o in
        t) secs=$OPTARG runs= ;;
        n) runs=$OPTARG ;;
        j) jobs=$OPTARG ;;
        b) build=$OPTARG ;;
        *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
        esac
done
shift $((OPTIND - 1))
targets=("$@")
[ $# -eq 0 ] && targets=(mesh safetensors conf options replay)

if [ ! -f "$build/build.ninja" ]; then
        CC=clang CXX=clang++ meson setup "$build" --prefix=/usr -Dfuzz=true || exit 2
elif ! meson introspect "$build" --buildoptions | grep -q '"name": "fuzz", "value": true'; then
        meson configure "$build" -Dfuzz=true || exit 2
fi
ninja -C "$build" $(printf 'fuzz/fuzz-%s ' "${targets[@]}") || exit 2

work=$build/fuzz-work
python3 fuzz/make-seeds.py "$work/seeds" || exit 2
# assimp leaks on some refused inputs (fuzz/lsan-assimp.supp); every other leak still fails a
# run. The suppression matches assimp's frames, which only the slow unwinder sees.
export LSAN_OPTIONS=suppressions=$PWD/fuzz/lsan-assimp.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}
export ASAN_OPTIONS=fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}
# The meshes are big: fuzz-mesh runs on their first 64 KiB (the limit the others never reach).
declare -A max_len=([mesh]=65536 [safetensors]=16384 [replay]=16384 [conf]=4096 [options]=4096)

# in_assimp REPORT: "assimp" when the report's first frame outside the runtimes is in libassimp.
in_assimp() {
        awk '/^ *#[0-9]+ / {
                if ($0 ~ /libclang_rt|compiler-rt|asan_|interceptor|libstdc\+\+|libc\.so|libgcc_s/ ||
                    $0 ~ / in (operator (new|delete)|free|malloc|calloc|realloc) /)
                        next
                if ($0 ~ /libassimp/) print "assimp"
                exit
        }' "$1"
}

status=0
for t in "${targets[@]}"; do
        bin=$build/fuzz/fuzz-$t
        [ -x "$bin" ] || { echo "fuzz.sh: no target $t." >&2; exit 2; }
        mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
        limit=(-max_total_time="$secs")
        [ -n "$runs" ] && limit=(-runs="$runs")
        before=$(find "$work/$t/artifacts" -type f | wc -l)
        log=$work/$t/log
        # Each job's sanitizer report as a file (fork mode deletes the jobs' own logs).
        rm -rf "$work/$t/reports" && mkdir -p "$work/$t/reports"
        # -fork: each job its own process, so one crash is counted and the run goes on.
        ASAN_OPTIONS=$ASAN_OPTIONS:log_path=$work/$t/reports/asan "$bin" "${limit[@]}" -max_len="${max_len[$t]}" -timeout=30 -rss_limit_mb=4096 \
                -fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
                -artifact_prefix="$work/$t/artifacts/" -print_final_stats=1 \
                "$work/$t/corpus" "$work/seeds/$t" >"$log" 2>&1
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
        [ -n "$runs" ] || [ -n "$execs" ] || execs=0
        stat=$(grep -oE 'number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)
        execs=${stat:-${execs:-0}}
        crashes=$(( $(find "$work/$t/artifacts" -type f | wc -l) - before ))
        assimp=0
        for r in "$work/$t/reports"/asan*; do
                [ -f "$r" ] && [ "$(in_assimp "$r")" = assimp ] && assimp=$((assimp + 1))
        done
        [ "$assimp" -le "$crashes" ] || assimp=$crashes
        crashes=$((crashes - assimp))
        corpus=$(find "$work/$t/corpus" -type f | wc -l)
        echo "fuzz-$t: $execs executions, $crashes crashes, $assimp inside libassimp, corpus $corpus (log $log)"
        [ "$crashes" -eq 0 ] || status=1
done
exit $status
