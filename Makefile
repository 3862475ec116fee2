# workers - build, test, install, benchmark.  `make help` lists the targets.
#
# The two commands a newcomer needs (README.org): `make run` (installs what
# is missing, builds, runs a demo) and `make test` (every test, ending with
# the line "N passed, N failed").

CC      ?= gcc
BUILD   := build
URCU_CFLAGS :=
CFLAGS_COMMON := -std=gnu11 -Wall -Wextra -Wno-unused-parameter -pthread \
                 -D_GNU_SOURCE -Ic-core/include
CFLAGS  ?= -O2 -g
# Parallel jobs for the builds the test targets make before they run.
BUILD_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CORE_CFLAGS := $(CFLAGS_COMMON) $(CFLAGS) -fPIC -fvisibility=hidden
LDLIBS_CORE := -pthread

CORE_SRC := $(wildcard c-core/src/*.c)
CORE_HDR := $(wildcard c-core/include/*.h c-core/src/*.h)
CORE_OBJ := $(patsubst c-core/src/%.c,$(BUILD)/core/%.o,$(CORE_SRC))
CORE_LIB := $(BUILD)/libworkers.a

.PHONY: all core deps run test test-core test-lisp sanitize bench-core \
        install fas clean help fuzz soak soak-short test-glue sanitize-glue

all: core fas

help:
	@echo "make run        install missing packages, build, run the demo"
	@echo "make test       every test (C core, its sanitizer runs, Lisp); ends with N passed, N failed"
	@echo "make test-core  the C core's tests"
	@echo "make sanitize   the core tests under ASan+UBSan and under TSan"
	@echo "make test-glue  the tests of the Lisp layer's C half (sanitize-glue: under ASan, TSan)"
	@echo "make test-faults the core under injected allocation failures (SAN=asan|tsan: under a sanitizer)"
	@echo "make bench-core the core's benchmarks"
	@echo "make install    put workers.fas in ECL's system directory"
	@echo "make fuzz       libFuzzer on the message decoder for FUZZ_SECONDS (60); fuzz-regress: its corpus once"
	@echo "make soak       10,000 workers, 50M messages, kills and GCs (minutes); soak-short: the CI version (~1 min)"

deps:
	@sh tools/deps.sh

core: $(CORE_LIB)

$(BUILD)/core/%.o: c-core/src/%.c $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CORE_CFLAGS) -c $< -o $@

$(CORE_LIB): $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

clean:
	rm -rf $(BUILD)

# The C core's tests, sanitizer runs and benchmarks.
-include tests/core/core.mk
# The message copy codec: build/codec/libcodec.a (before lisp.mk, which
# links it).
-include codec/codec.mk
# The Lisp layer: workers.fas, install, the FiveAM suites.
-include lisp/lisp.mk
# The tests of the Lisp layer's C half: test-glue, sanitize-glue.
-include tests/glue/glue.mk
# The benchmarks against the peers: bench, bench-peers.
-include bench/bench.mk
# The message decoder as a libFuzzer target: fuzz, fuzz-regress.
-include tests/fuzz/fuzz.mk
# The soak test: soak, soak-short.
-include tests/soak/soak.mk

test: deps
	@rm -f $(BUILD)/summary.txt; mkdir -p $(BUILD)
	@$(MAKE) --no-print-directory test-core SUMMARY=$(abspath $(BUILD)/summary.txt); \
	 $(MAKE) --no-print-directory sanitize SUMMARY=$(abspath $(BUILD)/summary.txt); \
	 $(MAKE) --no-print-directory test-glue SUMMARY=$(abspath $(BUILD)/summary.txt); \
	 $(MAKE) --no-print-directory sanitize-glue SUMMARY=$(abspath $(BUILD)/summary.txt); \
	 $(MAKE) --no-print-directory test-faults SUMMARY=$(abspath $(BUILD)/summary.txt); \
	 $(MAKE) --no-print-directory test-faults SAN=asan SUMMARY=$(abspath $(BUILD)/summary.txt); \
	 $(MAKE) --no-print-directory fuzz-regress SUMMARY=$(abspath $(BUILD)/summary.txt) \
	   || grep -q '^fuzz:' $(BUILD)/summary.txt \
	   || echo "fuzz: 0 passed, 1 failed" >> $(BUILD)/summary.txt; \
	 $(MAKE) --no-print-directory test-lisp SUMMARY=$(abspath $(BUILD)/summary.txt); \
	 $(MAKE) --no-print-directory test-lisp-faults SUMMARY=$(abspath $(BUILD)/summary.txt); \
	 $(MAKE) --no-print-directory soak-short SUMMARY=$(abspath $(BUILD)/summary.txt) \
	   || grep -q '^soak:' $(BUILD)/summary.txt \
	   || echo "soak: 0 passed, 1 failed" >> $(BUILD)/summary.txt; \
	 sh tools/summarize.sh $(BUILD)/summary.txt
