# rampart — plain Makefile.
#   make            build build/rampart, build/llmsim, build/loadgen
#   make test       unit tests (cmocka) + integration tests (pytest)
#   make SAN=1      ASan+UBSan build (objects go to build-san/ unless BUILD is set)
#   make WERROR=1   warnings are errors (CI)
#   make fuzz       libFuzzer targets (clang) under build-fuzz/ (FUZZ_BUILD)
#   make fuzz-long  every fuzz target for FUZZ_RUNS (10 million) executions
#   make demo       install deps, build, run rampart in front of two llmsim
#   make bench      long benchmarks (not part of test)
#
# Every src/*.c except src/main.c goes into one static library that the
# gateway, the tools and the tests link, so a new file needs no Makefile edit.

CC      ?= cc
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
           -D_GNU_SOURCE -Isrc $(SANFLAGS)
ifeq ($(WERROR),1)
CFLAGS  += -Werror
endif
LDFLAGS += $(SANFLAGS)
LDLIBS  := -lyaml -lsqlite3 -ljansson -lcrypto -lm

LIB_SRC   := $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJ   := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(LIB_SRC))
TOOL_SRC  := $(wildcard tools/*.c)
TOOLS     := $(patsubst tools/%.c,$(BUILD)/%,$(TOOL_SRC))
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNITS     := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)

PYTHON  := /usr/bin/python3

.PHONY: all test unit integration fuzz demo bench clean deps format
all: $(BUILD)/rampart $(TOOLS)

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) | $(BUILD)/obj
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

$(BUILD)/librampart.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/rampart: src/main.c $(BUILD)/librampart.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/librampart.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/%: tools/%.c $(BUILD)/librampart.a $(wildcard src/*.h)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/librampart.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/librampart.a $(wildcard src/*.h) | $(BUILD)/tests
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/librampart.a $(LDFLAGS) $(LDLIBS) -lcmocka

unit: $(UNITS)
	@fail=0; for t in $(UNITS); do echo "== $$t"; $$t || fail=1; done; exit $$fail

integration: all
	RAMPART_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q tests/integration

# Installs missing packages first (a no-op when everything is present),
# then runs both suites; recursive so -j cannot reorder the steps.
test:
	@bash scripts/deps.sh
	@$(MAKE) --no-print-directory unit integration

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
FUZZ_FLAGS := -std=gnu11 -g -O1 -D_GNU_SOURCE -Isrc $(FUZZ_SAN)
FUZZ_OBJ   := $(patsubst src/%.c,$(FUZZ_BUILD)/obj/%.o,$(LIB_SRC))
FUZZ_BINS  := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRC))

.PHONY: fuzz-long
fuzz: $(FUZZ_BINS)

$(FUZZ_BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) | $(FUZZ_BUILD)/obj
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/obj:
	mkdir -p $@

$(FUZZ_BUILD)/librampart.a: $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/librampart.a $(wildcard src/*.h)
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
