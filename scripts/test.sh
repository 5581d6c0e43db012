#!/bin/bash
# Build p3samd and run its test suite; the last line is "N passed, N failed, N skipped".
# Usage: scripts/test.sh [BUILD_DIR] [extra meson setup options...]
set -uo pipefail

cd "$(dirname "$0")/.."
build=${1:-build}
shift || true

if [ ! -f "$build/build.ninja" ]; then
        # --prefix=/usr: installed where a system looks (the real-systemd test installs it
        # into a container); nobody installs from this build directory otherwise.
        meson setup "$build" -Dwerror=true --prefix=/usr "$@" || exit 1
fi
ninja -C "$build" || exit 1

meson test -C "$build" --print-errorlogs --num-processes "$(nproc)"
status=$?

# Count the results of the run that just finished (meson's own closing table uses other words).
log="$build/meson-logs/testlog.json"
passed=$(grep -c '"result": "OK"' "$log" || true)
failed=$(grep -cE '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$log" || true)
skipped=$(grep -c '"result": "SKIP"' "$log" || true)
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
exit $status
