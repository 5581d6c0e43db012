#!/bin/bash
# p3samctl segment with many meshes, against two p3samd instances (org.p3sam.Segmenter1 and
# .gpu1, one thread each, the tiny synthetic model) on a private bus: a directory and a --from
# list, good meshes and bad ones, the summary's lines, a rerun that skips, SIGINT and SIGKILL
# mid-batch and the rerun after them (nothing segmented twice, nothing partial left), --force,
# the shards (--shard, Slurm's and Kubernetes' variables), --instances all.
set -u
: "${P3SAMCTL:?}" "${P3SAMD:?}" "${P3SAM_RUN:?}" "${P3_TEST_DATA:?}"
. "$(dirname "$0")/lib-test.sh"
need_dbus
export LC_ALL=C

start_bus "$tmp/address"
export DBUS_SYSTEM_BUS_ADDRESS=$bus
A=$bus
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
JobLingerSec=5
[Segment]
CpuPointNum=1000
CpuPromptNum=4
PromptBatch=4
EOF

start_daemon org.p3sam.Segmenter1 "$tmp/d0.log"
start_daemon org.p3sam.Segmenter1.gpu1 "$tmp/d1.log"

# the jobs each daemon ended, by how: jobs_ended LOG done|failed|cancelled
jobs_ended() { grep -c "^.*job [0-9]* (segmentation for uid [0-9]*) $2" "$1"; }
all_done() { echo $(($(jobs_ended "$tmp/d0.log" done) + $(jobs_ended "$tmp/d1.log" done))); }
# summary lines: "STATUS PATH", sorted
statuses() { sed -n 's/^{"path":"\([^"]*\)".*"status":"\([a-z]*\)".*/\2 \1/p' "$1" | sort; }
no_temp_files() { [ -z "$(find "$@" -name '.*.??????' -print -quit)" ]; }
glb_ok() { [ "$(head -c4 "$1" 2>/dev/null)" = glTF ]; }

# ---- the meshes: 9 good and 3 bad, in a directory and a list ----
m=$P3_TEST_DATA/meshes
mkdir -p "$tmp/in/a/sub/deep" "$tmp/in/a/bad" "$tmp/in/b"
cp "$m/alien.glb" "$m/Fox.glb" "$m/spider.obj" "$m/Wuson.off" "$m/no_indices_3storybuilding.glb" \
        "$tmp/in/a/"
cp "$m/spot_control_mesh.obj" "$tmp/in/a/sub/deep/"
cp "$m/bad/Fox_truncated.glb" "$m/bad/empty.ply" "$tmp/in/a/bad/"
cp "$m/cakeBirthday.glb" "$m/CesiumMilkTruck.glb" "$m/Spider_ascii.stl" "$m/bad/invalid_magic.glb" \
        "$tmp/in/b/"
echo "not a mesh" >"$tmp/in/a/README.txt"
cp "$m/alien.glb" "$tmp/in/a/.hidden.glb"
cd "$tmp/in" || exit 1
# b's meshes, and one of a's again (named twice, segmented once); a CRLF line, a blank line
printf 'b/cakeBirthday.glb\nb/CesiumMilkTruck.glb\r\n\nb/Spider_ascii.stl\nb/invalid_magic.glb\na/alien.glb\n' \
        >list.txt
good="a/Fox.glb a/Wuson.off a/alien.glb a/no_indices_3storybuilding.glb a/spider.obj
a/sub/deep/spot_control_mesh.obj b/CesiumMilkTruck.glb b/Spider_ascii.stl b/cakeBirthday.glb"
bad="a/bad/Fox_truncated.glb a/bad/empty.ply b/invalid_magic.glb"
all=$(printf '%s\n' $good $bad | sort)
expect_all=$( (printf 'done %s\n' $good; printf 'failed %s\n' $bad) | sort)
# where each goes under --output-dir O: a's relative to a, b's to their common root b
out_of() { # out_of O PATH
        local p=${2#a/}
        p=${p#b/}
        echo "$1/${p%.*}.parts.glb"
}

ctl() { timeout 300 "$P3SAMCTL" "$@"; }
run_ctl() { # run_ctl NAME ARGS...: $tmp/NAME.out, .err, $rc
        local name=$1; shift
        ctl "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
        rc=$?
}

# ---- usage ----
for args in "nothere.glb alsonot.glb" "a -o x.glb" "a --json r.json" "a --no-wait" \
        "a --shard 3/3" "a --shard x" "a --instances gpu1" "a --instances all --instance 1" \
        "--summary s.jsonl" "a --from missing.txt"; do
        run_ctl usage segment $args
        check "'segment $args' is a usage error (2) in one sentence" -- \
                eval '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/usage.err")" -eq 1 ] && grep -q "^p3samctl: .*[.)]$" "$tmp/usage.err"'
done
JOB_COMPLETION_INDEX=1 run_ctl usage segment a
check "JOB_COMPLETION_INDEX without --shard-count: 2, asks for it" -- \
        eval '[ $rc -eq 2 ] && grep -q -- "--shard-count" "$tmp/usage.err"'

# ---- the first batch: two instances, directory + list, 12 meshes ----
before=$(all_done)
t0=$(date +%s.%N)
run_ctl b1 segment a --from list.txt --instances all --output-dir "$tmp/out" \
        --summary "$tmp/s1.jsonl"
t1=$(date +%s.%N)
echo "   first batch: $(tail -n1 "$tmp/b1.out") (wall $(echo "$t1 - $t0" | bc)s)"
check "a batch with failures exits 1" -- [ $rc -eq 1 ]
check "the summary has one line per mesh, done for the good, failed for the bad" -- \
        eval '[ "$(statuses "$tmp/s1.jsonl")" = "$expect_all" ]'
check "every good mesh was segmented exactly once (the daemons' done jobs)" -- \
        eval '[ $(($(all_done) - before)) -eq 9 ]'
echo "   jobs done: org.p3sam.Segmenter1 $(jobs_ended "$tmp/d0.log" done), .gpu1 $(jobs_ended "$tmp/d1.log" done)"
check "--instances all used both instances" -- \
        eval '[ $(jobs_ended "$tmp/d0.log" done) -gt 0 ] && [ $(jobs_ended "$tmp/d1.log" done) -gt 0 ]'
check "...and the summary names both" -- \
        eval 'grep -q "\"instance\":\"org.p3sam.Segmenter1\"" "$tmp/s1.jsonl" && grep -q "\"instance\":\"org.p3sam.Segmenter1.gpu1\"" "$tmp/s1.jsonl"'
outs_ok=true
for p in $good; do glb_ok "$(out_of "$tmp/out" "$p")" || { outs_ok=false; echo "   missing $(out_of "$tmp/out" "$p")"; }; done
check "each output under --output-dir, mirroring (a/sub/deep/x.obj -> sub/deep/x.parts.glb)" -- $outs_ok
check "no output for the bad meshes" -- \
        eval '[ -z "$(find "$tmp/out" -name "Fox_truncated*" -o -name "empty*" -o -name "invalid_magic*")" ]'
check "no temporary file anywhere" -- no_temp_files "$tmp/out" "$tmp/in"
check "hidden files and non-meshes are not taken" -- \
        eval '! grep -q "hidden\|README" "$tmp/s1.jsonl"'
check "done lines have parts, seconds, the output; failed ones an error sentence" -- \
        eval '[ $(grep -c "\"status\":\"done\",\"error\":null,\"seconds\":[0-9.]*,\"parts\":[1-9]" "$tmp/s1.jsonl") -eq 9 ] && [ $(grep -c "\"status\":\"failed\",\"error\":\"[A-Z].*\.\",\"seconds\"" "$tmp/s1.jsonl") -eq 3 ]'
check "the truncated mesh's failure is the daemon's sentence" -- \
        grep -q '"path":"a/bad/Fox_truncated.glb".*"error":"Job [0-9]* failed: .*truncated' "$tmp/s1.jsonl"
check "each failure is reported on stderr, naming the mesh" -- \
        eval '[ $(grep -c "^p3samctl: .*\(a/bad/Fox_truncated.glb\|a/bad/empty.ply\|b/invalid_magic.glb\): " "$tmp/b1.err") -eq 3 ]'
grep '^p3samctl' "$tmp/b1.err" | sed 's/^/   /'
check "one line per done mesh, and the summary line" -- \
        eval '[ $(grep -c "^done " "$tmp/b1.out") -eq 9 ] && grep -qE "^12 meshes: 9 done, 0 skipped, 3 failed, [0-9.]+s$" "$tmp/b1.out"'
if command -v jq >/dev/null; then
        check "every summary line is a JSON object (jq)" -- \
                eval '[ "$(jq -r .status "$tmp/s1.jsonl" | sort | uniq -c | tr -s " " | tr "\n" ,)" = " 9 done, 3 failed," ]'
fi
check "no shard, no shard key" -- eval '! grep -q "\"shard\"" "$tmp/s1.jsonl"'

# ---- the rerun skips the good ones ----
before=$(all_done)
run_ctl b2 segment a --from list.txt --instances all --output-dir "$tmp/out" \
        --summary "$tmp/s2.jsonl"
check "the rerun: the 9 good ones skipped, the 3 bad ones tried and failed again, exit 1" -- \
        eval '[ $rc -eq 1 ] && [ "$(statuses "$tmp/s2.jsonl")" = "$( (printf "skipped %s\n" $good; printf "failed %s\n" $bad) | sort)" ]'
check "...and no good mesh went to a daemon again" -- eval '[ "$(all_done)" -eq "$before" ]'
run_ctl b3 segment a/alien.glb b/CesiumMilkTruck.glb --output-dir "$tmp/out2" --summary "$tmp/s3.jsonl"
check "only good meshes: exit 0" -- eval '[ $rc -eq 0 ] && [ "$(statuses "$tmp/s3.jsonl" | cut -d" " -f1 | sort -u)" = done ]'
touch a/alien.glb
run_ctl b3b segment a/alien.glb b/CesiumMilkTruck.glb --output-dir "$tmp/out2" --summary "$tmp/s3b.jsonl"
check "a mesh newer than its output is redone, the other skipped; exit 0" -- \
        eval '[ $rc -eq 0 ] && [ "$(statuses "$tmp/s3b.jsonl")" = "$(printf "done a/alien.glb\nskipped b/CesiumMilkTruck.glb")" ]'

# ---- SIGINT, SIGKILL mid-batch, the rerun: nothing twice, nothing partial ----
# (started directly, not through ctl(): the signal must reach p3samctl itself)
interrupt() { # interrupt SIGNAL NAME: a batch of the good meshes into out3, stopped mid-way
        printf '%s\n' $good >good.txt
        # jobs of about a second: the batch is still on when the signal comes
        "$P3SAMCTL" segment --from good.txt --instances all --output-dir "$tmp/out3" \
                --points 3000 --prompts 8 --summary "$tmp/$2.jsonl" >"$tmp/$2.out" 2>"$tmp/$2.err" &
        local cpid=$!
        for _ in $(seq 600); do
                [ "$(cat "$tmp/$2.jsonl" 2>/dev/null | grep -c '"done"')" -ge 2 ] && break
                sleep 0.1
        done
        kill -"$1" $cpid
        { wait $cpid; } 2>/dev/null
        rc=$?
}
c0=$(jobs_ended "$tmp/d0.log" cancelled); c1=$(jobs_ended "$tmp/d1.log" cancelled)
interrupt INT i-int
check "SIGINT: exit 3, the jobs in flight cancelled by the daemons" -- \
        eval '[ $rc -eq 3 ] && [ $(($(jobs_ended "$tmp/d0.log" cancelled) + $(jobs_ended "$tmp/d1.log" cancelled) - c0 - c1)) -ge 1 ]'
check "SIGINT: says so, and what is left" -- \
        eval 'grep -q "^Cancelling [0-9]* job" "$tmp/i-int.err" && grep -qE "not segmented" "$tmp/i-int.out"'
echo "   $(tail -n1 "$tmp/i-int.out")"
check "SIGINT: only whole outputs, of the meshes done, no temporary file" -- \
        eval '[ "$(find "$tmp/out3" -type f | wc -l)" -eq "$(grep -c "\"status\":\"done\"" "$tmp/i-int.jsonl")" ] && no_temp_files "$tmp/out3"'
interrupt KILL i-kill
check "SIGKILL: no temporary file" -- no_temp_files "$tmp/out3"
sleep 1 # the daemons cancel the lost client's jobs
before=$(all_done)
run_ctl i-rest segment --from good.txt --instances all --output-dir "$tmp/out3" \
        --summary "$tmp/i-rest.jsonl"
check "the rerun after them finishes the rest: exit 0" -- [ $rc -eq 0 ]
check "...segmenting only what had no output (daemons' done jobs = done lines)" -- \
        eval '[ $(($(all_done) - before)) -eq $(grep -c "\"status\":\"done\"" "$tmp/i-rest.jsonl") ]'
twice=$(cat "$tmp"/i-*.jsonl | sed -n 's/^{"path":"\([^"]*\)".*"status":"done".*/\1/p' | sort | uniq -d)
check "no mesh done twice over the three runs" -- [ -z "$twice" ]
outs_ok=true
# all named in the list: relative to their common root, $tmp/in
for p in $good; do glb_ok "$tmp/out3/${p%.*}.parts.glb" || outs_ok=false; done
check "every good mesh has its whole output, nothing else is there" -- \
        eval '$outs_ok && [ "$(find "$tmp/out3" -type f | wc -l)" -eq 9 ]'
echo "   SIGINT run: $(grep -c '"done"' "$tmp/i-int.jsonl") done; SIGKILL run: $(grep -c '"done"' "$tmp/i-kill.jsonl") done; rerun: $(grep -c '"done"' "$tmp/i-rest.jsonl") done, $(grep -c '"skipped"' "$tmp/i-rest.jsonl") skipped"

# ---- --force redoes ----
before=$(all_done)
run_ctl force segment --from good.txt --output-dir "$tmp/out3" --force --summary "$tmp/force.jsonl"
check "--force redoes every mesh (one instance: the plain name)" -- \
        eval '[ $rc -eq 0 ] && [ $(($(all_done) - before)) -eq 9 ] && [ $(grep -c "\"instance\":\"org.p3sam.Segmenter1\"" "$tmp/force.jsonl") -eq 9 ]'

# ---- shards: each mesh in exactly one; every variable the same slices ----
# (the good meshes are up to date in out: skipped at once; the bad ones fail again)
slices() { # slices NAME: the paths of NAME-0..2, "I PATH" sorted
        for i in 0 1 2; do statuses "$tmp/$1-$i.jsonl" | sed "s/^[a-z]* /$i /"; done | sort
}
expected=$(echo "$all" | awk '{ print (NR - 1) % 3, $0 }' | sort)
for i in 0 1 2; do
        run_ctl sh segment a --from list.txt --output-dir "$tmp/out" --shard $i/3 --summary "$tmp/shard-$i.jsonl"
        grep -q "(shard $i/3 from --shard)" "$tmp/sh.out" || fail "shard $i/3: the summary line names it"
done
check "--shard 0/3, 1/3, 2/3: every 3rd of the sorted list, each mesh exactly once" -- \
        eval '[ "$(slices shard)" = "$expected" ]'
check "the summary says which shard ran" -- \
        eval '[ $(cat "$tmp"/shard-1.jsonl | grep -c "\"shard\":\"1/3\"") -eq $(wc -l <"$tmp/shard-1.jsonl") ]'
for i in 0 1 2; do
        SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_COUNT=3 ctl segment a --from list.txt \
                --output-dir "$tmp/out" --summary "$tmp/slurm-$i.jsonl" >/dev/null 2>&1
        SLURM_ARRAY_TASK_ID=$((i + 1)) SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_MAX=3 ctl segment a \
                --from list.txt --output-dir "$tmp/out" --summary "$tmp/slurmmm-$i.jsonl" >/dev/null 2>&1
        JOB_COMPLETION_INDEX=$i ctl segment a --from list.txt --output-dir "$tmp/out" \
                --shard-count 3 --summary "$tmp/k8s-$i.jsonl" >"$tmp/k8s.out" 2>&1
done
check "SLURM_ARRAY_TASK_ID with _COUNT: the same slices" -- eval '[ "$(slices slurm)" = "$expected" ]'
check "SLURM_ARRAY_TASK_ID with _MIN/_MAX (array 1-3): the same slices" -- \
        eval '[ "$(slices slurmmm)" = "$expected" ]'
check "JOB_COMPLETION_INDEX with --shard-count: the same slices" -- \
        eval '[ "$(slices k8s)" = "$expected" ]'
check "...and its summary line names the source" -- grep -q "(shard 2/3 from JOB_COMPLETION_INDEX)" "$tmp/k8s.out"

# ---- beside the meshes, the same name twice ----
mkdir -p "$tmp/side" && cp "$m/alien.glb" "$m/spot_control_mesh.obj" "$tmp/side/"
cp "$m/spot_control_mesh.obj" "$tmp/side/alien.obj"
run_ctl side segment "$tmp/side" --summary "$tmp/side.jsonl"
check "by default the outputs go beside the meshes" -- \
        eval 'glb_ok "$tmp/side/alien.parts.glb" && glb_ok "$tmp/side/spot_control_mesh.parts.glb"'
check "two meshes with one output: the second fails saying so, the first is done" -- \
        eval '[ $rc -eq 1 ] && grep -q "\"path\":\"$tmp/side/alien.obj\".*\"status\":\"failed\",\"error\":\"Its output .* is also that of $tmp/side/alien.glb" "$tmp/side.jsonl"'
run_ctl side2 segment "$tmp/side" --summary "$tmp/side2.jsonl"
check "a rerun does not take the outputs (NAME.parts.glb) for meshes" -- \
        eval '[ $(wc -l <"$tmp/side2.jsonl") -eq 3 ] && ! grep -q "\"path\":\"[^\"]*parts.glb\"" "$tmp/side2.jsonl"'

# ---- no daemon ----
DBUS_SYSTEM_BUS_ADDRESS=unix:path=$tmp/missing.sock run_ctl none segment a --force --output-dir "$tmp/none"
check "no bus: exit 5 in one sentence, nothing written" -- \
        eval '[ $rc -eq 5 ] && grep -q "^p3samctl: p3samd is not running" "$tmp/none.err" && [ -z "$(find "$tmp/none" -type f 2>/dev/null)" ]'
run_ctl none2 --instance 7 segment a --force --output-dir "$tmp/none"
check "an instance that is not there: exit 5 naming it" -- \
        eval '[ $rc -eq 5 ] && grep -q "gpu7" "$tmp/none2.err"'

[ $fails -eq 0 ] && echo "all ctl-batch checks passed" || echo "$fails check(s) failed"
[ $fails -eq 0 ]
