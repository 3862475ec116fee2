# tests/glue/glue.mk - the tests of the Lisp binding's C half (lisp/glue/).
# Included by the top-level Makefile after tests/core/core.mk and
# lisp/lisp.mk, whose variables and build directories it reuses: the
# runner and core objects of the core tests' plain, ASan and TSan builds,
# ECL_CFLAGS and GLUE_HDR.
#
#   make test-glue      build/glue/glue_tests with 1, 2 and 4 schedulers
#   make sanitize       runs them under ASan+UBSan and TSan too (labels
#                       glue-asan, glue-tsan), beside the core's
#
# The tests boot ECL in each test's forked child (tests/glue/tg.h).

GLUE_TEST_SRC := $(wildcard tests/glue/*.c)
GLUE_TEST_HDR := $(wildcard tests/glue/*.h) $(CORE_TEST_HDR) $(GLUE_HDR)
GLUE_TEST_LIBS = $(shell ecl-config --libs) -lgmp $(LDLIBS_CORE) $(LDLIBS_EI)
GLUE_TEST_INC := -Itests/core -Itests/glue -Ilisp/glue -Icodec
# Two UBSan checks are off for the code that uses ECL's headers:
# shift-base, since ecl_make_fixnum shifts a negative value left, which C
# leaves undefined and gcc defines as ECL needs (tests/fuzz/fuzz.mk says
# the same); and alignment, since gcc checks ECL_CONS_CAR's load at the
# tagged cons pointer rather than at the untagged address it reads (clang,
# in the fuzz target, does not).
GLUE_ASAN_FLAGS := $(CORE_ASAN_FLAGS) -fno-sanitize=shift-base,alignment
# Boehm's stop-the-world signals cannot reach a thread under TSan, which
# holds signals back until a safe point ("Signals delivery fails
# constantly"): the TSan run turns collection off (GC_DONT_GC), so it
# checks the glue's threads, not the collector's view of them (the plain
# and ASan runs do that).
GLUE_TSAN_ENV := $(CORE_TSAN_ENV) GC_DONT_GC=1

# $(call glue_test_build,DIR,FLAGS,CORE,RUNNER): $(BUILD)/DIR/glue_tests,
# the glue's tests with the glue and the codec built with FLAGS into
# $(BUILD)/DIR/, linked with CORE (the core built the same way) and RUNNER
# (the core tests' runner and helpers, likewise).
define glue_test_build
$(BUILD)/$1/tests/glue/%.o: tests/glue/%.c $(GLUE_TEST_HDR)
	@mkdir -p $$(dir $$@)
	$(CC) $(CFLAGS_COMMON) $(ECL_CFLAGS) $2 $(GLUE_TEST_INC) -c $$< -o $$@

$(BUILD)/$1/lisp/glue/%.o: lisp/glue/%.c $(GLUE_HDR)
	@mkdir -p $$(dir $$@)
	$(CC) $(CFLAGS_COMMON) $(ECL_CFLAGS) -D_REENTRANT $2 -Ilisp/glue -Icodec -c $$< -o $$@

$(BUILD)/$1/codec/%.o: codec/%.c $(CODEC_HDR)
	@mkdir -p $$(dir $$@)
	$(CC) $(CODEC_CFLAGS) $2 -c $$< -o $$@

$(BUILD)/$1/glue_tests: $(patsubst %.c,$(BUILD)/$1/%.o,$(GLUE_TEST_SRC) $(GLUE_SRC) $(CODEC_SRC)) \
		$4 $3
	$(CC) $2 $$^ -o $$@ $(GLUE_TEST_LIBS)
endef

glue_runner = $(BUILD)/$1/tests/core/runner.o $(BUILD)/$1/tests/core/helpers.o

$(eval $(call glue_test_build,glue,$(CFLAGS),$(CORE_LIB),$(call glue_runner,tests)))
$(eval $(call glue_test_build,glue-asan,$(GLUE_ASAN_FLAGS),\
	$(patsubst %.c,$(BUILD)/asan/%.o,$(CORE_SRC)),$(call glue_runner,asan)))
$(eval $(call glue_test_build,glue-tsan,$(CORE_TSAN_FLAGS),\
	$(patsubst %.c,$(BUILD)/tsan/%.o,$(CORE_SRC)),$(call glue_runner,tsan)))

.PHONY: test-glue sanitize-glue
test-glue:
	@$(call core_suite,glue,glue,,glue_tests)

sanitize-glue:
	@rc=0; \
	$(call core_suite,glue-asan,glue-asan,$(CORE_ASAN_ENV),glue_tests) || rc=1; \
	$(call core_suite,glue-tsan,glue-tsan,$(GLUE_TSAN_ENV),glue_tests) || rc=1; \
	exit $$rc
