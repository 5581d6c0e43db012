#!/bin/bash
# p3sam-httpd, the HTTP gateway, against p3samd on a private bus (tests/dbus-test.conf) with the
# tiny model on the CPU backend, on a free loopback port (--listen 127.0.0.1:0): what a client
# sees with curl. segment (a GLB back), predict, status (as p3samctl status --json),
# clear_gpu_memory (and its 403 for a gateway user p3samd refuses), 413 before the body is read,
# 422 with the daemon's sentence, 400/404/405/415, 8 requests at once past QueuePerUserMax=,
# 503 with Retry-After past --max-requests, a client that hangs up cancels its job, and socket
# activation (systemd-socket-activate) with the idle exit.
set -u
: "${P3SAM_HTTPD:?}" "${P3SAMD:?}" "${P3SAM_RUN:?}" "${P3SAMCTL:?}" "${P3_TEST_DATA:?}"
. "$(dirname "$0")/lib-test.sh"
need_dbus
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
command -v jq >/dev/null || { echo "SKIP: jq is not installed"; exit 77; }

start_bus "$tmp/address"
export DBUS_SYSTEM_BUS_ADDRESS=$bus
A=$bus

tiny_model_conf "$tmp/p3samd.conf"
# QueuePerUserMax=3: every HTTP job reaches p3samd as the gateway's one user, so 8 requests
# at once only succeed if the gateway holds the rest in its own queue.
cat >>"$tmp/p3samd.conf" <<EOF2
[Daemon]
IdleTimeoutSec=1h
QueueMax=16
QueuePerUserMax=3
JobLingerSec=300
MaxMeshSize=1M
AllowGroup=p3sam-test-nonexistent
[Segment]
CpuPointNum=2000
CpuPromptNum=8
PromptBatch=4
EOF2
start_daemon org.p3sam.Segmenter1 "$tmp/daemon.log"

mesh=$P3_TEST_DATA/meshes/alien.glb
big=$P3_TEST_DATA/meshes/CesiumMilkTruck.glb

# start_gateway LOG ARGS...: p3sam-httpd on a port the kernel picks; its address in $addr.
start_gateway() {
        local log=$1; shift
        "$@" >"$log" 2>&1 &
        pids+=($!)
        gw_pid=$!
        for _ in $(seq 100); do
                addr=$(grep -o 'Listening on [0-9.]*:[0-9]*' "$log" | cut -d' ' -f3)
                [ -n "$addr" ] && return 0
                sleep 0.1
        done
        echo "p3sam-httpd did not come up:"; cat "$log"; exit 1
}
start_gateway "$tmp/gw.log" "$P3SAM_HTTPD" --listen 127.0.0.1:0 --debug
url=http://$addr

# http NAME CURL-ARGS...: the body in $tmp/NAME.body, the headers in $tmp/NAME.head, the
# status in $code.
http() {
        local name=$1; shift
        code=$(curl -s -o "$tmp/$name.body" -D "$tmp/$name.head" -w '%{http_code}' \
                --max-time 300 "$@")
}
error_of() { jq -r .error "$tmp/$1.body" 2>/dev/null; }
is_glb() { # the GLB header's magic, and a first chunk of type JSON
        [ "$(head -c4 "$1")" = glTF ] && [ "$(dd if="$1" bs=1 skip=16 count=4 2>/dev/null)" = JSON ]
}

# ---- segment ----
http seg -H 'Content-Type: model/gltf-binary' --data-binary @"$mesh" "$url/api/mesh/segment"
check "segment a GLB: 200" -- [ "$code" = 200 ]
check "...the answer is a GLB (magic, JSON chunk)" -- is_glb "$tmp/seg.body"
check "...as model/gltf-binary" -- grep -qi '^Content-Type: model/gltf-binary' "$tmp/seg.head"
if command -v gltf_validator >/dev/null; then
        cp "$tmp/seg.body" "$tmp/seg.glb"
        check "...which the Khronos glTF-Validator accepts" -- \
                eval 'gltf_validator "$tmp/seg.glb" 2>&1 | grep -q "Errors: 0"'
else
        echo "gltf_validator (Khronos) is not installed: tests/gltf-validate.py checks the GLB"
        check "...which tests/gltf-validate.py accepts (0 errors)" -- \
                python3 "$P3_SOURCE_ROOT/tests/gltf-validate.py" "$tmp/seg.body"
fi
http segjson -H 'Content-Type: application/octet-stream' --data-binary @"$mesh" \
        "$url/api/mesh/segment?format=glb&output=json&points=500&prompts=4&seed=3&post_process=false&threshold=0.9"
check "segment with ?format= and the options, output=json: the report" -- \
        eval '[ "$code" = 200 ] && jq -e .parts "$tmp/segjson.body" >/dev/null'
http segply -H 'Content-Type: model/gltf-binary' --data-binary @"$mesh" \
        "$url/api/mesh/segment?output=ply&points=500"
check "output=ply: a PLY" -- eval '[ "$code" = 200 ] && [ "$(head -c3 "$tmp/segply.body")" = ply ]'

# ---- predict ----
http pred -H 'Content-Type: model/gltf-binary' --data-binary @"$mesh" \
        "$url/api/mesh/predict?prompt=0,0.5,0&prompt=0.2,-0.3,0.1&points=500"
check "predict with two prompts: 200 and the masks' JSON" -- \
        eval '[ "$code" = 200 ] && [ "$(jq ".prompts | length" "$tmp/pred.body")" = 2 ]'
http pred0 -H 'Content-Type: model/gltf-binary' --data-binary @"$mesh" "$url/api/mesh/predict"
check "predict without prompt=: 400 with a sentence" -- \
        eval '[ "$code" = 400 ] && error_of pred0 | grep -q "prompt=x,y,z"'

# ---- status ----
http status "$url/api/status"
"$P3SAMCTL" status --json >"$tmp/ctl-status.json"
check "status: 200, JSON, the daemon's state" -- \
        eval '[ "$code" = 200 ] && [ "$(jq -r .state "$tmp/status.body")" = ready ]'
check "...the same keys, in the same order, as p3samctl status --json" -- \
        eval '[ "$(jq -c keys_unsorted "$tmp/status.body")" = "$(jq -c keys_unsorted "$tmp/ctl-status.json")" ]'
check "...and the same values where they do not move (version, backend, model)" -- \
        eval '[ "$(jq -c "[.version,.backend,.model_path,.model_synthetic,.bus_name]" "$tmp/status.body")" = "$(jq -c "[.version,.backend,.model_path,.model_synthetic,.bus_name]" "$tmp/ctl-status.json")" ]'

# ---- errors of the request itself ----
http e404 "$url/api/nothing"
check "unknown path: 404 with a JSON sentence" -- \
        eval '[ "$code" = 404 ] && error_of e404 | grep -q "endpoints are"'
http e405 "$url/api/mesh/segment"
check "GET on segment: 405, Allow: POST" -- \
        eval '[ "$code" = 405 ] && grep -qi "^Allow: POST" "$tmp/e405.head"'
http e405b -X POST "$url/api/status"
check "POST on status: 405" -- [ "$code" = 405 ]
http e415 -H 'Content-Type: text/plain' --data-binary @"$mesh" "$url/api/mesh/segment"
check "Content-Type text/plain: 415 with a sentence" -- \
        eval '[ "$code" = 415 ] && error_of e415 | grep -q "not a mesh type"'
http e400 -H 'Content-Type: model/gltf-binary' --data-binary @"$mesh" "$url/api/mesh/segment?points=many"
check "points=many: 400" -- eval '[ "$code" = 400 ] && error_of e400 | grep -q "points=many"'
http e400b -H 'Content-Type: model/gltf-binary' --data-binary @"$mesh" "$url/api/mesh/segment?colour=red"
check "an unknown option: 400" -- eval '[ "$code" = 400 ] && error_of e400b | grep -q colour'
http e400c -H 'Content-Type: model/gltf-binary' --data-binary @"$mesh" "$url/api/mesh/segment?points=1"
echo "   points=1: $code $(error_of e400c)"
check "points=1, refused by p3samd (InvalidArgs): 400 with its sentence" -- \
        eval '[ "$code" = 400 ] && error_of e400c | grep -qi "points"'

# ---- a bad mesh: 422 with the daemon's sentence ----
printf 'glTF but not really a mesh at all' >"$tmp/bad.glb"
http bad -H 'Content-Type: model/gltf-binary' --data-binary @"$tmp/bad.glb" "$url/api/mesh/segment"
"$P3SAMCTL" segment "$tmp/bad.glb" -o "$tmp/bad-out.glb" 2>"$tmp/bad-ctl.err"
echo "   p3samctl: $(cat "$tmp/bad-ctl.err")"
echo "   bad mesh: $code $(error_of bad)"
check "a bad mesh: 422" -- [ "$code" = 422 ]
badjob=$(busctl --address="$A" tree --list org.p3sam.Segmenter1 | grep /job/ | sort -t/ -k6 -n |
        tail -n2 | head -n1) # the gateway's, before p3samctl's
check "...from the job's Result, invalid-input" -- \
        [ "$(prop Result "$badjob" org.p3sam.Segmenter1.Job)" = invalid-input ]
sentence=$(error_of bad)
# p3samctl names the file where the daemon says "mesh"
check "...with the daemon's sentence (as p3samctl prints it)" -- \
        eval '[ -n "$sentence" ] && grep -qF "${sentence#mesh: }" "$tmp/bad-ctl.err"'

# ---- 413 before the body is read ----
port=${addr##*:}
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'POST /api/mesh/segment HTTP/1.1\r\nHost: x\r\nContent-Type: model/gltf-binary\r\nContent-Length: 99999999999\r\n\r\nglTF' >&3
head413=$(timeout 5 head -n1 <&3 | tr -d '\r')
exec 3<&- 3>&-
echo "   $head413"
check "Content-Length over MaxMeshSize with 4 bytes sent: 413 at once" -- \
        eval '[[ "$head413" == "HTTP/1.1 413"* ]]'
head -c $((1024 * 1024 + 1)) /dev/zero >"$tmp/big.bin"
http big -H 'Content-Type: model/stl' --data-binary @"$tmp/big.bin" "$url/api/mesh/segment"
check "a body one byte over p3samd's MaxMeshSize=1M (its property): 413 naming the limit" -- \
        eval '[ "$code" = 413 ] && error_of big | grep -q "1048576 bytes"'
http bigc -H 'Content-Type: model/stl' -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/big.bin" \
        "$url/api/mesh/segment"
check "...and sent chunked, without a Content-Length: 413 too" -- \
        eval '[ "$code" = 413 ] && error_of bigc | grep -q "1048576 bytes"'

# ---- a client that hangs up cancels its job ----
job_count() { busctl --address="$A" tree --list org.p3sam.Segmenter1 | grep -c /job/; }
# new_job COUNT-BEFORE: the newest job (/org/p3sam/Segmenter1/job/N: N is the sixth field) in
# $job, once there are more than COUNT-BEFORE.
new_job() {
        job=
        for _ in $(seq 300); do
                if [ "$(job_count)" -gt "$1" ]; then
                        job=$(busctl --address="$A" tree --list org.p3sam.Segmenter1 | grep /job/ |
                                sort -t/ -k6 -n | tail -n1)
                        return 0
                fi
                sleep 0.1
        done
        return 1
}
jobs_before=$(job_count)
curl -s -o /dev/null --max-time 300 -H 'Content-Type: model/gltf-binary' --data-binary @"$big" \
        "$url/api/mesh/segment?points=20000&prompts=64" &
curl_pid=$!
new_job "$jobs_before"
kill "$curl_pid"; wait "$curl_pid" 2>/dev/null
job_state() { prop State "$job" org.p3sam.Segmenter1.Job; }
for _ in $(seq 300); do [ "$(job_state)" = cancelled ] && break; sleep 0.1; done
echo "   $job after the client left: $(job_state) ($(prop Error "$job" org.p3sam.Segmenter1.Job))"
check "a client that hangs up mid-job: its job is cancelled" -- [ "$(job_state)" = cancelled ]

# ---- a job cancelled in p3samd by someone else: 503 (come back later), not 422 ----
jobs_before=$(job_count)
curl -s -D "$tmp/admin.head" -o "$tmp/admin.body" -w '%{http_code}' --max-time 300 \
        -H 'Content-Type: model/gltf-binary' --data-binary @"$big" \
        "$url/api/mesh/segment?points=20000&prompts=64" >"$tmp/admin.code" &
curl_pid=$!
new_job "$jobs_before"
"$P3SAMCTL" cancel "${job##*/}" >/dev/null 2>&1 # root: an administrator
wait "$curl_pid"
echo "   cancelled by an administrator: $(cat "$tmp/admin.code") $(jq -r .error "$tmp/admin.body" 2>/dev/null)"
check "a job an administrator cancels: 503 with Retry-After, saying so" -- \
        eval '[ "$(cat "$tmp/admin.code")" = 503 ] && grep -qi "^Retry-After: [0-9]" "$tmp/admin.head" &&
              jq -r .error "$tmp/admin.body" | grep -q "cancelled in p3samd"'
check "...its Result is cancelled" -- [ "$(prop Result "$job" org.p3sam.Segmenter1.Job)" = cancelled ]

# ---- 8 at once, past QueuePerUserMax=3 ----
for i in 1 2 3 4 5 6 7 8; do
        curl -s -o "$tmp/c$i.glb" -w '%{http_code}\n' --max-time 300 \
                -H 'Content-Type: model/gltf-binary' --data-binary @"$mesh" \
                "$url/api/mesh/segment?points=500&prompts=4" >"$tmp/c$i.code" &
        cpids+=($!)
done
wait "${cpids[@]}"
all=true
for i in 1 2 3 4 5 6 7 8; do
        [ "$(cat "$tmp/c$i.code")" = 200 ] && is_glb "$tmp/c$i.glb" || { all=false; echo "   request $i: $(cat "$tmp/c$i.code")"; }
done
check "8 requests at once, QueuePerUserMax=3: all 8 answered with a GLB" -- $all
check "...the gateway held the rest in its own queue (it says so)" -- \
        grep -q "queue is full for us" "$tmp/gw.log"

# ---- beyond --max-requests: 503 with Retry-After ----
start_gateway "$tmp/gw2.log" "$P3SAM_HTTPD" --listen 127.0.0.1:0 --max-requests 2
url2=http://$addr
ql0=$(prop QueueLength)
bg=()
for i in 1 2; do
        curl -s -o /dev/null --max-time 300 -H 'Content-Type: model/gltf-binary' \
                --data-binary @"$big" "$url2/api/mesh/segment?points=20000&prompts=64" &
        bg+=($!)
done
for _ in $(seq 100); do [ "$(prop QueueLength)" -ge $((ql0 + 2)) ] && break; sleep 0.1; done
http busy "$url2/api/status"
check "a third request with --max-requests 2 and two in flight: 503" -- [ "$code" = 503 ]
check "...with Retry-After and a sentence" -- \
        eval 'grep -qi "^Retry-After: [0-9]" "$tmp/busy.head" && error_of busy | grep -q "2 requests at once"'
kill "${bg[@]}" 2>/dev/null; wait "${bg[@]}" 2>/dev/null
check "...and the two jobs of clients that left are cancelled (the queue empties)" -- \
        wait_prop QueueLength 0 30

# ---- clear_gpu_memory ----
http clear -X POST "$url/api/mesh/clear_gpu_memory"
check "clear_gpu_memory (the gateway runs as root): 200 {\"ok\": true}" -- \
        eval '[ "$code" = 200 ] && [ "$(jq -c . "$tmp/clear.body")" = "{\"ok\":true}" ]'
check "...and the model is offloaded" -- wait_prop State offloaded 10
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
        # no polkit on the private bus: p3samd refuses the manage permission to nobody
        start_gateway "$tmp/gw3.log" setpriv --reuid=nobody --regid=nogroup --clear-groups \
                "$P3SAM_HTTPD" --listen 127.0.0.1:0
        http deny -X POST "http://$addr/api/mesh/clear_gpu_memory"
        echo "   as nobody: $code $(error_of deny)"
        check "clear_gpu_memory through a gateway whose user may not manage: 403 with p3samd's sentence" -- \
                eval '[ "$code" = 403 ] && [ -n "$(error_of deny)" ]'
else
        echo "SKIP: the 403 of clear_gpu_memory needs root and setpriv (a gateway run as nobody)"
fi

# ---- p3samd gone: 502 ----
start_bus "$tmp/address2"
start_gateway "$tmp/gw4.log" env DBUS_SYSTEM_BUS_ADDRESS="$bus" "$P3SAM_HTTPD" --listen 127.0.0.1:0
http nodaemon "http://$addr/api/status"
check "no p3samd on the bus: 502 with a sentence" -- \
        eval '[ "$code" = 502 ] && error_of nodaemon | grep -q "not running"'

# ---- socket activation and the idle exit ----
if command -v systemd-socket-activate >/dev/null; then
        sport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        # (it passes on only the environment it is told to)
        systemd-socket-activate -E DBUS_SYSTEM_BUS_ADDRESS -l "127.0.0.1:$sport" "$P3SAM_HTTPD" --idle-exit 2s \
                >"$tmp/sa.log" 2>&1 &
        sa_pid=$!
        pids+=($sa_pid)
        for _ in $(seq 50); do grep -q Listening "$tmp/sa.log" && break; sleep 0.1; done
        http sa "http://127.0.0.1:$sport/api/status"
        echo "   socket-activated: $code $(head -c 80 "$tmp/sa.body")"
        check "socket activation: the gateway serves on the socket it was given" -- \
                eval '[ "$code" = 200 ] && [ "$(jq -r .state "$tmp/sa.body")" != null ]'
        exited=false
        for _ in $(seq 100); do kill -0 "$sa_pid" 2>/dev/null || { exited=true; break; }; sleep 0.1; done
        check "...and exits after --idle-exit 2s without requests" -- $exited
        check "...saying why" -- grep -q "Idle for a while" "$tmp/sa.log"
else
        echo "SKIP: systemd-socket-activate is not installed: socket activation is not tested"
fi

"$P3SAM_HTTPD" --listen 127.0.0.1:0 --max-requests 0 2>"$tmp/usage.err"
rc=$?
check "a bad option: exit 2 with a sentence" -- \
        eval '[ $rc -eq 2 ] && grep -q "max-requests takes a number" "$tmp/usage.err"'
check "the gateway logged no crash or assertion" -- \
        eval '! grep -qiE "assert|sanitizer|segmentation" "$tmp"/gw*.log'

[ "$fails" -eq 0 ]
