-- luacheck configuration for dingtalk-recall
std = "min"
max_line_length = 120
codes = true
exclude_files = { "build/", ".luarocks/", "node_modules/" }

files["spec/"] = { std = "+busted" }
files["lua/dingtalk_sim/"] = { std = "+ngx_lua" }
files["lua/dingtalk/recall/transport/openresty.lua"] = { std = "+ngx_lua" }
files["examples/openresty/"] = { std = "+ngx_lua" }
files["lua/dingtalk/recall/nvim.lua"] = { read_globals = { "vim" } }
files["plugin/"] = { read_globals = { "vim" } }
files["lua/dingtalk_recall/"] = { read_globals = { "vim" } }
files["bench/orbench.lua"] = { std = "+ngx_lua" }
