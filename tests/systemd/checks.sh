#!/bin/bash
# Inside the booted container (tests/systemd/test-systemd.sh made it): p3samd as a user meets
# it, through systemctl, busctl, p3samctl and the journal. One line per check in
# /results/log ("ok: ..." or "FAIL: ..."), figures as "   ..." lines, "done N" at the end.
set -u
log=/results/log
: >"$log"
fails=0
say() { echo "$*" | tee -a "$log"; }
ok() { say "ok: $*"; }
fail() { say "FAIL: $*"; fails=$((fails + 1)); }
check() { # check DESCRIPTION -- command...
        local what=$1
        shift 2
        if "$@" >>/results/commands.log 2>&1; then ok "$what"; else fail "$what"; fi
}
note() { say "   $*"; }
finish() { say "done $fails"; exit 0; }
trap finish EXIT

data=/usr/share/p3sam-test
mesh=$data/alien.glb
big=$data/CesiumMilkTruck.glb
bus_ok() { busctl status "${1:-org.p3sam.Segmenter1}" >/dev/null 2>&1; }
prop() { busctl get-property org.p3sam.Segmenter1 /org/p3sam/Segmenter1 org.p3sam.Segmenter1 "$1" | cut -d' ' -f2- | tr -d '"'; }
main_pid() { systemctl show -p MainPID --value "${1:-p3samd.service}"; }
wait_for() { # wait_for SECONDS command...: until it succeeds
        local n=$(($1 * 10))
        shift
        for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
        return 1
}
state_is() { [ "$(prop State)" = "$1" ]; }
as() { local u=$1; shift; (cd "/home/$u" && runuser -u "$u" -- "$@"); }

note "systemd $(systemctl --version | head -n1 | cut -d' ' -f2), $(uname -r)"

# ---- sysusers and tmpfiles at boot ----
check "sysusers.d made the p3sam user" -- getent passwd p3sam
check "... and the p3sam group" -- getent group p3sam
st=$(stat -c '%U:%G %a' /var/lib/p3sam 2>&1)
note "/var/lib/p3sam: $st"
check "tmpfiles.d made /var/lib/p3sam owned by p3sam:p3sam, mode 750" -- [ "$st" = "p3sam:p3sam 750" ]
check "p3samd is not running before anyone asks" -- bash -c "! systemctl is-active -q p3samd"

# ---- systemctl start: Type=notify, the sandbox ----
check "systemctl start p3samd" -- systemctl start p3samd
check "... returns once the daemon is on the bus (Type=notify)" -- bus_ok
check "systemctl is-active says active" -- systemctl is-active -q p3samd
check "busctl introspect shows the interface" -- \
        bash -c "busctl introspect org.p3sam.Segmenter1 /org/p3sam/Segmenter1 | grep -q '^org.p3sam.Segmenter1 *interface'"
pid=$(main_pid)
check "the process runs as p3sam" -- [ "$(stat -c %U "/proc/$pid")" = p3sam ]
status=$(grep -E '^(NoNewPrivs|CapEff|Seccomp):' "/proc/$pid/status" | tr -s '\t ' ' ' | tr '\n' ' ')
note "/proc/$pid/status: $status"
check "NoNewPrivs 1" -- grep -qE '^NoNewPrivs:\s+1$' "/proc/$pid/status"
check "CapEff 0" -- grep -qE '^CapEff:\s+0+$' "/proc/$pid/status"
check "Seccomp 2 (a filter)" -- grep -qE '^Seccomp:\s+2$' "/proc/$pid/status"
check "the model loaded (State ready)" -- wait_for 30 state_is ready
device=$(prop Device)
note "Device: $device"
if grep -qE '\b(amx_bf16|avx512_bf16)\b' /proc/cpuinfo; then
        # AMX needs arch_prctl(ARCH_REQ_XCOMP_PERM) and oneDNN writes its kernels at run time:
        # both must pass SystemCallFilter= and MemoryDenyWriteExecute= of the unit.
        check "under the sandbox the model runs BF16 on oneDNN (Precision=auto)" -- \
                grep -q 'oneDNN' <<<"$device"
        check "... and a job runs there" -- bash -c "mkdir -p /home/root && cd /home/root && p3samctl segment $mesh -o bf16.glb"
else
        note "this CPU has no BF16 instructions: the BF16 path is not checked here"
fi

# ---- bus activation ----
systemctl stop p3samd
check "stopped" -- bash -c "! systemctl is-active -q p3samd"
systemctl reset-failed p3samd 2>/dev/null
check "a busctl call to the name starts the service (bus activation)" -- \
        busctl call org.p3sam.Segmenter1 /org/p3sam/Segmenter1 org.freedesktop.DBus.Peer Ping
check "... and it becomes active (READY=1 after the model load)" -- wait_for 30 systemctl is-active -q p3samd

# ---- who may segment and manage ----
useradd -m member -G p3sam
useradd -m plain
for u in root member plain; do
        mkdir -p "/home/$u"
        chown "$u:" "/home/$u"
done
(cd /home/root && p3samctl segment "$mesh" -o root.glb) >>/results/commands.log 2>&1
check "p3samctl segment as root: exit 0" -- [ $? -eq 0 ]
as member p3samctl segment "$mesh" -o member.glb >>/results/commands.log 2>&1
check "p3samctl segment as a member of p3sam: exit 0" -- [ $? -eq 0 ]
check "... and the output is a GLB" -- bash -c "[ \"\$(head -c4 /home/member/member.glb)\" = glTF ]"
out=$(as plain p3samctl segment "$mesh" -o plain.glb 2>&1)
rc=$?
note "plain user: exit $rc: $out"
check "p3samctl segment as a plain user: exit 4" -- [ $rc -eq 4 ]
# polkit: a local rule lets the plain user segment (p3samd, not root, asks polkit about
# another user's process: it must own the action, org.p3sam.policy's owner annotation).
cat >/etc/polkit-1/rules.d/50-plain.rules <<'EOF'
polkit.addRule(function(action, subject) {
        if (action.id == "org.p3sam.segment" && subject.user == "plain")
                return polkit.Result.YES;
});
EOF
plain_segments() { as plain p3samctl segment "$mesh" -o plain-polkit.glb; }
check "... with a polkit rule for org.p3sam.segment it may (exit 0)" -- wait_for 10 plain_segments
rm /etc/polkit-1/rules.d/50-plain.rules
out=$(as plain p3samctl clear-gpu 2>&1)
rc=$?
check "p3samctl clear-gpu as a plain user: exit 4" -- [ $rc -eq 4 ]
out=$(as plain p3samctl reload 2>&1)
rc=$?
check "p3samctl reload as a plain user: exit 4" -- [ $rc -eq 4 ]
check "p3samctl clear-gpu as root" -- p3samctl clear-gpu
check "... offloads" -- wait_for 10 state_is offloaded
check "p3samctl reload as root" -- p3samctl reload

# ---- the idle timer (IdleTimeoutSec=3 in the test's p3samd.conf.d) ----
(cd /home/root && p3samctl segment "$mesh" -o idle.glb) >>/results/commands.log 2>&1
check "a job loads the model" -- state_is ready
check "idle 3 s after the job: offloaded" -- wait_for 15 state_is offloaded
(cd /home/root && p3samctl segment "$mesh" -o idle2.glb) >>/results/commands.log 2>&1
check "the next job brings it back (ready)" -- state_is ready

# ---- systemctl reload: synchronous, through the bus ----
sed -i 's/^IdleTimeoutSec=.*/IdleTimeoutSec=7/' /etc/p3sam/p3samd.conf.d/50-test.conf
check "systemctl reload p3samd" -- systemctl reload p3samd
check "... returns once the new configuration serves (IdleTimeoutUSec already 7 s)" -- \
        [ "$(prop IdleTimeoutUSec)" = 7000000 ]
sed -i 's/^IdleTimeoutSec=.*/IdleTimeoutSec=3/' /etc/p3sam/p3samd.conf.d/50-test.conf
systemctl reload p3samd
check "... and it serves afterwards" -- bash -c "cd /home/root && p3samctl segment $mesh -o reload.glb"
mv /etc/p3sam/p3samd.conf.d/50-test.conf /etc/p3sam/p3samd.conf.d/50-test.conf.off
printf '[Model]\nPath=/nonexistent.safetensors\n' >/etc/p3sam/p3samd.conf.d/60-bad.conf
out=$(systemctl reload p3samd 2>&1)
rc=$?
note "reload with missing weights: exit $rc: $out"
check "systemctl reload with missing weights fails" -- [ $rc -ne 0 ]
check "... the journal says why" -- bash -c "journalctl -u p3samd -p err | grep -q nonexistent.safetensors"
check "... and the unit stays active" -- systemctl is-active -q p3samd
rm /etc/p3sam/p3samd.conf.d/60-bad.conf
mv /etc/p3sam/p3samd.conf.d/50-test.conf.off /etc/p3sam/p3samd.conf.d/50-test.conf
check "... and the old model kept serving" -- bash -c "cd /home/root && p3samctl segment $mesh -o after-bad-reload.glb"

# ---- the journal at the right priority ----
(cd /home/root && p3samctl segment "$data/Fox_truncated.glb" -o bad.glb) >>/results/commands.log 2>&1
line=$(journalctl -u p3samd -p err --no-pager -o cat | grep 'failed (invalid-input): .*truncated' | tail -n1)
note "journalctl -u p3samd -p err: $line"
check "a bad mesh's refusal is in the journal at priority err" -- [ -n "$line" ]

# ---- systemctl stop during a job ----
(cd /home/root && p3samctl segment "$big" -o stop.glb --points 20000 --prompts 64 >/results/stop.out 2>&1) &
cpid=$!
wait_for 20 state_is busy
check "systemctl stop during a job" -- systemctl stop p3samd
wait $cpid
rc=$?
note "the job's client: exit $rc: $(tail -n1 /results/stop.out)"
check "... the client gets a sentence" -- grep -qi 'stopping' /results/stop.out
check "... the unit ends inactive, not failed" -- [ "$(systemctl is-active p3samd)" = inactive ]
check "... with Result=success" -- [ "$(systemctl show -p Result --value p3samd)" = success ]

# ---- crashes and hangs: Restart=on-failure and the watchdog ----
systemctl reset-failed p3samd 2>/dev/null
systemctl start p3samd
pid=$(main_pid)
kill -9 "$pid"
restarted() { local p; p=$(main_pid); [ "$p" != 0 ] && [ "$p" != "$pid" ] && bus_ok; }
check "kill -9: Restart=on-failure brings it back" -- wait_for 30 restarted
check "... and it serves" -- bash -c "cd /home/root && p3samctl segment $mesh -o after-kill.glb"
systemctl reset-failed p3samd 2>/dev/null
pid=$(main_pid)
kill -USR1 "$pid" # the test hook: the loop stops answering, the watchdog pings stop
check "a hung loop: the watchdog kills and restarts it" -- wait_for 40 restarted
check "... the journal names the watchdog" -- \
        bash -c "journalctl -u p3samd --no-pager | grep -qi 'watchdog timeout'"
check "... and it serves" -- bash -c "cd /home/root && p3samctl segment $mesh -o after-watchdog.glb"
note "NRestarts=$(systemctl show -p NRestarts --value p3samd)"

# ---- a second instance ----
check "systemctl start p3samd@0 beside p3samd" -- systemctl start p3samd@0
check "... it owns org.p3sam.Segmenter1.gpu0" -- bus_ok org.p3sam.Segmenter1.gpu0
check "... p3samctl --instance 0 segments on it" -- \
        bash -c "cd /home/root && p3samctl --instance 0 segment $mesh -o instance.glb"
check "... and p3samd still serves" -- bus_ok org.p3sam.Segmenter1
systemctl stop p3samd@0

# ---- the HTTP gateway: shipped off, started by its socket, exits when idle, started again ----
# No curl in the container: bash's /dev/tcp speaks HTTP/1.1 with "Connection: close".
http() { # http METHOD PATH [BODY_FILE CONTENT_TYPE]: the whole answer, status line and headers too
        local len=0
        [ $# -ge 3 ] && len=$(stat -c %s "$3")
        exec 3<>/dev/tcp/127.0.0.1/5000 || return 1
        {
                printf '%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n' "$1" "$2"
                printf 'Content-Length: %s\r\n' "$len"
                [ $# -ge 4 ] && printf 'Content-Type: %s\r\n' "$4"
                printf '\r\n'
                [ $# -ge 3 ] && cat "$3"
        } >&3
        timeout 120 cat <&3
        exec 3<&-
}
code_of() { head -n1 "$1" | cut -d' ' -f2; }
gw_active() { systemctl is-active -q p3sam-httpd.service; }
gw_inactive() { ! gw_active; }
clear_ok() { http POST /api/mesh/clear_gpu_memory >/results/http-clear2 && [ "$(code_of /results/http-clear2)" = 200 ]; }
check "p3sam-httpd.socket is shipped disabled" -- [ "$(systemctl is-enabled p3sam-httpd.socket)" = disabled ]
check "... and nothing listens on 127.0.0.1:5000" -- bash -c "! (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null"
check "systemctl start p3sam-httpd.socket" -- systemctl start p3sam-httpd.socket
check "... starts the socket only, not the gateway" -- gw_inactive
http GET /api/status >/results/http-status 2>>/results/commands.log
note "GET /api/status: $(head -n1 /results/http-status | tr -d '\r')"
check "the first request (GET /api/status) starts the gateway: 200" -- [ "$(code_of /results/http-status)" = 200 ]
check "... with p3samd's state in it" -- grep -q '"state"' /results/http-status
check "... p3sam-httpd.service is active" -- gw_active
gpid=$(main_pid p3sam-httpd.service)
check "... and runs as the user p3sam-httpd" -- [ "$(stat -c %U "/proc/$gpid")" = p3sam-httpd ]
http POST /api/mesh/segment "$mesh" model/gltf-binary >/results/http-segment 2>>/results/commands.log
note "POST /api/mesh/segment: $(head -n1 /results/http-segment | tr -d '\r')"
check "POST /api/mesh/segment: 200 with a GLB" -- \
        bash -c '[ "$(head -n1 /results/http-segment | cut -d" " -f2)" = 200 ] && grep -qa "^glTF" /results/http-segment'
http POST /api/mesh/clear_gpu_memory >/results/http-clear 2>>/results/commands.log
check "POST clear_gpu_memory without the polkit rule: 403" -- [ "$(code_of /results/http-clear)" = 403 ]
cp /usr/share/doc/p3samd/p3sam-httpd-manage.rules /etc/polkit-1/rules.d/50-p3sam-httpd.rules
# polkitd rereads its rules when the directory changes: a few tries.
check "... with the shipped example rule installed: 200" -- wait_for 10 clear_ok
note "clear_gpu_memory with the rule: $(tr -d '\r' </results/http-clear2 | sed -n '1p;$p' | tr '\n' ' ')"
journalctl --no-pager -o cat -u polkit -u p3samd -n 15 >>/results/commands.log 2>&1
ls -l /etc/polkit-1/rules.d >>/results/commands.log 2>&1
check "... and p3samd offloads" -- wait_for 10 state_is offloaded
rm /etc/polkit-1/rules.d/50-p3sam-httpd.rules
check "idle 3 s (--idle-exit in the test's drop-in): the gateway exits by itself" -- wait_for 20 gw_inactive
check "... cleanly (Result=success)" -- [ "$(systemctl show -p Result --value p3sam-httpd.service)" = success ]
check "... and the socket still listens" -- systemctl is-active -q p3sam-httpd.socket
http GET /api/status >/results/http-status2 2>>/results/commands.log
check "the next request starts it again through the socket: 200" -- [ "$(code_of /results/http-status2)" = 200 ]
gpid2=$(main_pid p3sam-httpd.service)
note "gateway processes: $gpid, then $gpid2"
check "... in a new process" -- bash -c "[ '$gpid2' != 0 ] && [ '$gpid2' != '$gpid' ]"
systemctl stop p3sam-httpd.socket p3sam-httpd.service

# ---- the sandbox, as the live system sees it ----
exposure=$(systemd-analyze security p3samd.service 2>/dev/null | tail -n1)
note "systemd-analyze security p3samd.service: $exposure"
check "systemd-analyze security gives an exposure figure" -- grep -q 'Overall exposure level' <<<"$exposure"
exposure=$(systemd-analyze security p3sam-httpd.service 2>/dev/null | tail -n1)
note "systemd-analyze security p3sam-httpd.service: $exposure"
