#!/bin/bash
# The daemon's promises, each tried the way a client or an attacker would, against p3samd on a
# private bus (tiny synthetic model, CPU backend): the signals a client watches, descriptors a
# hostile caller passes, the weights overwritten under the daemon, reloads that must not lose
# the model or block the bus, and the idle timer at its extremes. Every check here failed
# before the fix it names.
set -u
: "${P3SAMD:?}" "${P3_DAEMON_CLIENT:?}" "${P3SAM_RUN:?}" "${P3_TEST_DATA:?}" "${P3_BUILD_ROOT:?}"
. "$(dirname "$0")/lib-test.sh"
need_dbus
cleanup_extra() { [ -n "${daemon_pid:-}" ] && kill -9 "$daemon_pid" 2>/dev/null; }

start_bus "$tmp/address"
export DBUS_SYSTEM_BUS_ADDRESS=$bus
A=$bus

"$P3SAM_RUN" synth --config "$P3_TEST_DATA/tiny_config.json" --out "$tmp/w.safetensors" || exit 1
cp "$tmp/w.safetensors" "$tmp/w2.safetensors"
cp "$tmp/w.safetensors" "$tmp/w-fail.safetensors"
conf=$tmp/p3samd.conf
write_conf() { # write_conf WEIGHTS [BACKEND [CONFIG]]
        cat >"$conf" <<EOF
[Model]
Path=$1
Config=${3:-$P3_TEST_DATA/tiny_config.json}
Backend=${2:-cpu}
Threads=2
[Daemon]
IdleTimeoutSec=2
QueueMax=8
QueuePerUserMax=8
JobLingerSec=60
AllowGroup=p3sam-test-nonexistent
[Segment]
CpuPointNum=2000
CpuPromptNum=8
PromptBatch=4
EOF
}
write_conf "$tmp/w.safetensors"

# The worker stalls 100 ms after each task, before its end is published: the window in which
# the loop used to handle "job done" while the worker still counted as busy.
P3SAMD_TEST_WORKER_STALL_MSEC=100 P3SAMD_TEST_FAIL_LOAD=$tmp/w-fail.safetensors \
        "$P3SAMD" --config "$conf" --keep-user >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!

call() { busctl --address="$A" call org.p3sam.Segmenter1 /org/p3sam/Segmenter1 org.p3sam.Segmenter1 "$@"; }
client() { "$P3_DAEMON_CLIENT" "$@"; }
ctl_status() { "$P3_BUILD_ROOT/ctl/p3samctl" status 2>&1; }
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
fds() { ls "/proc/$daemon_pid/fd" | wc -l; }
mesh=$P3_TEST_DATA/meshes/alien.glb
big=$P3_TEST_DATA/meshes/CesiumMilkTruck.glb

check "the daemon comes up and loads" -- wait_prop State ready 30

# ---- PropertiesChanged, watched (not polled) through a job and an offload ----
client watch 120 >"$tmp/watch.log" 2>&1 &
watch_pid=$!
pids+=($watch_pid)
for _ in $(seq 50); do grep -q '^watching' "$tmp/watch.log" && break; sleep 0.1; done
client segment "$mesh" "$tmp/out.glb" >"$tmp/c1" 2>&1
check "a job succeeds" -- grep -q '^done' "$tmp/c1"
call ClearGpuMemory
check "ClearGpuMemory offloads" -- wait_prop State offloaded 10
sleep 0.5
kill "$watch_pid"
wait "$watch_pid" 2>/dev/null
states=$(grep '^changed /org/p3sam/Segmenter1 ' "$tmp/watch.log" | grep -o ' State=[a-z]*' | cut -d= -f2 | tr '\n' ' ')
echo "   State in PropertiesChanged, in order: $states"
check "signals carry State through ready → busy → ready → offloading → offloaded" -- \
        grep -qE '(^| )busy ready (ready )*offloading offloaded' <<<"$states"
line=$(grep '^changed /org/p3sam/Segmenter1 .*State=busy' "$tmp/watch.log" | head -n1)
echo "   $line"
for p in Backend=cpu 'Device=CPU' GpuMemoryBytes=0 ModelMemoryBytes= PeakModelMemoryBytes=; do
        check "the State signal carries $p" -- grep -q " $p" <<<"$line"
done
check "the signal does not carry HostMemoryBytes (it is not emits-change)" -- \
        bash -c "! grep -q HostMemoryBytes '$tmp/watch.log'"
job=$(awk '/^job/ { print $2 }' "$tmp/c1")
check "another connection sees JobNew and JobRemoved" -- \
        bash -c "grep -q 'signal /org/p3sam/Segmenter1 JobNew' '$tmp/watch.log' && grep -q 'signal /org/p3sam/Segmenter1 JobRemoved' '$tmp/watch.log'"
check "but not the job's own signals (Completed, PropertiesChanged: unicast to its owner)" -- \
        bash -c "! grep -q '$job' '$tmp/watch.log'"
check "the owner got its Completed and progress" -- grep -q '^progress-updates [1-9]' "$tmp/c1"

# ---- model memory by device ----
client segment "$mesh" "$tmp/out.glb" >/dev/null 2>&1
check "ModelMemoryBytes counts the model on the CPU" -- [ "$(prop ModelMemoryBytes)" -gt 1000 ]
check "GpuMemoryBytes is GPU memory only: 0 on the CPU backend" -- [ "$(prop GpuMemoryBytes)" = 0 ]
check "PeakModelMemoryBytes >= ModelMemoryBytes" -- [ "$(prop PeakModelMemoryBytes)" -ge "$(prop ModelMemoryBytes)" ]

# ---- the race: with the worker stalling, the idle timer is still armed after a job ----
deadline=$(prop IdleOffloadTimestampMonotonic)
check "after a job the idle timer is armed (deadline published)" -- [ "${deadline:-0}" -gt 0 ]
check "and it offloads the model" -- wait_prop State offloaded 10

# ---- jobs: stale Stage, visibility, log priorities ----
client segment "$mesh" "$tmp/out.glb" >"$tmp/c2" 2>&1
job=$(awk '/^job/ { print $2 }' "$tmp/c2")
check "a finished job has no Stage any more" -- [ -z "$(prop Stage "$job" org.p3sam.Segmenter1.Job)" ]
check "the owner (root) reads the job's State" -- [ "$(prop State "$job" org.p3sam.Segmenter1.Job)" = done ]
out=$(as_nobody busctl --address="$A" get-property org.p3sam.Segmenter1 "$job" org.p3sam.Segmenter1.Job Error 2>&1)
echo "   nobody reading root's job: $out"
check "another user cannot read the job's properties" -- bash -c "! grep -q '^s ' <<<'$out'"
client segment "$P3_TEST_DATA/meshes/bad/Fox_truncated.glb" "$tmp/bad.glb" >/dev/null 2>&1
check "a failed job is logged at priority err (<3>)" -- grep -q '^<3>job [0-9]* (segmentation for uid 0) failed (invalid-input): .*truncated' "$tmp/daemon.log"
call SetIdleTimeout tb 0 true
client segment "$big" "$tmp/long.glb" glb --points 20000 --prompts 64 --detach >"$tmp/c3" 2>&1
client segment "$mesh" "$tmp/queued.glb" --detach >"$tmp/c4" 2>&1
long=$(awk '/^job/ { print $2 }' "$tmp/c3")
queued=$(awk '/^job/ { print $2 }' "$tmp/c4")
busctl --address="$A" call org.p3sam.Segmenter1 "$queued" org.p3sam.Segmenter1.Job Cancel
busctl --address="$A" call org.p3sam.Segmenter1 "$long" org.p3sam.Segmenter1.Job Cancel
check "a queued job that is cancelled is logged at priority notice (<5>)" -- \
        grep -q "^<5>job ${queued##*/} (segmentation for uid 0) cancelled: cancelled by request" "$tmp/daemon.log"
wait_prop QueueLength 0 20

# ---- hostile descriptors and arguments ----
n0=$(fds)
for i in $(seq 25); do
        as_nobody "$P3_DAEMON_CLIENT" segment "$mesh" /dev/null glb --report /dev/null --report-twice >"$tmp/n" 2>&1
done
check "refused callers (nobody, 25 calls with 3 descriptors each) get AccessDenied" -- grep -q AccessDenied "$tmp/n"
n1=$(fds)
echo "   daemon descriptors: $n0 before, $n1 after"
check "... and leak no descriptor" -- [ "$n1" -le "$n0" ]
out=$(client segment "$mesh" "$tmp/x.glb" glb --report "$tmp/r.json" --report-twice 2>&1)
check "a repeated option is InvalidArgs" -- grep -q 'InvalidArgs.*"report" is given twice' <<<"$out"
check "... and leaks no descriptor" -- [ "$(fds)" -le "$n0" ]
cp "$mesh" "$tmp/mine.glb"
size=$(stat -c %s "$tmp/mine.glb")
out=$(client segment "$tmp/mine.glb" - glb --mesh-as-output 2>&1)
echo "   $out"
check "the same file as mesh and output is InvalidArgs" -- grep -q 'InvalidArgs.*same file' <<<"$out"
check "... and the mesh is untouched" -- [ "$(stat -c %s "$tmp/mine.glb")" = "$size" ]
out=$(client segment "$mesh" "$tmp/p.glb" glb --mesh-o-path 2>&1)
echo "   $(tail -n1 <<<"$out")"
check "an O_PATH mesh descriptor fails the job with a sentence naming O_PATH" -- grep -q 'O_PATH' <<<"$out"
out=$(client predict "$mesh" "$tmp/p.json" nan,0,0 2>&1)
check "a prompt that is not finite is InvalidArgs" -- grep -q 'InvalidArgs.*not finite' <<<"$out"
out=$(client predict "$mesh" "$tmp/p.json" 0,inf,0 2>&1)
check "... infinite too" -- grep -q 'InvalidArgs.*not finite' <<<"$out"

# ---- a job's precision ----
out=$(client segment "$mesh" "$tmp/x.glb" glb --precision fp8 2>&1)
check "an unknown precision is InvalidArgs" -- grep -q 'InvalidArgs.*precision' <<<"$out"
client segment "$mesh" "$tmp/fp32.glb" glb --precision fp32 >"$tmp/c9" 2>&1
check "a job at fp32 succeeds" -- grep -q '^done' "$tmp/c9"
check "... and the model ran at fp32" -- grep -q 'oneDNN FP32' <<<"$(prop Device)"
if grep -qE '\b(amx_bf16|avx512_bf16)\b' /proc/cpuinfo; then
        client segment "$mesh" "$tmp/auto.glb" >"$tmp/c10" 2>&1
        check "the next job without the option runs at the configured precision (auto: bf16)" -- \
                grep -q 'oneDNN' <<<"$(prop Device)"
fi

# ---- the idle timeout: who may set it, and its extremes ----
out=$(as_nobody busctl --address="$A" call org.p3sam.Segmenter1 /org/p3sam/Segmenter1 \
        org.p3sam.Segmenter1 SetIdleTimeout tb 1 false 2>&1)
check "SetIdleTimeout as nobody (no polkit) is refused" -- grep -qi 'access denied' <<<"$out"
out=$(as_nobody busctl --address="$A" set-property org.p3sam.Segmenter1 /org/p3sam/Segmenter1 \
        org.p3sam.Segmenter1 IdleTimeoutUSec t 1 2>&1)
check "writing IdleTimeoutUSec as nobody is refused" -- grep -qi 'access denied' <<<"$out"
call SetIdleTimeout tb 18446744073709551000 false
check "SetIdleTimeout as root sets IdleTimeoutUSec" -- [ "$(prop IdleTimeoutUSec)" = 18446744073709551000 ]
client segment "$mesh" "$tmp/out.glb" >/dev/null 2>&1
sleep 3
check "a timeout near 2^64 does not offload at once (no overflow)" -- [ "$(prop State)" = ready ]
deadline=$(prop IdleOffloadTimestampMonotonic)
check "... and its deadline saturates instead of wrapping ($deadline)" -- [ ${#deadline} -ge 19 ]
call SetIdleTimeout tb 0 false

# ---- the weights overwritten in place under a loaded model ----
client segment "$mesh" "$tmp/out.glb" >/dev/null 2>&1
check "the model is loaded" -- [ "$(prop State)" = ready ]
: >"$tmp/w.safetensors"            # what cp does first: truncate the same inode ...
head -c 4096 /dev/urandom >"$tmp/w.safetensors" # ... then write other bytes into it
client segment "$mesh" "$tmp/after.glb" >"$tmp/c5" 2>&1
check "the loaded model still serves (no SIGBUS: it does not read the file's pages)" -- grep -q '^done' "$tmp/c5"
check "the daemon is alive" -- kill -0 "$daemon_pid"
call ClearGpuMemory
wait_prop State offloaded 10
client segment "$mesh" "$tmp/after2.glb" >"$tmp/c6" 2>&1
echo "   $(tail -n1 "$tmp/c6")"
check "loading from the changed file fails the job with a sentence" -- grep -q 'changed on disk' "$tmp/c6"
check "the daemon is still alive" -- kill -0 "$daemon_pid"

# ---- Reload: the new model loads beside the old one; a failure keeps the old one ----
write_conf "$tmp/w2.safetensors"
call Reload
client segment "$mesh" "$tmp/out.glb" >/dev/null 2>&1
check "Reload to good weights serves again" -- [ "$(prop State)" = ready ]
write_conf "$tmp/w-fail.safetensors"
out=$(call Reload 2>&1)
echo "   $out"
check "a model that opens but fails to load is refused" -- grep -q 'old model keeps serving.*out of memory' <<<"$out"
check "the old model is still loaded" -- [ "$(prop State)" = ready ]
check "the old configuration still holds (ModelPath)" -- [ "$(prop ModelPath)" = "$tmp/w2.safetensors" ]
client segment "$mesh" "$tmp/out.glb" >"$tmp/c7" 2>&1
check "and jobs run on it" -- grep -q '^done' "$tmp/c7"

# Opening the weights happens on the worker, not on the loop: with the new weights a FIFO
# that nobody writes, open() blocks, and the bus must still answer meanwhile.
mkfifo "$tmp/fifo.safetensors"
write_conf "$tmp/fifo.safetensors"
call Reload >"$tmp/reload.out" 2>&1 &
reload_pid=$!
sleep 0.5
check "while the worker opens the weights, the daemon answers on the bus" -- \
        busctl --address="$A" --timeout=3 get-property org.p3sam.Segmenter1 /org/p3sam/Segmenter1 org.p3sam.Segmenter1 State
check "... and the Reload call is still waiting for its answer" -- kill -0 "$reload_pid"
# A writer comes and goes: the daemon's open() returns, and the FIFO is not a regular file.
timeout 5 sh -c ': >"$1"' sh "$tmp/fifo.safetensors"
wait "$reload_pid"
rc=$?
echo "   $(cat "$tmp/reload.out")"
check "Reload answers when the worker is done: refused, the FIFO named" -- \
        bash -c "[ $rc -ne 0 ] && grep -q fifo.safetensors '$tmp/reload.out'"

# `systemctl reload` runs the unit's ExecReload=: the same call, through busctl, waiting.
reload_cmd=$(sed -n 's/^ExecReload=+//p' "$P3_BUILD_ROOT/systemd/p3samd.service")
echo "   ExecReload: $reload_cmd"
check "ExecReload= uses systemd's busctl, not /bin/kill" -- grep -q '/busctl call .* Reload$' <<<"$reload_cmd"
write_conf "$tmp/missing.safetensors"
out=$($reload_cmd 2>&1)
rc=$?
echo "   $out"
check "ExecReload= fails, with the daemon's sentence, when the reload is refused" -- \
        bash -c "[ $rc -ne 0 ] && grep -q missing.safetensors <<<'$out'"
cp "$tmp/w2.safetensors" "$tmp/w3.safetensors"
write_conf "$tmp/w3.safetensors"
check "ExecReload= succeeds" -- $reload_cmd
check "... and returns only once the new configuration serves" -- [ "$(prop ModelPath)" = "$tmp/w3.safetensors" ]

# ---- SIGTERM mid-job, with the worker stalling: the daemon stops ----
client segment "$big" "$tmp/t.glb" glb --points 20000 --prompts 64 >"$tmp/c8" 2>&1 &
cpid=$!
for _ in $(seq 100); do grep -q '^job' "$tmp/c8" && break; sleep 0.1; done
sleep 0.3
kill -TERM "$daemon_pid"
stopped=no
for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || { stopped=yes; break; }; sleep 0.1; done
check "SIGTERM mid-job stops the daemon (it used to stay in \"stopping\")" -- [ $stopped = yes ]
wait "$daemon_pid"
rc=$?
daemon_pid=
check "... with exit status 0" -- [ $rc -eq 0 ]
wait $cpid

# ---- Backend=cuda: the fallback chain, as a user without a GPU meets it ----
start_cuda_daemon() { # start_cuda_daemon LOG [ENV...]: Backend=cuda, waits for the model
        write_conf "${weights:-$tmp/w3.safetensors}" cuda "${config:-}"
        # idle=SECONDS overrides the 2 s idle offload
        [ -z "${idle:-}" ] || sed -i "s/^IdleTimeoutSec=.*/IdleTimeoutSec=$idle/" "$conf"
        # gpumax=SIZE sets GpuMemoryMax=; weights=FILE config=JSON another model
        [ -z "${gpumax:-}" ] || sed -i "s/^Backend=.*/&\nGpuMemoryMax=$gpumax/" "$conf"
        env "${@:2}" "$P3SAMD" --config "$conf" --keep-user >"$1" 2>&1 &
        daemon_pid=$!
        wait_prop State ready 30 || { cat "$1"; return 1; }
}
stop_daemon() { kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=; }
if [ -e /dev/nvidiactl ]; then
        note "a GPU is here: the no-GPU fallback is not checked"
else
        check "Backend=cuda without a GPU: the CPU serves" -- start_cuda_daemon "$tmp/cuda.log"
        echo "   Device=$(prop Device)"
        check "... and Device says why (no CUDA device)" -- \
                grep -q '^CPU .*; not CUDA: no CUDA device' <<<"$(prop Device)"
        check "... and so does the log" -- grep -q 'no CUDA device' "$tmp/cuda.log"
        check "... Backend is cpu" -- [ "$(prop Backend)" = cpu ]
        check "... and p3samctl status shows the reason" -- grep -qE \
                '^ *Device: CPU .*; not CUDA: no CUDA device' <<<"$(ctl_status)"
        stop_daemon
fi
# A GPU whose self-test fails (a CPU backend standing in, one op's result perturbed): the CPU
# serves and the reason names the op.
check "a failing GPU self-test: the CPU serves" -- \
        start_cuda_daemon "$tmp/fake.log" P3_TEST_FAKE_CUDA=1 P3_TEST_SELFTEST_BREAK=gelu
echo "   Device=$(prop Device)"
check "... and Device names the op (gelu)" -- \
        grep -q 'not CUDA: the CUDA self-test failed (gelu: max error' <<<"$(prop Device)"
check "... Backend is cpu, and p3samctl status and the log name the op" -- eval \
        '[ "$(prop Backend)" = cpu ] && grep -qE "^ *Device: CPU .*the CUDA self-test failed \(gelu" <<<"$(ctl_status)" && grep -q "self-test failed (gelu" "$tmp/fake.log"'
client segment "$mesh" "$tmp/fake.glb" >"$tmp/c9" 2>&1
check "... and jobs run" -- grep -q '^done' "$tmp/c9"
stop_daemon
# Weights over GpuMemoryMax (the stand-in GPU counts its memory under the cap): the CPU serves
# and says why, as for a failing self-test, instead of the load failing. wide_config.json's
# model is about 92 MB in half precision, over the smallest cap allowed (64M); the self-test's
# cases fit under it.
config=$P3_TEST_DATA/wide_config.json weights=$tmp/wide.safetensors
"$P3SAM_RUN" synth --config "$config" --out "$weights" || fail "synth of the wide model"
gpumax=64M
check "weights over GpuMemoryMax: the CPU serves" -- \
        start_cuda_daemon "$tmp/cap.log" P3_TEST_FAKE_CUDA=1
gpumax= config= weights=
echo "   Device=$(prop Device)"
check "... and Device says the model does not fit" -- grep -q \
        'not CUDA: the model does not fit in the 64 MiB of GPU memory allowed (cannot upload' \
        <<<"$(prop Device)"
client segment "$mesh" "$tmp/cap.glb" >"$tmp/c12" 2>&1
check "... and jobs run" -- grep -q '^done' "$tmp/c12"
stop_daemon
rm -f "$tmp/wide.safetensors"
# A GPU lost while serving (the stand-in reports a poisoned context after a failed job): the
# model is offloaded at once instead of failing every later job, and the next job loads it
# again through the self-test and runs.
# (No idle offload here: only the lost device may offload the model.)
idle=infinity
check "a device lost after a failed job: the daemon serves on" -- \
        start_cuda_daemon "$tmp/lost.log" P3_TEST_FAKE_CUDA=1 P3_TEST_DEVICE_LOST=1
idle=
client segment "$P3_TEST_DATA/meshes/bad/Fox_truncated.glb" "$tmp/lost-bad.glb" >"$tmp/c11" 2>&1
check "... the model is offloaded" -- wait_prop State offloaded 10
check "... and the job's error says so" -- \
        grep -q 'the device failed (the device was lost (test hook)): the model was offloaded' \
        "$tmp/c11"
check "... and the log says why" -- \
        grep -q 'the device failed (the device was lost (test hook)): the model is offloaded' \
        "$tmp/lost.log"
client segment "$mesh" "$tmp/lost.glb" >"$tmp/c10" 2>&1
check "... and the next job loads it again and runs" -- grep -q '^done' "$tmp/c10"
stop_daemon

# A hung GPU kernel (the stand-in blocks the work for good, as a kernel that never ends blocks
# the worker in a synchronisation): the loop thread sees the GPU work silent for
# P3SAMD_TEST_GPU_STALL_SEC (600 s in service) and ends the daemon with status 3, for systemd
# to start afresh; the caller, watching the bus as p3samctl does, gets an error, not a hang.
wait_exit() { # wait_exit: waits (up to 60 s) for the daemon's end; its status in rc
        timeout 60 tail --pid="$daemon_pid" -f /dev/null
        wait "$daemon_pid"
        rc=$?
        daemon_pid=
}
# The stall period is 10 s where the model loads first: the load, its self-test included, is
# watched too, and takes seconds under the sanitizers on a busy machine.
check "a hung GPU in a job: the daemon starts" -- start_cuda_daemon "$tmp/hang.log" \
        P3_TEST_FAKE_CUDA=1 P3_TEST_DEVICE_HANG=job P3SAMD_TEST_GPU_STALL_SEC=10
timeout 60 "$P3_BUILD_ROOT/ctl/p3samctl" segment "$mesh" -o "$tmp/hang.glb" >"$tmp/c13" 2>&1 &
ctl_pid=$!
wait_exit
check "... it exits with status 3 after the job has been silent on the GPU for 10 s" -- [ "$rc" = 3 ]
check "... and the log says why" -- grep -q \
        'the GPU has not answered for 1[0-2] s (running a job[,)].*: exiting' \
        "$tmp/hang.log"
wait "$ctl_pid"
rc=$?
echo "   p3samctl: exit $rc, $(tail -n1 "$tmp/c13")"
check "... and p3samctl's job fails at once (exit 1)" -- [ $rc = 1 ]
check "... saying so" -- grep -q 'p3samd left the bus before the job' "$tmp/c13"
check "... with no output written" -- [ ! -e "$tmp/hang.glb" ]
# The same for the GPU work outside jobs: the load (its self-test) and the idle offload (which
# frees the context).
write_conf "$tmp/w3.safetensors" cuda
sed -i "s/^IdleTimeoutSec=.*/IdleTimeoutSec=1/" "$conf"
for where in load offload; do
        # the load hangs before any work; the offload comes after a load
        [ $where = load ] && what="loading the model" stall=2 secs='[23]' ||
                what="offloading the model" stall=10 secs='1[0-2]'
        P3_TEST_FAKE_CUDA=1 P3_TEST_DEVICE_HANG=$where P3SAMD_TEST_GPU_STALL_SEC=$stall \
                "$P3SAMD" --config "$conf" --keep-user >"$tmp/hang-$where.log" 2>&1 &
        daemon_pid=$!
        wait_exit
        check "a hung GPU in the $where: the daemon exits with status 3" -- [ "$rc" = 3 ]
        check "... and the log says why" -- grep -q \
                "the GPU has not answered for $secs s ($what): exiting" "$tmp/hang-$where.log"
done

if [ $fails -ne 0 ]; then
        echo "--- daemon log"; cat "$tmp/daemon.log"
fi
echo "$fails failure(s)"
[ $fails -eq 0 ]
