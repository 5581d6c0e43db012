# Shared by the shell tests (source it): a private temporary directory cleaned up at exit with
# every background process registered in $pids, the ok/fail/check reporting, and a private
# dbus-daemon (tests/dbus-test.conf).

tmp=$(mktemp -d)
chmod 755 "$tmp" # tests also run clients as nobody
pids=()
fails=0

# A test may define cleanup_extra() to stop more before the directory goes.
cleanup() {
        declare -F cleanup_extra >/dev/null && cleanup_extra
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
        wait 2>/dev/null
        rm -rf "$tmp"
}
trap cleanup EXIT

ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
check() { # check DESCRIPTION -- command...
        local what=$1
        shift 2
        if "$@"; then ok "$what"; else fail "$what"; fi
}

need_dbus() {
        command -v dbus-daemon >/dev/null && command -v busctl >/dev/null ||
                { echo "SKIP: dbus-daemon or busctl is not installed"; exit 77; }
}

start_bus() { # start_bus FILE: a private dbus-daemon; its address in FILE and in $bus
        dbus-daemon --config-file="${P3_SOURCE_ROOT:?}/tests/dbus-test.conf" --nofork \
                --print-address=3 3>"$1" >/dev/null 2>&1 &
        pids+=($!)
        for _ in $(seq 50); do [ -s "$1" ] && break; sleep 0.1; done
        bus=$(head -n1 "$1")
}

# p3samd's properties on the private bus $A.
prop() { # prop NAME [PATH IFACE] → the value alone
        local path=${2:-/org/p3sam/Segmenter1} iface=${3:-org.p3sam.Segmenter1}
        busctl --address="$A" --timeout=10 get-property org.p3sam.Segmenter1 "$path" "$iface" "$1" |
                cut -d' ' -f2- | tr -d '"'
}

wait_prop() { # wait_prop NAME VALUE SECONDS
        for _ in $(seq $(($3 * 10))); do
                [ "$(prop "$1" 2>/dev/null)" = "$2" ] && return 0
                sleep 0.1
        done
        return 1
}

# start_daemon BUS_NAME LOG: p3samd with $tmp/p3samd.conf owning BUS_NAME on the private bus
# ($A, else $bus), its output appended to LOG; returns once it serves (State "ready"), or
# prints the log and ends the test.
start_daemon() {
        "$P3SAMD" --config "$tmp/p3samd.conf" --keep-user --bus-name "$1" >>"$2" 2>&1 &
        pids+=($!)
        for _ in $(seq 200); do
                [ "$(busctl --address="${A:-$bus}" get-property "$1" /org/p3sam/Segmenter1 \
                        org.p3sam.Segmenter1 State 2>/dev/null)" = 's "ready"' ] && return 0
                sleep 0.1
        done
        echo "p3samd ($1) did not come up:"; cat "$2"; exit 1
}

# tiny_model_conf CONF: the tiny synthetic model in $tmp/w.safetensors and a p3samd.conf at
# CONF whose [Model] section serves it on the CPU; the caller appends its own sections.
tiny_model_conf() {
        "$P3SAM_RUN" synth --config "$P3_TEST_DATA/tiny_config.json" \
                --out "$tmp/w.safetensors" >/dev/null || exit 1
        printf '[Model]\nPath=%s\nConfig=%s\nBackend=cpu\nThreads=2\n' \
                "$tmp/w.safetensors" "$P3_TEST_DATA/tiny_config.json" >"$1"
}
