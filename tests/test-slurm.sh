#!/bin/bash
# scripts/slurm/p3sam-array.sbatch on a real single-node Slurm cluster started here: munged,
# slurmctld and slurmd on this host with a generated slurm.conf in $tmp, no GPUs (the test
# deletes the --gres line). A 3-task array over the user-bus path (dbus-run-session,
# p3samd --bus user, p3samctl --user segment --from) with the tiny synthetic model, submitted
# as nobody: every mesh segmented exactly once, every task's summary present, every daemon
# ended with status 0. Then the array again: a task that finds its outputs up to date (a
# requeued one) skips them all. Everything is stopped at the end.
set -u
: "${P3SAMCTL:?}" "${P3SAMD:?}" "${P3SAM_RUN:?}" "${P3_TEST_DATA:?}"
src=${P3_SOURCE_ROOT:?}
. "$(dirname "$0")/lib-test.sh"
for p in slurmctld slurmd sbatch squeue munged; do
        command -v $p >/dev/null || { echo "SKIP: slurm-wlm and munge are not installed"; exit 77; }
done
command -v dbus-run-session >/dev/null || { echo "SKIP: dbus-run-session is not installed"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (to start slurmd and munged)"; exit 77; }
"$P3SAMCTL" segment --help | grep -q -- --from ||
        { echo "SKIP: p3samctl segment has no --from yet"; exit 77; }
user=nobody
uid=$(id -u $user) || { echo "SKIP: no user nobody"; exit 77; }

# ---- the cluster ----
host=$(hostname -s)
port=$((17000 + RANDOM % 2000))
mkdir -p "$tmp"/{munge,state,spool,log,run}
chmod 700 "$tmp/munge"
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$tmp/munge/munge.key"
munged --force --key-file="$tmp/munge/munge.key" --socket="$tmp/munge/socket" \
        --pid-file="$tmp/munge/pid" --log-file="$tmp/log/munged.log" \
        --seed-file="$tmp/munge/seed" || { echo "FAIL: munged did not start"; exit 1; }
chmod 755 "$tmp/munge" # the clients (sbatch as nobody) reach the socket
cleanup_extra() {
        # Only what this test started, by the pids the daemons wrote.
        local f
        for f in "$tmp/run/slurmd.pid" "$tmp/run/slurmctld.pid" "$tmp/munge/pid"; do
                [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
        done
        sleep 1
}

cpus=$(nproc)
export SLURM_CONF=$tmp/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=p3samtest
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/socket
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/run/slurmctld.pid
SlurmdPidFile=$tmp/run/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdTimeout=30
NodeName=$host CPUs=$cpus RealMemory=4000 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
chmod 644 "$SLURM_CONF"
slurmctld -i -f "$SLURM_CONF" || { echo "FAIL: slurmctld did not start"; cat "$tmp/log/slurmctld.log"; exit 1; }
slurmd -f "$SLURM_CONF" || { echo "FAIL: slurmd did not start"; cat "$tmp/log/slurmd.log"; exit 1; }
idle=
for _ in $(seq 150); do
        idle=$(sinfo -h -o %t 2>/dev/null)
        [ "$idle" = idle ] && break
        sleep 0.2
done
check "a one-node cluster is up (node state: ${idle:-none})" -- test "$idle" = idle
[ "$idle" = idle ] || { tail -n 20 "$tmp/log/slurmctld.log" "$tmp/log/slurmd.log"; exit 1; }

# ---- the dataset, the model, the job ----
data=$tmp/data
mkdir -p "$data/a" "$data/b" "$tmp/out" "$tmp/logs"
cp "$P3_TEST_DATA/meshes/alien.glb" "$data/a/alien.glb"
cp "$P3_TEST_DATA/meshes/Wuson.off" "$data/a/wuson.off"
cp "$P3_TEST_DATA/meshes/Spider_ascii.stl" "$data/b/spider.stl"
cp "$P3_TEST_DATA/meshes/alien.glb" "$data/b/alien2.glb"
cp "$P3_TEST_DATA/meshes/Wuson.off" "$data/b/wuson2.off"
(cd "$data" && find . -type f | sort | sed "s#^\.#$data#") >"$tmp/list.txt"
n_meshes=$(wc -l <"$tmp/list.txt")
"$P3SAM_RUN" synth --config "$P3_TEST_DATA/tiny_config.json" --out "$tmp/w.safetensors" || exit 1
cat >"$tmp/p3samd.conf" <<EOF
[Model]
Path=$tmp/w.safetensors
Config=$P3_TEST_DATA/tiny_config.json
Backend=cpu
Threads=1
[Daemon]
AllowGroup=p3sam-test-nonexistent
[Segment]
CpuPointNum=2000
CpuPromptNum=8
PromptBatch=4
EOF
chown -R $user "$tmp/out" "$tmp/logs"
chmod -R a+rX "$tmp"
# No GPU here: the --gres line goes, the rest of the script is run as it is.
sed '/^#SBATCH --gres/d' "$src/scripts/slurm/p3sam-array.sbatch" >"$tmp/p3sam-array.sbatch"
chmod 644 "$tmp/p3sam-array.sbatch"

submit() { # submit NAME: the 3-task array as nobody; its job id in $jobid
        jobid=$(cd "$tmp/logs" && setpriv --reuid=$uid --regid="$(id -g $user)" --init-groups \
                env HOME="$tmp/logs" PATH="$(dirname "$P3SAMD"):$(dirname "$P3SAMCTL"):$PATH" \
                P3SAM_LIST="$tmp/list.txt" P3SAM_OUT="$tmp/out" P3SAM_CONF="$tmp/p3samd.conf" \
                SLURM_CONF="$SLURM_CONF" \
                sbatch --parsable --array=0-2 --cpus-per-task=1 --mem=500M --time=10 \
                --output="$tmp/logs/$1-%a.log" "$tmp/p3sam-array.sbatch")
        check "$1: sbatch accepted the array ($jobid)" -- test -n "$jobid"
}
wait_array() { # wait_array NAME SECONDS: until the array has left the queue
        local t0=$SECONDS
        for _ in $(seq $(($2 * 5))); do
                [ -z "$(squeue -h -j "$jobid" 2>/dev/null)" ] && break
                sleep 0.2
        done
        check "$1: the array finished in $((SECONDS - t0)) s" -- \
                test -z "$(squeue -h -j "$jobid" 2>/dev/null)"
}
summaries() { cat "$tmp/out/summaries/"task-*.jsonl 2>/dev/null; }
count_status() { summaries | grep -c "\"status\": *\"$1\""; }

submit first
wait_array first 170
for t in 0 1 2; do
        check "first: task $t wrote its summary" -- test -s "$tmp/out/summaries/task-$t.jsonl"
done
done_n=$(count_status "done")
check "first: every mesh segmented once ($done_n done of $n_meshes, $(summaries | wc -l) lines)" -- \
        test "$done_n" = "$n_meshes" -a "$(summaries | wc -l)" = "$n_meshes"
check "first: each mesh in exactly one summary" -- \
        test "$(summaries | grep -o '"path": *"[^"]*"' | sort -u | wc -l)" = "$n_meshes"
n_out=$(find "$tmp/out" -name '*.parts.glb' -size +0 | wc -l)
check "first: $n_out outputs of $n_meshes under the output directory" -- test "$n_out" = "$n_meshes"
check "first: the outputs belong to the job's user" -- \
        test -z "$(find "$tmp/out" -name '*.parts.glb' ! -user $user)"
grep -h "p3samd exited with status\|did not start" "$tmp/logs/"first-*.log &&
        fail "first: a daemon did not end with status 0" || ok "first: every daemon ended with status 0"
check "first: each task ran as $user on its own session bus" -- \
        test "$(grep -h 'serving the session bus of uid' "$tmp/logs/"first-*.log | grep -c "uid $uid ")" = 3

# Requeued (as after a preemption or a node failure): every output is up to date, nothing
# is redone, the summary says so.
stamp=$(stat -c %Y "$(find "$tmp/out" -name '*.parts.glb' | head -n1)")
sleep 1
t0=$SECONDS
scontrol requeue "$jobid" || fail "scontrol requeue $jobid"
# slurmctld holds a requeued job back for a while (BeginTime); no need to wait here.
for t in 0 1 2; do scontrol update JobId="${jobid}_$t" StartTime=now || true; done
reran() { grep -l 'restart 1,' "$tmp/logs/"first-*.log 2>/dev/null | wc -l; }
for _ in $(seq 600); do
        [ "$(reran)" = 3 ] && [ -z "$(squeue -h -j "$jobid" 2>/dev/null)" ] && break
        sleep 0.2
done
check "requeued: the 3 tasks ran again, in $((SECONDS - t0)) s" -- test "$(reran)" = 3
check "requeued: every mesh skipped ($(count_status skipped) of $n_meshes)" -- \
        test "$(count_status skipped)" = "$n_meshes"
check "requeued: the outputs were not rewritten" -- \
        test "$(stat -c %Y "$(find "$tmp/out" -name '*.parts.glb' | head -n1)")" = "$stamp"
left=$(pgrep -u $uid -a -f "$tmp" || true)
check "no process of the jobs is left${left:+ ($left)}" -- test -z "$left"
[ $fails -eq 0 ] || { echo "--- task logs"; tail -n 15 "$tmp/logs/"*.log; }

echo "$fails failure(s)"
[ $fails -eq 0 ]
