#!/bin/bash
# The isolated importer (p3sam-import, spawned by p3samd for every job), against p3samd on
# private buses (tiny synthetic model, CPU backend):
#  - daemon A runs the real helper: a good mesh segments through it; no assimp is mapped in
#    the daemon; the helper is a child with only descriptors 0, 1 and 2; killed mid-import
#    (SIGKILL) or cancelled mid-import, the job fails with a sentence, leaves no output, no
#    zombie, and the next job succeeds; 50 malformed meshes in
#    a row leave the daemon's RSS and descriptor count flat; the meshes of crashers/ that
#    really crash assimp (SIGSEGV, SIGABRT) fail their job, naming the signal;
#  - the helper's sandbox self-check: open, socket, execve, fork, kill, writing or mapping
#    the caller's mesh are each refused or kill it;
#  - daemon B runs tests/import/fake-import.sh (ImportTimeoutSec=1): a crash, a hang, garbage,
#    a truncated answer, trailing bytes, a bad exit status, counts over the limits, indices
#    and sources out of range and a sandbox kill each fail one job with their own sentence,
#    and the daemon serves the next job; the real helper over ImportMemoryMax=80M too.
set -u
: "${P3SAMD:?}" "${P3_DAEMON_CLIENT:?}" "${P3SAM_RUN:?}" "${P3_TEST_DATA:?}"
: "${P3SAM_IMPORT_HELPER:?}" "${P3_SOURCE_ROOT:?}"
. "$P3_SOURCE_ROOT/tests/lib-test.sh"
need_dbus
[ -x "$P3SAM_IMPORT_HELPER" ] || { echo "SKIP: $P3SAM_IMPORT_HELPER is not built"; exit 77; }
helper=$P3SAM_IMPORT_HELPER
here=$P3_SOURCE_ROOT/tests/import
cleanup_extra() { for p in ${dpid_a:-} ${dpid_b:-}; do kill -9 "$p" 2>/dev/null; done; }

"$P3SAM_RUN" synth --config "$P3_TEST_DATA/tiny_config.json" --out "$tmp/w.safetensors" || exit 1
write_conf() { # write_conf FILE [DAEMON-KEYS...]
        local f=$1
        shift
        {
                printf '[Model]\nPath=%s\nConfig=%s\nBackend=cpu\nThreads=2\n' \
                        "$tmp/w.safetensors" "$P3_TEST_DATA/tiny_config.json"
                printf '[Daemon]\nIdleTimeoutSec=1h\nQueueMax=8\nQueuePerUserMax=8\n'
                printf '%s\n' "$@"
                printf '[Segment]\nCpuPointNum=2000\nCpuPromptNum=8\nPromptBatch=4\n'
        } >"$f"
}
start() { # start BUS-FILE CONF LOG [ENV...]: a daemon on its own bus; sets $dpid
        start_bus "$1"
        env DBUS_SYSTEM_BUS_ADDRESS="$bus" "${@:4}" "$P3SAMD" --config "$2" --keep-user \
                >"$3" 2>&1 &
        dpid=$!
        pids+=($dpid)
        A=$bus
        wait_prop State ready 30 || { echo "p3samd did not come up:"; cat "$3"; exit 1; }
}
client() { "$P3_DAEMON_CLIENT" "$@" 2>&1; }
children() { # children PID: the pids whose parent is PID
        local s
        for s in /proc/[0-9]*/stat; do
                awk -v p="$1" '$4 == p { print $1 }' "$s" 2>/dev/null
        done
}
zombies() { # zombies PID: children of PID in state Z
        local c
        for c in $(children "$1"); do
                awk '$3 == "Z" { print $1 }' "/proc/$c/stat" 2>/dev/null
        done
}
helper_child() { # helper_child PID SECONDS: waits for PID's p3sam-import child; prints it
        local c
        for _ in $(seq $(($2 * 50))); do
                for c in $(children "$1"); do
                        [ "$(cat "/proc/$c/comm" 2>/dev/null)" = p3sam-import ] &&
                                { echo "$c"; return 0; }
                done
                sleep 0.02
        done
        return 1
}
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
nfds() { ls "/proc/$1/fd" | wc -l; }
mesh=$P3_TEST_DATA/meshes/alien.glb

# A large ASCII OBJ (a 1000 x 1000 grid: 2 M triangles, 65 MB) that takes seconds to import:
# the window in which the tests find the helper and kill or cancel its job.
awk 'BEGIN { n = 1000
        for (i = 0; i < n; i++) for (j = 0; j < n; j++) printf "v %d %d %d\n", i, j, (i * j) % 7
        for (i = 0; i < n - 1; i++) for (j = 0; j < n - 1; j++) {
                a = i * n + j + 1; printf "f %d %d %d\nf %d %d %d\n", a, a + 1, a + n + 1, a, a + n + 1, a + n
        } }' >"$tmp/slow.obj"
# ==== daemon A: the real helper =========================================================
write_conf "$tmp/a.conf"
start "$tmp/bus-a" "$tmp/a.conf" "$tmp/a.log"
dpid_a=$dpid
export DBUS_SYSTEM_BUS_ADDRESS=$bus

out=$(client segment "$mesh" "$tmp/o.glb")
check "a good mesh segments through the helper" -- grep -q '^done' <<<"$out"
check "... and the output is a GLB" -- bash -c "[ \"\$(head -c4 '$tmp/o.glb')\" = glTF ]"
check "no assimp in the daemon: libassimp is not mapped in p3samd" -- \
        bash -c "! grep -q libassimp /proc/$dpid_a/maps"
check "no zombie after a good job" -- test -z "$(zombies "$dpid_a")"

# -- the helper as the daemon's child, killed mid-import --
printf 'precious' >"$tmp/kill.glb"
client segment "$tmp/slow.obj" "$tmp/kill.glb" >"$tmp/kill.out" &
cpid=$!
if hpid=$(helper_child "$dpid_a" 20); then
        fds=$(ls "/proc/$hpid/fd" 2>/dev/null | sort -n | tr '\n' ' ')
        echo "   helper pid $hpid (daemon $dpid_a), descriptors: $fds"
        check "the import runs in a child process, not in the daemon" -- test "$hpid" != "$dpid_a"
        check "the helper holds descriptors 0, 1 and 2 only" -- test "$fds" = "0 1 2 "
        check "... 0 is the caller's mesh" -- \
                test "$(readlink "/proc/$hpid/fd/0")" = "$tmp/slow.obj"
        check "... 1 is a pipe" -- bash -c "readlink /proc/$hpid/fd/1 | grep -q '^pipe:'"
        check "the helper runs under a seccomp filter" -- \
                grep -qE '^Seccomp:[[:space:]]+2' "/proc/$hpid/status"
        kill -KILL "$hpid"
        wait "$cpid"
        out=$(cat "$tmp/kill.out")
        echo "   $(tail -n1 <<<"$out")"
        check "the helper SIGKILLed mid-import fails the job with a sentence" -- \
                grep -q '^failed: mesh: the importer was killed (SIGKILL' <<<"$out"
        check "... and leaves no output (0 bytes)" -- test ! -s "$tmp/kill.glb"
        check "... and no zombie" -- test -z "$(zombies "$dpid_a")"
else
        fail "the helper of a slow import appeared as the daemon's child"
        wait "$cpid"
fi
out=$(client segment "$mesh" "$tmp/o2.glb")
check "the next job succeeds" -- grep -q '^done' <<<"$out"

# -- cancelled mid-import --
client segment "$tmp/slow.obj" "$tmp/cancel.glb" --detach >"$tmp/cancel.out"
job=$(awk '/^job/ { print $2 }' "$tmp/cancel.out")
if hpid=$(helper_child "$dpid_a" 20); then
        t0=$(date +%s%N)
        busctl --address="$A" call org.p3sam.Segmenter1 "$job" org.p3sam.Segmenter1.Job Cancel
        for _ in $(seq 100); do kill -0 "$hpid" 2>/dev/null || break; sleep 0.02; done
        ms=$((($(date +%s%N) - t0) / 1000000))
        echo "   the helper of a cancelled job was gone after $ms ms"
        check "cancelling a job mid-import stops its helper within a second" -- \
                bash -c "! kill -0 $hpid 2>/dev/null && [ $ms -lt 1000 ]"
        check "... the job ends cancelled" -- \
                bash -c "for _ in \$(seq 50); do [ \"\$(busctl --address='$A' get-property org.p3sam.Segmenter1 '$job' org.p3sam.Segmenter1.Job State)\" = 's \"cancelled\"' ] && exit 0; sleep 0.1; done; exit 1"
        check "... and no zombie is left" -- test -z "$(zombies "$dpid_a")"
else
        fail "the helper of a slow import appeared for the cancel"
fi

# -- 50 malformed meshes in a row: the daemon stays flat --
bad=("$P3_TEST_DATA"/meshes/bad/*)
for i in $(seq 5); do client segment "${bad[i % ${#bad[@]}]}" "$tmp/bad.glb" >/dev/null; done
rss0=$(rss "$dpid_a") fds0=$(nfds "$dpid_a")
failed=0
for i in $(seq 50); do
        client segment "${bad[i % ${#bad[@]}]}" "$tmp/bad.glb" | grep -q '^failed: mesh' ||
                failed=$((failed + 1))
done
rss1=$(rss "$dpid_a") fds1=$(nfds "$dpid_a")
echo "   daemon after 5 malformed meshes: VmRSS $rss0 kB, $fds0 descriptors; after 50 more: $rss1 kB, $fds1"
check "50 malformed meshes (tests/data/meshes/bad) each fail their job" -- test "$failed" = 0
if [ -n "${P3_SANITIZE:-}" ]; then
        # ASan holds freed memory in its quarantine: RSS says nothing there (LeakSanitizer does).
        echo "skip: the RSS bound under P3_SANITIZE"
else
        check "... the daemon's RSS stays flat (grows less than 512 kB)" -- [ $((rss1 - rss0)) -lt 512 ]
fi
check "... and so does its descriptor count" -- test "$fds1" = "$fds0"
check "... and no zombie is left" -- test -z "$(zombies "$dpid_a")"

# -- meshes that really crash assimp (tests/import/crashers, found by fuzz-mesh) --
if [ -n "${P3_SANITIZE:-}" ]; then
        # The helper is instrumented too: its ASan report of assimp's crash would count.
        echo "skip: the real assimp crashers under P3_SANITIZE"
else
        for f in "$here"/crashers/*.obj "$here"/crashers/*.ply; do
                printf 'precious' >"$tmp/crash.glb"
                out=$(client segment "$f" "$tmp/crash.glb")
                echo "   $(basename "$f"): $(tail -n1 <<<"$out")"
                check "$(basename "$f") crashes assimp: the job fails, naming the signal" -- \
                        grep -qE '^failed: mesh: .*(SIGSEGV|SIGABRT)' <<<"$out"
                check "... no output" -- test ! -s "$tmp/crash.glb"
                out=$(client segment "$mesh" "$tmp/after-crash.glb")
                check "... the daemon lives and the next job succeeds" -- \
                        bash -c "kill -0 $dpid_a && grep -q '^done' <<<'$out'"
        done
        check "... and no zombie is left" -- test -z "$(zombies "$dpid_a")"
fi

# ==== the sandbox, self-checked =========================================================
cp "$mesh" "$tmp/rw.glb"
out=$("$helper" --check-sandbox none <"$tmp/rw.glb" 2>&1)
check "the helper installs its sandbox (self-check 'none': $out)" -- test $? = 0
for probe in open socket execve fork kill write-mesh mmap-mesh; do
        out=$("$helper" --check-sandbox "$probe" 2>&1 <>"$tmp/rw.glb")
        rc=$?
        echo "   $probe: exit $rc ${out:-(killed)}"
        check "sandbox: $probe is refused or kills the helper (SIGSYS)" -- \
                bash -c "[ $rc = 159 ] || { [ $rc = 0 ] && grep -q '^refused' <<<'$out'; }"
done
check "... and the mesh was not written" -- cmp -s "$mesh" "$tmp/rw.glb"

# ==== daemon B: a helper that misbehaves ================================================
echo good >"$tmp/mode"
write_conf "$tmp/b.conf" ImportTimeoutSec=1 ImportMemoryMax=80M
start "$tmp/bus-b" "$tmp/b.conf" "$tmp/b.log" P3SAM_IMPORT_HELPER="$here/fake-import.sh" \
        P3_FAKE_IMPORT_MODE="$tmp/mode" P3_REAL_IMPORT="$helper"
dpid_b=$dpid
export DBUS_SYSTEM_BUS_ADDRESS=$bus
out=$(client segment "$mesh" "$tmp/b.glb")
check "the stand-in helper passes a good answer through" -- grep -q '^done' <<<"$out"

misbehave() { # misbehave MODE PATTERN: one job fails with the sentence, the next succeeds
        echo "$1" >"$tmp/mode"
        printf 'precious' >"$tmp/b.glb"
        local t0 ms
        t0=$(date +%s%N)
        out=$(client segment "$mesh" "$tmp/b.glb")
        ms=$((($(date +%s%N) - t0) / 1000000))
        echo "   $1: $(tail -n1 <<<"$out") ($ms ms)"
        check "helper '$1': the job fails with a sentence" -- grep -q "^failed: mesh: $2" <<<"$out"
        check "... no output" -- test ! -s "$tmp/b.glb"
        check "... no zombie" -- test -z "$(zombies "$dpid_b")"
        echo good >"$tmp/mode"
        out=$(client segment "$mesh" "$tmp/b.glb")
        check "... the daemon lives and the next job succeeds" -- \
                bash -c "kill -0 $dpid_b && grep -q '^done' <<<'$out'"
}
misbehave crash 'the importer crashed with signal SIGSEGV'
misbehave hang 'the importer did not finish within ImportTimeoutSec=1s and was stopped'
check "... and the hung helper is gone" -- bash -c "! pgrep -f 'sleep 1000' -P $dpid_b >/dev/null"
misbehave garbage 'the importer sent a malformed answer: the answer does not begin'
misbehave truncated 'the importer sent a malformed answer: the answer ends after 1000 bytes'
misbehave trailing 'the importer sent a malformed answer: the answer goes on past its end'
misbehave exit3 'the importer exited with status 3'
misbehave over-limits 'the importer sent a malformed answer: the answer has 1099511627776 triangles'
misbehave bad-index 'the importer sent a malformed answer: triangle 0 of the answer uses vertex 7 of 3'
misbehave bad-source 'the importer sent a malformed answer: triangle 0 of the answer names source 5 of 1'
misbehave sandbox 'the importer was stopped by its sandbox (SIGSYS'

# -- over the memory cap (ImportMemoryMax=80M): a 100 MiB mesh cannot even be read in --
if [ -n "${P3_SANITIZE:-}" ] || ldd "$helper" | grep -q libasan; then
        echo "skip: the helper is an ASan build, which has no address-space cap"
else
        truncate -s 100M "$tmp/zeros.obj"
        out=$(client segment "$tmp/zeros.obj" "$tmp/b.glb")
        echo "   $(tail -n1 <<<"$out")"
        check "a mesh over ImportMemoryMax= fails with a sentence naming the cap" -- \
                grep -q '^failed: mesh: the import needs more memory than its cap of 80M (ImportMemoryMax=)' <<<"$out"
        out=$(client segment "$mesh" "$tmp/b.glb")
        check "... and the next job succeeds" -- grep -q '^done' <<<"$out"
fi

for pid in $dpid_a $dpid_b; do
        kill -TERM "$pid"
        wait "$pid"
        check "daemon $pid stops with status 0" -- test $? = 0
done
dpid_a= dpid_b=
if [ $fails -ne 0 ]; then
        echo "--- daemon A log (tail)"; tail -n 20 "$tmp/a.log"
        echo "--- daemon B log (tail)"; tail -n 20 "$tmp/b.log"
fi
echo "$fails failure(s)"
[ $fails -eq 0 ]
