#!/bin/bash
# Build p3samd with clang, AddressSanitizer and UndefinedBehaviorSanitizer (plus the fuzz
# targets, which need the same clang tree) and run the whole test suite under them; the last
# line is "N passed, N failed, N skipped", as scripts/test.sh prints it.
# Usage: scripts/test-sanitize.sh [BUILD_DIR] [extra meson setup options...]
#   BUILD_DIR defaults to build-sanitize. Any memory error, undefined behaviour or leak in a
#   program the suite runs (tests, p3samd, p3samctl, p3sam-run, helpers) fails that test.
#   Tests that cannot run under the sanitizers skip and say why (they check P3_SANITIZE).
set -uo pipefail

cd "$(dirname "$0")/.."
build=${1:-build-sanitize}
shift || true

# -fno-sanitize-recover=all: the first undefined behaviour stops the program (UBSan only
# prints and goes on otherwise). Frame pointers: LeakSanitizer's fast unwinder follows them,
# and a leak's stack is what its suppression is matched against. The CUDA host code is
# covered by the gcc build of scripts/test.sh (nvcc does not take these flags).
export CC=${CC:-clang} CXX=${CXX:-clang++}
if [ ! -f "$build/build.ninja" ]; then
        set -- -Db_sanitize=address,undefined -Dfuzz=true -Dcuda=disabled \
                "-Dc_args=-fno-sanitize-recover=all -fno-omit-frame-pointer" "$@"
fi

# Every report fails: ASan and UBSan stop the program (exit 1), LeakSanitizer's exit status
# (23) fails it at its end; the reports go to files in $build/sanitizer-reports (one per
# process, named after the program), which scripts/test.sh prints and counts as one more test,
# so a report counts even from a program whose exit status no test looks at (a daemon stopped
# at the end of its test). The leak suppressions name only libassimp (fuzz/lsan-assimp.supp,
# which needs the slow unwinder on malloc to see assimp's frames).
mkdir -p "$build" || exit 1
export P3_SANITIZE=1 P3_SANITIZE_REPORTS=$(cd "$build" && pwd)/sanitizer-reports
logs=log_path=$P3_SANITIZE_REPORTS/report:log_exe_name=1
asan=halt_on_error=1:detect_leaks=1:check_initialization_order=1:strict_init_order=1
asan=$asan:fast_unwind_on_malloc=0:print_summary=1
export ASAN_OPTIONS=$logs:$asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}
ubsan=halt_on_error=1:print_stacktrace=1:print_summary=1
export UBSAN_OPTIONS=$logs:$ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}
lsan=suppressions=$PWD/fuzz/lsan-assimp.supp:print_suppressions=0
export LSAN_OPTIONS=$lsan${LSAN_OPTIONS:+:$LSAN_OPTIONS}

exec scripts/test.sh "$build" "$@"
