#!/bin/sh
# Runs the decoder's fuzz target (built by fuzz.mk) and prints one summary
# line last; exits 1 on a crash, a leak, a timeout (10 s per input) or
# running out of memory.  From the repository root:
#
#   sh tests/fuzz/run.sh fuzz SECONDS  fuzz for SECONDS, starting from the
#                                      seeds, the regressions and what past
#                                      runs found ($FUZZ_DIR/corpus, where new
#                                      inputs go; the committed files are
#                                      only read)
#   sh tests/fuzz/run.sh regress       each seed and regression input once;
#                                      every seed must decode
#
# fuzz.mk sets FUZZ_BIN, FUZZ_DIR and FUZZ_RSS_MB.  libFuzzer runs in this
# process (no -jobs, -workers): one worker, as the machine is shared.  The
# input that failed is saved under $FUZZ_DIR/artifacts/; what to do with it:
# tests/fuzz/README.md.
set -u
: "${FUZZ_BIN:?}" "${FUZZ_DIR:?}" "${FUZZ_RSS_MB:=2048}"
mode=${1:-}
seconds=${2:-60}
seeds=$(find tests/fuzz/corpus -type f | sort)
regressions=$(find tests/fuzz/regressions -type f | sort)
log=$FUZZ_DIR/$mode.log
mkdir -p "$FUZZ_DIR/artifacts"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# libFuzzer with the options of every run; its output goes to $log.
fuzz() {
	"$FUZZ_BIN" -timeout=10 -rss_limit_mb="$FUZZ_RSS_MB" \
		-artifact_prefix="$FUZZ_DIR/artifacts/" "$@" >>"$log" 2>&1
}

# Prints why the run failed and the summary line $1, and exits 1.
failed() {
	echo "--- the end of $log:"
	tail -n 40 "$log"
	why=$(sed -n 's/^fuzz_decode: //p; s/^SUMMARY: //p' "$log" | head -n 1)
	saved=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | head -n 1)
	echo "$1, 1 crash (${why:-exit status $rc})${saved:+; input saved as $saved}"
	exit 1
}

rm -f "$log"
rc=0
case $mode in
fuzz)
	mkdir -p "$FUZZ_DIR/corpus"
	# shellcheck disable=SC2086 # the file names have no spaces
	cp $seeds $regressions "$FUZZ_DIR/corpus/"
	echo "fuzz: $FUZZ_BIN for $seconds s, log in $log"
	fuzz -max_total_time="$seconds" -print_final_stats=1 \
		-dict=tests/fuzz/codec.dict "$FUZZ_DIR/corpus" || rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	if [ "$rc" -ne 0 ] || [ -z "$runs" ]; then failed "fuzz: ${runs:-?} inputs tried"; fi
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
	rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
	cov=$(sed -n 's/^#[0-9]*[[:space:]]*DONE[[:space:]]*cov: \([0-9]*\) ft: \([0-9]*\) corp: \([^ ]*\).*/\1 edges, \2 features, corpus \3/p' "$log")
	echo "fuzz: $rate inputs/s, coverage $cov, peak RSS $rss MB"
	echo "fuzz: $runs inputs tried, 0 crashes"
	;;
regress)
	n=$(echo "$seeds" "$regressions" | wc -w)
	# shellcheck disable=SC2086
	{ (export WKF_EXPECT_OK=1; fuzz $seeds) &&
	  { [ -z "$regressions" ] || fuzz $regressions; }; } || rc=$?
	ran=$(grep -c '^Executed ' "$log")
	if [ "$rc" -ne 0 ] || [ "$ran" -ne "$n" ]; then
		# `make test` counts each input as a test (SUMMARY: its tally).
		[ -z "$SUMMARY" ] || echo "fuzz: $((ran - 1)) passed, 1 failed" >> "$SUMMARY"
		failed "fuzz-regress: $ran of $n inputs run"
	fi
	[ -z "$SUMMARY" ] || echo "fuzz: $n passed, 0 failed" >> "$SUMMARY"
	echo "fuzz-regress: $n inputs run, 0 crashes"
	;;
*)
	echo "usage: $0 fuzz SECONDS | regress" >&2
	exit 2
esac
