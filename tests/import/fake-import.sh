#!/bin/bash
# A stand-in for p3sam-import that p3samd spawns like the real one (P3SAM_IMPORT_HELPER), for
# test-import-helper.sh: each job, it does what the file $P3_FAKE_IMPORT_MODE says, and the
# daemon must turn each misbehaviour into one failed job with a sentence.
#   good        the real helper ($P3_REAL_IMPORT), unchanged
#   crash       dies of SIGSEGV before answering
#   hang        never answers (ImportTimeoutSec= must stop it)
#   garbage     text instead of an answer
#   truncated   the real answer cut after 1000 bytes
#   trailing    the real answer and then more bytes
#   exit3       the real answer, then exit status 3
#   over-limits a header claiming 2^40 triangles
#   bad-index   a well-formed one-triangle answer whose triangle uses vertex 7 of 3
#   bad-source  a one-triangle answer whose triangle names source 5 of 1
#   sandbox     the real helper's sandbox self-check making a forbidden call (SIGSYS)
set -u
mode=$(cat "${P3_FAKE_IMPORT_MODE:?}")
real=${P3_REAL_IMPORT:?}

le() { # le BYTES VALUE: VALUE as a little-endian integer of BYTES bytes
        local i v=$2
        for ((i = 0; i < $1; i++)); do
                printf "\\x$(printf %02x $((v & 255)))"
                v=$((v >> 8))
        done
}
zeros() { head -c "$1" /dev/zero; }
header() { # header NV NF N_SRC FLAGS NAMES_BYTES: a mesh answer's header (mesh-wire.h)
        printf 'P3MI'; le 4 1; le 4 0; le 4 0; le 8 "$1"; le 8 "$2"; le 4 "$3"; le 4 "$4"
        le 8 "$5"
}

case $mode in
good) exec "$real" "$@" ;;
crash) kill -SEGV $$ ;;
hang) exec sleep 1000 ;;
garbage) for _ in 1 2 3 4; do echo "this is not an answer, only text"; done ;;
truncated) "$real" "$@" | head -c 1000 ;;
trailing) "$real" "$@"; printf 'more' ;;
exit3) "$real" "$@"; exit 3 ;;
over-limits) header 3 $((1 << 40)) 0 0 0; zeros 72; le 4 0; le 4 1; le 4 2; printf P3ME ;;
bad-index) header 3 1 0 0 0; zeros 72; le 4 0; le 4 1; le 4 7; printf P3ME ;;
bad-source)
        header 3 1 1 1 5; zeros 72; le 4 0; le 4 1; le 4 2; le 4 5; le 4 1; printf a
        printf P3ME ;;
sandbox) exec "$real" --check-sandbox socket ;;
*) echo "fake-import.sh: unknown mode $mode" >&2; exit 99 ;;
esac
