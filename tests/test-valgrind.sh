#!/bin/bash
# valgrind memcheck over one whole segmentation, as p3sam-run does it: import (in process,
# assimp included), sampling, the network, the heads, post-processing and every exporter
# (GLB, PLY, JSON, PNG, the upstream .npy files), on the tiny synthetic model with 500 points
# and 4 prompts (every stage runs; memcheck's slowdown makes the CPU defaults take hours), and
# then a predict.
#
# It needs a p3sam-run built without oneDNN (-Ddnnl=disabled): oneDNN writes a JIT kernel for
# each new matrix shape, and valgrind, which must translate each one, then takes minutes for what
# runs in half a second (measured: 500 points took 4 min under valgrind --tool=none, 0.5 s
# natively). scripts/test-valgrind.sh makes that build and runs this test; with a oneDNN
# p3sam-run it skips. Fails on any invalid read or write,
# use of uninitialised memory in a branch or system call, bad free, or definite or indirect
# leak (--error-exitcode). valgrind's CPU has no AVX-512, so the engine takes its FP32 oneDNN
# path here (the line "device:" says so); the BF16/AMX paths run under ASan in
# scripts/test-sanitize.sh instead. Skips under the sanitizers (a second instrumentation) and where
# valgrind is not installed.
set -u
run=${P3SAM_RUN:?}
data=${P3_TEST_DATA:?}
skip() { echo "SKIP: $*"; exit 77; }
[ -z "${P3_SANITIZE:-}" ] || skip "P3_SANITIZE: valgrind does not run ASan-instrumented programs"
command -v valgrind >/dev/null || skip "valgrind is not installed (Debian: valgrind)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # check DESCRIPTION -- command...
        local what=$1
        shift 2
        if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fails=$((fails + 1)); fi
}

"$run" synth --config "$data/tiny_config.json" --out "$tmp/w.safetensors" >/dev/null ||
        { echo "FAIL: synth"; exit 1; }
"$run" segment --weights "$tmp/w.safetensors" --config "$data/tiny_config.json" --points 500 \
        --prompts 4 "$data/meshes/alien.glb" -o "$tmp/native.glb" >"$tmp/native.out" 2>&1 ||
        { echo "FAIL: a native run"; cat "$tmp/native.out"; exit 1; }
! grep -q '^device:.*oneDNN' "$tmp/native.out" || skip "this p3sam-run uses oneDNN (its JIT \
kernels make valgrind take minutes per job): scripts/test-valgrind.sh runs this test on a build \
without it"

memcheck() { # memcheck NAME WANT p3sam-run-arguments...: 0 when p3sam-run exits WANT and
        # valgrind found nothing
        local name=$1 want=$2
        shift 2
        # The OpenMP runtime keeps its thread pool to the end: "possibly" and "still
        # reachable" blocks are not leaks; definite and indirect ones are.
        # OMP_WAIT_POLICY set: p3sam-run re-executes itself to set it otherwise
        # (daemon/common/omp-env.c), and valgrind would watch only the first, short-lived
        # image; --trace-children follows any exec all the same.
        OMP_WAIT_POLICY=passive valgrind --quiet --trace-children=yes --error-exitcode=99 \
                --leak-check=full \
                --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
                --log-file="$tmp/$name.vg" "$run" "$@" >"$tmp/$name.out" 2>&1
        local rc=$?
        local reports
        reports=$(grep -c '^==[0-9]*== [A-Z]' "$tmp/$name.vg")
        echo "   $name: p3sam-run exit $rc, $reports valgrind report lines; $(grep -m1 "^device:" "$tmp/$name.out")"
        [ $rc -eq "$want" ] && [ "$reports" -eq 0 ] && return 0
        sed -n '1,60p' "$tmp/$name.vg" "$tmp/$name.out"
        return 1
}

mesh=$data/meshes/alien.glb
model=(--weights "$tmp/w.safetensors" --config "$data/tiny_config.json" --threads 1 --points 500)
check "segment under memcheck: no error, no leak" -- memcheck segment 0 segment "${model[@]}" \
        "$mesh" --prompts 4 --post-process -o "$tmp/x.glb" -o "$tmp/x.ply" -o "$tmp/x.json" -o "$tmp/x.png" \
        --upstream-files --png-size 128
check "... and every output was written" -- bash -c "cd '$tmp' && ls x.glb x.ply x.json x.png \
x_aabb.glb x_aabb.npy x_face_ids.npy >/dev/null"
check "... a GLB" -- [ "$(head -c 4 "$tmp/x.glb")" = glTF ]
check "predict under memcheck: no error, no leak" -- memcheck predict 0 predict "${model[@]}" \
        "$mesh" --prompt 0,0,0 --prompt 0.1,0.2,0.1 --json "$tmp/p.json"
check "... and its JSON was written" -- test -s "$tmp/p.json"
# A refused mesh takes the error paths: they must free what they took too.
check "a truncated mesh under memcheck: refused (exit 1), no error, no leak" -- memcheck bad 1 \
        segment "${model[@]}" "$data/meshes/bad/Fox_truncated.glb" -o "$tmp/bad.glb"
check "... and no output" -- test ! -e "$tmp/bad.glb"
echo "$fails failed"
[ $fails -eq 0 ]
