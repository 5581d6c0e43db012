#!/bin/bash
# valgrind memcheck over one whole segmentation (tests/test-valgrind.sh) on a build of
# p3sam-run without oneDNN, whose JIT kernels valgrind runs far too slowly; the last line is
# "N passed, N failed, N skipped" (one test).
# Usage: scripts/test-valgrind.sh [BUILD_DIR]   (default build-valgrind)
set -uo pipefail

cd "$(dirname "$0")/.."
build=${1:-build-valgrind}
if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" -Ddnnl=disabled -Dcuda=disabled ||
                { echo "0 passed, 1 failed, 0 skipped"; exit 1; }
fi
ninja -C "$build" daemon/tools/p3sam-run || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }

P3SAM_RUN=$(cd "$build" && pwd)/daemon/tools/p3sam-run P3_TEST_DATA=$PWD/tests/data tests/test-valgrind.sh
rc=$?
case $rc in
0) echo "1 passed, 0 failed, 0 skipped" ;;
77) echo "0 passed, 0 failed, 1 skipped"; rc=0 ;;
*) echo "0 passed, 1 failed, 0 skipped" ;;
esac
exit $rc
