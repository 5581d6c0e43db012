#!/bin/bash
# p3samctl fetch-model against tests/http-test-server on 127.0.0.1 (nothing else is reached):
# a full download of synthetic tiny weights, --sha256, a resume after a cut connection, a
# server that ignores Range, corrupt and truncated files, a model of the wrong shape, an
# unwritable destination, an unreachable URL, and the reload: no bus, no daemon, a real
# p3samd on a private bus (as root: reloaded; as nobody: denied, file kept).
set -u
: "${P3SAMCTL:?}" "${P3SAM_RUN:?}" "${P3_HTTP_SERVER:?}" "${P3_TEST_DATA:?}"
config=$P3_TEST_DATA/tiny_config.json

. "$(dirname "$0")/lib-test.sh" # (its $tmp is 0755: nobody reaches the server's files)

# Loopback only: no proxy, and no real bus (a reload must never reach the host's p3samd).
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy DBUS_SESSION_BUS_ADDRESS
export no_proxy='*'
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$tmp/no-bus

# ---- weights: good (F32 and F16), with a NaN, with an Inf (F16), truncated ----
srv=$tmp/srv
mkdir -p "$srv" "$tmp/state"
"$P3SAM_RUN" synth --config "$config" --out "$srv/good.safetensors" >/dev/null || exit 1
"$P3SAM_RUN" synth --config "$config" --out "$srv/half.safetensors" --dtype f16 >/dev/null || exit 1
good_sha=$(sha256sum "$srv/good.safetensors" | cut -d' ' -f1)
size=$(stat -c %s "$srv/good.safetensors")

# poke FILE N BYTES: write BYTES (printf escapes) into element 3 of the file's Nth tensor;
# prints the tensor's name.
poke() {
        local f=$1 n=$2 bytes=$3 h entry name start width
        h=$(od -An -t u8 -N8 "$f" | tr -d ' ')
        entry=$(tail -c +9 "$f" | head -c "$h" |
                grep -o '"[^"]*":{"dtype":"[A-Z0-9]*","shape":\[[0-9,]*\],"data_offsets":\[[0-9]*,' |
                sed -n "${n}p")
        name=$(sed 's/^"\([^"]*\)".*/\1/' <<<"$entry")
        start=$(sed 's/.*"data_offsets":\[\([0-9]*\),/\1/' <<<"$entry")
        width=$([[ $entry == *'"F16"'* ]] && echo 2 || echo 4)
        printf "$bytes" | dd of="$f" bs=1 seek=$((8 + h + start + 3 * width)) conv=notrunc status=none
        echo "$name"
}
cp "$srv/good.safetensors" "$srv/nan.safetensors"
nan_tensor=$(poke "$srv/nan.safetensors" 100 '\x00\x00\xc0\x7f')
cp "$srv/half.safetensors" "$srv/inf.safetensors"
inf_tensor=$(poke "$srv/inf.safetensors" 150 '\x00\x7c')
head -c $((size / 2)) "$srv/good.safetensors" >"$srv/short.safetensors"
[ -n "$nan_tensor" ] && [ -n "$inf_tensor" ] || { echo "cannot find tensors to corrupt"; exit 1; }

# ---- helpers ----
# serve [server options]: a fresh server for one scenario; sets url_base, log in $tmp/server.log.
serve() {
        rm -f "$tmp/port"
        "$P3_HTTP_SERVER" --dir "$srv" --log "$tmp/server.log" --timeout 120 "$@" >"$tmp/port" &
        pids+=($!)
        for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
        url_base=http://127.0.0.1:$(head -n1 "$tmp/port")
}
# fetch [options]: p3samctl fetch-model with the tiny config; $rc, $tmp/out, $tmp/err.
fetch() {
        "$P3SAMCTL" fetch-model --config "$config" "$@" >"$tmp/out" 2>"$tmp/err"
        rc=$?
}
dest=$tmp/state/p3sam.safetensors
old=$tmp/old-model
echo "the old model, which no bad download may replace" >"$old"
reset_dest() { rm -f "$dest" "$dest.part"; cp "$old" "$dest"; }
unchanged() { cmp -s "$old" "$dest"; }
# The error is one line, the last one (progress and notes may come before it).
one_line() { [ "$(grep -c '^p3samctl: ' "$tmp/err")" -eq 1 ] && tail -n1 "$tmp/err" | grep -q '^p3samctl: '; }
show() { echo "   $(tail -n1 "$tmp/err")"; }

# ---- a full download, no bus at all ----
serve --max-requests 1
fetch --url "$url_base/good.safetensors" --dest "$dest"
check "a full download succeeds" -- [ "$rc" -eq 0 ]
check "the installed file is byte-identical" -- cmp -s "$srv/good.safetensors" "$dest"
check "the printed SHA-256 equals sha256sum's" -- grep -qx "SHA-256: $good_sha" "$tmp/out"
check "no bus: the daemon will use the model when it starts" -- \
        grep -q "not running; it will use the new model when it starts" "$tmp/out"
check "no .part is left" -- [ ! -e "$dest.part" ]
check "progress lines on a pipe" -- grep -q "^downloaded 15.4 MiB" "$tmp/err"
check "the installed file is mode 0644" -- [ "$(stat -c %a "$dest")" = 644 ]

# ---- progress on a terminal (script gives it one) ----
if command -v script >/dev/null; then
        serve --max-requests 1
        script -qec "$P3SAMCTL fetch-model --config $config --url $url_base/good.safetensors \
                --dest $dest --no-reload" /dev/null >"$tmp/tty" 2>&1
        check "on a terminal: one redrawn line with percent, MiB done/total and rate" -- \
                grep -q $'\r100%  15.4/15.4 MiB  [0-9.]* MiB/s' "$tmp/tty"
else
        echo "skip: progress on a terminal (no script)"
fi

# ---- --sha256 ----
upper=$(tr a-f A-F <<<"$good_sha")
serve --max-requests 1
fetch --url "$url_base/good.safetensors" --dest "$dest" --sha256 "$upper" --no-reload
check "--sha256 right (upper case) → ok" -- [ "$rc" -eq 0 ]
check "--no-reload says when the daemon will use it" -- \
        grep -q "will use the new model when it starts" "$tmp/out"
serve --max-requests 1
reset_dest
fetch --url "$url_base/good.safetensors" --dest "$dest" --sha256 "$(tr 0-9a-f 1-9a-f0 <<<"$good_sha")"
check "--sha256 wrong → exit 1" -- [ "$rc" -eq 1 ]
check "--sha256 wrong: one sentence" -- one_line
check "--sha256 wrong: the old model is untouched" -- unchanged
check "--sha256 wrong: the .part is removed" -- [ ! -e "$dest.part" ]
show
fetch --sha256 xyz --dest "$dest"
check "--sha256 xyz is a usage error" -- [ "$rc" -eq 2 ]
fetch --url ftp://127.0.0.1/x --dest "$dest"
check "an ftp URL is a usage error" -- [ "$rc" -eq 2 ]
fetch --bogus
check "an unknown option is a usage error" -- [ "$rc" -eq 2 ]

# ---- resume after a cut connection ----
reset_dest
serve --max-requests 1 --cut-after 102400
fetch --url "$url_base/good.safetensors" --dest "$dest" --no-reload
check "a cut connection → exit 1" -- [ "$rc" -eq 1 ]
check "a cut connection: one sentence naming the host" -- \
        grep -q "^p3samctl: Cannot download from 127.0.0.1: " "$tmp/err"
show
check "a cut connection: the old model is untouched" -- unchanged
part_size=$(stat -c %s "$dest.part" 2>/dev/null || echo 0)
check "a cut connection leaves 100 KiB in the .part" -- [ "$part_size" -eq 102400 ]
: >"$tmp/server.log"
serve --max-requests 1
fetch --url "$url_base/good.safetensors" --dest "$dest" --no-reload
check "the second run succeeds" -- [ "$rc" -eq 0 ]
check "the second run asks for the rest (Range from the .part's size)" -- \
        grep -q "range=bytes=$part_size- status=206" "$tmp/server.log"
check "the resumed file is byte-identical" -- cmp -s "$srv/good.safetensors" "$dest"
check "the resumed file's SHA-256 is right" -- grep -qx "SHA-256: $good_sha" "$tmp/out"

# ---- a server that ignores Range ----
reset_dest
head -c 300000 "$srv/good.safetensors" >"$dest.part"
: >"$tmp/server.log"
serve --max-requests 2 --ignore-range
fetch --url "$url_base/good.safetensors" --dest "$dest" --no-reload
check "a server ignoring Range: the download still succeeds" -- [ "$rc" -eq 0 ]
check "a server ignoring Range: it starts over" -- grep -q "starting over" "$tmp/err"
check "a server ignoring Range: byte-identical" -- cmp -s "$srv/good.safetensors" "$dest"
check "a server ignoring Range: it was asked for a range first" -- \
        grep -q "range=bytes=300000- status=200" "$tmp/server.log"

# ---- a .part that is already complete: 416 ----
reset_dest
cp "$srv/good.safetensors" "$dest.part"
: >"$tmp/server.log"
serve --max-requests 1
fetch --url "$url_base/good.safetensors" --dest "$dest" --no-reload
check "a complete .part (416) is checked and installed" -- eval '[ "$rc" -eq 0 ] &&
        cmp -s "$srv/good.safetensors" "$dest" && grep -q "status=416" "$tmp/server.log"'

reset_dest
cp "$srv/good.safetensors" "$dest.part"
serve --max-requests 1 --ignore-range
fetch --url "$url_base/good.safetensors" --dest "$dest" --no-reload
check "a complete .part, a server ignoring Range (200 of the same size): installed" -- \
        eval '[ "$rc" -eq 0 ] && cmp -s "$srv/good.safetensors" "$dest" &&
        grep -q "already complete" "$tmp/out"'

# ---- corrupt content: never installed, .part removed ----
bad_case() { # bad_case FILE DESCRIPTION PATTERN [fetch options]
        local file=$1 what=$2 pattern=$3
        shift 3
        reset_dest
        serve --max-requests 1
        fetch --url "$url_base/$file" --dest "$dest" --no-reload "$@"
        check "$what → exit 1" -- [ "$rc" -eq 1 ]
        check "$what: one sentence saying why" -- one_line
        check "$what: the message names the problem" -- grep -q "$pattern" "$tmp/err"
        check "$what: the old model is untouched" -- unchanged
        check "$what: the .part is removed" -- [ ! -e "$dest.part" ]
        show
}
bad_case nan.safetensors "a NaN in a tensor" "tensor \"$nan_tensor\" holds NaN"
bad_case inf.safetensors "an Inf in an F16 tensor" "tensor \"$inf_tensor\" holds Inf"
bad_case short.safetensors "a truncated file" "Rejected the download"
# The tiny weights against the real config: right format, wrong model.
reset_dest
serve --max-requests 1
"$P3SAMCTL" fetch-model --url "$url_base/good.safetensors" --dest "$dest" --no-reload \
        >"$tmp/out" 2>"$tmp/err"
rc=$?
check "weights of another model (real config) → exit 1" -- [ "$rc" -eq 1 ]
check "weights of another model: the message names a tensor" -- grep -q 'tensor "' "$tmp/err"
check "weights of another model: the old model is untouched" -- unchanged
show

# ---- two fetches at once ----
reset_dest
touch "$dest.part"
flock -o "$dest.part" sleep 5 &
pids+=($!)
sleep 0.3
fetch --url "$url_base/good.safetensors" --dest "$dest" --no-reload
check "a second fetch into the same .part is refused" -- eval '[ "$rc" -eq 1 ] &&
        grep -q "Another fetch-model" "$tmp/err"'
show
kill "${pids[-1]}" 2>/dev/null

# ---- permissions ----
mkdir -p "$tmp/locked"
if [ "$(id -u)" -eq 0 ] && setpriv --reuid=nobody --regid=nogroup --clear-groups true 2>/dev/null; then
        setpriv --reuid=nobody --regid=nogroup --clear-groups "$P3SAMCTL" fetch-model \
                --config "$config" --url "$url_base/good.safetensors" \
                --dest "$tmp/locked/p3sam.safetensors" >"$tmp/out" 2>"$tmp/err"
        rc=$?
        who="as nobody"
else
        chmod 555 "$tmp/locked"
        fetch --url "$url_base/good.safetensors" --dest "$tmp/locked/p3sam.safetensors"
        who="as $(id -un)"
fi
check "an unwritable destination directory ($who) → exit 4" -- [ "$rc" -eq 4 ]
check "an unwritable destination: says to run it as root" -- grep -q "sudo p3samctl fetch-model" "$tmp/err"
check "an unwritable destination: one sentence" -- one_line
show
fetch --url "$url_base/good.safetensors" --dest "$tmp/nowhere/p3sam.safetensors"
check "a missing destination directory → exit 1" -- eval '[ "$rc" -eq 1 ] && one_line'

# ---- an unreachable URL ----
reset_dest
t0=$(date +%s)
fetch --url http://127.0.0.1:1/p3sam.safetensors --dest "$dest"
t1=$(date +%s)
check "an unreachable URL → exit 1" -- [ "$rc" -eq 1 ]
check "an unreachable URL: one sentence naming the host" -- eval 'one_line &&
        grep -q "^p3samctl: Cannot download from 127.0.0.1: " "$tmp/err"'
check "an unreachable URL fails quickly" -- [ $((t1 - t0)) -lt 10 ]
check "an unreachable URL: the old model is untouched, no .part left" -- eval 'unchanged &&
        [ ! -e "$dest.part" ]'
show

# ---- the reload, on a private bus ----
if ! command -v dbus-daemon >/dev/null || [ -z "${P3SAMD:-}" ] || [ -z "${P3_SOURCE_ROOT:-}" ]; then
        echo "skip: the reload (no dbus-daemon or p3samd)"
else
        start_bus "$tmp/address"
        export DBUS_SYSTEM_BUS_ADDRESS=$bus

        serve --max-requests 4
        fetch --url "$url_base/good.safetensors" --dest "$dest"
        check "a bus without p3samd: not an error, it will use the model when it starts" -- \
                eval '[ "$rc" -eq 0 ] && grep -q "not running; it will use the new model" "$tmp/out"'

        cat >"$tmp/p3samd.conf" <<EOF
[Model]
Path=$dest
Config=$config
Backend=cpu
Threads=1
EOF
        "$P3SAMD" --config "$tmp/p3samd.conf" --keep-user >"$tmp/daemon.log" 2>&1 &
        pids+=($!)
        for _ in $(seq 100); do
                busctl --address="$DBUS_SYSTEM_BUS_ADDRESS" status org.p3sam.Segmenter1 \
                        >/dev/null 2>&1 && break
                sleep 0.1
        done
        fetch --url "$url_base/good.safetensors" --dest "$dest"
        check "with p3samd running: it reloads the model" -- \
                eval '[ "$rc" -eq 0 ] && grep -q "p3samd reloaded the model" "$tmp/out"'
        [ "$rc" -eq 0 ] || { cat "$tmp/out" "$tmp/err"; tail -n5 "$tmp/daemon.log"; }

        mkdir -p "$tmp/elsewhere"
        fetch --url "$url_base/good.safetensors" --dest "$tmp/elsewhere/p3sam.safetensors"
        check "a --dest that p3samd does not serve: reloaded, with a note saying so" -- \
                eval '[ "$rc" -eq 0 ] && grep -q "^Note: p3samd serves $dest, not" "$tmp/out"'

        # nobody may write this directory but not reload the daemon: exit 1, file kept.
        if [ "$(id -u)" -eq 0 ]; then
                mkdir -p "$tmp/pub" && chmod 777 "$tmp/pub"
                setpriv --reuid=nobody --regid=nogroup --clear-groups "$P3SAMCTL" fetch-model \
                        --config "$config" --url "$url_base/good.safetensors" \
                        --dest "$tmp/pub/p3sam.safetensors" >"$tmp/out" 2>"$tmp/err"
                rc=$?
                check "a reload denied → exit 1" -- [ "$rc" -eq 1 ]
                check "a reload denied: says so in one sentence" -- \
                        eval 'one_line && grep -q "did not reload" "$tmp/err"'
                check "a reload denied: the new file is kept" -- \
                        cmp -s "$srv/good.safetensors" "$tmp/pub/p3sam.safetensors"
                show
        fi
fi

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
