# dingtalk-recall: build, test and check.
#   make                       build the three C modules for LUA_VERSION (default 5.1; `jit` for LuaJIT):
#                              dingtalk/recall/{core,curl,journal}.so
#   make demo                  a bulk recall against the bundled simulator
#   make test                  the suite under Lua 5.1, 5.2, 5.3, 5.4 and LuaJIT, side by side: one
#                              queue of (runtime, spec file), the longest first, TEST_JOBS at a time
#                              (all but the real-time checks: `make test-timing`)
#   make check                 everyday: Lua 5.4 only, without the real-time checks (< 90 s)
#   make test-timing           the real-time checks (#timing), every runtime's, one queue
#   make install PREFIX=/usr/local [DESTDIR=]
#   make asan | valgrind | lint | fuzz-smoke | rock-check

LUA_VERSION ?= 5.1
PREFIX      ?= /usr/local
DESTDIR     ?=
CC          ?= cc
PKG_CONFIG  ?= pkg-config

LUA_INC_5.1 = /usr/include/lua5.1
LUA_INC_5.2 = /usr/include/lua5.2
LUA_INC_5.3 = /usr/include/lua5.3
LUA_INC_5.4 = /usr/include/lua5.4
LUA_INC_jit = /usr/include/luajit-2.1
LUA_INC    ?= $(LUA_INC_$(LUA_VERSION))
# LuaJIT has its own build folder (build/jit) but installs as Lua 5.1.
LUA_ABI     = $(if $(filter jit,$(LUA_VERSION)),5.1,$(LUA_VERSION))

CURL_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
CURL_LIBS   ?= $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || echo -lcurl)
SSL_LIBS    ?= $(shell $(PKG_CONFIG) --libs libcrypto 2>/dev/null || echo -lcrypto)

WARN      = -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   ?= -O2 -g
# Every symbol hidden but the luaopen_* entries (DTR_EXPORT in csrc/dtr.h).
ALL_CFLAGS = -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden $(WARN) -I$(LUA_INC) $(CURL_CFLAGS) $(CFLAGS)
LDFLAGS  ?=
ALL_LDFLAGS = -shared $(LDFLAGS)

# The three modules and their compilation units (csrc/<unit>.c, each with
# its own header).  The transport links the sans-I/O units it shares with
# the core (hidden, so nothing clashes); the core never links libcurl.
CORE_UNITS    = dtr_module dtr_lua dtr_error dtr_codes dtr_text dtr_options dtr_encode dtr_decode dtr_answer dtr_plan dtr_dedupe dtr_target dtr_sign
CORE_UNITS   += dtr_payload dtr_http
CURL_UNITS    = dtr_curl dtr_multi dtr_clock dtr_lua dtr_error dtr_codes dtr_text dtr_options dtr_encode dtr_decode dtr_answer
JOURNAL_UNITS = dtr_journal dtr_jline dtr_jsync dtr_files dtr_text dtr_lua dtr_error dtr_codes
CORE_C    = $(addprefix csrc/,$(addsuffix .c,$(CORE_UNITS)))
CHDR      = $(wildcard csrc/*.h)
CSRC      = $(wildcard csrc/*.c) $(CHDR)
# The transport's own units beside dtr_curl; it also reads plans with the
# core's code (m:start_batch builds a batch as core.build_batch does).
CURL_UNITS   += dtr_xfer dtr_spec dtr_batch dtr_plan dtr_dedupe dtr_target

BUILD     = build/$(LUA_VERSION)
OBJ       = $(BUILD)/obj
MODDIR    = $(BUILD)/dingtalk/recall
CORE_SO   = $(MODDIR)/core.so
CURL_SO   = $(MODDIR)/curl.so
JOURNAL_SO = $(MODDIR)/journal.so
SOS       = $(CORE_SO) $(CURL_SO) $(JOURNAL_SO)
objs      = $(addprefix $(OBJ)/,$(addsuffix .o,$(1)))

LMOD_DIR  = $(DESTDIR)$(PREFIX)/share/lua/$(LUA_ABI)
CMOD_DIR  = $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_ABI)
BIN_DIR   = $(DESTDIR)$(PREFIX)/bin

LUAS      = 5.1 5.2 5.3 5.4 jit

.PHONY: rockspec rock rock-install rock-check all deps cores test test-suite test-% test-timing check demo install clean asan valgrind lint check-c check-symbols

all: $(SOS)

$(OBJ)/%.o: csrc/%.c $(CHDR)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(CORE_SO): $(call objs,$(CORE_UNITS))
	@mkdir -p $(dir $@)
	$(CC) $^ -o $@ $(ALL_LDFLAGS) $(SSL_LIBS)

$(CURL_SO): $(call objs,$(CURL_UNITS))
	@mkdir -p $(dir $@)
	$(CC) $^ -o $@ $(ALL_LDFLAGS) -pthread $(CURL_LIBS)

$(JOURNAL_SO): $(call objs,$(JOURNAL_UNITS))
	@mkdir -p $(dir $@)
	$(CC) $^ -o $@ $(ALL_LDFLAGS) -pthread

# What each module exports and links: only luaopen_*; no libcurl in the core.
check-symbols: all
	@set -e; for so in $(SOS); do \
	  echo "== $$so"; nm -D --defined-only $$so | awk '$$2 == "T" { print "  exports " $$3 }'; \
	  bad=$$(nm -D --defined-only $$so | awk '$$2 ~ /^[TDBR]$$/ && $$3 !~ /^luaopen_/ { print $$3 }'); \
	  [ -z "$$bad" ] || { echo "unexpected exported symbols: $$bad"; exit 1; }; \
	  ldd $$so | awk '/libcurl|libcrypto/ { print "  links " $$1 }'; \
	done; \
	if ldd $(CORE_SO) | grep -q libcurl; then echo "core.so links libcurl"; exit 1; fi

# Debian packages the build, tests and demo need (only missing ones).
deps:
	@sh .ci/deps

# The suite.  `make test`: the five runtimes in one queue, each runtime
# with its own build folder (build/<v>/, build/jit/), all but the
# real-time checks.  spec/run.sh makes a task of every (runtime, spec
# file), orders them by the times of the last run (build/test-logs/times,
# the longest first) and runs TEST_JOBS at a time, so the run ends when the
# last short file does.  A line per runtime ("<lua>: N passed, N failed",
# its log in build/test-logs/<lua>.log) and a total; fails if anything
# fails, showing the failed files' output.  The real-time checks (#timing:
# arrival counts at a server) need a quiet machine: `make test-timing` runs
# them apart; CI runs both.
NPROC      = $(shell nproc 2>/dev/null || echo 2)
# 2 x cores + 1: a task waits (servers, children, sockets) a third to a
# half of its time.  On 2 cores: 6 side by side took 232 s where 4 took
# 284 s, for the same CPU time (349 and 371 CPU-s), but at 6 the tests
# that read a real clock met more contention than they should have to.
TEST_JOBS ?= $(shell echo $$(( 2 * $(NPROC) + 1 )))
TEST_SPECS ?=
TEST_LOGS  = build/test-logs
# The tests that count arrivals in real time: kept apart (test-timing).
TIMING_TAGS = timing
TIMING_SPECS = $(shell grep -l '\#$(TIMING_TAGS)"' spec/*_spec.lua)
lua_of = $(if $(filter jit,$(1)),luajit,lua$(1))

# Every runtime's core, built one runtime after another before any run
# starts (the nginx specs load build/5.1 from LuaJIT inside nginx), each
# with NPROC compilers at a time (26 s -> 17.5 s on 2 cores, from clean).
cores:
	@set -e; for v in 5.1 $(filter-out 5.1,$(LUAS)); do $(MAKE) --no-print-directory -j$(NPROC) LUA_VERSION=$$v all; done

test: deps
	@$(MAKE) --no-print-directory test-suite

test-suite: cores
	@mkdir -p $(TEST_LOGS); \
	RUNTIMES="$(foreach v,$(LUAS),$(call lua_of,$(v))=build/$(v))" JOBS=$(TEST_JOBS) LOG_DIR=$(TEST_LOGS) \
	  sh spec/run.sh --exclude-tags=$(TIMING_TAGS) $(TEST_SPECS)

# The real-time checks (they count requests per second at a server, or
# time a worker's answer): every runtime's #timing cases through one queue,
# TIMING_JOBS at a time.  They use little CPU (about 22 CPU-s in all, mostly
# waiting on paced requests), so a few side by side leave the machine idle
# enough; TIMING_JOBS=1 runs them one after another.  A file that fails
# is run once more, alone (RETRY_FAILED): both runs are shown, and the
# total says how many passed only then; one that fails twice fails.
TIMING_JOBS ?= 3
test-timing: cores
	@mkdir -p $(TEST_LOGS)/timing; \
	RUNTIMES="$(foreach v,$(LUAS),$(call lua_of,$(v))=build/$(v))" JOBS=$(TIMING_JOBS) RETRY_FAILED=1 \
	  LOG_DIR=$(TEST_LOGS)/timing TIMES=$(TEST_LOGS)/times-timing \
	  sh spec/run.sh --tags=$(TIMING_TAGS) $(TIMING_SPECS)

# Everyday: the suite under Lua 5.4 only, without the real-time checks,
# CHECK_JOBS spec files side by side, the longest first (see test-suite).
CHECK_JOBS ?= $(TEST_JOBS)
check:
	@$(MAKE) --no-print-directory LUA_VERSION=5.1 all
	@$(MAKE) --no-print-directory LUA_VERSION=5.4 all
	@LUA=lua5.4 LUA_CPATH_DIR=build/5.4 JOBS=$(CHECK_JOBS) sh spec/run.sh --exclude-tags=$(TIMING_TAGS) $(TEST_SPECS)

# One runtime, the whole suite (timing included), one file after another.
test-jit: cores
	LUA=luajit LUA_CPATH_DIR=build/jit sh spec/run.sh

test-%: cores
	LUA=lua$* LUA_CPATH_DIR=build/$* sh spec/run.sh

# The demo under LUA_VERSION's Lua (jit: LuaJIT), in a clean Lua environment
# (no LUA_PATH/LUA_INIT of the caller's, e.g. another Lua's `luarocks path`).
CLEAN_LUA_ENV = env -u LUA_INIT -u LUA_INIT_5_2 -u LUA_INIT_5_3 -u LUA_INIT_5_4 \
  -u LUA_PATH_5_2 -u LUA_PATH_5_3 -u LUA_PATH_5_4 -u LUA_CPATH_5_2 -u LUA_CPATH_5_3 -u LUA_CPATH_5_4
demo: deps all
	@$(CLEAN_LUA_ENV) LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;" \
	  DEMO_LUA=$(call lua_of,$(LUA_VERSION)) $(call lua_of,$(LUA_VERSION)) examples/demo.lua

# Installs the modules, the C core, the commands and the Neovim plugin under
# PREFIX (DESTDIR for staging).  The commands are bound to the Lua they were
# built for: `#!/usr/bin/lua5.4` (the interpreter's real path), with this
# prefix's folders first on package.path/cpath.  LUA_VERSION=jit installs
# for LuaJIT (Lua 5.1 folders, `#!/usr/bin/luajit`).  The Neovim files go to
# NVIM_DIR, a package Neovim loads at start (a "site" folder on 'packpath').
LUA_BIN     ?= $(shell command -v $(call lua_of,$(LUA_VERSION)) 2>/dev/null || echo /usr/bin/$(call lua_of,$(LUA_VERSION)))
NVIM_DIR    ?= $(PREFIX)/share/nvim/site/pack/dingtalk-recall/start/dingtalk-recall
LUA_MODULES  = dingtalk dingtalk_sim dingtalk_recall

install: all
	install -d $(LMOD_DIR) $(CMOD_DIR) $(BIN_DIR)
	set -e; for m in $(LUA_MODULES); do \
	  (cd lua && find $$m -name '*.lua') | while read -r f; do \
	    install -D -m 0644 lua/$$f $(LMOD_DIR)/$$f; done; done
	set -e; (cd $(BUILD) && find . -name '*.so') | while read -r f; do \
	  install -D -m 0755 $(BUILD)/$$f $(CMOD_DIR)/$$f; done
	set -e; for f in bin/*; do \
	  { echo "#!$(LUA_BIN)"; \
	    echo "package.path = '$(PREFIX)/share/lua/$(LUA_ABI)/?.lua;$(PREFIX)/share/lua/$(LUA_ABI)/?/init.lua;' .. package.path"; \
	    echo "package.cpath = '$(PREFIX)/lib/lua/$(LUA_ABI)/?.so;' .. package.cpath"; \
	    sed 1d $$f; } >$(BIN_DIR)/$$(basename $$f).tmp; \
	  chmod 0755 $(BIN_DIR)/$$(basename $$f).tmp; mv $(BIN_DIR)/$$(basename $$f).tmp $(BIN_DIR)/$$(basename $$f); done
	install -d $(DESTDIR)$(NVIM_DIR)/plugin $(DESTDIR)$(NVIM_DIR)/doc
	install -m 0644 plugin/*.lua $(DESTDIR)$(NVIM_DIR)/plugin/
	install -m 0644 doc/*.txt $(DESTDIR)$(NVIM_DIR)/doc/
	set -e; (cd lua && find dingtalk_recall -name '*.lua') | while read -r f; do \
	  install -D -m 0644 lua/$$f $(DESTDIR)$(NVIM_DIR)/lua/$$f; done
	@echo "installed for $(LUA_BIN) under $(DESTDIR)$(PREFIX); Neovim plugin in $(DESTDIR)$(NVIM_DIR)"

# LuaRocks (the rockspec's build.type = "make"): `luarocks make` runs
# `make rock` with its variables, then `make rock-install`.  The objects go
# to build/rock/, never to the checkout's root (where a stray
# ./dingtalk/recall/core.so would shadow the real one for any Lua started
# there).  The Lua modules and commands are installed by LuaRocks itself.
ROCK_BUILD = build/rock
rock:
	rm -rf $(ROCK_BUILD)
	$(MAKE) --no-print-directory BUILD=$(ROCK_BUILD) LUA_INC="$(LUA_INCDIR)" CFLAGS="$(CFLAGS)" all

rock-install:
	@test -n "$(INST_LIBDIR)" || { echo "rock-install: INST_LIBDIR is not set (luarocks sets it)"; exit 1; }
	set -e; (cd $(ROCK_BUILD) && find . -name '*.so') | while read -r f; do \
	  install -D -m 0755 $(ROCK_BUILD)/$$f $(INST_LIBDIR)/$$f; done

clean:
	rm -rf build

check-c:
	$(MAKE) --no-print-directory clean
	$(MAKE) --no-print-directory CC=gcc CFLAGS="-O2 -Werror" LUA_VERSION=5.4 all
	$(MAKE) --no-print-directory clean
	$(MAKE) --no-print-directory CC=clang CFLAGS="-O2 -Werror" LUA_VERSION=5.1 all
	$(MAKE) --no-print-directory clean

# ---------------------------------------------------------------------
# Memory safety and static analysis (README: "Memory safety and static analysis").  Each check has
# a private build folder under build/, so it never clobbers build/<v>/.
SAN_CC      ?= clang
SAN_FLAGS    = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_CFLAGS   = -std=c99 -D_POSIX_C_SOURCE=200809L $(WARN) -I$(LUA_INC_5.4) $(CURL_CFLAGS)
# ASAN_LUA_VERSION=5.1 runs the suite under a lua5.1 look-alike host (the
# 5.1 GC, which OpenResty's and Neovim's LuaJIT share in timing terms).
ASAN_LUA_VERSION ?= 5.4
ASAN_DIR     = build/asan$(if $(filter 5.4,$(ASAN_LUA_VERSION)),,-$(ASAN_LUA_VERSION))
ASAN_LUA     = $(ASAN_DIR)/lua
ASAN_LOG     = $(CURDIR)/$(ASAN_DIR)/reports
ASAN_SPECS  ?=
# Every instrumented process (the busted run and the CLI/bot children it
# starts with the same host) writes its reports to ASAN_LOG.<pid>; any
# such file fails the target, whatever the specs said.
ASAN_ENV     = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:log_path=$(ASAN_LOG)/asan \
               LSAN_OPTIONS=suppressions=$(CURDIR)/spec/lsan.supp:print_suppressions=0 \
               UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(ASAN_LOG)/ubsan

# The modules, instrumented, built by the rules above into a private folder
# (a recursive make: incremental, and no second rule for the same files).
asan-build:
	@$(MAKE) --no-print-directory BUILD=$(ASAN_DIR) LUA_VERSION=$(ASAN_LUA_VERSION) CC=$(SAN_CC) \
	  CFLAGS="$(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" all

# The sanitizers live in this executable (a lua5.x look-alike), not in an
# LD_PRELOAD that nginx, redis or curl started by a spec would inherit.
$(ASAN_LUA): fuzz/lua_host.c
	@mkdir -p $(dir $@)
	$(SAN_CC) -std=c99 -D_POSIX_C_SOURCE=200809L $(WARN) -I$(LUA_INC_$(ASAN_LUA_VERSION)) $(SAN_FLAGS) \
	  fuzz/lua_host.c -o $@ -llua$(ASAN_LUA_VERSION)

# The sanitizer and valgrind runs are CPU-bound: MEMCHECK_JOBS spec files
# at a time (one busted process each) keep both cores busy.
MEMCHECK_JOBS ?= 2

# AddressSanitizer + UBSan (+ LeakSanitizer) over the whole suite under
# Lua 5.4 (or ASAN_LUA_VERSION=5.1; LuaJIT excluded: its allocator and
# ASan do not mix; the C is the same code).  ASAN_SPECS="spec/x_spec.lua
# ..." narrows the run.
asan: asan-build $(ASAN_LUA)
	@rm -rf $(ASAN_LOG) && mkdir -p $(ASAN_LOG)
	@start=$$(date +%s); \
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $(ASAN_ENV) \
	  LUA="$(CURDIR)/$(ASAN_LUA)" LUA_CPATH_DIR=$(ASAN_DIR) JOBS=$(MEMCHECK_JOBS) \
	  sh spec/run.sh --exclude-tags=timing $(ASAN_SPECS); rc=$$?; \
	if ls $(ASAN_LOG)/* >/dev/null 2>&1; then \
	  for f in $(ASAN_LOG)/*; do echo "== $$f"; cat "$$f"; done; \
	  echo "asan: sanitizer reports above ($$(ls $(ASAN_LOG) | wc -l) files)"; exit 1; \
	fi; \
	echo "asan ($(ASAN_LUA_VERSION)): no sanitizer report; suite rc $$rc in $$(( $$(date +%s) - start )) s"; exit $$rc

# Valgrind memcheck over the suite: lua$(VALGRIND_LUA) (5.4 by default;
# `make valgrind VALGRIND_LUA=5.1` for the 5.1 GC) with the modules built
# -O0 -g.  Children (nginx, curl, CLI runs) are not traced.  The whole
# suite is the default;
# VALGRIND_SPECS="spec/..." narrows it.  run.sh judges busted by its
# summary, so the logs are read: any ERROR SUMMARY above 0 (a definite
# leak counts) fails the target.
VALGRIND_LUA ?= 5.4
VG_DIR       = build/valgrind$(if $(filter 5.4,$(VALGRIND_LUA)),,-$(VALGRIND_LUA))
VG_LOG       = $(CURDIR)/$(VG_DIR)/logs
VALGRIND_SPECS ?=
VALGRIND     = valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
               --show-leak-kinds=definite --trace-children=no --child-silent-after-fork=yes --num-callers=30 \
               --suppressions=$(CURDIR)/spec/valgrind.supp --log-file=$(VG_LOG)/vg.%p

valgrind-build:
	@$(MAKE) --no-print-directory BUILD=$(VG_DIR) LUA_VERSION=$(VALGRIND_LUA) CFLAGS="-O0 -g" all

valgrind: valgrind-build
	@rm -rf $(VG_LOG) && mkdir -p $(VG_LOG)
	@start=$$(date +%s); \
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL LUA="$(VALGRIND) lua$(VALGRIND_LUA)" LUA_CPATH_DIR=$(VG_DIR) \
	  JOBS=$(MEMCHECK_JOBS) sh spec/run.sh --exclude-tags=timing $(VALGRIND_SPECS); rc=$$?; \
	bad=$$(grep -l "ERROR SUMMARY: [1-9]" $(VG_LOG)/vg.* 2>/dev/null); \
	if [ -n "$$bad" ]; then for f in $$bad; do echo "== $$f"; cat "$$f"; done; \
	  echo "valgrind: memcheck errors above"; exit 1; fi; \
	echo "valgrind (lua$(VALGRIND_LUA)): $$(ls $(VG_LOG) | wc -l) process(es), 0 errors, no definite leak; suite rc $$rc in $$(( $$(date +%s) - start )) s"; \
	exit $$rc

# libFuzzer targets (fuzz/*.c): `make fuzz-smoke` runs each 30 s,
# `make fuzz FUZZ_SECONDS=600` for long runs.  New inputs go to
# build/fuzz/corpus/<target> (the committed seeds in fuzz/corpus/<target>
# are read, never written); crashes to build/fuzz/artifacts/.
FUZZ_DIR     = build/fuzz
FUZZ_TARGETS = request response callback http
FUZZ_SECONDS ?= 600
FUZZ_FLAGS   = -g -O1 -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all \
               -DDTR_FUZZ_DIR='"$(CURDIR)/fuzz"'
FUZZ_BINS    = $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS))

# Each target links the core's units (not libcurl: the core has none).
$(FUZZ_DIR)/%: fuzz/fuzz_%.c fuzz/fuzz_common.h $(CSRC)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_CFLAGS) $(FUZZ_FLAGS) $< $(CORE_C) -o $@ -llua5.4 $(SSL_LIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/artifacts; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_DIR)/$$t -max_total_time=$(FUZZ_SECONDS) $(FUZZ_RUN_FLAGS) -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t- $(FUZZ_DIR)/corpus/$$t fuzz/corpus/$$t \
	    2>$(FUZZ_DIR)/$$t.log || { tail -n 60 $(FUZZ_DIR)/$$t.log; exit 1; }; \
	  grep -E '^(#[0-9]+.*DONE|stat::)' $(FUZZ_DIR)/$$t.log | tr '\n' ' '; echo; \
	done

# CI's gate: 30 s a target from a fixed seed, so a run can be replayed.
fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=30 FUZZ_RUN_FLAGS=-seed=1

# Line coverage of csrc/ by each target's corpus (committed seeds plus what
# the runs above found), replayed once by a coverage build.
FUZZ_COV_DIR = build/fuzz-cov
fuzz-coverage:
	@set -e; mkdir -p $(FUZZ_COV_DIR); for t in $(FUZZ_TARGETS); do \
	  $(SAN_CC) $(SAN_CFLAGS) -g -O0 -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping \
	    -DDTR_FUZZ_DIR='"$(CURDIR)/fuzz"' fuzz/fuzz_$$t.c $(CORE_C) -o $(FUZZ_COV_DIR)/$$t -llua5.4 $(SSL_LIBS); \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t; \
	  LLVM_PROFILE_FILE=$(FUZZ_COV_DIR)/$$t.profraw $(FUZZ_COV_DIR)/$$t -runs=0 $(FUZZ_DIR)/corpus/$$t fuzz/corpus/$$t \
	    >$(FUZZ_COV_DIR)/$$t.log 2>&1; \
	  llvm-profdata merge -sparse $(FUZZ_COV_DIR)/$$t.profraw -o $(FUZZ_COV_DIR)/$$t.profdata; \
	  echo "== $$t: line coverage of csrc/ ($$(ls $(FUZZ_DIR)/corpus/$$t fuzz/corpus/$$t | wc -l) inputs)"; \
	  llvm-cov report $(FUZZ_COV_DIR)/$$t -instr-profile=$(FUZZ_COV_DIR)/$$t.profdata \
	    | awk '/csrc\/dtr_/ { n = split($$1, p, "/"); \
	        printf "  %-14s lines %7s of %4d   branches %7s\n", p[n], $$10, $$8, $$13 }'; \
	done

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-coverage asan-build valgrind-build

# luacheck; cppcheck and clang-tidy over every compilation unit of
# csrc/, for the Lua 5.4 and the 5.1 headers (the compat shims differ).
# clang-tidy checks left out, and why:
#   cert-err33-c: every call it flags is snprintf into a fixed buffer whose
#     input is length-checked first or where a cut message is intended;
#   bugprone-easily-swappable-parameters: style; the Lua C API's
#     (lua_State *, int idx, int idx) shape trips it everywhere.
TIDY_CHECKS  = -*,bugprone-*,cert-*,clang-analyzer-*,misc-*,performance-*,portability-*,-cert-err33-c,-bugprone-easily-swappable-parameters
CPPCHECK_DEFS = -D__GNUC__ -D__linux__ -D__x86_64__ -DLLONG_MAX=9223372036854775807LL -DINT_MAX=2147483647
C_UNITS      = $(wildcard csrc/*.c)
lint:
	luacheck lua spec bin examples bench plugin fuzz
	@set -e; for inc in $(LUA_INC_5.4) $(LUA_INC_5.1); do \
	  echo "cppcheck csrc/*.c -I $$inc"; \
	  cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance --std=c99 --library=posix \
	    --suppress=missingIncludeSystem --inline-suppr $(CPPCHECK_DEFS) -I csrc -I $$inc $(C_UNITS); \
	  echo "clang-tidy csrc/*.c -I $$inc"; \
	  out=$$(clang-tidy --quiet --header-filter='.*/csrc/.*' --warnings-as-errors='*' --checks='$(TIDY_CHECKS)' \
	    $(C_UNITS) -- -std=c99 -D_POSIX_C_SOURCE=200809L -I$$inc $(CURL_CFLAGS) 2>&1) \
	    || { echo "$$out"; exit 1; }; \
	done
	@echo "clang-tidy fuzz/lua_host.c"; \
	for inc in $(LUA_INC_5.4) $(LUA_INC_5.1); do \
	  out=$$(clang-tidy --quiet --warnings-as-errors='*' --checks='$(TIDY_CHECKS)' fuzz/lua_host.c -- \
	    -std=c99 -D_POSIX_C_SOURCE=200809L -I$$inc 2>&1) || { echo "$$out"; exit 1; }; \
	done

# Rewrites the rockspec's list of Lua modules and commands from the tree.
rockspec:
	lua5.1 .ci/rockspec.lua dingtalk-recall-scm-1.rockspec

# `luarocks make` as a user would run it, into a throw-away tree, for 5.4
# and for 5.1 (whose module LuaJIT loads); then load what it installed, and
# check that nothing was built at the checkout's root (build/rock only).
rock-check:
	@set -e; for v in 5.4 5.1; do \
	  t=$$(mktemp -d); \
	  luarocks --lua-version $$v --tree $$t make --deps-mode=none dingtalk-recall-scm-1.rockspec >$$t.log 2>&1 || { cat $$t.log; exit 1; }; \
	  if ls -d dingtalk *.o csrc/*.o 2>/dev/null; then echo "rock-check: luarocks make left the files above"; exit 1; fi; \
	  lua=lua$$v; [ $$v = 5.1 ] && lua=luajit; \
	  $(CLEAN_LUA_ENV) LUA_PATH="$$t/share/lua/$$v/?.lua;$$t/share/lua/$$v/?/init.lua;;" LUA_CPATH="$$t/lib/lua/$$v/?.so;;" \
	    $$lua -e 'local r = require "dingtalk.recall"; assert(r.client); assert(require("dingtalk.recall.curl").multi); assert(require("dingtalk.recall.journal").append); assert(require("dingtalk_sim.main").main); print(_VERSION, "dingtalk-recall " .. r._VERSION .. " installed by luarocks: ok")'; \
	  for so in $$t/lib/lua/$$v/dingtalk/recall/*.so; do \
	    nm -D --defined-only $$so | awk '$$2 == "T" && $$3 !~ /^luaopen_/ { print "exported: " $$3; bad = 1 } END { exit bad }' \
	      || { echo "$$so exports more than luaopen_*"; exit 1; }; \
	  done; \
	  test -x $$t/bin/dingtalk-recall; test -x $$t/bin/dingtalk-sim; \
	  test -f $$t/lib/luarocks/rocks-$$v/dingtalk-recall/scm-1/doc/dingtalk_recall.txt; \
	  rm -rf $$t $$t.log; \
	done
