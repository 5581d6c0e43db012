#!/bin/bash
# The user-bus path of a compute node, where no system service runs: a job starts its own
# session bus with dbus-run-session, p3samd --bus user on it and p3samctl --user against it,
# with the tiny synthetic model. Twice: as root (in a mount namespace whose /etc/passwd has a
# p3sam user, which a daemon started as root would otherwise switch to) ending when the session
# ends, and as nobody with its HOME in $tmp ending with SIGTERM (dbus-daemon wants a passwd
# entry for its own uid). Checked:
# the job succeeds, the daemon kept the uid it was started with (/proc/PID/status), a second
# uid on that bus is refused (by the bus, or by p3samd where the bus lets it on), the daemon
# exits with status 0 and nothing of the job's session is left.
set -u
: "${P3SAMCTL:?}" "${P3SAMD:?}" "${P3SAM_RUN:?}" "${P3_TEST_DATA:?}"
src=${P3_SOURCE_ROOT:?}
. "$(dirname "$0")/lib-test.sh"
for p in dbus-run-session dbus-daemon setsid pgrep; do
        command -v $p >/dev/null || { echo "SKIP: $p is not installed"; exit 77; }
done

mesh=$P3_TEST_DATA/meshes/alien.glb
job_uid=$(id -u nobody 2>/dev/null) || { echo "SKIP: no user nobody"; exit 77; }
# A second user on the job's bus. It needs a passwd entry: dbus-daemon refuses a uid whose
# groups it cannot look up, and that refusal would not be p3samd's.
other_uid=
for u in daemon bin sys games man lp mail www-data; do
        other_uid=$(id -u "$u" 2>/dev/null) && [ "$other_uid" != 0 ] && break
        other_uid=
done
[ -n "$other_uid" ] || { echo "SKIP: no system user to be the second user on the bus"; exit 77; }
"$P3SAM_RUN" synth --config "$P3_TEST_DATA/tiny_config.json" --out "$tmp/w.safetensors" || exit 1
cat >"$tmp/p3samd.conf" <<EOF
[Model]
Path=$tmp/w.safetensors
Config=$P3_TEST_DATA/tiny_config.json
Backend=cpu
Threads=2
[Daemon]
AllowGroup=p3sam-test-nonexistent
[Segment]
CpuPointNum=2000
CpuPromptNum=8
PromptBatch=4
EOF
chmod 644 "$tmp/p3samd.conf" "$tmp/w.safetensors"

# What runs inside dbus-run-session, as a batch job would: the daemon in the background, a
# wait until it is on the bus, the job, then the end. $1: the case's directory; $2: "session"
# (just return: the bus goes away with the session) or "sigterm" (stop the daemon first).
# The daemon's pid, uid, exit status and the bus address land in the case's directory.
cat >"$tmp/job.sh" <<'EOF'
d=$1
echo "$DBUS_SESSION_BUS_ADDRESS" >"$d/address"
(sh -c 'echo $$ >"$0/daemon.pid"; exec "$P3SAMD" --bus user --config "$1"' "$d" "$CONF" \
        >"$d/daemon.log" 2>&1; echo $? >"$d/daemon.rc") &
i=0
until "$P3SAMCTL" --user status >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -ge 300 ] || [ -e "$d/daemon.rc" ]; then
                echo "p3samd did not come up"
                echo none >"$d/ctl.rc"
                touch "$d/ready-for-other"
                exit 1
        fi
        sleep 0.1
done
grep '^Uid:' "/proc/$(cat "$d/daemon.pid")/status" >"$d/daemon.uid"
"$P3SAMCTL" --user segment "$MESH" -o "$d/out/parts.glb" --json "$d/out/parts.json" \
        >"$d/ctl.out" 2>&1
echo $? >"$d/ctl.rc"
touch "$d/ready-for-other"
i=0
while [ ! -e "$d/other-done" ] && [ $i -lt 600 ]; do i=$((i + 1)); sleep 0.1; done
if [ "$2" = sigterm ]; then
        kill -TERM "$(cat "$d/daemon.pid")"
        while [ ! -e "$d/daemon.rc" ] && [ $i -lt 1200 ]; do i=$((i + 1)); sleep 0.1; done
fi
EOF

wait_file() { # wait_file FILE SECONDS
        for _ in $(seq $(($2 * 10))); do [ -e "$1" ] && return 0; sleep 0.1; done
        return 1
}

# run_case NAME SESSION_CONF ENDING WANT_UID LAUNCHER...: the job in a session of its own
# (setsid: every process it leaves behind keeps that session id).
run_case() {
        local name=$1 conf=$2 ending=$3 want_uid=$4
        shift 4
        local d=$tmp/$name
        mkdir -p "$d/out" "$d/other" "$d/home"
        chown -R "$want_uid:$want_uid" "$d"
        chmod 1777 "$d/other"
        env HOME="$d/home" CONF="$tmp/p3samd.conf" MESH="$mesh" P3SAMD="$P3SAMD" \
                P3SAMCTL="$P3SAMCTL" setsid "$@" \
                dbus-run-session --config-file="$conf" -- sh "$tmp/job.sh" "$d" "$ending" \
                >"$d/session.log" 2>&1 &
        local sid=$!
        pids+=("$sid")
        wait_file "$d/ready-for-other" 120
        if [ "$(cat "$d/ctl.rc" 2>/dev/null)" = none ] || [ ! -e "$d/ctl.rc" ]; then
                fail "$name: the daemon did not come up"
                grep -v 'password database' "$d/session.log" "$d/daemon.log" 2>/dev/null
                touch "$d/other-done"
                return
        fi
        check "$name: the job succeeded (p3samctl exit $(cat "$d/ctl.rc"))" -- \
                test "$(cat "$d/ctl.rc")" = 0 -a -s "$d/out/parts.glb" -a -s "$d/out/parts.json"
        [ "$(cat "$d/ctl.rc")" = 0 ] || cat "$d/ctl.out" "$d/daemon.log"
        check "$name: the daemon kept uid $want_uid" -- \
                awk -v u="$want_uid" '{ exit !($2 == u && $3 == u && $4 == u && $5 == u) }' \
                "$d/daemon.uid"
        grep -q "serving the session bus of uid $want_uid" "$d/daemon.log" &&
                ok "$name: the log says whose session it serves" ||
                fail "$name: the log does not say whose session it serves"

        # Another uid on the same bus: refused, by the bus (a session bus lets only its owner
        # on) or, where the bus lets it on, by p3samd; nothing is written.
        env DBUS_SESSION_BUS_ADDRESS="$(cat "$d/address")" HOME=/nonexistent \
                setpriv --reuid=$other_uid --regid=$other_uid --clear-groups \
                "$P3SAMCTL" --user segment "$mesh" -o "$d/other/parts.glb" \
                >"$d/other.out" 2>&1
        local orc=$?
        check "$name: uid $other_uid is refused (exit $orc: $(cat "$d/other.out"))" -- \
                test $orc = 4 -a ! -e "$d/other/parts.glb"
        touch "$d/other-done"

        # The end: the daemon's exit status, then nothing left in the job's session.
        wait "$sid"
        local drs_rc=$?
        check "$name: dbus-run-session returned the job's status 0 ($drs_rc)" -- test $drs_rc = 0
        if wait_file "$d/daemon.rc" 15; then
                check "$name: the daemon exited with status 0 ($(cat "$d/daemon.rc"))" -- \
                        test "$(cat "$d/daemon.rc")" = 0
        else
                fail "$name: the daemon did not exit after the $ending"
        fi
        local left=
        for _ in $(seq 50); do
                left=$(pgrep -s "$sid" -a)
                [ -z "$left" ] && break
                sleep 0.1
        done
        check "$name: no process of the job is left${left:+ ($left)}" -- test -z "$left"
        [ "$(cat "$d/daemon.rc" 2>/dev/null)" = 0 ] || tail -n 5 "$d/daemon.log"
}

if [ "$(id -u)" != 0 ]; then
        echo "SKIP: needs root (to run a job as another user, and a second uid on its bus)"
        exit 77
fi
command -v setpriv >/dev/null || { echo "SKIP: setpriv is not installed"; exit 77; }

# As root, with the default session bus configuration. A p3sam user is made visible in a
# private mount namespace only: a daemon that switched users would then leave root.
launcher=()
if command -v unshare >/dev/null && unshare -m true 2>/dev/null; then
        cp /etc/passwd "$tmp/passwd" && cp /etc/group "$tmp/group"
        echo "p3sam:x:64803:64803::/nonexistent:/usr/sbin/nologin" >>"$tmp/passwd"
        echo "p3sam:x:64803:" >>"$tmp/group"
        chmod 644 "$tmp/passwd" "$tmp/group"
        launcher=(unshare -m sh -c 'mount --bind "$0" /etc/passwd && mount --bind "$1" /etc/group &&
                getent passwd p3sam >/dev/null && shift && exec "$@"' "$tmp/passwd" "$tmp/group")
else
        echo "note: no mount namespace here; the root case runs without a p3sam user"
fi
run_case root /usr/share/dbus-1/session.conf session 0 "${launcher[@]}"

# As nobody, on a session bus that lets every uid on
# (tests/dbus-test.conf), so that the second uid reaches p3samd and p3samd refuses it.
run_case unprivileged "$src/tests/dbus-test.conf" sigterm $job_uid \
        setpriv --reuid=$job_uid --regid=$job_uid --clear-groups
grep -q "Segmenting" "$tmp/unprivileged/other.out" &&
        ok "unprivileged: the second uid's refusal is p3samd's sentence" ||
        fail "unprivileged: the second uid was not refused by p3samd: $(cat "$tmp/unprivileged/other.out")"

echo "$fails failure(s)"
[ $fails -eq 0 ]
