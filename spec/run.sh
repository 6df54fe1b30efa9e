#!/bin/sh
# Runs the busted suite under one Lua, with the freshly built core first on
# the path.  LUA: the interpreter command (may carry a prefix such as
# valgrind); LUA_CPATH_DIR: the build folder of that Lua's core.so.
# Prints "<lua>: N passed, N failed" last; exits non-zero on any failure.
set -u
LUA=${LUA:-lua5.1}
CDIR=${LUA_CPATH_DIR:-build/5.1}
BUSTED=${BUSTED:-$(command -v busted)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/?.lua;;"
LUA_CPATH="$ROOT/$CDIR/?.so;;"
export LUA_PATH LUA_CPATH
# The interpreter the specs use for child processes (CLI, simulator).
DINGTALK_RECALL_TEST_LUA=$(echo "$LUA" | awk '{print $NF}')
export DINGTALK_RECALL_TEST_LUA
name=$DINGTALK_RECALL_TEST_LUA
log=$(mktemp)
# shellcheck disable=SC2086
[ $# -gt 0 ] || set -- spec
$LUA "$BUSTED" --output=utfTerminal "$@" 2>&1 | tee "$log"
# busted's summary: "N successes / N failures / N errors / N pending"
summary=$(grep -E '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors?' "$log" | tail -n 1)
rm -f "$log"
ok=$(echo "$summary" | sed -E 's/^[^0-9]*([0-9]+) success.*/\1/')
fail=$(echo "$summary" | sed -E 's/.* ([0-9]+) failures? \/ ([0-9]+) errors?.*/\1 \2/' | awk '{print $1+$2}')
if [ -z "$summary" ]; then
  echo "$name: no busted summary (crash?)"
  exit 1
fi
echo "$name: $ok passed, $fail failed"
[ "$fail" = 0 ] || exit 1
exit 0
