# tests/core/core.mk - the C core's tests, sanitizer runs and benchmarks.
# Included by the top-level Makefile, which defines CC, BUILD, CFLAGS_COMMON,
# CFLAGS, CORE_SRC, CORE_HDR, CORE_LIB and LDLIBS_CORE; `make test` passes
# SUMMARY, the file each suite appends its "LABEL: N passed, N failed" to.
#
#   make test-core     build/tests/core_tests with 1, 2 and 4 schedulers
#   make sanitize      the same tests and the core under ASan+UBSan, then TSan
#   make test-faults   build/faults/core_tests: the fault-injection tests
#                      (tests/core/faults/) against a core built with
#                      -DWK_FAULT_INJECTION, with 1, 2 and 4 schedulers;
#                      SAN=asan runs them under ASan+UBSan, SAN=tsan under
#                      TSan (label faults-asan, faults-tsan)
#   make bench-core    build/bench/bench_core (BENCH_ARGS="-s N" to choose)
#
# Run one test by name: build/tests/core_tests -s 2 mailbox__ping_pong
# (the fault tests: build/faults/core_tests -s 2 fault__msg__)

CORE_TEST_SRC := $(wildcard tests/core/*.c)
CORE_TEST_HDR := $(wildcard tests/core/*.h tests/core/faults/*.h)
# The fault tests share the runner and its helpers, not the other tests.
FAULT_TEST_SRC := tests/core/runner.c tests/core/helpers.c \
                  $(wildcard tests/core/faults/*.c)
CORE_TEST_SCHEDS ?= 1,2,4

# The sanitizers run the same tests on counts divided by WK_TEST_SCALE.
CORE_ASAN_FLAGS := -O1 -g -fsanitize=address,undefined \
                   -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CORE_TSAN_FLAGS := -O1 -g -fsanitize=thread
CORE_ASAN_ENV := WK_TEST_SCALE=20 WK_TEST_TIMEOUT=180 \
                 ASAN_OPTIONS=halt_on_error=1:detect_leaks=1 \
                 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# atexit_sleep_ms=0: TSan otherwise sleeps 1 s in every exiting process,
# here every test's forked child (a test stops its runtime, joining its
# threads, before it exits: there is no race at exit to wait for).
CORE_TSAN_ENV := WK_TEST_SCALE=50 WK_TEST_TIMEOUT=240 \
                 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:atexit_sleep_ms=0

# $(call core_test_build,DIR,FLAGS,CORE,TESTS): the test runner with the
# TESTS sources built with FLAGS into $(BUILD)/DIR/, linked with CORE (the
# library, or the core's sources compiled the same way, which the
# sanitizers need to see inside and the fault build needs its hooks in).
define core_test_build
$(BUILD)/$1/tests/core/%.o: tests/core/%.c $(CORE_HDR) $(CORE_TEST_HDR)
	@mkdir -p $$(dir $$@)
	$(CC) $(CFLAGS_COMMON) $2 -Itests/core -c $$< -o $$@

$(BUILD)/$1/c-core/src/%.o: c-core/src/%.c $(CORE_HDR)
	@mkdir -p $$(dir $$@)
	$(CC) $(CFLAGS_COMMON) $2 -c $$< -o $$@

$(BUILD)/$1/core_tests: $(patsubst %.c,$(BUILD)/$1/%.o,$4) $3
	$(CC) $2 $$^ -o $$@ $(LDLIBS_CORE)
endef

$(eval $(call core_test_build,tests,$(CFLAGS),$(CORE_LIB),$(CORE_TEST_SRC)))
$(eval $(call core_test_build,asan,$(CORE_ASAN_FLAGS),\
	$(patsubst %.c,$(BUILD)/asan/%.o,$(CORE_SRC)),$(CORE_TEST_SRC)))
$(eval $(call core_test_build,tsan,$(CORE_TSAN_FLAGS),\
	$(patsubst %.c,$(BUILD)/tsan/%.o,$(CORE_SRC)),$(CORE_TEST_SRC)))

# The fault builds: plain, and under each sanitizer (make test-faults SAN=).
FAULT_FLAGS := -DWK_FAULT_INJECTION
$(eval $(call core_test_build,faults,$(CFLAGS) $(FAULT_FLAGS),\
	$(patsubst %.c,$(BUILD)/faults/%.o,$(CORE_SRC)),$(FAULT_TEST_SRC)))
$(eval $(call core_test_build,faults-asan,$(CORE_ASAN_FLAGS) $(FAULT_FLAGS),\
	$(patsubst %.c,$(BUILD)/faults-asan/%.o,$(CORE_SRC)),$(FAULT_TEST_SRC)))
$(eval $(call core_test_build,faults-tsan,$(CORE_TSAN_FLAGS) $(FAULT_FLAGS),\
	$(patsubst %.c,$(BUILD)/faults-tsan/%.o,$(CORE_SRC)),$(FAULT_TEST_SRC)))

# TSan cannot see liburcu's inline-assembly atomics, so its build compiles
# the core's queue uninstrumented and the queue annotates its happens-before
# edges itself (c-core/src/queue.c, WK_TSAN_ANNOTATE).
$(BUILD)/tsan/c-core/src/queue.o $(BUILD)/faults-tsan/c-core/src/queue.o: \
		c-core/src/queue.c $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -O1 -g -DWK_TSAN_ANNOTATE -c $< -o $@

# $(call core_suite,LABEL,DIR,ENV[,BINARY]): builds $(BUILD)/DIR/BINARY
# (default core_tests), runs it with ENV; the runner prints (and appends to
# $(SUMMARY)) its summary line.  A build failure or a crashed runner counts
# as one failed test.
core_suite = ( \
	fail() { echo "$1: 0 passed, 1 failed"; \
		 [ -z "$(SUMMARY)" ] || \
			echo "$1: 0 passed, 1 failed" >> "$(SUMMARY)"; \
		 exit 1; }; \
	$(MAKE) --no-print-directory -j$(BUILD_JOBS) $(BUILD)/$2/$(or $4,core_tests) || fail; \
	rc=0; \
	env $3 $(BUILD)/$2/$(or $4,core_tests) -p $1 -s $(CORE_TEST_SCHEDS) \
		$(if $(SUMMARY),-o "$(SUMMARY)") || rc=$$?; \
	[ $$rc -le 1 ] || fail; \
	exit $$rc )

test-core:
	@$(call core_suite,core,tests,)

sanitize:
	@rc=0; \
	$(call core_suite,asan,asan,$(CORE_ASAN_ENV)) || rc=1; \
	$(call core_suite,tsan,tsan,$(CORE_TSAN_ENV)) || rc=1; \
	exit $$rc

# SAN= (none), asan or tsan: which build of the fault tests runs.
SAN ?=
FAULT_SUITE := faults$(if $(SAN),-$(SAN))
FAULT_ENV_asan := $(CORE_ASAN_ENV)
FAULT_ENV_tsan := $(CORE_TSAN_ENV)

.PHONY: test-faults
test-faults:
	@$(if $(filter-out asan tsan,$(SAN)),\
		echo "SAN must be asan or tsan" >&2; exit 2;) \
	$(call core_suite,$(FAULT_SUITE),$(FAULT_SUITE),$(FAULT_ENV_$(SAN)))

CORE_BENCH_BIN := $(BUILD)/bench/bench_core

$(CORE_BENCH_BIN): bench/core/bench_core.c $(CORE_HDR) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -O2 -g $< $(CORE_LIB) -o $@ $(LDLIBS_CORE)

bench-core: $(CORE_BENCH_BIN)
	$(CORE_BENCH_BIN) $(BENCH_ARGS)
