#!/bin/sh
# check-ptxas.sh LOG...: print the -Xptxas -v report of the attention and heads kernels (their
# registers, stack and spills per architecture) and fail when any kernel spills registers.
status=0
for log in "$@"; do
        echo "== $(basename "$log" .ptxas.log)"
        grep -E 'Compiling entry|registers|spill' "$log" | sed 's/^ptxas info *: //'
        if grep -E '[1-9][0-9]* bytes spill (stores|loads)' "$log" >/dev/null; then
                echo "FAIL: $(basename "$log"): register spills"
                status=1
        fi
done
exit $status
