#!/bin/bash
# Faults around a job, against p3samd on a private bus with p3samctl as the client (tiny
# synthetic model, CPU backend): weights replaced by a corrupt file before Reload, an output
# that fails mid-write (a full tmpfs; a closed pipe), the client killed mid-job, the daemon
# killed (SIGTERM, SIGKILL) mid-job and restarted. Each time the caller gets a clear error, no
# partial output (nor temporary file) is left, and the next job succeeds.
# (Allocation failures: test-fault-alloc.sh. Reload to a model that fails to load, a FIFO, a
# missing file: test-daemon-promises.sh.)
set -u
: "${P3SAMD:?}" "${P3SAMCTL:?}" "${P3_DAEMON_CLIENT:?}" "${P3SAM_RUN:?}" "${P3_TEST_DATA:?}"
. "$(dirname "$0")/../lib-test.sh"
need_dbus
cleanup_extra() {
        [ -n "${daemon_pid:-}" ] && kill -9 "$daemon_pid" 2>/dev/null
        mountpoint -q "$tmp/full" 2>/dev/null && umount "$tmp/full"
}

start_bus "$tmp/address"
export DBUS_SYSTEM_BUS_ADDRESS=$bus
A=$bus
cfg=$P3_TEST_DATA/tiny_config.json
mesh=$P3_TEST_DATA/meshes/alien.glb
big=$P3_TEST_DATA/meshes/CesiumMilkTruck.glb
"$P3SAM_RUN" synth --config "$cfg" --out "$tmp/w.safetensors" >/dev/null || exit 1
conf=$tmp/p3samd.conf
write_conf() { # write_conf WEIGHTS
        cat >"$conf" <<EOF
[Model]
Path=$1
Config=$cfg
Backend=cpu
Threads=2
[Daemon]
IdleTimeoutSec=1h
QueueMax=8
QueuePerUserMax=8
JobLingerSec=1
AllowGroup=p3sam-test-nonexistent
[Segment]
CpuPointNum=2000
CpuPromptNum=8
PromptBatch=4
EOF
}
write_conf "$tmp/w.safetensors"

dstart() { # dstart [ENV...]: p3samd, until it serves
        env "$@" "$P3SAMD" --config "$conf" --keep-user >>"$tmp/daemon.log" 2>&1 &
        daemon_pid=$!
        wait_prop State ready 60
}
ctl() { timeout 120 "$P3SAMCTL" "$@"; }
mkdir -p "$tmp/log"
# job NAME DIR [ARGS...]: p3samctl segment into DIR/NAME.glb; its stdout, stderr and status in
# $tmp/log/NAME.{out,err,rc}
job() {
        local name=$1 dir=$2
        shift 2
        mkdir -p "$dir"
        ctl segment "$mesh" -o "$dir/$name.glb" "$@" >"$tmp/log/$name.out" 2>"$tmp/log/$name.err"
        echo $? >"$tmp/log/$name.rc"
}
rc_of() { cat "$tmp/log/$1.rc"; }
# what a long enough job is on the CPU: seconds, not minutes, even on a loaded machine
long_job=("$big" --points 5000 --prompts 16)
# one "p3samctl: " line on stderr (after the progress lines), the last, and a sentence
sentence() { [ "$(grep -c '^p3samctl: ' "$1")" -eq 1 ] && tail -n1 "$1" | grep -qE '^p3samctl: [^ ].*[.)]$'; }
# nothing of NAME in DIR: no output, no report, no ".NAME.XXXXXX" temporary
nothing_left() {
        local left
        left=$(find "$1" -maxdepth 1 \( -name "$2.*" -o -name ".$2.*" \) -printf '%f (%s bytes) ')
        [ -z "$left" ] || { echo "   left: $left"; return 1; }
}
fds() { ls "/proc/$daemon_pid/fd" | wc -l; }
next_job_ok() { # next_job_ok NAME: a job succeeds, with the reference's output
        job "$1" "$tmp/next"
        [ "$(rc_of "$1")" = 0 ] && cmp -s "$tmp/next/$1.glb" "$tmp/ref/ref.glb"
}

check "p3samd comes up" -- dstart
job ref "$tmp/ref" --json "$tmp/ref/ref.json"
check "a reference job succeeds" -- [ "$(rc_of ref)" = 0 ]
# JobRemoved, as another client sees it: the end of a job whose client is gone
"$P3_DAEMON_CLIENT" watch 600 >"$tmp/watch.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q '^watching' "$tmp/watch.log" && break; sleep 0.1; done
removed() { grep -c 'signal /org/p3sam/Segmenter1 JobRemoved' "$tmp/watch.log"; }
await() { # await 'SHELL CONDITION' SECONDS
        for _ in $(seq $(($2 * 10))); do eval "$1" && return 0; sleep 0.1; done
        return 1
}

# ---- weights replaced by a corrupt file before Reload: refused, the old model serves ----
# The safetensors header (8 bytes of length, then JSON) rewritten with jq: EDIT applied to the
# first tensor of two dimensions that differ (so that the data's size still matches).
edit_header() { # edit_header IN OUT JQ-EDIT
        local n json
        n=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
        json=$(tail -c +9 "$1" | head -c "$n" | jq -c --arg k "$(tail -c +9 "$1" | head -c "$n" |
                jq -r 'to_entries | map(select(.key != "__metadata__" and (.value.shape | length) == 2
                and .value.shape[0] != .value.shape[1])) | .[0].key')" ".[\$k] |= ($3)")
        n=${#json}
        printf "$(printf '\\%03o' $((n & 255)) $((n >> 8 & 255)) $((n >> 16 & 255)) 0 0 0 0 0)" >"$2"
        printf '%s' "$json" >>"$2"
        tail -c +$((9 + $(od -An -t u8 -N 8 "$1" | tr -d ' '))) "$1" >>"$2"
}
if command -v jq >/dev/null; then
        edit_header "$tmp/w.safetensors" "$tmp/shape.safetensors" '.shape |= reverse'
        edit_header "$tmp/w.safetensors" "$tmp/dtype.safetensors" '.dtype = "I32"'
        "$P3SAM_RUN" segment --weights "$tmp/shape.safetensors" --config "$cfg" "$mesh" \
                -o "$tmp/x.glb" --quiet 2>"$tmp/shape.err"
        echo "   p3sam-run on the transposed tensor: $(cat "$tmp/shape.err")"
else
        echo "   (jq is not installed: no shape or dtype edits)"
fi
head -c 100000 /dev/urandom >"$tmp/garbage.safetensors"
head -c $(($(stat -c %s "$tmp/w.safetensors") / 2)) "$tmp/w.safetensors" >"$tmp/half.safetensors"
head -c 8 "$tmp/w.safetensors" >"$tmp/header-only.safetensors"
: >"$tmp/empty.safetensors"
cp "$tmp/w.safetensors" "$tmp/installed.safetensors"
write_conf "$tmp/installed.safetensors"
out=$(ctl reload 2>&1)
check "Reload to a copy of the weights succeeds (the path the corrupt files replace)" -- \
        [ "$(prop ModelPath)" = "$tmp/installed.safetensors" ]
for bad in garbage half header-only empty shape dtype; do
        [ -e "$tmp/$bad.safetensors" ] || continue
        # replaced the way an install does it: a new file renamed over the path
        cp "$tmp/$bad.safetensors" "$tmp/new.safetensors"
        mv "$tmp/new.safetensors" "$tmp/installed.safetensors"
        ctl reload >"$tmp/reload.out" 2>"$tmp/reload.err"
        rc=$?
        echo "   $bad: $(cat "$tmp/reload.err")"
        check "$bad weights: p3samctl reload fails (1) with one sentence" -- \
                eval '[ $rc = 1 ] && sentence "$tmp/reload.err"'
        check "$bad weights: ... saying the old model keeps serving, and why" -- \
                grep -q 'old model keeps serving: .*installed.safetensors' "$tmp/reload.err"
        check "$bad weights: State stays ready, ModelPath unchanged" -- \
                eval '[ "$(prop State)" = ready ] && [ "$(prop ModelPath)" = "$tmp/installed.safetensors" ]'
        check "$bad weights: the next job succeeds on the old model" -- next_job_ok "reload-$bad"
done
out=$(busctl --address="$A" call org.p3sam.Segmenter1 /org/p3sam/Segmenter1 \
        org.p3sam.Segmenter1 Reload 2>&1)
echo "   busctl: $out"
check "Reload through busctl: an error with a sentence" -- \
        grep -q 'Reload refused, the old model keeps serving: .*\.$' <<<"$out"
cp "$tmp/w.safetensors" "$tmp/new.safetensors"
mv "$tmp/new.safetensors" "$tmp/installed.safetensors"
check "good weights installed again: Reload succeeds" -- ctl reload
check "... and the next job succeeds" -- next_job_ok reload-good

# ---- an output that fails mid-write: a full tmpfs ----
mkdir -p "$tmp/full"
if mount -t tmpfs -o size=64k,nr_inodes=64 tmpfs "$tmp/full" 2>"$tmp/mount.err"; then
        out_size=$(stat -c %s "$tmp/ref/ref.glb")
        ctl segment "${long_job[@]}" -o "$tmp/ref/big.glb" --json "$tmp/ref/big.json" \
                >/dev/null 2>&1 # the report of the longer job: 10 kB
        report_size=$(stat -c %s "$tmp/ref/big.json")
        # Room for half of each: the write starts and fails in the middle.
        fill() { # fill BYTES-TO-LEAVE
                rm -f "$tmp/full/fill"
                local free=$(($(stat -f -c '%a * %S' "$tmp/full")))
                head -c $((free - $1)) /dev/zero >"$tmp/full/fill" 2>/dev/null
                echo "   tmpfs: $(($(stat -f -c '%a * %S' "$tmp/full"))) bytes free"
        }
        echo "   the output is $out_size bytes, the longer job's report $report_size"
        fill $((out_size / 2))
        n0=$(fds)
        job out "$tmp/full"
        echo "   $(tail -n1 "$tmp/log/out.err")"
        check "output on a full tmpfs: p3samctl fails (1) with one sentence" -- \
                eval '[ "$(rc_of out)" = 1 ] && sentence "$tmp/log/out.err"'
        check "... naming the lack of space" -- grep -qi 'no space' "$tmp/log/out.err"
        check "... a job whose Result is resources (the journal says so)" -- \
                grep -q 'failed (resources): .*No space' "$tmp/daemon.log"
        check "... and leaves no output nor temporary file" -- nothing_left "$tmp/full" out
        check "... nor a descriptor in the daemon" -- [ "$(fds)" -le "$n0" ]
        check "... and the next job succeeds" -- next_job_ok full-out
        fill $((report_size / 2))
        mkdir -p "$tmp/elsewhere"
        ctl segment "${long_job[@]}" -o "$tmp/elsewhere/rep.glb" --json "$tmp/full/rep.json" \
                >"$tmp/log/rep.out" 2>"$tmp/log/rep.err"
        echo $? >"$tmp/log/rep.rc"
        echo "   $(tail -n1 "$tmp/log/rep.err")"
        check "the report (--json) on a full tmpfs: p3samctl fails (1) with one sentence" -- \
                eval '[ "$(rc_of rep)" = 1 ] && sentence "$tmp/log/rep.err"'
        check "... and leaves neither the report nor the output (elsewhere)" -- \
                eval 'nothing_left "$tmp/full" rep && nothing_left "$tmp/elsewhere" rep'
        check "... and the next job succeeds" -- next_job_ok full-report
        umount "$tmp/full"
else
        echo "SKIP (the full tmpfs): mount refused: $(cat "$tmp/mount.err")"
fi

# ---- a closed pipe: p3samctl's stdout, then its stderr (the progress) ----
# p3samctl writes its outputs to files only; on stdout it names them once the job is done.
mkdir -p "$tmp/pipe"
{ ctl segment "$mesh" -o "$tmp/pipe/stdout.glb" 2>"$tmp/log/stdout.err"; echo $? >"$tmp/log/stdout.rc"; } |
        true
echo "   stdout a closed pipe: status $(cat "$tmp/log/stdout.rc"), stderr: $(tail -n1 "$tmp/log/stdout.err")"
check "stdout a closed pipe: p3samctl fails (not 0)" -- [ "$(cat "$tmp/log/stdout.rc")" != 0 ]
check "... and the output, written before stdout, is whole (the reference's)" -- \
        cmp -s "$tmp/pipe/stdout.glb" "$tmp/ref/ref.glb"
check "... the daemon serves on, the next job succeeds" -- next_job_ok pipe-stdout
n0=$(fds)
r0=$(removed)
{ ctl segment "${long_job[@]}" -o "$tmp/pipe/stderr.glb" 2>&1 >"$tmp/log/stderr.out"
        echo $? >"$tmp/log/stderr.rc"; } | head -c 1 >/dev/null
echo "   stderr a closed pipe: status $(cat "$tmp/log/stderr.rc")"
check "stderr (the progress) a closed pipe: p3samctl stops, not 0" -- \
        [ "$(cat "$tmp/log/stderr.rc")" != 0 ]
check "... and leaves no output nor temporary file" -- nothing_left "$tmp/pipe" stderr
check "... the job ends (JobRemoved)" -- await '[ "$(removed)" -gt "$r0" ]' 120
check "... the daemon holds no more descriptors than before" -- [ "$(fds)" -le "$n0" ]
check "... and the next job succeeds" -- next_job_ok pipe-stderr

# ---- the client killed mid-job ----
mkdir -p "$tmp/kill"
n0=$(fds)
r0=$(removed)
"$P3SAMCTL" segment "${long_job[@]}" -o "$tmp/kill/client.glb" --json "$tmp/kill/client.json" \
        >"$tmp/log/client.out" 2>&1 &
cpid=$!
await '[ "$(prop State)" = busy ]' 30
kill -9 $cpid
wait $cpid 2>/dev/null
check "SIGKILL of p3samctl mid-job: the job ends (JobRemoved)" -- \
        await '[ "$(removed)" -gt "$r0" ]' 120
echo "   the job: $(grep -o "job [0-9]* .*\(cancelled\|done\|failed\).*" "$tmp/daemon.log" | tail -n1)"
check "... the daemon serves on (State ready)" -- wait_prop State ready 10
check "... no descriptor leaked ($n0 before, $(fds) after)" -- [ "$(fds)" -le "$n0" ]
check "... no output, report nor temporary file left" -- nothing_left "$tmp/kill" client
check "... and the next job succeeds" -- next_job_ok client-killed

# ---- the daemon killed mid-job (SIGTERM, SIGKILL), then restarted ----
for sig in TERM KILL; do
        ctl segment "${long_job[@]}" -o "$tmp/kill/$sig.glb" --json "$tmp/kill/$sig.json" \
                >"$tmp/log/$sig.out" 2>"$tmp/log/$sig.err" &
        cpid=$!
        await '[ "$(prop State)" = busy ]' 30
        kill -$sig "$daemon_pid"
        wait $cpid
        rc=$?
        wait "$daemon_pid" 2>/dev/null
        daemon_pid=
        echo "   SIG$sig: p3samctl's status $rc: $(tail -n1 "$tmp/log/$sig.err")"
        check "SIG$sig of p3samd mid-job: p3samctl fails (1 or 3, not a hang) with one sentence" -- \
                eval '[ $rc = 1 -o $rc = 3 ] && sentence "$tmp/log/$sig.err"'
        check "... no output, report nor temporary file left" -- nothing_left "$tmp/kill" "$sig"
        check "... p3samd starts again" -- dstart
        check "... and serves the next job" -- next_job_ok "after-$sig"
done

if [ $fails -ne 0 ]; then
        echo "--- daemon log (end)"; tail -n 40 "$tmp/daemon.log"
fi
echo "$fails failure(s)"
[ $fails -eq 0 ]
