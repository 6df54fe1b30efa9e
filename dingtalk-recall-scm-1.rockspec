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

-- POSIX only (fork-free, but sockets, clock_gettime, O_NOFOLLOW, flock).
supported_platforms = { "unix" }

external_dependencies = {
  -- Library only: Debian keeps curl/curl.h in a multiarch folder that
  -- luarocks does not search, while the compiler finds it by default.
  CURL = { library = "curl" },
  OPENSSL = { header = "openssl/hmac.h", library = "crypto" },
}

build = {
  -- The C modules are built by the Makefile (`make rock`: into build/rock/,
  -- so that no ./dingtalk/recall/core.so is left at the checkout's root)
  -- and installed by it (`make rock-install`); LuaRocks installs the Lua
  -- modules and the commands listed below.
  type = "make",
  build_target = "rock",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    CURL_LIBS = "-L$(CURL_LIBDIR) -lcurl",
    SSL_LIBS = "-L$(OPENSSL_LIBDIR) -lcrypto",
  },
  install_target = "rock-install",
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
  },
  install = {
    lua = {
      -- BEGIN LUA MODULES (written by `make rockspec`; spec/rockspec_spec.lua checks it)
      ["dingtalk.recall.async"] = "lua/dingtalk/recall/async.lua",
      ["dingtalk.recall.callback"] = "lua/dingtalk/recall/callback.lua",
      ["dingtalk.recall.cli.commands"] = "lua/dingtalk/recall/cli/commands.lua",
      ["dingtalk.recall.cli"] = "lua/dingtalk/recall/cli/init.lua",
      ["dingtalk.recall.cli.usage"] = "lua/dingtalk/recall/cli/usage.lua",
      ["dingtalk.recall.client"] = "lua/dingtalk/recall/client.lua",
      ["dingtalk.recall.clock"] = "lua/dingtalk/recall/clock.lua",
      ["dingtalk.recall.config"] = "lua/dingtalk/recall/config.lua",
      ["dingtalk.recall.engine"] = "lua/dingtalk/recall/engine/init.lua",
      ["dingtalk.recall.engine.pacer"] = "lua/dingtalk/recall/engine/pacer.lua",
      ["dingtalk.recall.engine.run"] = "lua/dingtalk/recall/engine/run.lua",
      ["dingtalk.recall.hosts"] = "lua/dingtalk/recall/hosts.lua",
      ["dingtalk.recall"] = "lua/dingtalk/recall/init.lua",
      ["dingtalk.recall.ledger.changes"] = "lua/dingtalk/recall/ledger/changes.lua",
      ["dingtalk.recall.ledger.file"] = "lua/dingtalk/recall/ledger/file.lua",
      ["dingtalk.recall.ledger"] = "lua/dingtalk/recall/ledger/init.lua",
      ["dingtalk.recall.ledger.order"] = "lua/dingtalk/recall/ledger/order.lua",
      ["dingtalk.recall.ledger.plans"] = "lua/dingtalk/recall/ledger/plans.lua",
      ["dingtalk.recall.ledger.redis"] = "lua/dingtalk/recall/ledger/redis.lua",
      ["dingtalk.recall.ledger.select"] = "lua/dingtalk/recall/ledger/select.lua",
      ["dingtalk.recall.limiter"] = "lua/dingtalk/recall/limiter/init.lua",
      ["dingtalk.recall.limiter.redis"] = "lua/dingtalk/recall/limiter/redis.lua",
      ["dingtalk.recall.redis"] = "lua/dingtalk/recall/redis.lua",
      ["dingtalk.recall.report"] = "lua/dingtalk/recall/report/init.lua",
      ["dingtalk.recall.report.redact"] = "lua/dingtalk/recall/report/redact.lua",
      ["dingtalk.recall.report.render"] = "lua/dingtalk/recall/report/render.lua",
      ["dingtalk.recall.rules"] = "lua/dingtalk/recall/rules.lua",
      ["dingtalk.recall.selector"] = "lua/dingtalk/recall/selector.lua",
      ["dingtalk.recall.shared"] = "lua/dingtalk/recall/shared.lua",
      ["dingtalk.recall.token"] = "lua/dingtalk/recall/token/init.lua",
      ["dingtalk.recall.token.redis"] = "lua/dingtalk/recall/token/redis.lua",
      ["dingtalk.recall.transport.async"] = "lua/dingtalk/recall/transport/async.lua",
      ["dingtalk.recall.transport.curl"] = "lua/dingtalk/recall/transport/curl.lua",
      ["dingtalk.recall.transport.http1"] = "lua/dingtalk/recall/transport/http1.lua",
      ["dingtalk.recall.transport.ngx_shared"] = "lua/dingtalk/recall/transport/ngx_shared.lua",
      ["dingtalk.recall.transport.openresty"] = "lua/dingtalk/recall/transport/openresty.lua",
      ["dingtalk_recall.commands"] = "lua/dingtalk_recall/commands.lua",
      ["dingtalk_recall.health"] = "lua/dingtalk_recall/health.lua",
      ["dingtalk_recall.native"] = "lua/dingtalk_recall/native.lua",
      ["dingtalk_recall.results"] = "lua/dingtalk_recall/results.lua",
      ["dingtalk_recall.state"] = "lua/dingtalk_recall/state.lua",
      ["dingtalk_recall"] = "lua/dingtalk_recall/init.lua",
      ["dingtalk_sim.admin"] = "lua/dingtalk_sim/admin.lua",
      ["dingtalk_sim.answer"] = "lua/dingtalk_sim/answer.lua",
      ["dingtalk_sim.conf"] = "lua/dingtalk_sim/conf.lua",
      ["dingtalk_sim.main"] = "lua/dingtalk_sim/main.lua",
      ["dingtalk_sim.proc"] = "lua/dingtalk_sim/proc.lua",
      ["dingtalk_sim.request"] = "lua/dingtalk_sim/request.lua",
      ["dingtalk_sim.server"] = "lua/dingtalk_sim/server.lua",
      ["dingtalk_sim.state"] = "lua/dingtalk_sim/state.lua",
      -- END LUA MODULES
    },
    bin = {
      ["dingtalk-recall"] = "bin/dingtalk-recall",
      ["dingtalk-sim"] = "bin/dingtalk-sim",
    },
  },
  -- plugin/, doc/ and autoload/ (for :checkhealth) make the rock's folder a Neovim
  -- runtimepath entry (docs/neovim.md); docs/ and examples/ are for the reader.
  copy_directories = { "autoload", "doc", "docs", "examples", "plugin" },
}

-- `luarocks make && luarocks test`: the busted suite (spec/run.sh, the
-- paths of .busted) against the core this rockspec built (build/rock/),
-- under the rock's own Lua, without the real-time checks; works offline
-- with Debian's lua-busted.  `make test` is the full run.
test = {
  type = "command",
  script = "spec/luarocks_test.lua",
}
