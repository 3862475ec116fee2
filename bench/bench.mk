# bench/bench.mk - the benchmarks of workers against its peers (ECL threads
# with mp mailboxes, lparallel, Erlang/OTP).  Included by the top-level
# Makefile, which defines BUILD, the target fas (build/workers.fas) and,
# through tests/core/core.mk, bench-core (whose output the report carries).
#
#   make bench        every benchmark, 3 repetitions, about 10-15 minutes
#                     on 2 cores; prints the table and writes bench/results/
#                     (report.txt, results.csv, chart.png)
#   make bench-peers  installs the missing peers (Debian packages)
#
#   make bench BENCH_FLAGS="-b ping-pong,counting -y workers-share,erlang -r 5"
#   WK_BENCH_SCALE=0.05 make bench     a quick, small run
# One benchmark of one system: see bench/README.md.

BENCH_FLAGS ?=

.PHONY: bench bench-peers

bench: fas bench-peers
	MAKE="$(MAKE)" bash bench/run.sh $(BENCH_FLAGS)

bench-peers:
	@sh bench/peers.sh
