#!/bin/bash
# p3samd end to end on a private bus: a real dbus-daemon, real busctl, a small C client that
# passes descriptors (busctl 252 cannot), a NOTIFY_SOCKET listener. Tiny golden model with
# synthetic weights, CPU backend, small sizes.
set -u
: "${P3SAMD:?}" "${P3_DAEMON_CLIENT:?}" "${P3_NOTIFY_LISTEN:?}" "${P3SAM_RUN:?}" "${P3_TEST_DATA:?}"
src=${P3_SOURCE_ROOT:?}
. "$(dirname "$0")/lib-test.sh"
need_dbus
cleanup_extra() { [ -n "${daemon_pid:-}" ] && kill -9 "$daemon_pid" 2>/dev/null; }

# ---- the bus and the notification socket ----
start_bus "$tmp/address"
export DBUS_SYSTEM_BUS_ADDRESS=$bus
A=$DBUS_SYSTEM_BUS_ADDRESS
"$P3_NOTIFY_LISTEN" "$tmp/notify" >"$tmp/notify.log" &
pids+=($!)

"$P3SAM_RUN" synth --config "$P3_TEST_DATA/tiny_config.json" --out "$tmp/w.safetensors" || exit 1
conf=$tmp/p3samd.conf
cat >"$conf" <<EOF
[Model]
Path=$tmp/w.safetensors
Config=$P3_TEST_DATA/tiny_config.json
Backend=cpu
Threads=2
[Daemon]
IdleTimeoutSec=2
QueueMax=3
QueuePerUserMax=3
JobLingerSec=30
AllowGroup=p3sam-test-nonexistent
[Segment]
CpuPointNum=2000
CpuPromptNum=8
PromptBatch=4
EOF

start_daemon() {
        NOTIFY_SOCKET=$tmp/notify WATCHDOG_USEC=1000000 \
                "$P3SAMD" --config "$conf" --keep-user >>"$tmp/daemon.log" 2>&1 &
        daemon_pid=$!
        for _ in $(seq 100); do
                busctl --address="$A" status org.p3sam.Segmenter1 >/dev/null 2>&1 && return 0
                sleep 0.1
        done
        echo "the daemon did not come up:"; cat "$tmp/daemon.log"; exit 1
}

client() { "$P3_DAEMON_CLIENT" "$@"; }
mesh=$P3_TEST_DATA/meshes/alien.glb
big=$P3_TEST_DATA/meshes/CesiumMilkTruck.glb

start_daemon
check "READY=1 after the model loaded" -- wait_prop State ready 20
check "READY=1 notified" -- grep -q '^READY=1' "$tmp/notify.log"

# ---- introspection ----
"$P3SAMD" --introspect >"$tmp/introspect.xml"
check "--introspect matches the committed daemon/org.p3sam.Segmenter1.xml" -- \
        diff -u "$src/daemon/org.p3sam.Segmenter1.xml" "$tmp/introspect.xml"
busctl --address="$A" introspect org.p3sam.Segmenter1 /org/p3sam/Segmenter1 >"$tmp/members"
missing=""
for member in .Segment .Predict .ClearGpuMemory .Reload .State .Backend .Device .GpuMemoryBytes \
        .PeakGpuMemoryBytes .HostMemoryBytes .IdleTimeoutUSec .QueueLength .JobsCompleted \
        .ModelPath .Version .JobNew .JobRemoved; do
        grep -q "^$member " "$tmp/members" || missing="$missing $member"
done
check "busctl introspect lists every member${missing:+ (missing:$missing)}" -- [ -z "$missing" ]
check "the idle timeout is writable" -- grep -q '^.IdleTimeoutUSec .*writable' "$tmp/members"

# ---- a segmentation, with progress ----
client segment "$mesh" "$tmp/out.glb" glb --report "$tmp/report.json" >"$tmp/c1" 2>&1
rc=$?
check "Segment through the C client succeeds" -- [ $rc -eq 0 ]
check "the output is a GLB" -- [ "$(head -c4 "$tmp/out.glb")" = "glTF" ]
check "the report names the synthetic weights" -- grep -q '"synthetic_weights":true' "$tmp/report.json"
check "progress signals arrived" -- awk '/^progress-updates/ { exit !($2 > 0) }' "$tmp/c1"
job=$(awk '/^job/ { print $2 }' "$tmp/c1")
check "the finished job lingers with State done" -- [ "$(prop State "$job" org.p3sam.Segmenter1.Job)" = done ]
check "...and Result done" -- [ "$(prop Result "$job" org.p3sam.Segmenter1.Job)" = done ]
"$P3SAM_RUN" segment --help >/dev/null 2>&1 # (keeps p3sam-run a dependency)
check "JobsCompleted counts it" -- [ "$(prop JobsCompleted)" = 1 ]

client predict "$mesh" "$tmp/predict.json" 0,0.5,0 0.2,0.3,0.1 >"$tmp/c2" 2>&1
check "Predict writes the masks" -- grep -q '"prompts"' "$tmp/predict.json"

# ---- bad input: a failed job, then the next one succeeds ----
client segment "$P3_TEST_DATA/meshes/bad/Fox_truncated.glb" "$tmp/bad.glb" >"$tmp/c3" 2>&1
rc=$?
check "a truncated mesh fails its job (exit 1)" -- [ $rc -eq 1 ]
check "the job's error says what is wrong" -- grep -q "truncated" "$tmp/c3"
check "a failed job leaves the output empty" -- [ ! -s "$tmp/bad.glb" ]
check "its Result is invalid-input, sent before Completed (a client knows not to retry)" -- \
        grep -qx "result-property invalid-input (before Completed)" "$tmp/c3"
client segment "$mesh" "$tmp/out2.glb" >"$tmp/c4" 2>&1
check "the next job succeeds" -- [ $? -eq 0 ]
check "...with Result done" -- grep -qx "result-property done (before Completed)" "$tmp/c4"
client segment "$mesh" /dev/null >"$tmp/c5" 2>&1
check "an output that is not a regular file fails the job" -- grep -q "regular file" "$tmp/c5"
check "...as invalid-input" -- grep -qx "result-property invalid-input (before Completed)" "$tmp/c5"
busctl --address="$A" call org.p3sam.Segmenter1 /org/p3sam/Segmenter1 org.p3sam.Segmenter1 \
        ClearGpuMemory >/dev/null # (root)
out=$(client segment "$mesh" "$tmp/x.glb" bmp 2>&1)
check "an unknown output format is InvalidArgs" -- grep -q "InvalidArgs" <<<"$out"
out=$(client segment "$mesh" "$tmp/x.glb" glb --points 5 2>&1)
check "points out of range is InvalidArgs naming it" -- grep -q "InvalidArgs.*points" <<<"$out"

# ---- cancel, and a caller that leaves ----
client segment "$big" "$tmp/c.glb" glb --points 20000 --prompts 64 >"$tmp/c6" 2>&1 &
cpid=$!
for _ in $(seq 100); do grep -q '^job' "$tmp/c6" && break; sleep 0.1; done
cjob=$(awk '/^job/ { print $2 }' "$tmp/c6")
sleep 0.5
busctl --address="$A" call org.p3sam.Segmenter1 "$cjob" org.p3sam.Segmenter1.Job Cancel
wait $cpid
rc=$?
check "Cancel ends the job as cancelled (client exit 3)" -- [ $rc -eq 3 ]
check "...with Result cancelled" -- grep -qx "result-property cancelled (before Completed)" "$tmp/c6"
client segment "$big" "$tmp/d.glb" glb --points 20000 --prompts 64 --disconnect >"$tmp/c7" 2>&1
djob=$(awk '/^job/ { print $2 }' "$tmp/c7")
for _ in $(seq 100); do
        [ "$(prop State "$djob" org.p3sam.Segmenter1.Job)" = cancelled ] && break
        sleep 0.1
done
check "a caller leaving the bus cancels its job" -- \
        [ "$(prop State "$djob" org.p3sam.Segmenter1.Job)" = cancelled ]

client segment "$mesh" "$tmp/detached.glb" --detach >"$tmp/c9" 2>&1
djob=$(awk '/^job/ { print $2 }' "$tmp/c9")
for _ in $(seq 100); do
        [ "$(prop State "$djob" org.p3sam.Segmenter1.Job)" = done ] && break
        sleep 0.1
done
check "a detached job outlives its caller" -- [ "$(prop State "$djob" org.p3sam.Segmenter1.Job)" = done ]

# ---- the queue is bounded ----
# (the callers stay connected: a caller that leaves cancels its job)
qpids=()
for i in 1 2 3 4; do
        client segment "$big" "$tmp/q$i.glb" glb --points 20000 --prompts 64 >"$tmp/q$i" 2>&1 &
        qpids+=($!)
        for _ in $(seq 50); do grep -q . "$tmp/q$i" && break; sleep 0.1; done
done
check "the fourth job over QueueMax=3 gets QueueFull" -- grep -q "org.p3sam.Error.QueueFull" "$tmp/q4"
echo "   $(cat "$tmp/q4")"
for i in 1 2 3; do
        j=$(awk '/^job/ { print $2 }' "$tmp/q$i")
        [ -n "$j" ] && busctl --address="$A" call org.p3sam.Segmenter1 "$j" org.p3sam.Segmenter1.Job Cancel
done
wait "${qpids[@]}"
wait_prop QueueLength 0 30

# ---- privileges ----
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
out=$(as_nobody busctl --address="$A" call org.p3sam.Segmenter1 /org/p3sam/Segmenter1 \
        org.p3sam.Segmenter1 ClearGpuMemory 2>&1)
check "ClearGpuMemory as nobody is denied" -- grep -qi "access denied\|org.p3sam.manage" <<<"$out"
echo "   $out"
touch "$tmp/nobody.glb" && chmod 666 "$tmp/nobody.glb"
out=$(as_nobody "$P3_DAEMON_CLIENT" segment "$mesh" "$tmp/nobody.glb" 2>&1)
echo "   $out"
check "Segment as nobody (no polkit, not in AllowGroup) is denied" -- \
        grep -q "AccessDenied" <<<"$out"
out=$(as_nobody busctl --address="$A" set-property org.p3sam.Segmenter1 /org/p3sam/Segmenter1 \
        org.p3sam.Segmenter1 IdleTimeoutUSec t 1 2>&1)
check "setting IdleTimeoutUSec as nobody is denied" -- grep -qi "denied\|org.p3sam.manage" <<<"$out"
check "property reads work for anyone" -- as_nobody busctl --address="$A" get-property \
        org.p3sam.Segmenter1 /org/p3sam/Segmenter1 org.p3sam.Segmenter1 State

# ---- ClearGpuMemory and the idle timer ----
client segment "$mesh" "$tmp/w1.glb" >/dev/null 2>&1
check "ready after a job" -- [ "$(prop State)" = ready ]
busctl --address="$A" call org.p3sam.Segmenter1 /org/p3sam/Segmenter1 org.p3sam.Segmenter1 ClearGpuMemory
check "ClearGpuMemory as root offloads" -- wait_prop State offloaded 5
check "offloaded means no device memory" -- [ "$(prop GpuMemoryBytes)" = 0 ]
client segment "$mesh" "$tmp/w2.glb" >/dev/null 2>&1
t0=$(date +%s.%N)
check "the next job brings the model back" -- [ "$(prop State)" = ready ]
deadline=$(prop IdleOffloadTimestampMonotonic)
check "an armed idle timer publishes its deadline" -- [ "${deadline:-0}" -gt 0 ]
# reading State every 0.5 s must not keep the model warm
state=ready
for _ in $(seq 12); do
        state=$(prop State)
        [ "$state" = offloaded ] && break
        sleep 0.5
done
t1=$(date +%s.%N)
check "idle 2 s after the last job → offloaded even while polled" -- [ "$state" = offloaded ]
check "no deadline once offloaded" -- [ "$(prop IdleOffloadTimestampMonotonic)" = 0 ]
echo "   offloaded after $(echo "$t1 - $t0" | bc 2>/dev/null || echo "?") s"
busctl --address="$A" set-property org.p3sam.Segmenter1 /org/p3sam/Segmenter1 \
        org.p3sam.Segmenter1 IdleTimeoutUSec t 0
check "root may set IdleTimeoutUSec" -- [ "$(prop IdleTimeoutUSec)" = 0 ]

# ---- Reload: a bad file is refused and the old model keeps serving ----
cp "$conf" "$conf.good"
sed -i "s#^Path=.*#Path=$tmp/missing.safetensors#" "$conf"
out=$(busctl --address="$A" call org.p3sam.Segmenter1 /org/p3sam/Segmenter1 org.p3sam.Segmenter1 Reload 2>&1)
check "Reload with missing weights is refused" -- grep -q "missing.safetensors" <<<"$out"
echo "   $out"
client segment "$mesh" "$tmp/r1.glb" >/dev/null 2>&1
check "the old model keeps serving" -- [ $? -eq 0 ]
cp "$conf.good" "$conf"
check "Reload with good files succeeds" -- busctl --address="$A" call org.p3sam.Segmenter1 \
        /org/p3sam/Segmenter1 org.p3sam.Segmenter1 Reload

# ---- the group rule, the job timeout and the mesh size cap (through Reload) ----
sed -i 's/^AllowGroup=.*/AllowGroup=nogroup/; s/^\[Daemon\]/[Daemon]\nMaxMeshSize=100K/' "$conf"
busctl --address="$A" call org.p3sam.Segmenter1 /org/p3sam/Segmenter1 org.p3sam.Segmenter1 Reload
out=$(as_nobody "$P3_DAEMON_CLIENT" segment "$mesh" "$tmp/nobody.glb" 2>&1)
check "a member of AllowGroup may segment" -- grep -q "^done" <<<"$out"
out=$(client segment "$big" "$tmp/big.glb" 2>&1)
check "a mesh over MaxMeshSize fails its job" -- grep -q "over the limit" <<<"$out"
echo "   $(tail -n1 <<<"$out")"
sed -i 's/^\[Daemon\]/[Daemon]\nJobTimeoutSec=1/' "$conf"
busctl --address="$A" call org.p3sam.Segmenter1 /org/p3sam/Segmenter1 org.p3sam.Segmenter1 Reload
out=$(client segment "$mesh" "$tmp/slow.glb" glb --points 20000 --prompts 64 2>&1)
check "JobTimeoutSec cancels a job that runs too long" -- grep -q "^cancelled: .*JobTimeoutSec" <<<"$out"
cp "$conf.good" "$conf"
busctl --address="$A" call org.p3sam.Segmenter1 /org/p3sam/Segmenter1 org.p3sam.Segmenter1 Reload

# ---- sd-daemon notifications, SIGTERM mid-job ----
check "STATUS lines" -- grep -q '^STATUS=ready, model on CPU' "$tmp/notify.log"
check "STATUS shows a running job" -- grep -q '^STATUS=job [0-9]*: ' "$tmp/notify.log"
check "WATCHDOG=1" -- grep -q '^WATCHDOG=1' "$tmp/notify.log"
client segment "$big" "$tmp/t.glb" glb --points 20000 --prompts 64 >"$tmp/c8" 2>&1 &
cpid=$!
for _ in $(seq 100); do grep -q '^job' "$tmp/c8" && break; sleep 0.1; done
sleep 0.5
kill -TERM "$daemon_pid"
wait "$daemon_pid"
rc=$?
daemon_pid=
check "SIGTERM mid-job: the daemon exits 0" -- [ $rc -eq 0 ]
wait $cpid
check "SIGTERM mid-job: the job is reported cancelled" -- grep -q "^cancelled" "$tmp/c8"
check "STOPPING=1" -- grep -q '^STOPPING=1' "$tmp/notify.log"

if [ $fails -ne 0 ]; then
        echo "--- daemon log"; cat "$tmp/daemon.log"
fi
echo "$fails failure(s)"
[ $fails -eq 0 ]
