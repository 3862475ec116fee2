#!/bin/sh
# Sums the "SUITE: N passed, N failed" lines that each test runner appended
# to the summary file and prints the grand total as the last line.  A runner
# that crashed before writing its line counts as one failure.
f="$1"
[ -f "$f" ] || { echo "0 passed, 1 failed"; exit 1; }
cat "$f"
awk '/passed,.*failed/ {
       for (i = 1; i <= NF; i++) {
         if ($(i) ~ /^passed,?$/) p += $(i-1);
         if ($(i) ~ /^failed,?$/) f += $(i-1);
       }
     }
     END { printf "%d passed, %d failed\n", p, f; exit (f > 0) }' "$f"
