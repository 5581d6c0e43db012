#!/bin/bash
# gpu-check.sh: prove the CUDA backend on a GPU machine, in one short run, figures into $OUT.
#
# Meant for the GPU machine lent now and then (H100/H200 class: driver and nvcc, none of
# Debian's -dev packages, no ../shared). It builds what it needs there, unless a build made
# here travels with it:
#
#   here:   scripts/gpu-check.sh --prepare  (builds build-gpu/: 19 MB, 34 with the full golden case)
#   there:  scripts/gpu-check.sh            (the device tool's run, with carry: ["build-gpu"])
#
# The engine-only build needs neither oneDNN (plain FP32 loops stand in for the CPU reference)
# nor assimp, libsystemd or libuv; cuBLAS is loaded from the CUDA toolkit at run time. The one
# Debian library it still links, json-c, travels in build-gpu/lib (gcc's runtime libraries
# are where nvcc is).
# Every step runs under its own timeout and its result goes to $OUT/gpu-check.txt, its whole
# output to $OUT/steps.log (the device tool brings back at most 8 files from $OUT, so the logs
# are one file); the exit status is 0 only when every step passed.
set -u
build=${P3_GPU_BUILD:-build-gpu}
# what --prepare carried besides the build (the full golden case), wherever the build is made
carried_shared=$(realpath -m "$build/shared")
# What the steps run, relative to a build folder (and the ptxas reports, kernels/cuda/*.log).
programs="daemon/tools/p3sam-run tests/test-golden tests/gpu-residency tests/bench-engine
tests/bench-structure tests/bench-pipeline tests/cuda/test-cuda-cudnn-sdpa"
# The files a build read (ninja's record of every compiler's dependencies: sources and headers
# of the tree) and the build files, so that the GPU machine can tell a stale carried build; an
# edit elsewhere (the service, the gateway, p3samctl) leaves it good.
sources_sum() {
        { ninja -C "$1" -t deps | sed -n 's|^    \.\./||p'
          git ls-files '*meson.build' meson_options.txt; } | sort -u | tr '\n' '\0' |
                xargs -0 sha256sum
}
# The full golden case (15 MB of upstream's tensors, from ../shared) into $build/shared, for the
# golden-full steps, when the working tree, the build and it stay inside the device tool's
# 64 MiB (with 4 MiB to spare); else those steps say they were not carried.
carry_golden_full() {
        local src=${P3_SHARED:-../shared}/golden/full dst=$build/shared/golden/full tree
        [ -f "$src/case.safetensors" ] || { echo "note: no $src: golden-full not carried"; return; }
        tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- |
                tail -n1 | cut -f1)
        local total=$((tree + $(du -sb "$build" | cut -f1) + $(du -cb "$src"/case.safetensors \
                "$src"/config.json | tail -n1 | cut -f1)))
        if [ $total -gt $((60 << 20)) ]; then
                echo "note: golden-full not carried: $((total >> 20)) MiB with it, over 60"
                return
        fi
        mkdir -p "$dst" && cp "$src"/case.safetensors "$src"/config.json "$dst/" || exit 1
}
if [ "${1:-}" = "--prepare" ]; then
        # built in $build.full (kept for the next --prepare), and only what the steps run
        # copied to $build: the working tree and the carried build share 64 MiB
        full=$build.full
        if [ ! -f "$full/build.ninja" ]; then
                meson setup "$full" -Dengine_only=true -Ddnnl=disabled -Dcuda=enabled \
                        -Dgpu_archs="${P3_GPU_ARCHS:-90}" >/dev/null || exit 1
        fi
        # shellcheck disable=SC2086 # $programs is a list of words
        ninja -C "$full" $programs || exit 1
        rm -rf "$build"
        for f in $programs "$full"/kernels/cuda/*.ptxas.log; do
                f=${f#"$full"/}
                mkdir -p "$build/$(dirname "$f")" && cp -p "$full/$f" "$build/$f" || exit 1
        done
        sources_sum "$full" >"$build/sources.sha256" || exit 1
        mkdir -p "$build/lib"
        # json-c is Debian's; libgomp too, in case the GPU machine's image has another GCC
        for lib in libjson-c.so.5 libgomp.so.1; do
                cp -L "$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')" \
                        "$build/lib/" || exit 1
        done
        # and json-c to build with there (headers and static library), should this build not
        # run on that machine's image: -Djsonc_prefix=$build/deps
        mkdir -p "$build/deps/include/json-c" "$build/deps/lib"
        cp /usr/include/json-c/*.h "$build/deps/include/json-c/" &&
                cp /usr/lib/x86_64-linux-gnu/libjson-c.a "$build/deps/lib/" || exit 1
        carry_golden_full
        du -sh "$build"
        exit 0
fi
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
ld_path=${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH=$PWD/$build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
report=$OUT/gpu-check.txt
logs=$(mktemp -d) # one log per step, read by the report's greps, each appended to steps.log
: >"$OUT/steps.log"
fails=0 skips=0
: >"$report"

say() { echo "$*" | tee -a "$report"; }
# The whole run stays inside P3_GPU_CHECK_BUDGET seconds (default 480, under the device tool's
# 600 s per command and its 15 minutes in all): each step's timeout is cut to what is left, and a
# step with under 20 s left is skipped and counted apart from failures, so a hung step costs the steps
# after it, never the figures already written.
budget=${P3_GPU_CHECK_BUDGET:-480}
step() { # step NAME SECONDS command...: runs it, its output in $logs/NAME.log and steps.log
        local name=$1 secs=$2
        shift 2
        local left=$((budget - SECONDS))
        if [ $left -lt 20 ]; then
                say "SKIP: $name (${left} s of the ${budget} s budget left)"
                : >"$logs/$name.log"
                skips=$((skips + 1))
                return 124
        fi
        [ "$secs" -gt "$left" ] && secs=$left
        local t0=$SECONDS
        # Line-buffered and streamed into steps.log as it comes, so that a crash, or the
        # device tool's own kill, still leaves every line written so far; a step stuck in the
        # driver gets SIGKILL 10 s after its SIGTERM.
        echo "==== $name: $*" >>"$OUT/steps.log"
        timeout -k 10 "$secs" stdbuf -oL -eL "$@" 2>&1 | tee "$logs/$name.log" >>"$OUT/steps.log"
        local rc=${PIPESTATUS[0]}
        echo "==== $name: exit $rc, $((SECONDS - t0)) s" >>"$OUT/steps.log"
        if [ $rc -eq 0 ]; then
                say "ok:   $name ($((SECONDS - t0)) s)"
        else
                say "FAIL: $name (exit $rc, $((SECONDS - t0)) s; its output in steps.log)"
                tail -n 20 "$logs/$name.log" | sed 's/^/      /' | tee -a "$report"
                fails=$((fails + 1))
        fi
        return $rc
}

say "gpu-check: $(date -u +%FT%TZ) on $(hostname)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 |
        sed 's/^/gpu: /' | tee -a "$report"

# -- build here, unless a carried build starts on this machine's image --
# build_here DIR: the engine-only build for this GPU, with the carried json-c where there is one.
build_here() {
        local dir=$1 sm jsonc=()
        if ! command -v meson >/dev/null || ! command -v ninja >/dev/null; then
                say "FAIL: no usable carried $build and no meson/ninja here to build one"
                exit 1
        fi
        [ -f "$build/deps/lib/libjson-c.a" ] && jsonc=(-Djsonc_prefix="$PWD/$build/deps")
        sm=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d .)
        rm -rf "$dir" # never the carried folder: its deps/ is what -Djsonc_prefix reads
        step configure 120 meson setup "$dir" -Dengine_only=true -Ddnnl=disabled \
                -Dcuda=enabled -Dgpu_archs="${sm:-90}" "${jsonc[@]}" || exit 1
        # only what the steps run: the whole tree would not fit the budget
        step build 300 ninja -C "$dir" daemon/tools/p3sam-run tests/test-golden \
                tests/gpu-residency tests/bench-engine tests/bench-structure \
                tests/bench-pipeline || exit 1
        build=$dir
}
# the folder of a shared library, wherever this image keeps it (ldconfig's cache, the CUDA
# toolkit, or the nvidia-* Python wheels)
libdir_of() {
        local f site
        f=$(ldconfig -p 2>/dev/null | awk -v l="$1" '$1 == l { print $NF; exit }')
        [ -n "$f" ] || f=$(ls /usr/local/cuda*/lib64/"$1" /usr/local/cuda*/targets/*/lib/"$1" \
                2>/dev/null | head -n1)
        if [ -z "$f" ] && command -v python3 >/dev/null; then
                site=$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null)
                [ -n "$site" ] && f=$(find "$site" -maxdepth 3 -name "$1" 2>/dev/null | head -n1)
        fi
        [ -n "$f" ] && dirname "$f"
}
# -- what this machine has: the report's only clue should every step fail --
say "nvcc: $(nvcc --version 2>/dev/null | tail -n1)"
for lib in libcublas.so.13 libcudnn_graph.so.9 libnvidia-ml.so.1; do
        dir=$(libdir_of "$lib")
        say "lib: $lib ${dir:-not found}"
        [ -n "$dir" ] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$dir && ld_path=$ld_path${ld_path:+:}$dir
done
export LD_LIBRARY_PATH

if [ ! -x "$build/daemon/tools/p3sam-run" ]; then
        build_here "$build-here"
elif [ -f "$build/sources.sha256" ] &&
        ! sha256sum -c --quiet "$build/sources.sha256" >"$logs/stale.log" 2>&1; then
        say "STALE: the carried $build was built from other sources than these:"
        grep -v '^sha256sum:' "$logs/stale.log" | head -n 8 | sed 's/^/      /' | tee -a "$report"
        build_here "$build-here"
elif ! "$build/daemon/tools/p3sam-run" --version >"$logs/starts.log" 2>&1; then
        # made on another image, it may not start here (its libraries): build again here, with
        # this machine's libraries and json-c linked statically
        say "note: the carried $build does not start here: $(tail -n1 "$logs/starts.log")"
        export LD_LIBRARY_PATH=$ld_path
        build_here "$build-here"
fi
run=$build/daemon/tools/p3sam-run
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$logs"' EXIT

# step_unavailable NAME WHY: the step just run could not run on this machine (not a failure of
# the backend): a note instead of a failure.
step_unavailable() {
        fails=$((fails - 1))
        say "note: $1 cannot run on this machine ($2); not counted as a failure"
}

# -- the self-test: every CUDA op against the CPU, at each precision --
for p in fp16 bf16 fp32; do
        step "selftest-$p" 60 "$run" selftest --backend cuda --precision "$p"
        rc=$?
        grep -E '^  |^device:|^selftest:' "$logs/selftest-$p.log" | sed "s/^/      [$p] /" \
                >>"$report"
        if [ "$p" = fp16 ] && { [ $rc -eq 124 ] || [ $rc -eq 137 ]; }; then
                # a GPU that hangs on the first small case would hang every step after it
                say "gpu-check: the first self-test hung; stopping here (figures and logs in $OUT)"
                exit 1
        fi
done

# -- the heads in tiles of 48 pairs and chunks of 3 prompts: the self-test's 203 points and 7
# prompts then cross 13 tiles of 16 points (the last partial) in each of 3 chunks --
step selftest-tiles 60 env P3_CUDA_HEADS_TILE=48,3 "$run" selftest --backend cuda --precision fp32
grep -E '^  heads|^selftest:' "$logs/selftest-tiles.log" | sed 's/^/      [tiles] /' >>"$report"

# -- a level's structure at level-0 sizes (up to 102,000 voxels): the host's time against the
# GPU's structure ops, whose results must equal the host's entry for entry --
step structure 60 env P3_BENCH_BACKEND=cuda "$build/tests/bench-structure"
grep -E 'voxels' "$logs/structure.log" | sed 's/^/      /' >>"$report"

# -- the golden cases on the GPU against upstream's tensors: fp32 within the CPU's tolerances,
# half precision within 2e-2 × max|ref|. tiny from tests/data; full (the real config) from the
# copy of ../shared/golden/full that --prepare carries in $build/shared --
for c in tiny full; do
        if [ $c = full ] && [ ! -f "$carried_shared/golden/full/case.safetensors" ]; then
                say "note: golden-full not run: --prepare did not carry ../shared/golden/full"
                continue
        fi
        for p in fp32 fp16; do
                step "golden-$c-$p" 60 env P3_TEST_DATA="$PWD/tests/data" \
                        P3_SHARED="$carried_shared" P3_GOLDEN_BACKEND=cuda \
                        P3_GOLDEN_PRECISION=$p "$build/tests/test-golden" $c
                grep -E 'FAIL|tensors compared|backend:' "$logs/golden-$c-$p.log" |
                        sed "s/^/      /" >>"$report"
        done
done

# -- compute-sanitizer's memcheck on the self-test, in small tiles (every tile path): out-of-
# bounds and misaligned accesses; its other tools come last. Under gVisor it refuses the device
# ("Device not supported"): a note, and the other tools are not tried --
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
sanitizer_ok=false
if [ -n "$sanitizer" ]; then
        step sanitizer 90 env P3_CUDA_HEADS_TILE=48,3 "$sanitizer" --error-exitcode 1 \
                "$run" selftest --backend cuda
        rc=$?
        grep -E 'ERROR SUMMARY|Device not supported|^selftest:' "$logs/sanitizer.log" |
                head -n 3 | sed 's/^/      [sanitizer] /' >>"$report"
        if grep -q 'Device not supported' "$logs/sanitizer.log"; then
                [ $rc -ne 0 ] && step_unavailable sanitizer "it says: Device not supported"
        elif ! grep -q 'ERROR SUMMARY' "$logs/sanitizer.log"; then
                [ $rc -ne 0 ] && step_unavailable sanitizer "memcheck gave no ERROR SUMMARY"
        else
                sanitizer_ok=true
        fi
else
        say "note: compute-sanitizer not found; skipped"
fi

# -- the benchmark: the full synthetic model, 100,000 points with 4 prompts (D: the features)
# then 400 (C: the heads), fp32 and fp16 side by side; per-stage times and the arena peak. D
# first and on its own, so that a failure in C cannot take the features' figures with it --
step bench-D 120 env P3_BENCH_BACKEND=cuda "$build/tests/bench-engine" D
grep -v '^$' "$logs/bench-D.log" | sed 's/^/      /' >>"$report" # per stage, and the summaries
step bench-C 200 env P3_BENCH_BACKEND=cuda "$build/tests/bench-engine" C
grep -v '^$' "$logs/bench-C.log" | sed 's/^/      /' >>"$report"

# -- the whole job as the service runs it: a real mesh (tests/data's Wuson.off), 100,000
# points, 400 prompts, fp16 under GpuMemoryMax's 1G, the batch auto; per stage, the load (with
# the self-test) and post-processing included (goal: the job <= 0.5 s on an H100) --
step pipeline 120 env P3_BENCH_BACKEND=cuda P3_BENCH_POINTS=100000 P3_BENCH_PROMPTS=400 \
        P3_TEST_DATA="$PWD/tests/data" "$build/tests/bench-pipeline"
sed 's/^/      /' "$logs/pipeline.log" >>"$report"

# -- residency: offload to 0 bytes (NVML), load again with identical outputs, fp16 against the
# CPU, and a prompt batch larger than the memory cap allows halved instead of failed --
step residency 150 "$build/tests/gpu-residency" 20000 64
sed 's/^/      /' "$logs/residency.log" >>"$report"

# -- attention: cuDNN's fused SDPA against the own kernel (the default), for correctness (the
# self-test's ops at fp16) and speed (scenario D's features, fp16); a refusal by cuDNN is logged
# with its reason and the own kernel runs, so the figures then compare the own kernel twice --
if [ -x "$build/tests/cuda/test-cuda-cudnn-sdpa" ]; then
        step cudnn-load 30 "$build/tests/cuda/test-cuda-cudnn-sdpa"
        [ $? -eq 77 ] && step_unavailable cudnn-load "cuDNN does not load here"
        grep -iE 'cudnn|version' "$logs/cudnn-load.log" | head -n 6 | sed 's/^/      /' >>"$report"
fi
step selftest-cudnn 60 env P3_CUDA_ATTENTION=cudnn "$run" selftest --backend cuda --precision fp16
grep -E '^  |cuDNN' "$logs/selftest-cudnn.log" | sed 's/^/      [cudnn] /' >>"$report"
# warmed up first (cuDNN makes a plan per shape at its first use), as scenario D was above
step bench-cudnn 150 env P3_CUDA_ATTENTION=cudnn P3_BENCH_BACKEND=cuda P3_BENCH_PRECISION=fp16 \
        P3_BENCH_WARMUP=1 "$build/tests/bench-engine" D
grep 'cuDNN SDPA' "$logs/bench-cudnn.log" | sort | uniq -c | head -n 8 | sed 's/^/      /' \
        >>"$report"
sed -n '/end of the warm-up/,$p' "$logs/bench-cudnn.log" | grep -E 'features|heads|Summary|^D ' |
        sed 's/^/      [cudnn] /' >>"$report"

# -- compute-sanitizer's other checks, where memcheck ran: cuDNN's attention under memcheck;
# shared-memory races; barriers in divergent code --
if $sanitizer_ok; then
        step sanitizer-cudnn 60 env P3_CUDA_ATTENTION=cudnn "$sanitizer" --error-exitcode 1 \
                "$run" selftest --backend cuda --precision fp16
        step sanitizer-race 90 env P3_CUDA_HEADS_TILE=48,3 "$sanitizer" --tool racecheck \
                --error-exitcode 1 "$run" selftest --backend cuda
        step sanitizer-sync 60 "$sanitizer" --tool synccheck --error-exitcode 1 \
                "$run" selftest --backend cuda
        for t in sanitizer-cudnn sanitizer-race sanitizer-sync; do
                grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|Device not supported|^selftest:' \
                        "$logs/$t.log" | head -n 3 | sed "s/^/      [$t] /" >>"$report"
        done
fi

# -- ptxas: registers and spills of the attention and heads kernels, as built (compile-time
# figures, the same here as where the build was made) --
for f in cuda_attention cuda_heads; do
        log=$build/kernels/cuda/$f.cu.ptxas.log
        [ -f "$log" ] && grep -E 'entry function|registers|spill' "$log" | head -n 24 |
                sed "s/^/ptxas $f: /" >>"$report"
done

say "gpu-check: $fails failure(s), $skips step(s) not run for lack of time; figures and logs in $OUT"
[ $fails -eq 0 ] && [ $skips -eq 0 ]
