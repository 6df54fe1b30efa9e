#!/bin/sh
# Runs the busted suite under one Lua, with the freshly built core first on
# the path.
#   LUA            the interpreter command (may carry a prefix such as valgrind)
#   LUA_CPATH_DIR  the build folder of that Lua's core.so (default build/5.1)
#   JOBS           spec files run side by side (default 1: one busted for all);
#                  with JOBS > 1 each spec file gets its own busted process and
#                  log, the slowest files first, and the output of a file is
#                  shown when it fails (all of it with VERBOSE=1)
#   TEST_LOG       also keep the whole output in this file
# Arguments: busted options (--exclude-tags=timing, ...) and spec files or
# folders (default: spec).  Prints "<lua>: N passed, N failed" last; exits
# non-zero on any failure or when busted gives no summary (a crash).
set -u
LUA=${LUA:-lua5.1}
CDIR=${LUA_CPATH_DIR:-build/5.1}
BUSTED=${BUSTED:-$(command -v busted)}
JOBS=${JOBS:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
# A clean Lua environment, whatever the caller's (`luarocks path` for
# another Lua, LUA_INIT): only this checkout and the system's modules.
unset LUA_INIT LUA_INIT_5_2 LUA_INIT_5_3 LUA_INIT_5_4 \
  LUA_PATH_5_2 LUA_PATH_5_3 LUA_PATH_5_4 LUA_CPATH_5_2 LUA_CPATH_5_3 LUA_CPATH_5_4
LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/?.lua;;"
LUA_CPATH="$ROOT/$CDIR/?.so;;"
export LUA_PATH LUA_CPATH
# The interpreter the specs use for child processes (CLI, simulator).
DINGTALK_RECALL_TEST_LUA=$(echo "$LUA" | awk '{print $NF}')
export DINGTALK_RECALL_TEST_LUA
name=$DINGTALK_RECALL_TEST_LUA
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dingtalk-run.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

# busted's summary line: "N successes / N failures / N errors / N pending : T seconds"
SUMMARY_RE='[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors?'
counts() { # log -> "passed failed", or nothing without a summary
  s=$(grep -aE "$SUMMARY_RE" "$1" | tail -n 1)
  [ -n "$s" ] || return 0
  echo "$s" | sed -E 's/^[^0-9]*([0-9]+) success[a-z]* \/ ([0-9]+) failures? \/ ([0-9]+) errors?.*/\1 \2 \3/' |
    awk '{print $1, $2 + $3}'
}

# options (kept word for word, e.g. --filter="a b") and paths
opts=""
paths=""
for a in "$@"; do
  case $a in
    -*) opts="$opts '$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'" ;;
    *) paths="$paths $a" ;;
  esac
done
[ -n "$paths" ] || { paths=spec; set -- "$@" spec; }

if [ "$JOBS" -le 1 ]; then
  # judged by busted's summary, not by the pipeline's status
  $LUA "$BUSTED" --output=utfTerminal "$@" 2>&1 | tee "$TMP/all.log"
  c=$(counts "$TMP/all.log")
  [ -z "${TEST_LOG:-}" ] || cp "$TMP/all.log" "$TEST_LOG"
  if [ -z "$c" ]; then
    echo "$name: no busted summary (crash?)"
    exit 1
  fi
  set -- $c
  echo "$name: $1 passed, $2 failed"
  [ "$2" = 0 ]
  exit
fi

# JOBS > 1: one busted per spec file, JOBS at a time, the biggest files
# (a fair proxy for the slowest) first.
# shellcheck disable=SC2086
files=$(find $paths -name '*_spec.lua' -type f -exec ls -S {} + | tr '\n' ' ')
n=0
for f in $files; do n=$((n + 1)); echo "$n $f"; done >"$TMP/list"
export LUA BUSTED TMP opts
# shellcheck disable=SC2016
xargs -P "$JOBS" -L 1 sh -c '
  start=$(date +%s)
  i=$1 f=$2
  eval "set -- $opts"
  $LUA "$BUSTED" --output=utfTerminal "$@" "$f" >"$TMP/$i.log" 2>&1
  echo $(( $(date +%s) - start )) >"$TMP/$i.secs"
  s=$(grep -aE "[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors?" "$TMP/$i.log" | tail -n 1)
  echo "  ... $f: ${s:-no busted summary} ($(cat "$TMP/$i.secs") s)"
' sh <"$TMP/list"

passed=0
failed=0
: >"$TMP/report"
while read -r i f; do
  c=$(counts "$TMP/$i.log")
  secs=$(cat "$TMP/$i.secs" 2>/dev/null || echo "?")
  if [ -z "$c" ]; then
    p=0 x=1
    note=" (no busted summary: crash?)"
  else
    # shellcheck disable=SC2086
    set -- $c
    p=$1 x=$2 note=""
  fi
  passed=$((passed + p))
  failed=$((failed + x))
  { [ "$x" = 0 ] && [ "${VERBOSE:-0}" = 0 ]; } || { echo "==== $f"; cat "$TMP/$i.log"; } >>"$TMP/report"
  printf '  %-40s %4d passed, %d failed, %4s s%s\n' "$f" "$p" "$x" "$secs" "$note" >>"$TMP/summary"
done <"$TMP/list"
cat "$TMP/report" "$TMP/summary"
[ -z "${TEST_LOG:-}" ] || cat "$TMP/report" "$TMP/summary" "$TMP"/*.log >"$TEST_LOG"
echo "$name: $passed passed, $failed failed"
[ "$failed" = 0 ]
