# codec/codec.mk - the message copy codec: build/codec/libcodec.a.
# Included by the top-level Makefile, which defines CC and BUILD.
#
#   make codec      build/codec/libcodec.a, which lisp/lisp.mk links into
#                   workers.fas (and build/fi/workers.fas)
#
# tests/fuzz/fuzz.mk compiles the same sources with clang and the
# sanitizers, and tests/lisp/codec-standalone.lisp links this library into
# a fas of its own.  The codec is C over ECL's objects: ECL's headers and
# codec/ are all it includes (CODEC.md, "Layout").

CODEC_SRC := $(wildcard codec/*.c)
CODEC_HDR := $(wildcard codec/*.h)
CODEC_OBJ := $(patsubst codec/%.c,$(BUILD)/codec/%.o,$(CODEC_SRC))
CODEC_LIB := $(BUILD)/codec/libcodec.a
# What a file that includes codec.h compiles with (ecl-config says where
# ECL's headers are; evaluated when used, as ECL may come with `make deps`).
CODEC_CFLAGS = $(shell ecl-config --cflags) -std=gnu11 -O2 -g -fPIC \
               -Wall -Wextra -Wno-unused-parameter -Icodec
# The library's own objects: only codec.h's functions (WKL_CODEC_API)
# leave it, not the wkc_* that its files share.
CODEC_LIB_CFLAGS = $(CODEC_CFLAGS) -fvisibility=hidden

.PHONY: codec
codec: $(CODEC_LIB)

$(BUILD)/codec/%.o: codec/%.c $(CODEC_HDR) codec/codec.mk
	@mkdir -p $(dir $@)
	$(CC) $(CODEC_LIB_CFLAGS) -c $< -o $@

$(CODEC_LIB): $(CODEC_OBJ)
	@rm -f $@
	ar rcs $@ $^
