rockspec_format = "3.0"
package = "dingtalk-recall"
version = "scm-1"

source = {
  url = "git+https://github.com/dingtalk-recall/dingtalk-recall.git",
  branch = "main",
}

description = {
  summary = "Recall (un-send) DingTalk group messages sent by a bot: fast, safe, from any Lua host",
  detailed = [[
A C core (validation, request building, response parsing, libcurl transport)
under a Lua client that recalls any number of messages with batching,
concurrency, a QPS limit, retries and per-key accounting; a ledger of sent
messages, chat-ops rules, an operator CLI, OpenResty and Neovim adapters,
and a DingTalk simulator to test against.
]],
  homepage = "https://github.com/dingtalk-recall/dingtalk-recall",
  license = "MIT",
  labels = { "dingtalk", "chatops", "curl", "openresty", "neovim" },
}

dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson >= 2.1.0",
}

external_dependencies = {
  -- Library only: Debian keeps curl/curl.h in a multiarch folder that
  -- luarocks does not search, while the compiler finds it by default.
  CURL = { library = "curl" },
  OPENSSL = { header = "openssl/hmac.h", library = "crypto" },
}

build = {
  type = "builtin",
  modules = {
    -- Three C modules, one compilation unit per concern (csrc/<unit>.c with
    -- its own header; the unit lists are the Makefile's CORE_UNITS,
    -- CURL_UNITS and JOURNAL_UNITS).  csrc/dtr.h hides every symbol but
    -- luaopen_*.  The core never links libcurl: OpenResty loads only it.
    ["dingtalk.recall.core"] = {
      sources = { "csrc/dtr_module.c", "csrc/dtr_lua.c", "csrc/dtr_error.c", "csrc/dtr_codes.c", "csrc/dtr_text.c", "csrc/dtr_encode.c", "csrc/dtr_decode.c", "csrc/dtr_plan.c", "csrc/dtr_sign.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "csrc", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(OPENSSL_LIBDIR)" },
      libraries = { "crypto" },
    },
    ["dingtalk.recall.curl"] = {
      sources = { "csrc/dtr_curl.c", "csrc/dtr_multi.c", "csrc/dtr_clock.c", "csrc/dtr_lua.c", "csrc/dtr_error.c", "csrc/dtr_codes.c", "csrc/dtr_text.c", "csrc/dtr_encode.c", "csrc/dtr_decode.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "csrc", "$(CURL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)" },
      libraries = { "curl", "pthread" },
    },
    ["dingtalk.recall.journal"] = {
      sources = { "csrc/dtr_journal.c", "csrc/dtr_lua.c", "csrc/dtr_error.c", "csrc/dtr_codes.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "csrc" },
    },
    -- BEGIN LUA MODULES (written by `make rockspec`; spec/rockspec_spec.lua checks it)
    ["dingtalk.recall.async"] = "lua/dingtalk/recall/async.lua",
    ["dingtalk.recall.callback"] = "lua/dingtalk/recall/callback.lua",
    ["dingtalk.recall.cli"] = "lua/dingtalk/recall/cli.lua",
    ["dingtalk.recall.client"] = "lua/dingtalk/recall/client.lua",
    ["dingtalk.recall.config"] = "lua/dingtalk/recall/config.lua",
    ["dingtalk.recall.engine"] = "lua/dingtalk/recall/engine.lua",
    ["dingtalk.recall.hosts"] = "lua/dingtalk/recall/hosts.lua",
    ["dingtalk.recall"] = "lua/dingtalk/recall/init.lua",
    ["dingtalk.recall.ledger.file"] = "lua/dingtalk/recall/ledger/file.lua",
    ["dingtalk.recall.ledger"] = "lua/dingtalk/recall/ledger/init.lua",
    ["dingtalk.recall.ledger.plans"] = "lua/dingtalk/recall/ledger/plans.lua",
    ["dingtalk.recall.ledger.redis"] = "lua/dingtalk/recall/ledger/redis.lua",
    ["dingtalk.recall.limiter"] = "lua/dingtalk/recall/limiter.lua",
    ["dingtalk.recall.report"] = "lua/dingtalk/recall/report/init.lua",
    ["dingtalk.recall.rules"] = "lua/dingtalk/recall/rules.lua",
    ["dingtalk.recall.sim.admin"] = "lua/dingtalk/recall/sim/admin.lua",
    ["dingtalk.recall.sim.server"] = "lua/dingtalk/recall/sim/server.lua",
    ["dingtalk.recall.sim.state"] = "lua/dingtalk/recall/sim/state.lua",
    ["dingtalk.recall.token"] = "lua/dingtalk/recall/token.lua",
    ["dingtalk.recall.transport.async"] = "lua/dingtalk/recall/transport/async.lua",
    ["dingtalk.recall.transport.curl"] = "lua/dingtalk/recall/transport/curl.lua",
    ["dingtalk.recall.transport.openresty"] = "lua/dingtalk/recall/transport/openresty.lua",
    ["dingtalk_recall.health"] = "lua/dingtalk_recall/health.lua",
    ["dingtalk_recall"] = "lua/dingtalk_recall/init.lua",
    -- END LUA MODULES
  },
  install = {
    bin = {
      ["dingtalk-recall"] = "bin/dingtalk-recall",
      ["dingtalk-sim"] = "bin/dingtalk-sim",
    },
  },
  copy_directories = { "docs", "examples", "plugin" },
}

test = {
  type = "command",
  command = "make test",
}
