#!/bin/bash
# p3sam-run as a user meets it: exit codes (0 ok, 1 failure, 2 usage), one-sentence errors,
# and no output file after a failure.
set -u
run=${P3SAM_RUN:?}
data=${P3_TEST_DATA:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

expect() { # expect STATUS DESCRIPTION -- command...
        local want=$1 what=$2
        shift 3
        "$@" >"$tmp/out" 2>"$tmp/err"
        local got=$?
        if [ "$got" != "$want" ]; then
                echo "FAIL: $what: exit $got, expected $want"; cat "$tmp/err"; fails=$((fails + 1))
                return 1
        fi
        echo "ok: $what (exit $got)"
}

one_line_error() { # the error is one line, prefixed, and names $1 (besides the device: and time: lines)
        if [ "$(grep -vcE '^(device|time): ' "$tmp/err")" -ne 1 ] || ! grep -q "^p3sam-run: .*$1" "$tmp/err"; then
                echo "FAIL: error is not one line naming $1:"; cat "$tmp/err"; fails=$((fails + 1))
        else
                echo "   $(cat "$tmp/err")"
        fi
}

expect 0 "--help" -- "$run" --help
expect 0 "infer --help" -- "$run" infer --help
expect 2 "no command" -- "$run"
expect 2 "unknown command" -- "$run" frobnicate
expect 2 "infer without arguments" -- "$run" infer
expect 2 "infer with a bad --prompts" -- "$run" infer --weights w --case c --out o --prompts -3
expect 2 "synth with a bad --dtype" -- "$run" synth --out "$tmp/w" --dtype f8

"$run" synth --config "$data/tiny_config.json" --out "$tmp/w.safetensors" || { echo "FAIL: synth"; exit 1; }
echo "ok: synth tiny weights"

expect 1 "missing weights file" -- "$run" infer --weights "$tmp/nope.safetensors" \
        --config "$data/tiny_config.json" --case "$data/tiny_case.safetensors" --out "$tmp/o1"
one_line_error "nope.safetensors"
[ ! -e "$tmp/o1" ] || { echo "FAIL: output left behind"; fails=$((fails + 1)); }

head -c 100000 "$tmp/w.safetensors" >"$tmp/trunc.safetensors"
expect 1 "truncated weights" -- "$run" infer --weights "$tmp/trunc.safetensors" \
        --config "$data/tiny_config.json" --case "$data/tiny_case.safetensors" --out "$tmp/o2"
one_line_error "trunc.safetensors"
[ ! -e "$tmp/o2" ] || { echo "FAIL: output left behind"; fails=$((fails + 1)); }

expect 1 "weights of another config" -- "$run" infer --weights "$tmp/w.safetensors" \
        --case "$data/tiny_case.safetensors" --out "$tmp/o3"
one_line_error "w.safetensors"
[ ! -e "$tmp/o3" ] || { echo "FAIL: output left behind"; fails=$((fails + 1)); }

echo '{"sonata": {"enc_depths": [1, 2]}}' >"$tmp/bad.json"
expect 1 "inconsistent config" -- "$run" infer --weights "$tmp/w.safetensors" \
        --config "$tmp/bad.json" --case "$data/tiny_case.safetensors" --out "$tmp/o4"
one_line_error "bad.json"

expect 1 "case without coordinates" -- "$run" infer --weights "$tmp/w.safetensors" \
        --config "$data/tiny_config.json" --case "$tmp/w.safetensors" --out "$tmp/o5"
one_line_error "coord"
[ ! -e "$tmp/o5" ] || { echo "FAIL: output left behind"; fails=$((fails + 1)); }

expect 1 "output directory missing" -- "$run" infer --weights "$tmp/w.safetensors" \
        --config "$data/tiny_config.json" --case "$data/tiny_case.safetensors" \
        --out "$tmp/no/such/dir/o.safetensors"
one_line_error "o.safetensors"

# BF16 that neither the GPU (none here) nor the CPU (oneDNN held to AVX2) runs: both reasons
if "$run" selftest --backend cuda >/dev/null 2>&1; then
        echo "note: a CUDA device is here: bf16 on neither the GPU nor the CPU not checked"
else
        expect 1 "bf16 on neither the GPU nor the CPU" -- env ONEDNN_MAX_CPU_ISA=AVX2 "$run" \
                infer --weights "$tmp/w.safetensors" --config "$data/tiny_config.json" \
                --case "$data/tiny_case.safetensors" --out "$tmp/o6" --backend cuda \
                --precision bf16
        one_line_error "not on the GPU (no CUDA device.*), nor on the CPU: precision bf16"
fi
expect 1 "selftest --backend cpu --precision bf16 on a CPU without it" -- \
        env ONEDNN_MAX_CPU_ISA=AVX2 "$run" selftest --backend cpu --precision bf16
one_line_error "precision bf16 cannot run on this CPU (auto gives fp32"

expect 0 "infer on the tiny case" -- "$run" infer --weights "$tmp/w.safetensors" \
        --config "$data/tiny_config.json" --case "$data/tiny_case.safetensors" \
        --out "$tmp/ok.safetensors" --batch 3 --threads 1
if head -n1 "$tmp/err" | grep -q '^device: CPU (1 thread, .*), fp32$'; then
        echo "ok: infer names the device first, at fp32 by default: $(head -n1 "$tmp/err")"
else
        echo "FAIL: no device: line first"; cat "$tmp/err"; fails=$((fails + 1))
fi
if tail -n1 "$tmp/err" | grep -qE '^time: features [0-9.]+ s, heads [0-9.]+ s$'; then
        echo "ok: infer ends with the time: line: $(tail -n1 "$tmp/err")"
else
        echo "FAIL: no time: line last"; cat "$tmp/err"; fails=$((fails + 1))
fi
expect 2 "an unknown --precision is a usage error" -- "$run" infer --weights "$tmp/w.safetensors" \
        --config "$data/tiny_config.json" --case "$data/tiny_case.safetensors" \
        --out "$tmp/p.safetensors" --precision fp8
if grep -qE '\b(amx_bf16|avx512_bf16)\b' /proc/cpuinfo; then
        expect 0 "infer --precision bf16" -- "$run" infer --weights "$tmp/w.safetensors" \
                --config "$data/tiny_config.json" --case "$data/tiny_case.safetensors" \
                --out "$tmp/bf.safetensors" --precision bf16
        if head -n1 "$tmp/err" | grep -qE '^device: CPU .*oneDNN (AMX|AVX512)-BF16\), bf16$'; then
                echo "ok: the device line names the BF16 instructions: $(head -n1 "$tmp/err")"
        else
                echo "FAIL: the device line does not name BF16"; cat "$tmp/err"; fails=$((fails + 1))
        fi
else
        echo "skip: no BF16 instructions on this CPU"
fi
for key in point_feat concat_feat stage0_feat stage4_feat points_heads prompt_idx \
        head_seg_global head_iou_feat head_seg_mlp_1_logit head_seg_s2_mlp_3_logit mask_1 \
        mask_3 pred_iou; do
        grep -aq "\"$key\"" "$tmp/ok.safetensors" || { echo "FAIL: output lacks $key"; fails=$((fails + 1)); }
done
ls "$tmp" | grep -q tmp && { echo "FAIL: temporary file left behind"; fails=$((fails + 1)); }

# segment / predict (only in builds with mesh import)
if "$run" --help | grep -q segment; then
        m="$data/meshes"
        expect 0 "segment --help" -- "$run" segment --help
        expect 2 "segment without -o" -- "$run" segment --weights "$tmp/w.safetensors" "$m/alien.glb"
        expect 2 "segment with a bad --points" -- "$run" segment --weights w "$m/alien.glb" -o x.glb --points 3
        for bad in "$m"/bad/*; do
                name=$(basename "$bad")
                expect 1 "segment refuses bad/$name" -- "$run" segment --weights "$tmp/w.safetensors" \
                        --config "$data/tiny_config.json" "$bad" -o "$tmp/refused.glb" --json "$tmp/refused.json"
                one_line_error "$name"
                [ ! -e "$tmp/refused.glb" ] && [ ! -e "$tmp/refused.json" ] || { echo "FAIL: output left behind"; fails=$((fails + 1)); }
        done
        expect 0 "segment alien.glb" -- "$run" segment --weights "$tmp/w.safetensors" \
                --config "$data/tiny_config.json" "$m/alien.glb" -o "$tmp/a.glb" --json "$tmp/a.json" \
                --ply "$tmp/a.ply" --points 1000 --prompts 4 --quiet
        [ -s "$tmp/a.glb" ] && [ -s "$tmp/a.json" ] && [ -s "$tmp/a.ply" ] || { echo "FAIL: outputs missing"; fails=$((fails + 1)); }
        grep -q '"synthetic_weights":true' "$tmp/a.json" || { echo "FAIL: report does not say the weights are synthetic"; fails=$((fails + 1)); }
        # several outputs, each in the format its name (or --format) says
        mkdir "$tmp/multi"
        expect 0 "segment with every format" -- "$run" segment --weights "$tmp/w.safetensors" \
                --config "$data/tiny_config.json" "$m/alien.glb" -o "$tmp/multi/x.glb" \
                -o "$tmp/multi/x.ply" -o "$tmp/multi/x.json" -o "$tmp/multi/x.png" \
                -o "$tmp/multi/x_face_ids.npy" -o "$tmp/multi/x_aabb.npy" -o "$tmp/multi/x_aabb.glb" \
                --png-size 128 --points 1000 --prompts 4 --quiet
        [ "$(ls "$tmp/multi" | tr '\n' ' ')" = "x.glb x.json x.ply x.png x_aabb.glb x_aabb.npy x_face_ids.npy " ] ||
                { echo "FAIL: not the seven outputs:"; ls -A "$tmp/multi"; fails=$((fails + 1)); }
        head -c 4 "$tmp/multi/x_aabb.glb" | grep -q glTF && head -c 4 "$tmp/multi/x.glb" | grep -q glTF &&
                head -c 6 "$tmp/multi/x_aabb.npy" | grep -q NUMPY && head -c 8 "$tmp/multi/x.png" | grep -q PNG &&
                head -c 3 "$tmp/multi/x.ply" | grep -q ply && head -c 1 "$tmp/multi/x.json" | grep -q '{' ||
                { echo "FAIL: an output is not in the format its name says"; fails=$((fails + 1)); }
        # x_aabb.glb is upstream's boxes (the longer suffix first), x.glb the plain mesh
        grep -aq '"box_' "$tmp/multi/x_aabb.glb" && ! grep -aq '"box_' "$tmp/multi/x.glb" ||
                { echo "FAIL: x_aabb.glb was not taken for the boxes GLB"; fails=$((fails + 1)); }
        # the PNG's width and height (IHDR) as asked
        [ "$(od -An -tu1 -j16 -N8 "$tmp/multi/x.png" | tr -s ' ')" = " 0 0 0 128 0 0 0 128" ] ||
                { echo "FAIL: the PNG is not 128 x 128"; fails=$((fails + 1)); }
        mkdir "$tmp/up"
        expect 0 "segment --upstream-files" -- "$run" segment --weights "$tmp/w.safetensors" \
                --config "$data/tiny_config.json" "$m/alien.glb" -o "$tmp/up/x.glb" --upstream-files \
                --points 1000 --prompts 4 --quiet
        [ "$(ls -A "$tmp/up" | tr '\n' ' ')" = "x.glb x.ply x_aabb.glb x_aabb.npy x_face_ids.npy " ] ||
                { echo "FAIL: --upstream-files did not give upstream's five names:"; ls -A "$tmp/up"; fails=$((fails + 1)); }
        cmp -s "$tmp/up/x_face_ids.npy" "$tmp/multi/x_face_ids.npy" ||
                { echo "FAIL: the same job gave other face ids"; fails=$((fails + 1)); }
        mkdir "$tmp/fmt"
        expect 0 "segment --format per -o" -- "$run" segment --weights "$tmp/w.safetensors" \
                --config "$data/tiny_config.json" "$m/alien.glb" -o "$tmp/fmt/a" -o "$tmp/fmt/b" \
                --format aabb --format ply --points 1000 --prompts 4 --quiet
        head -c 6 "$tmp/fmt/a" | grep -q NUMPY && head -c 3 "$tmp/fmt/b" | grep -q ply ||
                { echo "FAIL: --format was not taken in order"; fails=$((fails + 1)); }
        expect 2 "segment with one --format for two -o" -- "$run" segment --weights w "$m/alien.glb" \
                -o "$tmp/fmt/c.glb" -o "$tmp/fmt/d.ply" --format glb
        one_line_error "1 --format for 2 -o"
        expect 2 "segment with an unknown --format" -- "$run" segment --weights w "$m/alien.glb" \
                -o "$tmp/fmt/c" --format obj
        expect 2 "segment -o without a known extension" -- "$run" segment --weights w "$m/alien.glb" \
                -o "$tmp/fmt/c.txt"
        one_line_error "cannot tell the format of .*c.txt"
        expect 2 "segment with one name twice" -- "$run" segment --weights w "$m/alien.glb" \
                -o "$tmp/fmt/c.glb" -o "$tmp/fmt/c.glb"
        one_line_error "named twice"
        expect 1 "segment of a broken mesh with several outputs" -- "$run" segment \
                --weights "$tmp/w.safetensors" --config "$data/tiny_config.json" "$(ls "$m"/bad/* | head -n 1)" \
                -o "$tmp/fmt/e.glb" --upstream-files --quiet
        [ "$(ls -A "$tmp/fmt" | tr '\n' ' ')" = "a b " ] ||
                { echo "FAIL: a failed or refused job left files:"; ls -A "$tmp/fmt"; fails=$((fails + 1)); }
        expect 2 "predict without --prompt" -- "$run" predict --weights "$tmp/w.safetensors" "$m/alien.glb" --json "$tmp/p.json"
        expect 2 "predict with a malformed --prompt" -- "$run" predict --weights w "$m/alien.glb" --json p.json --prompt 1,2
        expect 0 "predict on alien.glb" -- "$run" predict --weights "$tmp/w.safetensors" \
                --config "$data/tiny_config.json" "$m/alien.glb" --prompt 0,0.5,0 --prompt 0.1,0.2,0.3 \
                --json "$tmp/p.json" --points 1000 --quiet
        grep -q '"prompts"' "$tmp/p.json" || { echo "FAIL: predict JSON lacks prompts"; fails=$((fails + 1)); }
fi

# -- selftest: the GPU backend's check, by hand --
"$run" selftest >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 0 ]; then
        echo "note: a CUDA device is here and passed the self-test:"; cat "$tmp/out"
else
        expect 1 "selftest without a GPU" -- "$run" selftest
        one_line_error "no CUDA device"
fi
expect 0 "selftest --backend cpu --precision fp32 (the CPU against itself)" -- \
        "$run" selftest --backend cpu --precision fp32
grep -q '^  attention .* ok$' "$tmp/out" && grep -q '^selftest: passed$' "$tmp/out" ||
        { echo "FAIL: selftest does not print each op's error"; cat "$tmp/out"; fails=$((fails + 1)); }
for op in 'attention (partial tiles)' 'heads (stage-1 logits)' 'heads (mask bits)' \
        'heads (NaN check)' 'finite check'; do
        grep -qF "  $op " "$tmp/out" ||
                { echo "FAIL: selftest does not check $op"; fails=$((fails + 1)); }
done
expect 1 "selftest with attention broken (test hook)" -- \
        env P3_TEST_SELFTEST_BREAK=attention "$run" selftest --backend cpu --precision fp32
one_line_error "FAILED: attention: max error"
grep -q '^  heads (mask bits) .* ok$' "$tmp/out" || # by hand, every op gets its figure
        { echo "FAIL: selftest stops at the first failing op"; fails=$((fails + 1)); }
expect 1 "selftest with a mask bit flipped where the logit is far from 0 (test hook)" -- \
        env "P3_TEST_SELFTEST_BREAK=heads (mask bits)" "$run" selftest --backend cpu \
        --precision fp32
one_line_error "FAILED: heads (mask bits): 1 bit differs, where the logit is 1 x max"
# the NaN checks: a backend whose check misses a NaN (test hook) fails, naming what it missed
expect 1 "selftest with the finite check missing a NaN (test hook)" -- \
        env "P3_TEST_SELFTEST_BREAK=finite check" "$run" selftest --backend cpu --precision fp32
one_line_error "FAILED: finite check: a NaN in the last element went unnoticed"
expect 1 "selftest with the heads' NaN left out (test hook)" -- \
        env "P3_TEST_SELFTEST_BREAK=heads (NaN check)" "$run" selftest --backend cpu \
        --precision fp32
one_line_error "FAILED: heads (NaN check): a NaN in the features went unnoticed"
expect 2 "selftest --backend tpu" -- "$run" selftest --backend tpu

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
