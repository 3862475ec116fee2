#!/bin/sh
# bench/peers.sh - installs the peers the benchmarks compare workers with
# (`make bench-peers`), through tools/deps.sh (apt-get, as root or with
# sudo).  A peer that cannot be installed is reported and left out: the
# benchmark run then skips it with a note in the report.
#   ecl-threads  ecl (the build needs it anyway)
#   lparallel    cl-lparallel
#   erlang       erlang-base (escript)
#   go           golang-go (the channel rows)
#   the chart    gnuplot-nox
cd "$(dirname "$0")/.." || exit 1
for pair in ecl:ecl-threads cl-lparallel:lparallel erlang-base:erlang golang-go:go gnuplot-nox:chart; do
	pkg=${pair%%:*}
	what=${pair#*:}
	WORKERS_PKGS=$pkg sh tools/deps.sh ||
		echo "bench-peers: could not install $pkg; the $what benchmarks will be skipped" >&2
done
exit 0
