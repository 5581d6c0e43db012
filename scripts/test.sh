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

# scripts/test-sanitize.sh has the sanitizers write their reports as files into this directory
# (log_path), so that a report also counts from a program whose exit status no test looks at
# (a daemon stopped when its test ends): any report fails one more test, "sanitizer-reports".
reports=${P3_SANITIZE_REPORTS:-}
if [ -n "$reports" ]; then
        rm -rf "$reports" && mkdir -p "$reports" && chmod 1777 "$reports" || exit 1
fi

meson test -C "$build" --print-errorlogs --num-processes "$(nproc)"
status=$?

# Count the results of the run that just finished (meson's own closing table uses other words).
log="$build/meson-logs/testlog.json"
passed=$(grep -c '"result": "OK"' "$log" || true)
failed=$(grep -cE '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$log" || true)
skipped=$(grep -c '"result": "SKIP"' "$log" || true)
if [ -n "$reports" ]; then
        if [ -n "$(ls -A "$reports")" ]; then
                for f in "$reports"/*; do
                        echo "=== sanitizer report $f"
                        head -n 80 "$f"
                done
                echo "sanitizer-reports: FAIL ($(ls "$reports" | wc -l) reports in $reports)"
                failed=$((failed + 1)) status=1
        else
                echo "sanitizer-reports: OK (no report from any program the suite ran)"
                passed=$((passed + 1))
        fi
fi
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
exit $status
