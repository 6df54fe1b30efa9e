" :checkhealth dingtalk_recall where lua/dingtalk_recall/ is not under a
" 'runtimepath' folder (a LuaRocks install: the rock's folder holds plugin/,
" doc/ and this file; the Lua modules are on package.path).  Neovim prefers
" lua/dingtalk_recall/health.lua when it finds it.
function! health#dingtalk_recall#check() abort
  lua require("dingtalk_recall.health").check()
endfunction
