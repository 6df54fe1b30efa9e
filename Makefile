# dingtalk-recall: build, test and check.
#   make                       build the C core for LUA_VERSION (default 5.1)
#   make test                  the whole suite under Lua 5.1, 5.2, 5.3, 5.4 and LuaJIT
#   make demo                  a bulk recall against the bundled simulator
#   make install PREFIX=/usr/local [DESTDIR=]
#   make asan | valgrind | lint

LUA_VERSION ?= 5.1
PREFIX      ?= /usr/local
DESTDIR     ?=
CC          ?= cc
PKG_CONFIG  ?= pkg-config

LUA_INC_5.1 = /usr/include/lua5.1
LUA_INC_5.2 = /usr/include/lua5.2
LUA_INC_5.3 = /usr/include/lua5.3
LUA_INC_5.4 = /usr/include/lua5.4
LUA_INC    ?= $(LUA_INC_$(LUA_VERSION))

CURL_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
CURL_LIBS   ?= $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || echo -lcurl)
SSL_LIBS    ?= $(shell $(PKG_CONFIG) --libs libcrypto 2>/dev/null || echo -lcrypto)

WARN      = -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   ?= -O2 -g
ALL_CFLAGS = -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC $(WARN) -I$(LUA_INC) $(CURL_CFLAGS) $(CFLAGS)
LDFLAGS  ?=
ALL_LDFLAGS = -shared $(LDFLAGS)

BUILD     = build/$(LUA_VERSION)
CORE_SO   = $(BUILD)/dingtalk/recall/core.so
CSRC      = $(wildcard csrc/*.c) $(wildcard csrc/*.h)

LMOD_DIR  = $(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION)
CMOD_DIR  = $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_VERSION)
BIN_DIR   = $(DESTDIR)$(PREFIX)/bin

LUAS      = 5.1 5.2 5.3 5.4 jit

.PHONY: rockspec rock-check all deps test test-% demo install clean asan valgrind lint check-c

all: $(CORE_SO)

$(CORE_SO): $(CSRC)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) csrc/dtr_module.c -o $@ $(ALL_LDFLAGS) $(CURL_LIBS) $(SSL_LIBS)

# Debian packages the build, tests and demo need (only missing ones).
deps:
	@sh .ci/deps

# The whole suite under every supported Lua, each with its own build.
test: deps
	@set -e; for v in $(LUAS); do $(MAKE) --no-print-directory test-$$v; done; \
	  echo "all runtimes passed: $(LUAS)"

test-jit:
	$(MAKE) --no-print-directory LUA_VERSION=5.1 all
	LUA=luajit LUA_CPATH_DIR=build/5.1 sh spec/run.sh

test-%:
	$(MAKE) --no-print-directory LUA_VERSION=$* all
	LUA=lua$* LUA_CPATH_DIR=build/$* sh spec/run.sh

demo: deps all
	LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;" \
	  DEMO_LUA=lua$(LUA_VERSION) lua$(LUA_VERSION) examples/demo.lua

install: all
	install -d $(LMOD_DIR)/dingtalk/recall $(CMOD_DIR)/dingtalk/recall $(BIN_DIR)
	cp -R lua/dingtalk/. $(LMOD_DIR)/dingtalk/
	install -m 0755 $(CORE_SO) $(CMOD_DIR)/dingtalk/recall/core.so
	for f in bin/*; do install -m 0755 $$f $(BIN_DIR)/; done

clean:
	rm -rf build

# AddressSanitizer + UBSan over the whole suite (LuaJIT excluded: its
# allocator and ASan do not mix; the C core is the same code).
asan:
	$(MAKE) --no-print-directory clean
	$(MAKE) --no-print-directory LUA_VERSION=5.4 CC=clang \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" all
	LUA=lua5.4 LUA_CPATH_DIR=build/5.4 \
	  LD_PRELOAD="$$(clang -print-file-name=libclang_rt.asan-x86_64.so)" \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/spec/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  sh spec/run.sh
	$(MAKE) --no-print-directory clean

valgrind:
	$(MAKE) --no-print-directory LUA_VERSION=5.4 CFLAGS="-O0 -g" clean all
	LUA="valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --suppressions=$(CURDIR)/spec/valgrind.supp lua5.4" \
	  LUA_CPATH_DIR=build/5.4 sh spec/run.sh
	$(MAKE) --no-print-directory clean

check-c:
	$(MAKE) --no-print-directory clean
	$(MAKE) --no-print-directory CC=gcc CFLAGS="-O2 -Werror" LUA_VERSION=5.4 all
	$(MAKE) --no-print-directory clean
	$(MAKE) --no-print-directory CC=clang CFLAGS="-O2 -Werror" LUA_VERSION=5.1 all
	$(MAKE) --no-print-directory clean

lint:
	luacheck lua spec bin examples bench plugin
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
	  --suppress=missingIncludeSystem --inline-suppr -I csrc -I $(LUA_INC_5.4) csrc/dtr_module.c

# Rewrites the rockspec's list of Lua modules and commands from the tree.
rockspec:
	lua5.1 .ci/rockspec.lua dingtalk-recall-scm-1.rockspec

# `luarocks make` as a user would run it, into a throw-away tree, for 5.4
# and for 5.1 (whose module LuaJIT loads); then load what it installed.
rock-check:
	@set -e; for v in 5.4 5.1; do \
	  t=$$(mktemp -d); \
	  luarocks --lua-version $$v --tree $$t make --deps-mode=none dingtalk-recall-scm-1.rockspec >$$t.log 2>&1 || { cat $$t.log; exit 1; }; \
	  lua=lua$$v; [ $$v = 5.1 ] && lua=luajit; \
	  LUA_PATH="$$t/share/lua/$$v/?.lua;$$t/share/lua/$$v/?/init.lua;;" LUA_CPATH="$$t/lib/lua/$$v/?.so;;" \
	    $$lua -e 'local r = require "dingtalk.recall"; assert(r.client); print(_VERSION, "dingtalk-recall " .. r._VERSION .. " installed by luarocks: ok")'; \
	  test -x $$t/bin/dingtalk-recall; test -x $$t/bin/dingtalk-sim; \
	  rm -rf $$t $$t.log; \
	done
