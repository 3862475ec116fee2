# lisp/lisp.mk - the Lisp layer: workers.fas, install, the FiveAM suites.
# Included by the top-level Makefile, which defines CC, BUILD, CORE_LIB,
# LDLIBS_CORE and the phony targets, after codec/codec.mk (CODEC_LIB);
# `make test` passes SUMMARY, the file each suite appends its "LABEL: N
# passed, N failed" line to.
#
#   make fas        build/workers.fas (the Lisp code with the C core and the
#                   copy codec inside)
#   make install    copies it into ECL's system directory: (require :workers)
#   make test-lisp  the FiveAM suites, in a fresh ECL, on build/workers.fas
#   make run        install, then the hello example
#   make test-lisp-faults
#                   the fault-injection suite, on build/fi/workers.fas: the
#                   same Lisp on a core built with -DWK_FAULT_INJECTION

ECL      ?= ecl
FAS      := $(BUILD)/workers.fas
LISP_FILES := lisp/files.sexp
LISP_SRC := $(wildcard lisp/*.lisp) $(LISP_FILES)
ECL_CFLAGS = $(shell ecl-config --cflags)
# The binding's C half (lisp/glue/): the project's warnings, like the core.
GLUE_SRC := $(filter-out lisp/glue/constants.c,$(wildcard lisp/glue/*.c))
GLUE_HDR := $(wildcard lisp/glue/*.h) $(CODEC_HDR) $(CORE_HDR)
# -D_REENTRANT: libei's thread-safe erl_errno (design.md, "Distribution").
GLUE_CFLAGS = $(CFLAGS_COMMON) $(ECL_CFLAGS) -D_REENTRANT -Ilisp/glue -Icodec $(CFLAGS) -fPIC
# erl_interface (Debian's erlang-dev), linked into the fas for distribution.
LDLIBS_EI := -lei
GLUE_LIB := $(BUILD)/lisp/libglue.a
# The C constants the Lisp layer uses, written as Lisp (lisp/glue/constants.c).
CONSTANTS := $(BUILD)/lisp/constants.lisp
# ECL's system directory, where a plain (require :workers) looks.
ECL_SYSDIR = $(shell $(ECL) --norc -eval \
	'(progn (princ (namestring (translate-logical-pathname "SYS:"))) (ext:quit 0))')
# A hung test run is killed after this many seconds and counts as failed.
LISP_TEST_TIMEOUT ?= 1800
LISP_TEST_LINE := $(BUILD)/test-lisp.line

fas: $(FAS)

# $(call glue_build,DIR,EXTRA_FLAGS): the glue's objects and library in DIR.
define glue_build
$1/lisp/glue/%.o: lisp/glue/%.c $(GLUE_HDR)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(GLUE_CFLAGS) $2 -c $$< -o $$@

$1/lisp/libglue.a: $(patsubst lisp/glue/%.c,$1/lisp/glue/%.o,$(GLUE_SRC))
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(eval $(call glue_build,$(BUILD),))

$(BUILD)/lisp/gen-constants: lisp/glue/constants.c $(GLUE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(GLUE_CFLAGS) $< -o $@

$(CONSTANTS): $(BUILD)/lisp/gen-constants
	$< > $@.tmp && mv $@.tmp $@

$(FAS): $(CORE_LIB) $(LISP_SRC) $(CODEC_LIB) $(GLUE_LIB) $(CONSTANTS)
	@mkdir -p $(BUILD)/lisp
	WORKERS_LDLIBS="$(LDLIBS_CORE) $(LDLIBS_EI)" $(ECL) --norc --shell lisp/build.lisp

install: deps fas
	install -m 644 $(FAS) "$(ECL_SYSDIR)workers.fas"
	@echo "installed $(ECL_SYSDIR)workers.fas: (require :workers) in any ecl"

run: deps install
	$(ECL) --norc --shell examples/hello.lisp

# The runner writes its summary line to $(LISP_TEST_LINE); if ECL dies or
# hangs before that, the run counts as one failure.
test-lisp:
	@rm -f $(LISP_TEST_LINE); \
	rc=0; \
	$(MAKE) --no-print-directory -j$(BUILD_JOBS) fas || rc=$$?; \
	if [ $$rc -eq 0 ]; then \
		timeout -k 10 $(LISP_TEST_TIMEOUT) $(ECL) --norc --shell tests/lisp/run.lisp \
			|| rc=$$?; \
	fi; \
	[ -s $(LISP_TEST_LINE) ] || { echo "lisp: 0 passed, 1 failed" > $(LISP_TEST_LINE); \
		echo "lisp: the test run ended before its summary (exit status $$rc)"; \
		cat $(LISP_TEST_LINE); [ $$rc -ne 0 ] || rc=1; }; \
	$(if $(SUMMARY),cat $(LISP_TEST_LINE) >> "$(SUMMARY)";) \
	exit $$rc

# The Lisp layer on a core whose allocations fail on command (issue 6).
FI_BUILD    := $(BUILD)/fi
FI_CORE_LIB := $(FI_BUILD)/libworkers.a
FI_FAS      := $(FI_BUILD)/workers.fas
FI_LINE     := $(BUILD)/test-lisp-faults.line

$(FI_BUILD)/core/%.o: c-core/src/%.c $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CORE_CFLAGS) -DWK_FAULT_INJECTION -c $< -o $@

$(FI_CORE_LIB): $(patsubst c-core/src/%.c,$(FI_BUILD)/core/%.o,$(CORE_SRC))
	@rm -f $@
	ar rcs $@ $^

$(eval $(call glue_build,$(FI_BUILD),-DWK_FAULT_INJECTION))

$(FI_FAS): $(FI_CORE_LIB) $(LISP_SRC) $(CODEC_LIB) $(FI_BUILD)/lisp/libglue.a $(CONSTANTS)
	@mkdir -p $(FI_BUILD)/lisp
	WORKERS_BUILD=$(FI_BUILD)/ WORKERS_CORE_LIB=$(FI_CORE_LIB) \
	WORKERS_GLUE_LIB=$(FI_BUILD)/lisp/libglue.a WORKERS_LDLIBS="$(LDLIBS_CORE) $(LDLIBS_EI)" \
		$(ECL) --norc --shell lisp/build.lisp

.PHONY: fas-faults test-lisp-faults
fas-faults: $(FI_FAS)

test-lisp-faults:
	@rm -f $(FI_LINE); \
	rc=0; \
	$(MAKE) --no-print-directory -j$(BUILD_JOBS) fas-faults || rc=$$?; \
	if [ $$rc -eq 0 ]; then \
		WORKERS_FAULTS=1 timeout -k 10 600 $(ECL) --norc --shell tests/lisp/run.lisp \
			|| rc=$$?; \
	fi; \
	[ -s $(FI_LINE) ] || { echo "lisp-faults: 0 passed, 1 failed" > $(FI_LINE); [ $$rc -ne 0 ] || rc=1; }; \
	$(if $(SUMMARY),cat $(FI_LINE) >> "$(SUMMARY)";) \
	exit $$rc
