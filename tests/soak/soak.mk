# tests/soak/soak.mk - the soak test of issue 6 (tests/soak/soak.lisp says
# what a round does and what it checks).  Included by the top-level
# Makefile, which defines BUILD; uses ECL and fas from lisp/lisp.mk.
#
#   make soak        the long run: 10,000 workers, 50 million peer messages
#                    over 10 rounds (about 2 minutes on 2 cores; no round
#                    starts after SOAK_SECONDS); not part of `make test`
#   make soak-short  the CI version: 10,000 workers, 6 million messages over
#                    4 rounds (15 to 45 s on 2 cores, by their load)
#
# Both end with "soak: N passed, N failed" and exit 1 if a check failed,
# the run crashed, or it outlived its watchdog (SOAK_SECONDS plus
# SOAK_GRACE).  With SUMMARY set (as `make test` does), that line is
# appended to the file SUMMARY names.  The parameters, all make variables:
#
#   SOAK_WORKERS     peers exchanging messages (10000)
#   SOAK_MESSAGES    peer messages in all, split over the rounds
#   SOAK_ROUNDS      rounds; the live Lisp heap after round 1 is the
#                    reference (the same slack serves both targets and any
#                    load: the figure does not depend on scheduling)
#   SOAK_SECONDS     no round starts after this many seconds
#   SOAK_SCHEDULERS  scheduler threads (2)
#   SOAK_FANOUT, SOAK_BATCH, SOAK_GC_EVERY, SOAK_TIMEOUT, SOAK_HEAP_SLACK:
#                    see tests/soak/soak.lisp
#
# For example: make soak SOAK_MESSAGES=20000000 SOAK_ROUNDS=4 SOAK_SECONDS=180

SOAK_WORKERS    ?= 10000
SOAK_SCHEDULERS ?= 2
SOAK_GRACE      ?= 600
SOAK_OPTIONAL   := SOAK_FANOUT SOAK_BATCH SOAK_GC_EVERY SOAK_TIMEOUT SOAK_HEAP_SLACK
# The run's parameters as the environment of tests/soak/run.sh: $(1)
# messages, $(2) rounds, $(3) seconds, unless given on the command line.
soak_env = SOAK_WORKERS=$(SOAK_WORKERS) SOAK_SCHEDULERS=$(SOAK_SCHEDULERS) \
	SOAK_MESSAGES=$(or $(SOAK_MESSAGES),$(1)) SOAK_ROUNDS=$(or $(SOAK_ROUNDS),$(2)) \
	SOAK_SECONDS=$(or $(SOAK_SECONDS),$(3)) SOAK_GRACE=$(SOAK_GRACE) \
	$(foreach v,$(SOAK_OPTIONAL),$(if $($(v)),$(v)=$($(v)))) \
	ECL=$(ECL) SOAK_LOG=$(BUILD)/soak/$(4).log SUMMARY="$(SUMMARY)"

.PHONY: soak soak-short

soak: fas
	@env $(call soak_env,50000000,10,600,soak) sh tests/soak/run.sh

soak-short: fas
	@env $(call soak_env,6000000,4,120,soak-short) sh tests/soak/run.sh

# Issue 12's long test: 100,000 counters parked inside their function at
# once (tests/soak/waiting.lisp); not part of `make test`.
test-waiting-100k: fas
	timeout -k 10 900 $(ECL) --norc --shell tests/soak/waiting.lisp 100000 2
.PHONY: test-waiting-100k
