#!/bin/bash
# Jobs per minute from one p3samctl segment over a directory of small meshes, with one and with
# two p3samd instances (one thread each, the tiny synthetic model, a private bus), side by
# side. BENCH_MESHES (24) meshes, BENCH_POINTS (2000) points and BENCH_PROMPTS (8) prompts.
set -u
: "${P3SAMCTL:?}" "${P3SAMD:?}" "${P3SAM_RUN:?}" "${P3_TEST_DATA:?}"
. "$(dirname "$0")/lib-test.sh"
need_dbus
n=${BENCH_MESHES:-24} points=${BENCH_POINTS:-2000} prompts=${BENCH_PROMPTS:-8}

start_bus "$tmp/address"
export DBUS_SYSTEM_BUS_ADDRESS=$bus
"$P3SAM_RUN" synth --config "$P3_TEST_DATA/tiny_config.json" --out "$tmp/w.safetensors" || exit 1
cat >"$tmp/p3samd.conf" <<EOF
[Model]
Path=$tmp/w.safetensors
Config=$P3_TEST_DATA/tiny_config.json
Backend=cpu
Threads=1
[Daemon]
IdleTimeoutSec=1h
QueueMax=16
QueuePerUserMax=16
EOF
start_daemon org.p3sam.Segmenter1 "$tmp/org.p3sam.Segmenter1.log"
start_daemon org.p3sam.Segmenter1.gpu1 "$tmp/org.p3sam.Segmenter1.gpu1.log"

m=$P3_TEST_DATA/meshes
small=("$m/alien.glb" "$m/spot_control_mesh.obj" "$m/no_indices_3storybuilding.glb" "$m/Wuson.off")
mkdir -p "$tmp/in"
for i in $(seq "$n"); do
        f=${small[$((i % ${#small[@]}))]}
        cp "$f" "$tmp/in/$(printf %03d "$i")-$(basename "$f")"
done

run() { # run INSTANCES: jobs per minute
        local t0 t1
        t0=$(date +%s.%N)
        "$P3SAMCTL" segment "$tmp/in" --instances "$1" --force --output-dir "$tmp/out-$1" \
                --points "$points" --prompts "$prompts" --summary "$tmp/s-$1.jsonl" >/dev/null ||
                { echo "FAIL: the batch on $1 failed"; exit 1; }
        t1=$(date +%s.%N)
        awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f %.1f", n * 60 / (b - a), b - a }'
}
# one instance: GPU 1's (org.p3sam.Segmenter1.gpu1); both: all
one=$(run 1)
two=$(run all)
echo "batch of $n small meshes ($points points, $prompts prompts, tiny model, 1 thread each):"
printf '  %-12s %10s %10s\n' instances "jobs/min" seconds
printf '  %-12s %10s %10s\n' 1 ${one% *} ${one#* }
printf '  %-12s %10s %10s\n' 2 ${two% *} ${two#* }
echo "  speed-up: $(awk -v a="${one% *}" -v b="${two% *}" 'BEGIN { printf "%.2fx", b / a }')" \
        "($(nproc) CPUs here)"
for f in "$tmp/s-1.jsonl" "$tmp/s-all.jsonl"; do
        [ "$(grep -c '"status":"done"' "$f")" -eq "$n" ] || { echo "FAIL: not all done in $f"; exit 1; }
done
