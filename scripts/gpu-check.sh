#!/bin/bash
# gpu-check.sh: prove the CUDA backend on a GPU machine, in one short run, figures into $OUT.
#
# Meant for the GPU machine lent now and then (H100/H200 class: driver and nvcc, none of
# Debian's -dev packages, no ../shared). It builds what it needs there, unless a build made
# here travels with it:
#
#   here:   scripts/gpu-check.sh --prepare  (builds build-gpu/, ~30 MB)
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
# The sources a build was made from, so that the GPU machine can tell a stale carried build.
sources_sum() { git ls-files -z kernels daemon tests meson.build meson_options.txt |
        xargs -0 sha256sum; }
if [ "${1:-}" = "--prepare" ]; then
        rm -rf "$build" # meson 1.0's --wipe refuses a folder that is not a build tree yet
        meson setup "$build" -Dengine_only=true -Ddnnl=disabled -Dcuda=enabled \
                -Dgpu_archs="${P3_GPU_ARCHS:-90}" >/dev/null || exit 1
        ninja -C "$build" || exit 1
        sources_sum >"$build/sources.sha256" || exit 1
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
fails=0
: >"$report"

say() { echo "$*" | tee -a "$report"; }
# The whole run stays inside P3_GPU_CHECK_BUDGET seconds (default 480, under the device tool's
# 600 s per command and its 15 minutes in all): each step's timeout is cut to what is left, and a
# step with under 20 s left is skipped and counted as a failure, so a hung step costs the steps
# after it, never the figures already written.
budget=${P3_GPU_CHECK_BUDGET:-480}
step() { # step NAME SECONDS command...: runs it, its output in $logs/NAME.log and steps.log
        local name=$1 secs=$2
        shift 2
        local left=$((budget - SECONDS))
        if [ $left -lt 20 ]; then
                say "FAIL: $name (skipped: ${left} s of the ${budget} s budget left)"
                : >"$logs/$name.log"
                fails=$((fails + 1))
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
                tests/gpu-residency tests/bench-engine tests/bench-structure || exit 1
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

# -- the self-test: every CUDA op against the CPU, at each precision --
for p in fp16 bf16 fp32; do
        step "selftest-$p" 60 "$run" selftest --backend cuda --precision "$p"
        grep -E '^  |^device:|^selftest:' "$logs/selftest-$p.log" | sed "s/^/      [$p] /" \
                >>"$report"
done

# -- the heads in tiles of 48 pairs and chunks of 3 prompts: the self-test's 203 points and 7
# prompts then cross 13 tiles of 16 points (the last partial) in each of 3 chunks --
step selftest-tiles 60 env P3_CUDA_HEADS_TILE=48,3 "$run" selftest --backend cuda --precision fp32
grep -E '^  heads|^selftest:' "$logs/selftest-tiles.log" | sed 's/^/      [tiles] /' >>"$report"

# -- a level's structure at level-0 sizes (up to 102,000 voxels): the host's time against the
# GPU's structure ops, whose results must equal the host's entry for entry --
step structure 60 env P3_BENCH_BACKEND=cuda "$build/tests/bench-structure"
grep -E 'voxels' "$logs/structure.log" | sed 's/^/      /' >>"$report"

# -- the tiny golden case (tests/data) on the GPU: fp32 within the CPU's tolerances, half
# precision within 2e-2 × max|ref| (the full case needs ../shared, which is not carried) --
for p in fp32 fp16; do
        step "golden-tiny-$p" 60 env P3_TEST_DATA="$PWD/tests/data" P3_GOLDEN_BACKEND=cuda \
                P3_GOLDEN_PRECISION=$p "$build/tests/test-golden" tiny
        grep -E 'FAIL|tensors compared|backend:' "$logs/golden-tiny-$p.log" | sed "s/^/      /" \
                >>"$report"
done

# -- the benchmark: the full synthetic model, 100,000 points, 4 and 400 prompts, fp32 and
# fp16 side by side; per-stage times and the arena peak --
step bench 240 env P3_BENCH_BACKEND=cuda "$build/tests/bench-engine" D C
grep -v '^$' "$logs/bench.log" | sed 's/^/      /' >>"$report" # per stage, and the summaries

# -- residency: offload to 0 bytes (NVML), load again with identical outputs, fp16 against the
# CPU, and a prompt batch larger than the memory cap allows halved instead of failed --
step residency 150 "$build/tests/gpu-residency" 20000 64
sed 's/^/      /' "$logs/residency.log" >>"$report"

# -- attention: cuDNN's fused SDPA against the own kernel (the default), for correctness (the
# self-test's ops at fp16) and speed (scenario D's features, fp16); a refusal by cuDNN is logged
# with its reason and the own kernel runs, so the figures then compare the own kernel twice --
if [ -x "$build/tests/cuda/test-cuda-cudnn-sdpa" ]; then
        step cudnn-load 30 "$build/tests/cuda/test-cuda-cudnn-sdpa"
        grep -iE 'cudnn|version' "$logs/cudnn-load.log" | head -n 6 | sed 's/^/      /' >>"$report"
fi
step selftest-cudnn 60 env P3_CUDA_ATTENTION=cudnn "$run" selftest --backend cuda --precision fp16
grep -E '^  |cuDNN' "$logs/selftest-cudnn.log" | sed 's/^/      [cudnn] /' >>"$report"
step bench-cudnn 150 env P3_CUDA_ATTENTION=cudnn P3_BENCH_BACKEND=cuda P3_BENCH_PRECISION=fp16 \
        "$build/tests/bench-engine" D
grep -m1 'cuDNN SDPA' "$logs/bench-cudnn.log" | sed 's/^/      /' >>"$report"
grep -E 'features|heads|Summary|^D ' "$logs/bench-cudnn.log" | sed 's/^/      [cudnn] /' >>"$report"

# -- compute-sanitizer on the self-test (small: a few hundred points) --
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$sanitizer" ]; then
        # out-of-bounds and misaligned accesses, in small tiles (every tile path) and through
        # cuDNN's attention; shared-memory races; barriers in divergent code
        step sanitizer 90 env P3_CUDA_HEADS_TILE=48,3 "$sanitizer" --error-exitcode 1 \
                "$run" selftest --backend cuda
        step sanitizer-cudnn 60 env P3_CUDA_ATTENTION=cudnn "$sanitizer" --error-exitcode 1 \
                "$run" selftest --backend cuda --precision fp16
        step sanitizer-race 90 env P3_CUDA_HEADS_TILE=48,3 "$sanitizer" --tool racecheck \
                --error-exitcode 1 "$run" selftest --backend cuda
        step sanitizer-sync 60 "$sanitizer" --tool synccheck --error-exitcode 1 \
                "$run" selftest --backend cuda
        for t in sanitizer sanitizer-cudnn sanitizer-race sanitizer-sync; do
                grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|Device not supported|^selftest:' \
                        "$logs/$t.log" | head -n 3 | sed "s/^/      [$t] /" >>"$report"
        done
else
        say "note: compute-sanitizer not found; skipped"
fi

# -- ptxas: registers and spills of the attention and heads kernels, as built (compile-time
# figures, the same here as where the build was made) --
for f in cuda_attention cuda_heads; do
        log=$build/kernels/cuda/$f.cu.ptxas.log
        [ -f "$log" ] && grep -E 'entry function|registers|spill' "$log" | head -n 24 |
                sed "s/^/ptxas $f: /" >>"$report"
done

say "gpu-check: $fails failure(s); figures and logs in $OUT"
[ $fails -eq 0 ]
