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
  CURL = { header = "curl/curl.h", library = "curl" },
  OPENSSL = { header = "openssl/hmac.h", library = "crypto" },
}

build = {
  type = "builtin",
  modules = {
    -- The C core is one translation unit: dtr_module.c includes the
    -- file of each concern, so only luaopen_dingtalk_recall_core is exported.
    ["dingtalk.recall.core"] = {
      sources = { "csrc/dtr_module.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "csrc", "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)" },
      libraries = { "curl", "crypto", "pthread" },
    },
    -- @MODULES@ (kept in sync by `make rockspec-check`)
  },
  install = {
    bin = {
      ["dingtalk-sim"] = "bin/dingtalk-sim",
    },
  },
  copy_directories = { "docs", "examples" },
}

test = {
  type = "command",
  command = "make test",
}
