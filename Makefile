# rampart — plain Makefile.
#   make            build build/rampart, build/llmsim, build/loadgen
#   make test       static checks + unit tests (cmocka) + integration tests (pytest)
#   make check      static checks only: layers (scripts/check-layers.py), format-check
#   make format     reformat the code with clang-format (.clang-format)
#   make SAN=1      ASan+UBSan build (objects go to build-san/ unless BUILD is set)
#   make WERROR=1   warnings are errors (CI)
#   make fuzz       libFuzzer targets (clang) under build-fuzz/ (FUZZ_BUILD)
#   make fuzz-long  every fuzz target for FUZZ_RUNS (10 million) executions
#   make demo       install deps, build, run rampart in front of two llmsim
#   make bench      long benchmarks (not part of test)
#
# Every src/*.c and src/<layer>/*.c except src/main.c goes into one static
# library that the gateway, the tools and the tests link, so a new file needs
# no Makefile edit.  Each layer folder is on the include path (as nginx's
# src/core, src/event, ...), so a file is included by its name; which layer
# may include which is checked by scripts/check-layers.sh (make check).
# A program in tools/<name>/ is every .c there plus tools/common/*.c.
# Dependencies on headers come from the compiler (-MMD).

CC      ?= cc
SRC_DIRS := src $(patsubst %/,%,$(sort $(dir $(wildcard src/*/*.h))))
INCLUDES := $(addprefix -I,$(SRC_DIRS))
ifeq ($(SAN),1)
BUILD   ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT      = -O1
else
BUILD   ?= build
SANFLAGS =
OPT      = -O2
endif

CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Wshadow -Wno-unused-parameter -Wformat=2 -Wvla \
           -D_GNU_SOURCE $(INCLUDES) $(SANFLAGS)
ifeq ($(WERROR),1)
CFLAGS  += -Werror
endif
LDFLAGS += $(SANFLAGS)
LDLIBS  := -lyaml -lsqlite3 -ljansson -lssl -lcrypto -lm

LIB_SRC   := $(filter-out src/main.c,$(wildcard src/*.c src/*/*.c))
LIB_OBJ   := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(LIB_SRC))
TOOL_DIRS := $(sort $(filter-out tools/common,$(patsubst %/,%,$(dir $(wildcard tools/*/*.c)))))
TOOLS     := $(sort $(patsubst tools/%,$(BUILD)/%,$(TOOL_DIRS)))
TOOL_COMMON := $(wildcard tools/common/*.c)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNITS     := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)

PYTHON  := /usr/bin/python3

.PHONY: all test unit integration check format format-check fuzz demo bench clean deps
all: $(BUILD)/rampart $(TOOLS)

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests:
	mkdir -p $@

-include $(LIB_OBJ:.o=.d)

$(BUILD)/librampart.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/rampart: src/main.c $(BUILD)/librampart.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/librampart.a $(LDFLAGS) $(LDLIBS)

# Tools and tests are single links of a few files: their header
# dependencies are every header of the tree.
ALL_H := $(wildcard src/*.h src/*/*.h tools/*/*.h)

define tool_rule
$(BUILD)/$(1): $(wildcard tools/$(1)/*.c) $(TOOL_COMMON) $(BUILD)/librampart.a $(ALL_H)
	$$(CC) $$(CFLAGS) -Itools/common -Itools/$(1) -o $$@ $$(filter %.c,$$^) $(BUILD)/librampart.a $$(LDFLAGS) $$(LDLIBS)
endef
$(foreach t,$(patsubst tools/%,%,$(TOOL_DIRS)),$(eval $(call tool_rule,$(t))))

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/librampart.a $(ALL_H) | $(BUILD)/tests
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/librampart.a $(LDFLAGS) $(LDLIBS) -lcmocka

# Tests abort on a broken invariant (RP_ASSERT, util.h) instead of
# counting it, so the test that broke it fails.
unit: $(UNITS)
	@fail=0; for t in $(UNITS); do echo "== $$t"; RAMPART_ASSERT=abort $$t || fail=1; done; exit $$fail

integration: all
	RAMPART_ASSERT=abort RAMPART_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q tests/integration

# Installs missing packages first (a no-op when everything is present),
# then the static checks and both suites; recursive so -j cannot reorder
# the steps.
test:
	@bash scripts/deps.sh
	@$(MAKE) --no-print-directory check unit integration

# Static checks: includes go down the layers (docs/architecture.md), and
# the code is formatted as .clang-format says.
check: format-check
	@$(PYTHON) scripts/check-layers.py

CLANG_FORMAT ?= clang-format-14
FORMAT_SRC := $(wildcard src/*.[ch] src/*/*.[ch] tools/*/*.[ch] tests/unit/*.c tests/fuzz/*.c)

format:
	$(CLANG_FORMAT) -i $(FORMAT_SRC)

format-check:
	@$(CLANG_FORMAT) --dry-run -Werror $(FORMAT_SRC) && echo "format-check: $(words $(FORMAT_SRC)) files formatted as .clang-format says"

# libFuzzer targets (clang): the library is compiled once with coverage,
# ASan and UBSan (UB aborts, so the fuzzer reports it), then each
# tests/fuzz/fuzz_*.c is linked against it.  make fuzz-long runs every
# target for FUZZ_RUNS executions from a copy of its seed corpus
# (tests/fuzz/corpus/<name>/, <name> without "fuzz_"), with its dictionary
# when there is one (tests/fuzz/<target>.dict or <name>.dict).
FUZZ_BUILD ?= build-fuzz
FUZZ_CC    ?= clang
FUZZ_RUNS  ?= 10000000
FUZZ_SAN   := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_FLAGS := -std=gnu11 -g -O1 -D_GNU_SOURCE $(INCLUDES) $(FUZZ_SAN)
FUZZ_OBJ   := $(patsubst src/%.c,$(FUZZ_BUILD)/obj/%.o,$(LIB_SRC))
FUZZ_BINS  := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRC))

.PHONY: fuzz-long
fuzz: $(FUZZ_BINS)

$(FUZZ_BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

-include $(FUZZ_OBJ:.o=.d)

$(FUZZ_BUILD)/librampart.a: $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/librampart.a $(ALL_H)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/librampart.a $(LDLIBS)

fuzz-long: fuzz
	@mkdir -p $(FUZZ_BUILD)/artifacts
	@for t in $(FUZZ_BINS); do b=$$(basename $$t); n=$${b#fuzz_}; c=$(FUZZ_BUILD)/corpus/$$n; \
	  mkdir -p $$c; if [ -d tests/fuzz/corpus/$$n ]; then cp -R tests/fuzz/corpus/$$n/. $$c/; fi; \
	  d=; for f in tests/fuzz/$$b.dict tests/fuzz/$$n.dict; do if [ -f $$f ]; then d=-dict=$$f; break; fi; done; \
	  echo "== $$b: $(FUZZ_RUNS) runs"; \
	  $$t -runs=$(FUZZ_RUNS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$n- $$d $$c || exit 1; done

demo:
	@bash scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@bash scripts/demo.sh

bench: all
	@bash bench/run-all.sh

deps:
	@bash scripts/deps.sh

clean:
	rm -rf build build-san build-fuzz
