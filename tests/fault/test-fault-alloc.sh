#!/bin/bash
# Allocation failure at each allocation site of a job (tests/fault/fault-malloc.c, preloaded):
# list the sites of our own code that one job reaches, then run the job again failing each
# site in turn. Every run must end with a clear error (exit status 1 and one "PROGRAM: "
# sentence; no crash, no abort, no hang) and leave no output nor temporary file, or, where the
# code has a fallback (the heads halve their prompt batch on ENOMEM), succeed with the
# reference's output exactly; and leak nothing (the interposer counts each site's live
# allocations).
#   - the engine, in process: p3sam-run segment, every site, its live allocations at exit
#     against the good run's;
#   - p3samd, a job through p3samctl, armed once the daemon serves, every site: after each
#     failure the next job must succeed on the same daemon; at the end, the daemon's live
#     allocations, site by site, against those before the sweep.
set -u
: "${P3SAMD:?}" "${P3SAMCTL:?}" "${P3SAM_RUN:?}" "${P3_TEST_DATA:?}" "${P3_FAULT_MALLOC:?}"
. "$(dirname "$0")/../lib-test.sh"
cleanup_extra() { [ -n "${daemon_pid:-}" ] && kill -9 "$daemon_pid" 2>/dev/null; }

if [ -n "${P3_SANITIZE:-}" ]; then
        echo "SKIP: P3_SANITIZE is set: the sanitizers' allocator cannot be preloaded over"
        exit 77
fi
for exe in "$P3SAMD" "$P3SAM_RUN"; do
        if ldd "$exe" 2>/dev/null | grep -q 'lib[at]san' ||
                nm -D "$exe" 2>/dev/null | grep -q ' __[at]san_init$'; then
                echo "SKIP: $exe is built with a sanitizer: its allocator cannot be preloaded over"
                exit 77
        fi
done

jobs_max=2
cfg=$P3_TEST_DATA/tiny_config.json
mesh=$P3_TEST_DATA/meshes/alien.glb
# Small enough for 200-odd runs, big enough to reach every stage: 6 parts, 2 prompts in a
# batch of 2 (so that the heads' halving has somewhere to go), post-processing on.
job_opts=(--points 500 --prompts 2 --batch 2 --post-process)
"$P3SAM_RUN" synth --config "$cfg" --out "$tmp/w.safetensors" >/dev/null || exit 1

site_name() { # site_name EXE OFFSET: function and line, when binutils is here
        command -v addr2line >/dev/null && addr2line -f -s -e "$1" "$2" | paste -sd' ' ||
                echo "$2"
}
# ours EXE SITES: the sites but those of NVIDIA's CUDA runtime, which a CUDA build links into
# the program statically: its allocations are not ours to fail (it uses them unchecked).
ours() {
        command -v addr2line >/dev/null || { cat "$2"; return; }
        # shellcheck disable=SC2046
        paste -d' ' "$2" <(addr2line -f -e "$1" $(cat "$2") | paste - -) | grep -v cudart |
                cut -d' ' -f1
}
# same_json A B: equal but for the timings
untimed() { sed -E 's/"timings":\{[^}]*\},?//' "$1"; }
same_json() { [ -s "$1" ] && cmp -s <(untimed "$1") <(untimed "$2"); }
no_temps() { [ -z "$(find "$1" -maxdepth 1 -name '.*' -print -quit)" ]; }

# ---- the engine, in process ----
engine() { # engine DIR [FAULT_MALLOC_... assignments]
        local d=$1
        shift
        rm -rf "$d"
        mkdir -p "$d"
        # FAULT_MALLOC_PROG: p3sam-run's sites, not those of timeout(1), which is preloaded too
        env "$@" FAULT_MALLOC_PROG="$(basename "$P3SAM_RUN")" LD_PRELOAD="$P3_FAULT_MALLOC" \
                timeout 120 "$P3SAM_RUN" segment \
                --weights "$tmp/w.safetensors" --config "$cfg" "$mesh" -o "$d/o.glb" \
                --json "$d/o.json" --ply "$d/o.ply" "${job_opts[@]}" --quiet \
                >"$d/out" 2>"$d/err"
        echo $? >"$d/rc"
}
# leaked BEFORE AFTER: "COUNT×SITE" for each site with more live allocations after than before
leaked() {
        awk 'NR == FNR { n[$1] = $2; next } $2 > n[$1] + 0 { printf "%d×%s ", $2 - n[$1], $1 }' \
                "$1" "$2"
}
# judge DIR REF PREFIX: the verdict on one run, one line in DIR/verdict
judge() {
        local d=$1 ref=$2 prefix=$3 rc
        rc=$(cat "$d/rc")
        if ! grep -q '^fired' "$d/fired" 2>/dev/null; then
                v="unreached"
        elif [ "$rc" = 0 ]; then
                if cmp -s "$d/o.glb" "$ref/o.glb" && { [ ! -e "$ref/o.ply" ] ||
                        cmp -s "$d/o.ply" "$ref/o.ply"; } && same_json "$d/o.json" "$ref/o.json"
                then
                        v="fallback"
                else
                        v="FAIL: succeeded with another output"
                fi
        elif [ "$rc" != 1 ]; then
                v="FAIL: exit status $rc (a crash, an abort or a hang)"
        elif ! grep -qE "^$prefix: [^ ].*[.)]$" "$d/err"; then
                v="FAIL: no \"$prefix: \" sentence: $(tail -n1 "$d/err")"
        elif [ -n "$(find "$d" -maxdepth 1 \( -name 'o.*' -o -name '.o.*' \) -print -quit)" ]; then
                v="FAIL: left $(cd "$d" && ls -A | grep -E '^\.?o\.' | paste -sd' ')"
        else
                v="error"
        fi
        if [ -e "$d/leaks" ] && [[ $v != FAIL* ]] && [ -n "$(leaked "$ref/leaks" "$d/leaks")" ]; then
                v="FAIL: leaks $(leaked "$ref/leaks" "$d/leaks")"
        fi
        echo "$v" >"$d/verdict"
}

t0=$SECONDS
engine "$tmp/eref" FAULT_MALLOC_RECORD="$tmp/eref/sites" FAULT_MALLOC_LEAKS="$tmp/eref.leaks"
mv "$tmp/eref.leaks" "$tmp/eref/leaks"
[ "$(cat "$tmp/eref/rc")" = 0 ] || { cat "$tmp/eref/err"; echo "the reference run failed"; exit 1; }
mapfile -t esites < <(ours "$P3SAM_RUN" "$tmp/eref/sites")
echo "   the engine's job reaches ${#esites[@]} allocation sites"
check "the interposer sees the engine's allocation sites" -- [ ${#esites[@]} -ge 50 ]
for i in "${!esites[@]}"; do
        (
                d=$tmp/e$i
                engine "$d" FAULT_MALLOC_FAIL="${esites[$i]}" FAULT_MALLOC_FIRED="$tmp/e$i.fired" \
                        FAULT_MALLOC_LEAKS="$tmp/e$i.leaks"
                mv "$tmp/e$i.fired" "$d/fired" 2>/dev/null
                mv "$tmp/e$i.leaks" "$d/leaks" 2>/dev/null
                judge "$d" "$tmp/eref" p3sam-run
        ) &
        [ "$(jobs -rp | wc -l)" -ge $jobs_max ] && wait -n
done
wait
declare -A count=()
for i in "${!esites[@]}"; do
        v=$(cat "$tmp/e$i/verdict")
        count[${v%%:*}]=$((${count[${v%%:*}]:-0} + 1))
        if [[ $v = FAIL* ]]; then
                fail "engine site ${esites[$i]} ($(site_name "$P3SAM_RUN" "${esites[$i]}")): ${v#FAIL: }"
                sed 's/^/      /' "$tmp/e$i/err" | tail -n 3
        fi
done
echo "   engine sweep: ${#esites[@]} sites, ${count[error]:-0} clear errors," \
        "${count[fallback]:-0} fallbacks with the same output, ${count[unreached]:-0} not reached" \
        "again, ${count[FAIL]:-0} failures ($((SECONDS - t0)) s)"
check "every engine site fails with a sentence and no output, or falls back to the same output" -- \
        [ "${count[FAIL]:-0}" = 0 ]
# sentences DIR-PREFIX EXE SITES...: each distinct sentence, how many sites gave it, one of them
sentences() {
        local pre=$1 exe=$2 i=0 s
        shift 2
        for s in "$@"; do
                [ "$(cat "$pre$i/rc")" = 0 ] ||
                        echo "$(tail -n1 "$pre$i/err" | sed 's/^p3samctl: Job [0-9]* /p3samctl: Job N /')	$s"
                i=$((i + 1))
        done | sort -t'	' -k1,1 | awk -F'\t' '{ n[$1]++; if (!($1 in e)) e[$1] = $2 }
                END { for (k in n) print n[k] "\t" e[k] "\t" k }' | sort -rn |
                while IFS='	' read -r n s text; do
                        echo "     $n× $text   (e.g. $(site_name "$exe" "$s"))"
                done
}
echo "   the engine's sentences, by count:"
sentences "$tmp/e" "$P3SAM_RUN" "${esites[@]}"

# ---- p3samd: a job through p3samctl, the daemon armed once it serves ----
if ! command -v dbus-daemon >/dev/null || ! command -v busctl >/dev/null; then
        echo "SKIP (the daemon's part): dbus-daemon or busctl is not installed"
        echo "$fails failure(s)"
        [ $fails -eq 0 ]
        exit
fi
start_bus "$tmp/address"
export DBUS_SYSTEM_BUS_ADDRESS=$bus
A=$bus
cat >"$tmp/p3samd.conf" <<EOF
[Model]
Path=$tmp/w.safetensors
Config=$cfg
Backend=cpu
Threads=2
[Daemon]
IdleTimeoutSec=1h
QueueMax=8
QueuePerUserMax=8
JobLingerSec=1
AllowGroup=p3sam-test-nonexistent
EOF
gen=0
arm() { gen=$((gen + 1)); echo "$gen $1" >"$tmp/arm"; sleep 0.03; } # the interposer reads every 20 ms
dstart() {
        FAULT_MALLOC_ARM=$tmp/arm FAULT_MALLOC_RECORD=$tmp/dsites FAULT_MALLOC_FIRED=$tmp/dfired \
                FAULT_MALLOC_LEAKS=$tmp/dlive \
                FAULT_MALLOC_PROG=$(basename "$P3SAMD") LD_PRELOAD=$P3_FAULT_MALLOC \
                "$P3SAMD" --config "$tmp/p3samd.conf" --keep-user >>"$tmp/daemon.log" 2>&1 &
        daemon_pid=$!
        wait_prop State ready 60
}
ctl_job() { # ctl_job DIR: one job, its verdict's inputs in DIR
        local d=$1
        rm -rf "$d"
        mkdir -p "$d"
        timeout 120 "$P3SAMCTL" segment "$mesh" -o "$d/o.glb" --json "$d/o.json" "${job_opts[@]}" \
                >"$d/out" 2>"$d/err"
        echo $? >"$d/rc"
}
t0=$SECONDS
check "p3samd comes up under the interposer" -- dstart
: >"$tmp/dsites"
arm record
ctl_job "$tmp/dref"
arm off
[ "$(cat "$tmp/dref/rc")" = 0 ] || { cat "$tmp/dref/err" "$tmp/daemon.log"; exit 1; }
mapfile -t dsites < <(ours "$P3SAMD" "$tmp/dsites")
echo "   the daemon's job reaches ${#dsites[@]} allocation sites of p3samd"
check "the interposer sees the daemon's allocation sites" -- [ ${#dsites[@]} -ge 50 ]
unset count
declare -A count=()
fds() { ls "/proc/$daemon_pid/fd" | wc -l; }
fd0=$(fds)
# dump_live FILE: the daemon's live allocations by site, as a request comes in (the
# interposer reads its orders when our code allocates: a Segment call does, first thing)
: >"$tmp/empty.glb"
dump_live() {
        rm -f "$tmp/dlive"
        arm dump
        "$P3SAMCTL" segment "$tmp/empty.glb" -o "$tmp/empty.parts.glb" >/dev/null 2>&1
        [ -s "$tmp/dlive" ] && mv "$tmp/dlive" "$1"
}
sleep 2 # JobLingerSec=1: the reference job is gone
check "the daemon's live allocations can be counted" -- dump_live "$tmp/dlive0"
restarts=0
for i in "${!dsites[@]}"; do
        s=${dsites[$i]}
        d=$tmp/d$i
        rm -f "$tmp/dfired"
        arm "$s"
        ctl_job "$d"
        arm off
        mv "$tmp/dfired" "$d/fired" 2>/dev/null
        judge "$d" "$tmp/dref" p3samctl
        v=$(cat "$d/verdict")
        if ! kill -0 "$daemon_pid" 2>/dev/null; then
                v="FAIL: the daemon died"
                restarts=$((restarts + 1))
                wait "$daemon_pid" 2>/dev/null
                dstart || { fail "p3samd does not come up again"; break; }
        elif [ "$v" = error ] || [[ $v = FAIL* ]]; then
                ctl_job "$d/next"
                [ "$(cat "$d/next/rc")" = 0 ] && cmp -s "$d/next/o.glb" "$tmp/dref/o.glb" ||
                        v="FAIL${v#FAIL}; and the next job did not succeed: $(tail -n1 "$d/next/err")"
        fi
        count[${v%%:*}]=$((${count[${v%%:*}]:-0} + 1))
        if [[ $v = FAIL* ]]; then
                fail "daemon site $s ($(site_name "$P3SAMD" "$s")): ${v#FAIL: }"
                sed 's/^/      /' "$d/err" | tail -n 3
        fi
done
echo "   daemon sweep: ${#dsites[@]} sites, ${count[error]:-0} clear errors (each followed by a job" \
        "that succeeded), ${count[fallback]:-0} fallbacks with the same output," \
        "${count[unreached]:-0} not reached again, ${count[FAIL]:-0} failures ($((SECONDS - t0)) s)"
check "every daemon site fails the job with a sentence, no output, and the next job succeeds" -- \
        [ "${count[FAIL]:-0}" = 0 ]
check "the daemon never died" -- [ $restarts = 0 ]
if [ $restarts = 0 ]; then
        sleep 2 # JobLingerSec=1: the finished jobs go, with whatever they held
        echo "   daemon descriptors: $fd0 before the sweep, $(fds) after"
        check "the failed jobs leaked no descriptor" -- [ "$(fds)" -le "$fd0" ]
        dump_live "$tmp/dlive1"
        grown=$(leaked "$tmp/dlive0" "$tmp/dlive1")
        for s in $grown; do echo "      grew: ${s%%×*} × $(site_name "$P3SAMD" "${s#*×}")"; done
        check "... nor memory: no site of ours holds more live allocations than before the sweep" -- \
                [ -z "$grown" ]
fi
echo "   the daemon's sentences, as p3samctl prints them, by count:"
sentences "$tmp/d" "$P3SAMD" "${dsites[@]}"
if [ $fails -ne 0 ]; then
        echo "--- daemon log (end)"; tail -n 40 "$tmp/daemon.log"
fi
echo "$fails failure(s)"
[ $fails -eq 0 ]
