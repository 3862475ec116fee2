# tests/fuzz/fuzz.mk - the message decoder (codec/decode.c) as a libFuzzer
# target.  Included by the top-level Makefile, which defines BUILD; uses
# CODEC_SRC, CODEC_HDR and CODEC_CFLAGS from codec/codec.mk and fas from
# lisp/lisp.mk.
#
#   make fuzz          builds build/fuzz/fuzz_decode and fuzzes it for
#                      FUZZ_SECONDS (60) from the seed corpus; ends with
#                      "fuzz: N inputs tried, 0 crashes", exits 1 on a crash,
#                      a leak, a timeout or running out of memory
#   make fuzz-regress  every input in tests/fuzz/corpus and
#                      tests/fuzz/regressions once (seconds; fit for CI)
#   make fuzz-corpus   regenerates tests/fuzz/corpus from build/workers.fas
#
# What the target checks and why it needs no Lisp layer: fuzz_decode.c.
# What to do with a crash: tests/fuzz/README.md.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_RSS_MB  ?= 2048
FUZZ_PKGS    ?= clang libclang-rt-14-dev libgmp-dev ecl
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_BIN     := $(FUZZ_DIR)/fuzz_decode
# ECL's ecl_make_fixnum shifts a negative value left, which C leaves
# undefined and GCC and clang define as the two's-complement shift that ECL
# relies on everywhere: UBSan's shift-base check would stop at the first
# negative fixnum.
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined -fno-sanitize=shift-base \
                -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# The codec as codec.mk compiles it, plus coverage and the sanitizers.
FUZZ_CFLAGS   = $(CODEC_CFLAGS) $(FUZZ_SAN)
FUZZ_CODEC_OBJ := $(patsubst codec/%.c,$(FUZZ_DIR)/codec/%.o,$(CODEC_SRC))
FUZZ_ENV     := FUZZ_BIN=$(FUZZ_BIN) FUZZ_DIR=$(FUZZ_DIR) \
                FUZZ_RSS_MB=$(FUZZ_RSS_MB)

.PHONY: fuzz fuzz-regress fuzz-corpus fuzz-deps

fuzz-deps:
	@WORKERS_PKGS="$(FUZZ_PKGS)" sh tools/deps.sh

$(FUZZ_DIR)/codec/%.o: codec/%.c $(CODEC_HDR) tests/fuzz/fuzz.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fvisibility=hidden -c $< -o $@

$(FUZZ_DIR)/fuzz_decode.o: tests/fuzz/fuzz_decode.c codec/codec.h tests/fuzz/fuzz.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -DWKF_IMAGE='"$(abspath tests/fuzz/image.lisp)"' \
		-c $< -o $@

# The decoder calls GMP (mpz_import): the link does not take it from
# libecl's own dependencies.
$(FUZZ_BIN): $(FUZZ_DIR)/fuzz_decode.o $(FUZZ_CODEC_OBJ)
	$(FUZZ_CC) $(FUZZ_SAN) $^ -o $@ $(shell ecl-config --libs) -lgmp

fuzz: fuzz-deps $(FUZZ_BIN)
	@env $(FUZZ_ENV) sh tests/fuzz/run.sh fuzz $(FUZZ_SECONDS)

# With SUMMARY set (by `make test`), each input counts as one test there.
fuzz-regress: fuzz-deps $(FUZZ_BIN)
	@env $(FUZZ_ENV) SUMMARY="$(SUMMARY)" sh tests/fuzz/run.sh regress

fuzz-corpus: fas
	$(ECL) --norc --shell tests/fuzz/make-corpus.lisp
