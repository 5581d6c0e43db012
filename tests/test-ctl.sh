#!/bin/bash
# p3samctl against p3samd on a private bus (tests/dbus-test.conf), tiny model with synthetic
# weights on the CPU backend: progress (plain lines, and the bar on a pty), atomic outputs,
# Ctrl-C, the exit codes, --no-wait, predict, jobs/cancel, set-idle-timeout (--persist),
# --instance.
set -u
: "${P3SAMCTL:?}" "${P3SAMD:?}" "${P3SAM_RUN:?}" "${P3_TEST_DATA:?}"
src=${P3_SOURCE_ROOT:?}
. "$(dirname "$0")/lib-test.sh"
need_dbus
ctl() { timeout 300 "$P3SAMCTL" "$@"; }
# run_ctl NAME ARGS...: stdout in $tmp/NAME.out, stderr in $tmp/NAME.err, exit code in $rc
run_ctl() {
        local name=$1; shift
        ctl "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
        rc=$?
}
# one line on stderr, "p3samctl: " and a sentence
one_sentence() { [ "$(wc -l <"$1")" -eq 1 ] && grep -q '^p3samctl: [^ ].*[.)]$' "$1"; }
eventually() { # eventually 'SHELL CONDITION': within 10 s
        for _ in $(seq 100); do eval "$1" && return 0; sleep 0.1; done
        return 1
}
no_temp_files() { [ -z "$(find "$1" -maxdepth 1 -name '.*.??????' -print -quit)" ]; }

start_bus_conf() { # start_bus_conf CONFIG FILE: start_bus with another bus configuration
        dbus-daemon --config-file="$1" --nofork --print-address=3 3>"$2" >/dev/null 2>&1 &
        pids+=($!)
        for _ in $(seq 50); do [ -s "$2" ] && break; sleep 0.1; done
        bus=$(head -n1 "$2")
}

start_bus "$tmp/address"
export DBUS_SYSTEM_BUS_ADDRESS=$bus
A=$DBUS_SYSTEM_BUS_ADDRESS

"$P3SAM_RUN" synth --config "$P3_TEST_DATA/tiny_config.json" --out "$tmp/w.safetensors" || exit 1
cat >"$tmp/p3samd.conf" <<EOF
[Model]
Path=$tmp/w.safetensors
Config=$P3_TEST_DATA/tiny_config.json
Backend=cpu
Threads=2
[Daemon]
IdleTimeoutSec=1h
QueueMax=8
QueuePerUserMax=8
JobLingerSec=120
AllowGroup=p3sam-test-nonexistent
[Segment]
CpuPointNum=2000
CpuPromptNum=8
PromptBatch=4
EOF

start_daemon org.p3sam.Segmenter1 "$tmp/daemon.log"

job_state() { # job_state ID [BUS_NAME]
        busctl --address="$A" get-property "${2:-org.p3sam.Segmenter1}" \
                "/org/p3sam/Segmenter1/job/$1" org.p3sam.Segmenter1.Job State 2>/dev/null |
                cut -d' ' -f2 | tr -d '"'
}
wait_job() { # wait_job ID STATE SECONDS
        for _ in $(seq $(($3 * 10))); do
                [ "$(job_state "$1")" = "$2" ] && return 0
                sleep 0.1
        done
        return 1
}

mesh=$P3_TEST_DATA/meshes/alien.glb
big=$P3_TEST_DATA/meshes/CesiumMilkTruck.glb
mkdir -p "$tmp/m" "$tmp/out"
cp "$mesh" "$tmp/m/alien.glb"

# ---- usage: exit 2, one sentence; --help everywhere ----
for args in "" "bogus" "segment" "segment a.glb b.glb" "segment $mesh --points x" \
        "segment $mesh --format bmp" "segment $mesh --bogus" "segment $mesh --points" \
        "predict $mesh" "predict $mesh --prompt 1,2" "status extra" "set-idle-timeout abc" \
        "set-idle-timeout" "cancel" "cancel abc" "--instance x status" "status --instance -1" \
        "segment $mesh -o $tmp/out/x.bin"; do
        run_ctl usage $args
        check "'p3samctl $args' is a usage error (2) in one sentence" -- \
                eval '[ $rc -eq 2 ] && one_sentence "$tmp/usage.err"'
done
echo "   e.g. $(cat "$tmp/usage.err")"
# getopt reads "-5min" as options: the value must still get a sentence about itself
run_ctl neg set-idle-timeout -5min
check "set-idle-timeout -5min: exit 2, a sentence about the time span" -- \
        eval '[ $rc -eq 2 ] && grep -qx "p3samctl: \"-5min\" is not a time span .*" "$tmp/neg.err"'
run_ctl neg2 cancel -1
check "cancel -1: exit 2, a sentence about the job number" -- \
        eval '[ $rc -eq 2 ] && grep -q "\"-1\" is not a job number" "$tmp/neg2.err"'
run_ctl neg3 status --json -xy
check "an unknown option inside -xy is named (-x), not the verb" -- \
        eval '[ $rc -eq 2 ] && grep -q "Unknown option -x;" "$tmp/neg3.err"'
helps_ok=true
for verb in segment predict status jobs cancel clear-gpu reload set-idle-timeout; do
        ctl "$verb" --help 2>&1 | grep -q "^Usage: p3samctl $verb" || { helps_ok=false; echo "   $verb --help"; }
done
check "every verb has --help" -- $helps_ok
check "p3samctl --help lists the verbs" -- eval 'ctl --help | grep -q "set-idle-timeout"'
check "p3samctl --version" -- eval 'ctl --version | grep -q "^p3samctl [0-9]"'

# ---- status ----
run_ctl status status
check "status succeeds" -- [ $rc -eq 0 ]
check "status shows the state" -- grep -q '^ *State: ready' "$tmp/status.out"
check "status says SYNTHETIC weights prominently" -- \
        eval 'head -n1 "$tmp/status.out" | grep -q "SYNTHETIC weights"'
check "status shows the idle timeout" -- grep -q 'Idle timeout: 1h' "$tmp/status.out"
check "status: the model's memory, on the CPU backend host memory, by its own name" -- \
        grep -qE '^ *Model memory: [0-9.]+ [KMG]?i?B \(peak [0-9.]+ [KMG]?i?B\) on CPU$' "$tmp/status.out"
check "status: no GPU memory line on the CPU backend" -- eval '! grep -q "GPU memory" "$tmp/status.out"'
echo "   $(grep 'Model memory' "$tmp/status.out")"
run_ctl sjson status --json
check "status --json succeeds" -- [ $rc -eq 0 ]
keys_ok=true
for key in state backend device model_memory_bytes peak_model_memory_bytes gpu_memory_bytes \
        peak_gpu_memory_bytes host_memory_bytes \
        idle_timeout_usec idle_offload_timestamp_monotonic idle_offload_in_usec queue_length \
        jobs_completed model_path model_synthetic version; do
        grep -q "\"$key\":" "$tmp/sjson.out" || { keys_ok=false; echo "   missing $key"; }
done
check "status --json has every key" -- $keys_ok
check "status --json: model_synthetic is true" -- grep -q '"model_synthetic":true' "$tmp/sjson.out"
check "status --json: the loaded model's memory in model_memory_bytes, none in gpu_memory_bytes (CPU)" -- \
        eval 'grep -q "\"model_memory_bytes\":[1-9]" "$tmp/sjson.out" && grep -q "\"peak_model_memory_bytes\":[1-9]" "$tmp/sjson.out" && grep -q "\"gpu_memory_bytes\":0," "$tmp/sjson.out"'
if command -v jq >/dev/null; then
        check "status --json is one JSON object (jq)" -- \
                eval '[ "$(jq -r .state "$tmp/sjson.out")" = ready ]'
fi

# ---- segment: progress lines, default name, atomic rename, report ----
run_ctl seg segment "$tmp/m/alien.glb" --json "$tmp/m/report.json"
check "segment succeeds" -- [ $rc -eq 0 ]
check "the default output is NAME.parts.glb beside the mesh, a GLB" -- \
        eval '[ "$(head -c4 "$tmp/m/alien.parts.glb")" = glTF ]'
check "the report is written" -- grep -q '"synthetic_weights":true' "$tmp/m/report.json"
check "stdout names the outputs" -- \
        eval 'grep -qx "$tmp/m/alien.parts.glb" "$tmp/seg.out" && grep -qx "$tmp/m/report.json" "$tmp/seg.out"'
check "no temporary file is left" -- no_temp_files "$tmp/m"
check "progress off a terminal: plain 'stage N% T.Ts' lines" -- \
        grep -qE '^[a-z_ -]+ [0-9]+% [0-9.]+s$' "$tmp/seg.err"
check "progress off a terminal: no carriage returns" -- eval '! grep -q $'"'\r'"' "$tmp/seg.err"'
check "progress off a terminal: one line per stage" -- \
        eval '[ "$(cut -d" " -f1 "$tmp/seg.err" | sort | uniq -d)" = "" ]'
echo "   $(tr '\n' '|' <"$tmp/seg.err")"
check "the output is 0644" -- eval '[ "$(stat -c %a "$tmp/m/alien.parts.glb")" = 644 ]'
run_ctl seg2 segment "$mesh" -o "$tmp/out/a.ply"
check "the format follows the output's name (.ply)" -- \
        eval '[ $rc -eq 0 ] && head -c3 "$tmp/out/a.ply" | grep -q ply'
ino=$(stat -c %i "$tmp/out/a.ply")
run_ctl seg2b segment "$mesh" -o "$tmp/out/a.ply"
check "an existing output is replaced by a new file, nothing left beside it" -- \
        eval '[ $rc -eq 0 ] && [ "$(stat -c %i "$tmp/out/a.ply")" != "$ino" ] && head -c3 "$tmp/out/a.ply" | grep -q ply && no_temp_files "$tmp/out"'
run_ctl seg3 segment "$mesh" -o "$tmp/out/a.out" --format json --points 1000 --prompts 4 \
        --batch 2 --seed 7 --post-process --threshold 0.9
check "--format json and every option" -- eval '[ $rc -eq 0 ] && grep -q "\"points\":1000" "$tmp/out/a.out" && grep -q "\"prompt_batch\":2," "$tmp/out/a.out"'
# PromptBatch=4 in this daemon's file; --batch auto asks for the engine's choice (the CPU's 32)
run_ctl seg4 segment "$mesh" -o "$tmp/out/auto.json" --points 1000 --prompts 40 --batch auto
check "--batch auto: the engine's batch, reported (32 on the CPU)" -- \
        eval '[ $rc -eq 0 ] && grep -q "\"prompt_batch\":32," "$tmp/out/auto.json"'
run_ctl seg5 segment "$mesh" -o "$tmp/out/b5.json" --batch 5000
check "--batch 5000: the daemon's sentence" -- \
        eval '[ $rc -ne 0 ] && grep -q "prompt_batch.*between 1 and 4096, or 0 for auto" "$tmp/seg5.err"'
if command -v script >/dev/null; then
        script -qfec "$P3SAMCTL segment $mesh -o $tmp/out/pty.glb" /dev/null >"$tmp/pty.log" 2>&1
        rc=$?
        check "on a terminal: segment succeeds" -- [ $rc -eq 0 ]
        check "on a terminal: the bar is redrawn in place (\\r)" -- grep -q $'\r[a-z].*\\[#*' "$tmp/pty.log"
        check "on a terminal: percent and elapsed time" -- grep -qE '[0-9]+%  [0-9.]+s' "$tmp/pty.log"
else
        echo "SKIP: script (util-linux) is not installed: no pty check"
fi

# ---- a failed job: exit 1, the daemon's sentence, nothing left behind ----
cp "$P3_TEST_DATA/meshes/bad/Fox_truncated.glb" "$tmp/m/"
run_ctl bad segment "$tmp/m/Fox_truncated.glb" --json "$tmp/m/bad-report.json"
check "a bad mesh fails (1)" -- [ $rc -eq 1 ]
check "the failure is one sentence naming the file" -- \
        eval 'one_sentence "$tmp/bad.err" || grep -q "^p3samctl: Job [0-9]* failed: .*Fox_truncated.glb: .*truncated" "$tmp/bad.err"'
echo "   $(tail -n1 "$tmp/bad.err")"
check "a failed job leaves no output" -- [ ! -e "$tmp/m/Fox_truncated.parts.glb" ]
check "a failed job leaves no report" -- [ ! -e "$tmp/m/bad-report.json" ]
check "a failed job leaves no temporary file" -- no_temp_files "$tmp/m"

# ---- a glTF with an external buffer: refused before the daemon is asked ----
cp "$P3_TEST_DATA/meshes/SimpleSparseAccessor".* "$tmp/m/"
DBUS_SYSTEM_BUS_ADDRESS=unix:path=$tmp/nowhere run_ctl gltf segment "$tmp/m/SimpleSparseAccessor.gltf"
check "a .gltf with external buffers: exit 1, asks for GLB" -- \
        eval '[ $rc -eq 1 ] && one_sentence "$tmp/gltf.err" && grep -q GLB "$tmp/gltf.err"'
check "...and nothing is written" -- eval '[ ! -e "$tmp/m/SimpleSparseAccessor.parts.glb" ] && no_temp_files "$tmp/m"'

# ---- Ctrl-C cancels the job: exit 3, nothing written ----
# (started directly, not through ctl(): the signal must reach p3samctl itself)
"$P3SAMCTL" segment "$big" -o "$tmp/out/big.glb" --points 20000 --prompts 64 >"$tmp/int.out" \
        2>"$tmp/int.err" &
cpid=$!
for _ in $(seq 300); do grep -q '^features' "$tmp/int.err" && break; sleep 0.1; done
id=$(ctl jobs --no-legend | awk '$2 == "running" { print $1 }' | tail -n1)
kill -INT $cpid
wait $cpid
rc=$?
check "SIGINT: exit 3" -- [ $rc -eq 3 ]
check "SIGINT: the daemon confirmed the cancel" -- eval '[ -n "$id" ] && [ "$(job_state "$id")" = cancelled ]'
check "SIGINT: nothing written, no temporary file" -- \
        eval '[ ! -e "$tmp/out/big.glb" ] && no_temp_files "$tmp/out"'
echo "   $(tr '\n' '|' <"$tmp/int.err")"

# ---- kill -9 mid-job: no file at all is left, temporary or not ----
mkdir "$tmp/kill"
"$P3SAMCTL" segment "$big" -o "$tmp/kill/big.glb" --json "$tmp/kill/big.json" --points 20000 \
        --prompts 64 >/dev/null 2>"$tmp/kill.err" &
cpid=$!
for _ in $(seq 300); do grep -q '^features' "$tmp/kill.err" && break; sleep 0.1; done
id=$(ctl jobs --no-legend | awk '$2 == "running" { print $1 }' | tail -n1)
kill -KILL $cpid
{ wait $cpid; } 2>/dev/null # bash's own "Killed" line too
check "kill -9 of p3samctl mid-job: the output's directory is left empty" -- \
        eval '[ -n "$id" ] && [ -z "$(ls -A "$tmp/kill")" ]'
ls -A "$tmp/kill" | sed 's/^/   left: /'
check "...and p3samd cancels the job of the lost client" -- wait_job "$id" cancelled 60

# ---- --no-wait: a detached job fills the output later ----
run_ctl nowait segment "$mesh" -o "$tmp/out/detached.glb" --no-wait
check "--no-wait exits 0 at once" -- [ $rc -eq 0 ]
check "--no-wait prints the job" -- grep -q '/org/p3sam/Segmenter1/job/[0-9]' "$tmp/nowait.out"
id=$(grep -o 'job/[0-9]*' "$tmp/nowait.out" | head -n1 | cut -d/ -f2)
check "the detached job completes" -- wait_job "$id" done 60
check "...and filled the output" -- eval '[ "$(head -c4 "$tmp/out/detached.glb")" = glTF ]'

# ---- predict ----
run_ctl pred predict "$tmp/m/alien.glb" --prompt 0,0.5,0 --prompt 0.2,-0.3,0.1
check "predict succeeds" -- [ $rc -eq 0 ]
check "predict's default output NAME.masks.json has the masks" -- \
        grep -q '"prompts"' "$tmp/m/alien.masks.json"
run_ctl pred2 predict "$mesh" --prompt 0,0,0 -o "$tmp/out/p.json" --points 500 --seed 3
check "predict -o" -- eval '[ $rc -eq 0 ] && grep -q "\"prompts\"" "$tmp/out/p.json"'

# ---- jobs, cancel ----
run_ctl jobs jobs
check "jobs lists the recent jobs with a header" -- \
        eval '[ $rc -eq 0 ] && grep -q "^ID *STATE *STAGE *PROGRESS *UID *ERROR" "$tmp/jobs.out" && grep -qE "^[0-9]+ +done +[a-z_-]+ +100%" "$tmp/jobs.out"'
check "jobs shows the failed job's error" -- grep -qE '^[0-9]+ +failed .*truncated' "$tmp/jobs.out"
check "jobs shows the cancelled job" -- grep -qE '^[0-9]+ +cancelled ' "$tmp/jobs.out"
run_ctl jjson jobs --json
check "jobs --json" -- eval '[ $rc -eq 0 ] && grep -q "\"state\":\"done\"" "$tmp/jjson.out"'
check "...with each ended job's result (the truncated mesh: invalid-input)" -- eval \
        'jq -e "any(.[]; .state == \"failed\" and .result == \"invalid-input\") and
                any(.[]; .state == \"done\" and .result == \"done\")" "$tmp/jjson.out" >/dev/null'
run_ctl nw2 segment "$big" -o "$tmp/out/c.glb" --points 20000 --prompts 64 --no-wait
id=$(grep -o 'job/[0-9]*' "$tmp/nw2.out" | head -n1 | cut -d/ -f2)
run_ctl cancel cancel "$id"
check "cancel ID" -- [ $rc -eq 0 ]
check "the job ends cancelled" -- wait_job "$id" cancelled 60
run_ctl cancel2 cancel "$id"
check "cancel of an ended job says so (0)" -- eval '[ $rc -eq 0 ] && grep -q "already ended" "$tmp/cancel2.out"'
run_ctl cancel3 cancel 99999
check "cancel of an unknown job: 1, one sentence" -- eval '[ $rc -eq 1 ] && one_sentence "$tmp/cancel3.err"'

# ---- clear-gpu, reload, set-idle-timeout ----
run_ctl clear clear-gpu
check "clear-gpu as root" -- [ $rc -eq 0 ]
check "...offloads the model" -- eventually 'ctl status --json | grep -q "\"state\":\"offloaded\""'
run_ctl reload reload
check "reload as root" -- [ $rc -eq 0 ]
# what goes over the bus: SetIdleTimeout(t usec, b interactive), interactive on a terminal
dbus-monitor --address "$A" \
        "type='method_call',interface='org.p3sam.Segmenter1',member='SetIdleTimeout'" \
        >"$tmp/monitor.log" 2>&1 &
pids+=($!)
eventually '[ -s "$tmp/monitor.log" ]'
called() { # called USEC true|false: SetIdleTimeout(USEC, ...) went to p3samd
        eventually "grep -A2 'member=SetIdleTimeout' '$tmp/monitor.log' | tr -s ' \n' ' ' | grep -q 'uint64 $1 boolean $2'"
}
run_ctl idle set-idle-timeout 10min </dev/null
check "set-idle-timeout 10min" -- \
        eval '[ $rc -eq 0 ] && ctl status --json | grep -q "\"idle_timeout_usec\":600000000"'
check "...by SetIdleTimeout(600000000, false) off a terminal (not the property)" -- \
        called 600000000 false
if command -v script >/dev/null; then
        script -qfec "$P3SAMCTL set-idle-timeout 20min" /dev/null >"$tmp/idle-pty.log" 2>&1
        rc=$?
        check "on a terminal: SetIdleTimeout(1200000000, true), polkit may ask" -- \
                eval '[ $rc -eq 0 ] && called 1200000000 true'
else
        echo "SKIP: script (util-linux) is not installed: no interactive SetIdleTimeout check"
fi
run_ctl idle0 set-idle-timeout 0
check "set-idle-timeout 0 shows never" -- eval '[ $rc -eq 0 ] && ctl status | grep -q "Idle timeout: never"'
export P3SAMCTL_CONF_DIR=$tmp/etc/p3samd.conf.d
run_ctl persist set-idle-timeout 90s --persist
check "--persist sets it at run time" -- eval 'ctl status --json | grep -q "\"idle_timeout_usec\":90000000"'
check "--persist writes the drop-in" -- \
        eval '[ $rc -eq 0 ] && grep -qx "IdleTimeoutSec=1min 30s" "$P3SAMCTL_CONF_DIR/50-idle-timeout.conf" && grep -qx "\[Daemon\]" "$P3SAMCTL_CONF_DIR/50-idle-timeout.conf"'
check "--persist leaves no temporary file" -- no_temp_files "$P3SAMCTL_CONF_DIR"

# ---- access denied: exit 4 with the daemon's sentence ----
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
if as_nobody test -x "$P3SAMCTL" && command -v setpriv >/dev/null; then
        out=$(as_nobody "$P3SAMCTL" clear-gpu 2>&1)
        rc=$?
        check "clear-gpu as nobody: exit 4" -- [ $rc -eq 4 ]
        check "...with the daemon's sentence" -- grep -q '^p3samctl: .*org.p3sam.manage.$' <<<"$out"
        echo "   $out"
        out=$(as_nobody "$P3SAMCTL" set-idle-timeout 5min 2>&1)
        rc=$?
        check "set-idle-timeout as nobody: exit 4, the sentence of SetIdleTimeout (polkit), not the root-only property's" -- \
                eval '[ $rc -eq 4 ] && grep -qx "p3samctl: Changing the idle timeout needs root or the polkit action org.p3sam.manage." <<<"$out"'
        echo "   $out"
        out=$(as_nobody "$P3SAMCTL" set-idle-timeout 5min --persist 2>&1)
        rc=$?
        check "--persist as nobody: exit 4, says sudo, before any change" -- \
                eval '[ $rc -eq 4 ] && grep -q sudo <<<"$out" && ctl status --json | grep -q "\"idle_timeout_usec\":90000000"'
        echo "   $out"
        check "status works as nobody" -- as_nobody "$P3SAMCTL" status >/dev/null
        mkdir -p "$tmp/nobody" && chmod 777 "$tmp/nobody"
        out=$(as_nobody "$P3SAMCTL" segment "$mesh" -o "$tmp/nobody/n.glb" 2>&1)
        rc=$?
        check "segment as nobody (not in AllowGroup, no polkit): exit 4, nothing left" -- \
                eval '[ $rc -eq 4 ] && [ ! -e "$tmp/nobody/n.glb" ] && no_temp_files "$tmp/nobody"'

        # The bus's own refusal, before p3samd sees the call: a policy that denies nobody
        # sending to the daemon, which runs (root reaches it), and one that denies nobody
        # the bus itself. Either is exit 4 naming the bus, never "not running".
        sed 's|</busconfig>|  <policy user="nobody"><deny send_destination="org.p3sam.Segmenter1"/></policy>\n&|' \
                "$src/tests/dbus-test.conf" >"$tmp/dbus-deny.conf"
        start_bus_conf "$tmp/dbus-deny.conf" "$tmp/address-deny"
        deny_bus=$bus
        DBUS_SYSTEM_BUS_ADDRESS=$deny_bus A=$deny_bus start_daemon org.p3sam.Segmenter1 "$tmp/daemon-deny.log"
        check "a bus that denies nobody: root still reaches p3samd" -- \
                eval 'DBUS_SYSTEM_BUS_ADDRESS=$deny_bus ctl status | grep -q "State: ready"'
        for args in status clear-gpu "segment $mesh -o $tmp/nobody/deny.glb"; do
                DBUS_SYSTEM_BUS_ADDRESS=$deny_bus as_nobody "$P3SAMCTL" $args >/dev/null 2>"$tmp/deny.err"
                rc=$?
                check "the bus's policy refuses nobody: '$args' exits 4 saying so, not 'not running'" -- \
                        eval '[ $rc -eq 4 ] && one_sentence "$tmp/deny.err" && grep -q "^p3samctl: Access denied by the D-Bus policy: this user (uid [0-9]*) may not call org.p3sam.Segmenter1" "$tmp/deny.err"'
        done
        echo "   $(cat "$tmp/deny.err")"
        check "...and leaves no output" -- \
                eval '[ ! -e "$tmp/nobody/deny.glb" ] && no_temp_files "$tmp/nobody"'
        sed 's|</busconfig>|  <policy context="mandatory"><deny user="nobody"/></policy>\n&|' \
                "$src/tests/dbus-test.conf" >"$tmp/dbus-deny-user.conf"
        start_bus_conf "$tmp/dbus-deny-user.conf" "$tmp/address-deny-user"
        DBUS_SYSTEM_BUS_ADDRESS=$bus as_nobody "$P3SAMCTL" status >/dev/null 2>"$tmp/deny2.err"
        rc=$?
        check "a bus that drops nobody's connection: exit 4, says the bus refused it" -- \
                eval '[ $rc -eq 4 ] && one_sentence "$tmp/deny2.err" && grep -q "bus refused this user.s connection" "$tmp/deny2.err"'
        echo "   $(cat "$tmp/deny2.err")"
else
        echo "SKIP: nobody cannot run $P3SAMCTL here: no access-denied checks"
fi
unset P3SAMCTL_CONF_DIR

# ---- --instance N ----
start_daemon org.p3sam.Segmenter1.gpu1 "$tmp/daemon1.log"
run_ctl inst --instance 1 status
check "--instance 1 status (before the verb)" -- \
        eval '[ $rc -eq 0 ] && grep -q "org.p3sam.Segmenter1.gpu1" "$tmp/inst.out"'
run_ctl inst2 status --instance 1 --json
check "status --instance 1 (after the verb)" -- \
        eval '[ $rc -eq 0 ] && grep -q "\"bus_name\":\"org.p3sam.Segmenter1.gpu1\"" "$tmp/inst2.out" && grep -q "\"jobs_completed\":0" "$tmp/inst2.out"'
run_ctl inst3 --instance 1 segment "$mesh" -o "$tmp/out/gpu1.glb"
check "segment on instance 1 follows its own job" -- \
        eval '[ $rc -eq 0 ] && [ "$(head -c4 "$tmp/out/gpu1.glb")" = glTF ]'
run_ctl inst4 --instance 2 status
check "--instance 2 (nobody there): exit 5 naming it" -- \
        eval '[ $rc -eq 5 ] && one_sentence "$tmp/inst4.err" && grep -q gpu2 "$tmp/inst4.err"'

# ---- --user: the session bus (here the same private bus) ----
DBUS_SESSION_BUS_ADDRESS=$A DBUS_SYSTEM_BUS_ADDRESS=unix:path=$tmp/missing.sock run_ctl user --user status
check "--user talks to the session bus" -- eval '[ $rc -eq 0 ] && grep -q "Daemon: p3samd" "$tmp/user.out"'
env -u DBUS_SESSION_BUS_ADDRESS XDG_RUNTIME_DIR=$tmp/no-runtime-dir "$P3SAMCTL" --user status \
        >/dev/null 2>"$tmp/user2.err"
rc=$?
check "--user without a session bus: exit 5, says systemctl --user" -- \
        eval '[ $rc -eq 5 ] && grep -q "systemctl --user start p3samd" "$tmp/user2.err"'

# ---- the daemon not running: exit 5 with a sentence ----
# a socket file nobody listens on: bound by notify-listen, which then goes away
"${P3_NOTIFY_LISTEN:?}" "$tmp/dead.sock" >/dev/null &
dead=$!
for _ in $(seq 50); do [ -S "$tmp/dead.sock" ] && break; sleep 0.1; done
kill $dead
wait $dead 2>/dev/null
DBUS_SYSTEM_BUS_ADDRESS=unix:path=$tmp/dead.sock run_ctl dead status
check "a bus socket without a daemon: exit 5" -- [ $rc -eq 5 ]
check "...saying how to start it" -- \
        grep -qx 'p3samctl: p3samd is not running (start it with: systemctl start p3samd)' "$tmp/dead.err"
DBUS_SYSTEM_BUS_ADDRESS=unix:path=$tmp/missing.sock run_ctl dead2 segment "$mesh" -o "$tmp/out/dead.glb"
check "no bus socket at all: segment exits 5, nothing left" -- \
        eval '[ $rc -eq 5 ] && [ ! -e "$tmp/out/dead.glb" ] && no_temp_files "$tmp/out"'
start_bus "$tmp/address2"
export DBUS_SYSTEM_BUS_ADDRESS=$bus
for args in status jobs "segment $mesh -o $tmp/out/none.glb" clear-gpu "cancel 1" \
        "set-idle-timeout 5min"; do
        run_ctl empty $args
        check "a live bus without p3samd: '$args' exits 5" -- \
                eval '[ $rc -eq 5 ] && grep -qx "p3samctl: p3samd is not running (start it with: systemctl start p3samd)" "$tmp/empty.err"'
done
check "...and leaves no output" -- eval '[ ! -e "$tmp/out/none.glb" ] && no_temp_files "$tmp/out"'
P3SAMCTL_CONF_DIR=$tmp/etc2 run_ctl persist2 set-idle-timeout 2min --persist
check "--persist with the daemon stopped: writes the drop-in, exit 0" -- \
        eval '[ $rc -eq 0 ] && grep -qx "IdleTimeoutSec=2min" "$tmp/etc2/50-idle-timeout.conf"'

# ---- bus activation fails: not running, could not be started, exit 5 ----
# The bus's service file points at a helper that exits 1, as a broken install or a failing
# launch helper would; the bus answers Spawn.ChildExited (Spawn.ExecFailed for a missing one).
mkdir "$tmp/services"
printf '#!/bin/sh\nexit 1\n' >"$tmp/failing-helper"
chmod 755 "$tmp/failing-helper"
printf '[D-BUS Service]\nName=org.p3sam.Segmenter1\nExec=%s\n' "$tmp/failing-helper" \
        >"$tmp/services/org.p3sam.Segmenter1.service"
sed "s|<auth>EXTERNAL</auth>|&\n  <servicedir>$tmp/services</servicedir>|" \
        "$src/tests/dbus-test.conf" >"$tmp/dbus-activation.conf"
start_bus_conf "$tmp/dbus-activation.conf" "$tmp/address3"
for args in status "segment $mesh -o $tmp/out/spawn.glb" "set-idle-timeout 5min"; do
        DBUS_SYSTEM_BUS_ADDRESS=$bus run_ctl spawn $args
        check "activation fails: '$args' exits 5, could not be started, with the bus's reason" -- \
                eval '[ $rc -eq 5 ] && one_sentence "$tmp/spawn.err" && grep -qx "p3samctl: p3samd is not running and could not be started: .*exited with status 1." "$tmp/spawn.err"'
done
echo "   $(cat "$tmp/spawn.err")"
check "...and leaves no output" -- eval '[ ! -e "$tmp/out/spawn.glb" ] && no_temp_files "$tmp/out"'
P3SAMCTL_CONF_DIR=$tmp/etc3 DBUS_SYSTEM_BUS_ADDRESS=$bus run_ctl spawn2 set-idle-timeout 3min --persist
check "activation fails, --persist: writes the drop-in, exit 0" -- \
        eval '[ $rc -eq 0 ] && grep -qx "IdleTimeoutSec=3min" "$tmp/etc3/50-idle-timeout.conf"'

if [ $fails -ne 0 ]; then
        echo "--- daemon log"; cat "$tmp/daemon.log"
fi
echo "$fails failure(s)"
[ $fails -eq 0 ]
