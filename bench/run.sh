#!/usr/bin/env bash
# bench/run.sh - runs the benchmarks for workers and its peers, several
# repetitions each, and writes the report (`make bench` calls this).
#
#   bench/run.sh [-r REPS] [-b BENCH,...] [-y SYSTEM,...] [-t SECONDS] [-n]
#
#   -r REPS     repetitions of each benchmark and system (default 3)
#   -b LIST     benchmarks (default: all; see BENCHMARKS below)
#   -y LIST     systems (default: workers-copy,workers-share,ecl-threads,
#               lparallel,erlang,go,ecl-erlang)
#
# The dist-* rows (issue 14) run two nodes on this machine: workers-share
# is ECL <-> ECL, ecl-erlang ECL <-> Erlang, erlang Erlang <-> Erlang.
#   -t SECONDS  time limit of one run (default 120; max-idle gets 2.5x)
#   -n          skip the C core's `make bench-core`
#
# Environment: WK_BENCH_SCALE multiplies every size (0.05 for a quick try;
# per-operation figures stay comparable), WK_BENCH_BUDGET is the time for
# the whole run in seconds (default 840: repetitions that would start
# later are skipped and said so), WK_BENCH_OUT the results folder (default
# bench/results).  Each run is a fresh process printing RESULT lines; the
# report (table, results.csv, chart.png, report.txt) is made by
# bench/report.lisp from raw.txt.
#
# One benchmark of one system, by hand:
#   ecl --norc --shell bench/run.lisp workers-share ping-pong
#   escript bench/erlang.escript ping-pong

set -u
cd "$(dirname "$0")/.."

BENCHMARKS="spawn fork-join ping-pong thread-ring counting fan-in big fib pmap memory max-idle fn-ping-pong fn-thread-ring fn-memory preempt-latency preempt-cost chan-ping-pong chan-throughput future matrix dist-ping-pong dist-throughput alloc-map place-spawn"
SYSTEMS="workers-copy workers-share ecl-threads lparallel erlang go ecl-erlang"
REPS=3
LIMIT=120
CORE=1
while getopts "r:b:y:t:nh" opt; do
	case $opt in
	r) REPS=$OPTARG ;;
	b) BENCHMARKS=${OPTARG//,/ } ;;
	y) SYSTEMS=${OPTARG//,/ } ;;
	t) LIMIT=$OPTARG ;;
	n) CORE=0 ;;
	*) sed -n '2,25p' "$0"; exit 2 ;;
	esac
done

OUT=${WK_BENCH_OUT:-bench/results}
BUDGET=${WK_BENCH_BUDGET:-840}
RAW=$OUT/raw.txt
LOG=$OUT/log.txt
mkdir -p "$OUT"
: > "$RAW"
: > "$LOG"
START=$(date +%s)

elapsed() { echo $(($(date +%s) - START)); }

GO_BENCH=build/bench-go/chan

# Why SYSTEM has no program for BENCH (nothing: it has one).
no_program() {                  # no_program BENCH SYSTEM
	case $1/$2 in
	# Threads are written as functions already: their fn- row would be
	# the same program as the row without fn-.
	fn-*/ecl-threads | fn-*/lparallel)
		echo "the same program as ${1#fn-} (a thread waits anywhere)" ;;
	# The OS preempts threads; Erlang has no switch to compare.
	preempt-*/ecl-threads | preempt-*/lparallel | preempt-cost/erlang)
		echo "preemption cannot be turned off there to compare" ;;
	# One worker that sends nothing: the mode makes no difference, and
	# the row takes a minute.
	preempt-cost/workers-copy)
		echo "no messages: the same program as workers-share" ;;
	chan-*/workers-copy | future/workers-copy | matrix/workers-copy)
		echo "channels and futures pass values by reference: see workers-share" ;;
	chan-*/erlang | future/erlang | matrix/erlang)
		echo "Erlang has no channels or futures: its message rows compare it" ;;
	future/ecl-threads | matrix/ecl-threads)
		echo "a thread per future or row is the spawn row" ;;
	alloc-map/workers-share | place-spawn/workers-share)
		echo "places pass terms between processes: the same program as workers-copy" ;;
	alloc-map/workers-copy) ;;
	alloc-map/*)
		echo "the single-heap-vs-places row is the workers rows' own comparison" ;;
	place-spawn/ecl-threads | place-spawn/lparallel)
		echo "no processes of their own: Erlang's spawn on a peer node is the peer" ;;
	chan-*/go) ;;
	*/go) echo "Go is the peer of the channel rows only" ;;
	dist-*/workers-share | dist-*/erlang | dist-*/ecl-erlang) ;;
	dist-*/workers-copy) echo "the wire copies every message anyway: see workers-share" ;;
	dist-*/*) echo "no distribution" ;;
	*/ecl-erlang) echo "ECL against an Erlang node: the dist-* rows only" ;;
	esac
}

# Lines of raw.txt besides RESULT (which the programs print):
#   SKIP <bench|*> <system> <reason>   FAIL <bench> <system> <rep> <reason>
#   META <key> <value>
meta() { echo "META $1 ${*:2}" >> "$RAW"; }
skip() { echo "SKIP $1 $2 ${*:3}" >> "$RAW"; echo "  skipped $2 $1: ${*:3}"; }

command_for() {                 # command_for SYSTEM BENCH
	case $1 in
	erlang) echo "escript bench/erlang.escript $2" ;;
	go) echo "$GO_BENCH $2" ;;
	*) echo "ecl --norc --shell bench/run.lisp $1 $2" ;;
	esac
}

# Which systems can run: a missing one is skipped with its reason.
available=""
check_system() {                # check_system SYSTEM -> 0 if it can run
	case $1 in
	workers-copy | workers-share | ecl-erlang)
		[ "$1" != ecl-erlang ] || command -v escript > /dev/null ||
			{ skip '*' "$1" "escript not installed (make bench-peers)"; return 1; }
		[ -f build/workers.fas ] || { skip '*' "$1" "build/workers.fas missing (make fas)"; return 1; } ;;
	erlang)
		command -v escript > /dev/null || { skip '*' "$1" "escript not installed (make bench-peers)"; return 1; }
		return 0 ;;
	go)
		command -v go > /dev/null || { skip '*' "$1" "go not installed (make bench-peers)"; return 1; }
		mkdir -p "$(dirname "$GO_BENCH")"
		if ! GOCACHE="$PWD/build/go-cache" go build -o "$GO_BENCH" bench/chan.go >> "$LOG" 2>&1; then
			skip '*' "$1" "bench/chan.go does not build (see $LOG)"
			return 1
		fi
		return 0 ;;
	esac
	command -v ecl > /dev/null || { skip '*' "$1" "ecl not installed"; return 1; }
	# Compiles the Lisp benchmark files once, outside the timed runs.
	if ! timeout 600 ecl --norc --shell bench/run.lisp "$1" --compile >> "$LOG" 2>&1; then
		skip '*' "$1" "does not load or compile (see $LOG)"
		return 1
	fi
}
echo "== preparing: $SYSTEMS"
for system in $SYSTEMS; do
	check_system "$system" && available="$available $system"
done

meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta host "$(uname -srm), $(nproc) online CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
meta ecl "$(ecl --version 2>/dev/null | head -1)"
meta erlang "OTP $(erl -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().' 2>/dev/null)"
meta go "$(go version 2>/dev/null)"
meta lparallel "$(dpkg-query -W -f='cl-lparallel ${Version}' cl-lparallel 2>/dev/null)"
meta scale "${WK_BENCH_SCALE:-1}"
meta reps "$REPS"

# The C core's benchmarks, captured as they print.
if [ "$CORE" = 1 ]; then
	echo "== make bench-core"
	if timeout -k 5 240 ${MAKE:-make} --no-print-directory bench-core > "$OUT/core.txt" 2>&1; then
		cat "$OUT/core.txt"
	else
		echo "(make bench-core failed or timed out: exit status $?)" >> "$OUT/core.txt"
		tail -5 "$OUT/core.txt"
	fi
else
	echo "(skipped: run with -n)" > "$OUT/core.txt"
fi

# Repetitions outermost: if time runs out, every benchmark has its first.
declare -A broken took
for rep in $(seq 1 "$REPS"); do
	echo "== repetition $rep of $REPS ($(elapsed) s so far)"
	for bench in $BENCHMARKS; do
		for system in $available; do
			[ -z "${broken[$bench/$system]:-}" ] || continue
			why=$(no_program "$bench" "$system")
			if [ -n "$why" ]; then
				[ "$rep" = 1 ] && skip "$bench" "$system" "$why"
				continue
			fi
			# Not started if it would end past the budget (judged by its
			# previous repetition).
			if [ $(($(elapsed) + ${took[$bench/$system]:-0})) -ge "$BUDGET" ]; then
				skip "$bench" "$system" "repetition $rep not run: the ${BUDGET} s budget was spent"
				continue
			fi
			limit=$LIMIT
			case $bench in max-idle | preempt-cost) limit=$((LIMIT * 5 / 2)) ;; esac
			t0=$(date +%s)
			out=$(timeout -k 5 "$limit" $(command_for "$system" "$bench") < /dev/null 2>> "$LOG")
			rc=$?
			took[$bench/$system]=$(($(date +%s) - t0))
			lines=$(printf '%s\n' "$out" | grep '^RESULT ')
			if [ -n "$lines" ] && [ $rc -eq 0 ]; then
				printf '%s\n' "$lines" | sed "s/^/R$rep /" >> "$RAW"
				printf '  %s\n' "$(printf '%s\n' "$lines" | cut -d' ' -f2-6 | paste -sd'|')"
			else
				case $rc in
				124 | 137) why="timed out after $limit s" ;;
				*) why="exit status $rc" ;;
				esac
				[ -n "$lines" ] && printf '%s\n' "$lines" | sed "s/^/R$rep /" >> "$RAW"
				echo "FAIL $bench $system $rep $why" >> "$RAW"
				printf '%s\n' "$out" | tail -20 | sed "s|^|[$bench $system rep $rep] |" >> "$LOG"
				echo "  $system $bench: FAILED ($why)"
				broken[$bench/$system]=1
			fi
		done
	done
done
meta duration "$(elapsed) s"
meta load "$(cut -d' ' -f1-3 /proc/loadavg)"

echo "== report"
ecl --norc --shell bench/report.lisp "$OUT" || exit 1
if command -v gnuplot > /dev/null; then
	subtitle=""
	[ "${WK_BENCH_SCALE:-1}" = 1 ] || subtitle="\\nsizes scaled by $WK_BENCH_SCALE: a quick run, not the official figures"
	gnuplot -e "datafile='$OUT/chart.dat'; outfile='$OUT/chart.png'; subtitle=\"$subtitle\"" bench/chart.gp 2>> "$LOG" \
		|| echo "gnuplot failed (see $LOG)"
else
	echo "gnuplot missing: no chart (make bench-peers)"
fi
cat "$OUT/report.txt"
