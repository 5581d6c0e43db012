#!/bin/bash
# Who may do what to p3samd, and what it refuses to read, on a private bus (tiny synthetic
# model, CPU backend). test-daemon-promises.sh already covers: Segment refused to a caller
# without rights, nobody reading a root job's Error, SetIdleTimeout and IdleTimeoutUSec as
# nobody, O_PATH and same-file descriptors. Here: the rest. nobody is allowed to segment
# (AllowGroup=nogroup) yet cannot clear the model, reload, cancel or read root's jobs; and
# descriptors that are no regular file (directory, FIFO, socket, /dev/null, /dev/zero), a
# /proc file, a write-only one, and a mesh one byte over MaxMeshSize= fail the job at once with
# a sentence, before anything is read.
set -u
: "${P3SAMD:?}" "${P3_DAEMON_CLIENT:?}" "${P3SAM_RUN:?}" "${P3_TEST_DATA:?}"
. "$(dirname "$0")/lib-test.sh"
need_dbus
command -v setpriv >/dev/null || { echo "SKIP: setpriv is not installed"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "SKIP: runs as root (it switches to nobody)"; exit 77; }
cleanup_extra() { [ -n "${daemon_pid:-}" ] && kill -9 "$daemon_pid" 2>/dev/null; }

start_bus "$tmp/address"
export DBUS_SYSTEM_BUS_ADDRESS=$bus
A=$bus

"$P3SAM_RUN" synth --config "$P3_TEST_DATA/tiny_config.json" --out "$tmp/w.safetensors" || exit 1
cp "$tmp/w.safetensors" "$tmp/w2.safetensors"
conf=$tmp/p3samd.conf
write_conf() { # write_conf WEIGHTS
        cat >"$conf" <<EOF2
[Model]
Path=$1
Config=$P3_TEST_DATA/tiny_config.json
Backend=cpu
Threads=2
[Daemon]
IdleTimeoutSec=1h
QueueMax=8
QueuePerUserMax=8
JobLingerSec=60
AllowGroup=nogroup
[Segment]
CpuPointNum=2000
CpuPromptNum=8
PromptBatch=4
EOF2
}
write_conf "$tmp/w.safetensors"
"$P3SAMD" --config "$conf" --keep-user >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!
check "the daemon comes up and loads" -- wait_prop State ready 30 || exit 1

as_nobody() { setpriv --reuid=nobody --regid=nogroup --init-groups "$@"; }
nobody_bus() { as_nobody busctl --address="$A" --timeout=10 "$@" 2>&1; }
# dbus-send prints the error's name and the daemon's sentence (busctl only strerror()'s).
nobody_call() { # nobody_call PATH IFACE.METHOD
        as_nobody dbus-send --bus="$A" --print-reply --dest=org.p3sam.Segmenter1 "$@" 2>&1
}
wait_prop_job() { # wait_prop_job PATH STATE: the job's State as root sees it, within 20 s
        local n=200
        [ -n "${P3_SANITIZE:-}" ] && n=3000 # 300 s: a job is ~15 times slower under ASan+UBSan
        for _ in $(seq $n); do
                [ "$(prop State "$1" org.p3sam.Segmenter1.Job)" = "$2" ] && return 0
                sleep 0.1
        done
        return 1
}
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$daemon_pid/status"; }
mesh=$P3_TEST_DATA/meshes/alien.glb
big=$P3_TEST_DATA/meshes/CesiumMilkTruck.glb

# ---- the privileged methods ----
"$P3_DAEMON_CLIENT" segment "$mesh" "$tmp/o.glb" >/dev/null 2>&1
out=$(nobody_call /org/p3sam/Segmenter1 org.p3sam.Segmenter1.ClearGpuMemory)
echo "   nobody ClearGpuMemory: $out"
check "ClearGpuMemory as nobody is refused with a sentence" -- \
        grep -q 'AccessDenied.*Clearing GPU memory needs root' <<<"$out"
sleep 0.5
check "... and the model stays loaded" -- [ "$(prop State)" = ready ]
write_conf "$tmp/w2.safetensors"
out=$(nobody_call /org/p3sam/Segmenter1 org.p3sam.Segmenter1.Reload)
echo "   nobody Reload: $out"
check "Reload as nobody is refused with a sentence" -- \
        grep -q 'AccessDenied.*Reloading needs root' <<<"$out"
check "... and the configuration on disk was not taken up (ModelPath)" -- \
        [ "$(prop ModelPath)" = "$tmp/w.safetensors" ]
write_conf "$tmp/w.safetensors"
out=$(nobody_bus set-property org.p3sam.Segmenter1 /org/p3sam/Segmenter1 org.p3sam.Segmenter1 \
        JobsCompleted t 0)
check "a read-only property cannot be written by nobody" -- [ "$(prop JobsCompleted)" != 0 ]

# ---- root's job, seen by nobody (who may segment) ----
mkdir "$tmp/nb" && chown nobody "$tmp/nb"
out=$(as_nobody "$P3_DAEMON_CLIENT" segment "$mesh" "$tmp/nb/o.glb" 2>&1)
check "nobody may segment here (AllowGroup=nogroup), so it is a user like another" -- \
        grep -q '^done' <<<"$out"
"$P3_DAEMON_CLIENT" segment "$big" "$tmp/long.glb" glb --points 20000 --prompts 64 --detach \
        >"$tmp/c1" 2>&1
job=$(awk '/^job/ { print $2 }' "$tmp/c1")
out=$(nobody_call "$job" org.p3sam.Segmenter1.Job.Cancel)
echo "   nobody cancelling root's job: $out"
check "nobody cannot cancel root's job" -- \
        grep -q "AccessDenied.*Cancelling another user's job needs root" <<<"$out"
check "... and it is still running" -- [ "$(prop State "$job" org.p3sam.Segmenter1.Job)" = running ]
out=$(nobody_bus get-property org.p3sam.Segmenter1 "$job" org.p3sam.Segmenter1.Job State)
check "nobody cannot read its State" -- bash -c "! grep -q '^s ' <<<'$out'"
out=$(nobody_bus call org.p3sam.Segmenter1 "$job" org.freedesktop.DBus.Properties GetAll s \
        org.p3sam.Segmenter1.Job)
check "nor GetAll its properties" -- bash -c "! grep -q 'StartedByUID\|Progress' <<<'$out'"
out=$(nobody_bus introspect org.p3sam.Segmenter1 "$job")
check "nor see its interface in Introspect" -- bash -c "! grep -q 'Segmenter1.Job' <<<'$out'"
out=$(nobody_bus call org.p3sam.Segmenter1 /org/p3sam/Segmenter1 \
        org.freedesktop.DBus.ObjectManager GetManagedObjects)
check "nor find it through GetManagedObjects" -- bash -c "! grep -q '$job' <<<'$out'"
wait_prop QueueLength 0 120
check "root's job ran to its end (done)" -- wait_prop_job "$job" done
out=$(nobody_bus get-property org.p3sam.Segmenter1 "$job" org.p3sam.Segmenter1.Job Error)
check "nobody cannot read the finished job's Error (its result) either" -- \
        bash -c "! grep -q '^s ' <<<'$out'"
as_nobody "$P3_DAEMON_CLIENT" segment "$big" "$tmp/nb/o2.glb" glb --points 20000 --prompts 64 \
        --detach >"$tmp/c2" 2>&1
njob=$(awk '/^job/ { print $2 }' "$tmp/c2")
out=$(nobody_call "$njob" org.p3sam.Segmenter1.Job.Cancel)
echo "   nobody cancelling its own job: ${out:-(no error)}"
check "nobody cancels its own job (the refusals above are about the owner)" -- \
        wait_prop_job "$njob" cancelled

# ---- descriptors that are no mesh: the job fails at once, with a sentence ----
wait_prop QueueLength 0 60
refused_fd() { # refused_fd WHAT PATTERN MESH [CLIENT-OPTIONS...]
        local what=$1 pattern=$2 t0 t1 ms out
        t0=$(date +%s%N)
        out=$(timeout 20 "$P3_DAEMON_CLIENT" segment "$3" "$tmp/fd.glb" glb "${@:4}" 2>&1)
        t1=$(date +%s%N)
        ms=$(((t1 - t0) / 1000000))
        echo "   $what: $(tail -n1 <<<"$out") ($ms ms)"
        check "a $what as the mesh fails the job with a sentence naming it" -- \
                grep -q "^failed: .*$pattern" <<<"$out"
        check "... at once (under 2 s), no model stage ran" -- \
                bash -c "[ $ms -lt 2000 ] && grep -q '^progress-updates [01]$' <<<'$out'"
}
jobs0=$(prop JobsCompleted)
mkdir "$tmp/dir"
refused_fd directory 'not a directory' "$tmp/dir"
mkfifo "$tmp/fifo"
refused_fd FIFO 'not a pipe' "$tmp/fifo" --mesh-nonblock
refused_fd socket 'not a socket' "$mesh" --mesh-socket
refused_fd /dev/null 'not a special file' /dev/null
refused_fd /dev/zero 'not a special file' /dev/zero
kernel='a kernel file (of /proc or /sys)'
refused_fd "/proc file" "$kernel" /proc/self/status
refused_fd "/sys file (st_size 4096)" "$kernel" /sys/kernel/mm/transparent_hugepage/enabled
cp "$mesh" "$tmp/wo.glb"
refused_fd "write-only descriptor" 'not open for reading' "$tmp/wo.glb" --mesh-wronly
check "none of them counts as a completed job" -- [ "$(prop JobsCompleted)" = "$jobs0" ]
check "the daemon is alive" -- kill -0 "$daemon_pid"

# ---- a mesh one byte over MaxMeshSize= (512 MiB by default): refused before it is read ----
cap=$((512 * 1024 * 1024))
truncate -s $((cap + 1)) "$tmp/huge.glb" # sparse: no disk, but every byte reads as 0
rss0=$(rss)
refused_fd "mesh of MaxMeshSize + 1 byte" "$((cap + 1)) bytes, over the limit of $cap" \
        "$tmp/huge.glb"
rss1=$(rss)
echo "   daemon VmRSS $rss0 kB before, $rss1 kB after"
check "... and the daemon's RSS did not grow by the file's size (less than 16 MiB)" -- \
        [ $((rss1 - rss0)) -lt 16384 ]
truncate -s "$cap" "$tmp/huge.glb"
out=$(timeout 20 "$P3_DAEMON_CLIENT" segment "$tmp/huge.glb" "$tmp/fd.glb" glb 2>&1)
echo "   a mesh of exactly MaxMeshSize bytes (zeros): $(tail -n1 <<<"$out")"
check "a mesh of exactly the cap is not refused for its size" -- \
        bash -c "! grep -q 'over the limit' <<<'$out'"

kill -TERM "$daemon_pid"
wait "$daemon_pid"
rc=$?
daemon_pid=
check "the daemon stops with status 0" -- [ $rc = 0 ]
if [ $fails -ne 0 ]; then
        echo "--- daemon log (tail)"; tail -n 40 "$tmp/daemon.log"
fi
echo "$fails failure(s)"
[ $fails -eq 0 ]
