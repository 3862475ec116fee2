#!/bin/sh
# Runs the soak test (tests/soak/run.lisp) under a watchdog, keeps its
# output in $SOAK_LOG, and appends its last line, "soak: N passed, N
# failed", to $SUMMARY when that is set.  A run that crashed or was killed
# before that line counts as one failure.  soak.mk sets the environment:
# the SOAK_* parameters (tests/soak/soak.lisp), ECL, SOAK_LOG, SUMMARY.
set -u
: "${ECL:=ecl}" "${SOAK_LOG:=build/soak/soak.log}" "${SOAK_SECONDS:=600}"
: "${SOAK_GRACE:=600}" "${SUMMARY:=}"
mkdir -p "$(dirname "$SOAK_LOG")"
# The watchdog: the time budget (checked between rounds) plus one more
# round's worth of grace.
limit=$((SOAK_SECONDS + SOAK_GRACE))
status=$SOAK_LOG.status
rm -f "$status"
{ timeout -k 10 "$limit" "$ECL" --norc --shell tests/soak/run.lisp 2>&1
  echo $? > "$status"; } | grep --line-buffered -v '^;;;' | tee "$SOAK_LOG"
rc=$(cat "$status" 2>/dev/null || echo 1)
line=$(grep '^soak: [0-9]* passed, [0-9]* failed$' "$SOAK_LOG" | tail -n 1)
if [ -z "$line" ]; then
	line="soak: 0 passed, 1 failed"
	echo "soak: the run ended before its summary (exit status $rc; 124 or 137: killed after $limit s); log in $SOAK_LOG"
	echo "$line"
elif [ "$rc" -ne 0 ] && [ "${line% 0 failed}" != "$line" ]; then
	# Every check passed, then ECL failed on the way out.
	line="soak: ${line#soak: }"; line="${line%, 0 failed}, 1 failed"
	echo "soak: ECL exited with status $rc after the summary"
	echo "$line"
fi
[ -z "$SUMMARY" ] || echo "$line" >> "$SUMMARY"
case $line in
*" 0 failed") exit 0 ;;
*) exit 1 ;;
esac
