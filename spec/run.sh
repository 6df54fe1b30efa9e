#!/bin/sh
# Runs the busted suite under one Lua or several, each with its freshly
# built core first on the path.
#   LUA            the interpreter command (may carry a prefix such as valgrind)
#   LUA_CPATH_DIR  the build folder of that Lua's core.so (default build/5.1)
#   RUNTIMES       several runtimes in one run instead of LUA/LUA_CPATH_DIR:
#                  "lua5.1=build/5.1 lua5.4=build/5.4 luajit=build/jit"
#   JOBS           busted processes side by side (default 1: one busted for
#                  all, one runtime only).  With JOBS > 1 or several runtimes,
#                  every (runtime, spec file) pair is a task in one queue,
#                  the longest expected first (TIMES), JOBS workers taking
#                  the next task as they finish, so the run ends with a short
#                  tail; a task's output is shown when it fails (all with
#                  VERBOSE=1)
#   TIMES          the per-file timing record the queue is ordered by and
#                  that each queued run updates (default
#                  build/test-logs/times; lines "<lua>@<build dir> <file>
#                  <seconds>"; a file not in it is put first; with no
#                  record yet, as in a fresh checkout, spec/times.seed)
#   LOG_DIR        keep each runtime's whole output in LOG_DIR/<lua>.log
#   TEST_LOG       (one runtime) keep the whole output in this file
#   RETRY_FAILED   1: a failed (runtime, spec file) task is run once more,
#                  alone, once the queue is done (the real-time checks: a
#                  noisy machine can push one past its bound); the first
#                  run's output is still shown, the total line counts the
#                  tasks that passed only when run again, and a task that
#                  fails twice fails the run
# Arguments: busted options (--exclude-tags=timing, ...) and spec files or
# folders (default: spec).  Prints "<lua>: N passed, N failed" per runtime
# (last, with one runtime; then a total line with several); exits non-zero
# on any failure or when busted gives no summary (a crash).
set -u
BUSTED=${BUSTED:-$(command -v busted)}
JOBS=${JOBS:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
TIMES=${TIMES-$ROOT/build/test-logs/times}
# This run's settings, kept from the specs (a spec may run run.sh itself).
runtimes=${RUNTIMES:-} log_dir=${LOG_DIR:-} test_log=${TEST_LOG:-} verbose=${VERBOSE:-0} jobs=$JOBS times=$TIMES
retry_failed=${RETRY_FAILED:-0}
unset RUNTIMES LOG_DIR TEST_LOG VERBOSE JOBS TIMES RETRY_FAILED
# A clean Lua environment, whatever the caller's (`luarocks path` for
# another Lua, LUA_INIT): only this checkout and the system's modules.
unset LUA_INIT LUA_INIT_5_2 LUA_INIT_5_3 LUA_INIT_5_4 \
  LUA_PATH_5_2 LUA_PATH_5_3 LUA_PATH_5_4 LUA_CPATH_5_2 LUA_CPATH_5_3 LUA_CPATH_5_4
LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/?.lua;;"
export LUA_PATH
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dingtalk-run.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

# The runtimes: RT_LUA_<k>, RT_CDIR_<k>, RT_NAME_<k> (exported), k = 1..nrt.
nrt=0
add_runtime() { # lua-command build-dir
  nrt=$((nrt + 1))
  # the name: the interpreter (the last word: valgrind ... lua5.4 -> lua5.4), without its folder
  # shellcheck disable=SC2034 # (used in the eval)
  n=${1##* }
  eval "RT_LUA_$nrt=\$1; RT_CDIR_$nrt=\$2; RT_NAME_$nrt=\${n##*/}; export RT_LUA_$nrt RT_CDIR_$nrt RT_NAME_$nrt"
}
if [ -n "$runtimes" ]; then
  for r in $runtimes; do add_runtime "${r%%=*}" "${r#*=}"; done
else
  add_runtime "${LUA:-lua5.1}" "${LUA_CPATH_DIR:-build/5.1}"
fi
rt() { eval "printf '%s\n' \"\$RT_$2_$1\""; } # k LUA|CDIR|NAME

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

if [ "$jobs" -le 1 ] && [ "$nrt" = 1 ]; then
  LUA=$RT_LUA_1
  LUA_CPATH="$ROOT/$RT_CDIR_1/?.so;;"
  # The interpreter the specs use for child processes (CLI, simulator).
  DINGTALK_RECALL_TEST_LUA=$(echo "$LUA" | awk '{print $NF}')
  export LUA_CPATH DINGTALK_RECALL_TEST_LUA
  name=$DINGTALK_RECALL_TEST_LUA
  # judged by busted's summary, not by the pipeline's status
  $LUA "$BUSTED" --output=utfTerminal "$@" 2>&1 | tee "$TMP/all.log"
  c=$(counts "$TMP/all.log")
  [ -z "$test_log" ] || cp "$TMP/all.log" "$test_log"
  if [ -z "$c" ]; then
    echo "$name: no busted summary (crash?)"
    exit 1
  fi
  set -- $c
  echo "$name: $1 passed, $2 failed"
  [ "$2" = 0 ]
  exit
fi

# The queue: one task per (runtime, spec file), the longest expected first.
# Expected: the file's last time under that runtime (TIMES), else under
# another runtime, else first of all (a new file: its time is unknown).
start_all=$(date +%s)
[ "$jobs" -ge 1 ] || jobs=1
# shellcheck disable=SC2086
files=$(find $paths -name '*_spec.lua' -type f | sort)
[ -n "$files" ] || { echo "no spec file in:$paths"; exit 1; }
k=1
while [ "$k" -le "$nrt" ]; do
  key="$(rt "$k" NAME)@$(rt "$k" CDIR)"
  # shellcheck disable=SC2086
  wc -c $files | awk -v k="$k" -v key="$key" '$2 != "total" { print k, key, $2, $1 }'
  k=$((k + 1))
done >"$TMP/tasks"
{ [ -n "$times" ] && [ -f "$times" ] && cat "$times"; } >"$TMP/times.old" 2>/dev/null || : >"$TMP/times.old"
# a checkout's first run (no record yet): a record committed as a seed
# (spec/times.seed, a copy of build/test-logs/times after a whole run)
[ -s "$TMP/times.old" ] || cat "$ROOT/spec/times.seed" >"$TMP/times.old" 2>/dev/null || :
# expected seconds: recorded; or another runtime's; or, unknown, first of
# all, the biggest files first (1e9 + bytes)
awk 'FILENAME == ARGV[1] { t[$1 " " $2] = $3; if (!($2 in any) || $3 > any[$2]) any[$2] = $3; next }
     { e = ($2 " " $3) in t ? t[$2 " " $3] : (($3 in any) ? any[$3] : 1e9 + $4); print e, $1, $3 }' \
  "$TMP/times.old" "$TMP/tasks" | sort -k1,1gr -k3,3 -k2,2n | awk '{print NR, $2, $3}' >"$TMP/list"
ntasks=$(wc -l <"$TMP/list")
export BUSTED TMP opts ROOT nrt
# Each task: its log, and $TMP/<i>.res = "passed failed seconds summary"
# ("- 1 seconds" without a summary).
# shellcheck disable=SC2016
TASK='
  i=$1 k=$2 f=$3
  eval "LUA=\$RT_LUA_$k CDIR=\$RT_CDIR_$k name=\$RT_NAME_$k"
  LUA_CPATH="$ROOT/$CDIR/?.so;;"
  DINGTALK_RECALL_TEST_LUA=${LUA##* }
  export LUA_CPATH DINGTALK_RECALL_TEST_LUA
  eval "set -- $opts"
  start=$(date +%s%N)
  $LUA "$BUSTED" --output=utfTerminal "$@" "$f" >"$TMP/$i.log" 2>&1
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  awk -v secs="$((ms / 1000)).$((ms % 1000 / 100))$((ms % 100 / 10))$((ms % 10))" "
    match(\$0, /[0-9]+ success(es)? \/ [0-9]+ failures? \/ [0-9]+ errors?/) { s = substr(\$0, RSTART) }
    END { if (s == \"\") print \"- 1\", secs; else { split(s, a, \" \"); print a[1], a[4] + a[7], secs, s } }
  " "$TMP/$i.log" >"$TMP/$i.res"
  read -r p x secs s <"$TMP/$i.res"
  who=""; [ "$nrt" = 1 ] || who="$name "
  echo "  ... $who$f: ${s:-no busted summary} ($secs s)"
'
xargs -P "$jobs" -L 1 sh -c "$TASK" sh <"$TMP/list"

# The failed tests of a task's log: "name (file:line)" lines, from
# busted's "Failure → file @ line" / "Error → ..." and the name after it.
failed_tests() {
  awk '/^(Failure|Error) (->|→) / { at = $3 ":" $5; getline; print $0 " (" at ")" }' "$1"
}

# RETRY_FAILED=1: each failed task once more, one after another; its first
# log is kept as <i>.first (shown in the report), the second decides.
retried=0
if [ "$retry_failed" = 1 ]; then
  while read -r i k f; do
    p=- x=1
    [ -f "$TMP/$i.res" ] && read -r p x _ <"$TMP/$i.res"
    [ "$p" != - ] && [ "$x" = 0 ] && continue
    eval "name=\$RT_NAME_$k"
    echo "  ... $name $f failed: running it again, alone"
    mv "$TMP/$i.log" "$TMP/$i.first"
    sh -c "$TASK" sh "$i" "$k" "$f" </dev/null
    read -r p x _ <"$TMP/$i.res"
    if [ "$p" != - ] && [ "$x" = 0 ]; then
      retried=$((retried + 1))
    fi
  done <"$TMP/list"
fi

# Results per runtime: report (failed files' logs), summary lines, counts.
k=1
while [ "$k" -le "$nrt" ]; do
  : >"$TMP/report.$k"
  : >"$TMP/summary.$k"
  eval "P_$k=0 X_$k=0"
  k=$((k + 1))
done
: >"$TMP/times.new"
: >"$TMP/failed"
while read -r i k f; do
  p=- x=1 secs="?" s=""
  [ -f "$TMP/$i.res" ] && read -r p x secs s <"$TMP/$i.res"
  eval "name=\$RT_NAME_$k cdir=\$RT_CDIR_$k"
  note=""
  if [ "$p" = - ]; then
    p=0 x=1
    note=" (no busted summary: crash?)"
  fi
  eval "P_$k=\$((P_$k + p)) X_$k=\$((X_$k + x))"
  if [ -f "$TMP/$i.first" ]; then # failed, then run again (RETRY_FAILED)
    { echo "==== $name $f (the first run; it was run again, alone)"; cat "$TMP/$i.first"; } >>"$TMP/report.$k"
    [ "$x" != 0 ] || failed_tests "$TMP/$i.first" | sed "s|^|  $name: failed, then passed alone: |" >>"$TMP/failed"
  fi
  { [ "$x" = 0 ] && [ "$verbose" = 0 ]; } || { echo "==== $name $f"; cat "$TMP/$i.log"; } >>"$TMP/report.$k"
  twice=""
  [ ! -f "$TMP/$i.first" ] || twice=" twice"
  if [ "$x" != 0 ]; then
    failed_tests "$TMP/$i.log" >"$TMP/names"
    # a run that names no failed test (a crash, no summary): its file instead
    [ -s "$TMP/names" ] || echo "$f: no test named (no busted summary: crash?)" >"$TMP/names"
    sed "s|^|  $name: failed$twice: |" "$TMP/names" >>"$TMP/failed"
  fi
  printf '  %-40s %4d passed, %d failed, %8s s%s\n' "$f" "$p" "$x" "$secs" "$note" >>"$TMP/summary.$k"
  # shellcheck disable=SC2154 # (cdir: set by the eval)
  [ "$secs" = "?" ] || echo "$name@$cdir $f $secs" >>"$TMP/times.new"
done <"$TMP/list"

# The timing record: this run's times replace the old ones.
if [ -n "$times" ] && [ -s "$TMP/times.new" ]; then
  mkdir -p "$(dirname "$times")" &&
    awk 'FILENAME == ARGV[1] { new[$1 " " $2] = 1; print; next } !(($1 " " $2) in new)' \
      "$TMP/times.new" "$TMP/times.old" | sort >"$times.tmp.$$" && mv "$times.tmp.$$" "$times"
fi

passed=0
failed=0
k=1
: >"$TMP/lines"
while [ "$k" -le "$nrt" ]; do
  eval "name=\$RT_NAME_$k p=\$P_$k x=\$X_$k"
  passed=$((passed + p))
  failed=$((failed + x))
  cat "$TMP/report.$k"
  # the table of files (with several runtimes: in the logs only)
  [ "$nrt" != 1 ] || sort -k1,1 "$TMP/summary.$k"
  line="$name: $p passed, $x failed"
  if [ -n "$log_dir" ]; then
    mkdir -p "$log_dir"
    { cat "$TMP/report.$k" "$TMP/summary.$k"
      while read -r i kk f; do [ "$kk" = "$k" ] && { echo "==== $f"; cat "$TMP/$i.log"; }; done <"$TMP/list"
      echo "$line"; } >"$log_dir/$name.log"
    [ "$nrt" = 1 ] || line="$line   (log: $log_dir/$name.log)"
  fi
  [ -z "$test_log" ] || [ "$nrt" != 1 ] ||
    cat "$TMP/report.$k" "$TMP/summary.$k" "$TMP"/*.log >"$test_log"
  echo "$line" >>"$TMP/lines"
  k=$((k + 1))
done
if [ "$nrt" != 1 ]; then
  echo "  the slowest tasks (seconds, runtime, file):"
  sort -k3,3gr "$TMP/times.new" | head -n 8 | awk '{ sub(/@.*/, "", $1); printf "  %8s  %-8s %s\n", $3, $1, $2 }'
fi
# the failed tests by name, last, where a short excerpt of the output shows them
if [ -s "$TMP/failed" ]; then
  echo "  the failed tests:"
  cat "$TMP/failed"
fi
cat "$TMP/lines"
again=""
[ "$retried" = 0 ] || again=", $retried of them only when run again"
[ "$nrt" = 1 ] ||
  echo "$passed passed$again, $failed failed ($nrt runtimes, $ntasks tasks, $jobs side by side, $(( $(date +%s) - start_all )) s)"
[ "$failed" = 0 ]
