#!/bin/sh
# nvcc-ptxas.sh NVCC LOG ARGS...: run nvcc, keeping its -Xptxas -v report (stderr) in LOG as
# well as on the build's own output.
nvcc=$1 log=$2
shift 2
"$nvcc" "$@" 2>"$log"
rc=$?
cat "$log" >&2
exit $rc
