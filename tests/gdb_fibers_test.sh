#!/usr/bin/env bash
# tests/gdb_fibers_test.sh GDB PROG [CHRONOS_PY]: checks tools/gdb/chronos.py
# against tests/gdb_fibers_prog.cpp, stopped in chronos_gdb_test_stop():
#   1. `info chronos-fibers` says there is no runtime before one exists, then
#      lists the program's fibers with the right states, priority and flags;
#   2. `chronos-fiber bt` walks a parked fiber's stack (park_in_recv,
#      park_on_mutex, park_small, and a Ready fiber in park_in_yield), also
#      when borrowing a thread blocked in a system call, and refuses a Done
#      fiber, a Running one, an unknown id and a garbled argument;
#   3. the process then continues and exits normally: every register was put
#      back (the program checks that the borrowed thread's read() survived);
#   4. on a core file the list still works and a bt is refused;
#   0. first of all, gdb loads the extension by itself (.debug_gdb_scripts).
set -euo pipefail
gdb=$1 prog=$2
py=${3:-$(cd "$(dirname "$0")/.." && pwd)/tools/gdb/chronos.py}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# A gdb built without Python cannot load the extension: skipped (ctest's
# SKIP_RETURN_CODE 77), not failed.
# (Every check greps a captured string, never a pipe: under pipefail, grep -q
# quitting at its first match can kill the writer with SIGPIPE and fail the
# check; seen once in CI, under load.)
grep -q py-ok <<<"$("$gdb" -nx -batch -ex 'python print("py-ok")' 2>/dev/null || true)" \
  || { echo "SKIP: $gdb has no Python support"; exit 77; }
run_gdb() { timeout 300 "$gdb" -nx -batch -ex 'set debuginfod enabled off' -ex "source $py" "$@" 2>&1 || true; }
quiet() {  # gdb's chatter about threads and libthread_db
  grep -v '^\[New Thread\|^\[Thread .* exited\]\|^\[Inferior .* killed\]\|^\[Thread debugging\|^Using host libthread_db\|^Kill the program\|^warning: Memory read failed for corefile' || true
}

# ---- run 0: gdb loads the extension by itself, from the program's
# .debug_gdb_scripts entry (sched/gdb_autoload.S), once told where it lives
pydir=$(dirname "$py")
out0=$(timeout 300 "$gdb" -nx -batch -ex 'set debuginfod enabled off' \
  -iex "add-auto-load-safe-path $pydir" -iex "directory $pydir" \
  -ex 'break chronos_gdb_test_stop' -ex run -ex 'info auto-load python-scripts' \
  -ex 'info chronos-fibers' -ex kill "$prog" 2>&1 | quiet || true)
echo "$out0"
grep -Eq '^Yes +.*chronos\.py' <<<"$out0" || fail "gdb did not auto-load chronos.py"
grep -Eq '^ +[0-9]+ +Waiting .* recv-parked$' <<<"$out0" \
  || fail "auto-loaded: info chronos-fibers does not list recv-parked"

# ---- run 1: the listing (and a core file for step 4)
out1=$(run_gdb -ex 'break main' -ex run -ex 'info chronos-fibers' \
  -ex 'break chronos_gdb_test_stop' -ex continue -ex 'info chronos-fibers' \
  -ex "gcore $tmp/core" -ex kill "$prog" | quiet)
echo "$out1"
grep -q '^No live chronos runtime in this process' <<<"$out1" \
  || fail "no 'no runtime' message before the runtime exists"
list=$(echo "$out1" | sed -n '/^Runtime 0x/,$p')
# field: Id State Prio Small Wait TCB Name
row() { echo "$list" | awk -v n="$1" '$NF == n { print; exit }'; }
col() { row "$1" | awk -v c="$2" '{ print $c }'; }
expect() {  # name state prio small wait
  local r
  r=$(row "$1")
  [ -n "$r" ] || fail "fiber $1 not listed"
  [ "$(col "$1" 2)" = "$2" ] || fail "fiber $1: state $(col "$1" 2), expected $2"
  [ "$(col "$1" 3)" = "$3" ] || fail "fiber $1: priority $(col "$1" 3), expected $3"
  [ "$(col "$1" 4)" = "$4" ] || fail "fiber $1: small $(col "$1" 4), expected $4"
  [ "$(col "$1" 5)" = "$5" ] || fail "fiber $1: wait kind $(col "$1" 5), expected $5"
}
expect recv-parked Waiting 8 no Sync
expect mutex-parked Waiting 8 no Sync
expect small-parked Waiting 3 yes Sync
expect yield-ready Ready 8 no -
expect finished Done 8 no -
expect spinner Running 8 no -
expect not-started Ready 8 no -
expect lazy-small Ready 8 yes -
# The program printed the ids it got: the list must agree.
for n in recv-parked mutex-parked small-parked yield-ready finished spinner not-started lazy-small; do
  printed=$(echo "$out1" | sed -n "s/^fiber $n id=\([0-9]*\)$/\1/p")
  [ "$printed" = "$(col $n 1)" ] || fail "fiber $n: listed id $(col $n 1), the program says $printed"
done
recv=$(col recv-parked 1) mutex=$(col mutex-parked 1) small=$(col small-parked 1)
ready=$(col yield-ready 1) done_id=$(col finished 1) spinner=$(col spinner 1)
late=$(col not-started 1) lazy=$(col lazy-small 1)

# ---- run 2: backtraces, refusals, and the process going on
# Fiber ids are per runtime and the program is deterministic: the same ids.
pick_reader='python [t.switch() for t in gdb.selected_inferior().threads() if t.name == "gdb-reader"]'
out2=$(run_gdb -ex 'break chronos_gdb_test_stop' -ex run \
  -ex 'echo ==bt-recv==\n' -ex "chronos-fiber bt $recv" \
  -ex 'echo ==bt-mutex==\n' -ex "chronos-fiber bt $mutex" \
  -ex 'echo ==bt-small==\n' -ex "chronos-fiber bt $small" \
  -ex 'echo ==bt-ready==\n' -ex "chronos-fiber bt $ready" \
  -ex 'echo ==bt-not-started==\n' -ex "chronos-fiber bt $late" \
  -ex 'echo ==bt-lazy==\n' -ex "chronos-fiber bt $lazy" \
  -ex 'echo ==refusals==\n' -ex "chronos-fiber bt $done_id" -ex "chronos-fiber bt $spinner" \
  -ex 'chronos-fiber bt 999999' -ex 'chronos-fiber bt bogus' -ex 'chronos-fiber bt' \
  -ex 'echo ==bt-from-reader==\n' -ex "$pick_reader" -ex "chronos-fiber bt $recv" \
  -ex 'echo ==after==\n' -ex 'thread 1' -ex bt -ex continue "$prog" | quiet)
echo "$out2"
section() { echo "$out2" | sed -n "/^==$1==\$/,/^==/p"; }
check_bt() {  # section function
  local s
  s=$(section "$1")
  grep -Eq "^#[0-9]+ .*$2 " <<<"$s" || fail "$1: no $2 frame"
  grep -q 'chronos_context_trampoline\|make_fcontext' <<<"$s" \
    || fail "$1: the walk does not reach the fiber's entry"
  grep -Eq '^#[0-9]+ .* (main|chronos_gdb_test_stop) \(' <<<"$s" && fail "$1: the walk left the fiber's stack"
  grep -qi 'corrupt stack\|previous frame identical\|bt failed' <<<"$s" && fail "$1: gdb complained"
  return 0
}
check_bt bt-recv park_in_recv
check_bt bt-mutex park_on_mutex
check_bt bt-small park_small
check_bt bt-ready park_in_yield
check_bt bt-from-reader park_in_recv
grep -q "borrowing thread [2-9]" <<<"$(section bt-from-reader)" || fail "the reader thread was not the one borrowed"
grep -q 'it has not started yet' <<<"$(section bt-not-started)" || fail "no note for a fiber never run"
grep -q 'has not started yet: no stack is bound' <<<"$(section bt-lazy)" || fail "no note for a lazy fiber never run"
r=$(section refusals)
grep -q '"finished" is Done' <<<"$r" || fail "no refusal for a Done fiber"
grep -q '"spinner" is Running' <<<"$r" || fail "no refusal for a Running fiber"
grep -q 'no live fiber with id 999999' <<<"$r" || fail "no message for an unknown id"
grep -q "'bogus' is not a fiber id" <<<"$r" || fail "no message for a garbled id"
grep -q 'which fiber?' <<<"$r" || fail "no message for a missing id"
grep -q 'Traceback\|Python Exception' <<<"$out2" && fail "a Python error escaped"
grep -q '^#0 .*chronos_gdb_test_stop' <<<"$(section after)" || fail "thread 1's own stack is not back"
grep -q 'FAIL:' <<<"$out2" && fail "the program reports a failure"
grep -q 'exited normally' <<<"$out2" || fail "the process did not continue to a normal exit"

# ---- run 3: a core file
if [ -s "$tmp/core" ]; then
  out3=$("$gdb" -nx -batch -ex 'set debuginfod enabled off' -ex "source $py" \
    -ex 'info chronos-fibers' -ex "chronos-fiber bt $recv" "$prog" "$tmp/core" 2>&1 || true)
  echo "$out3" | sed -n '/^Runtime 0x/,$p'
  grep -Eq "^ +$recv +Waiting .* recv-parked\$" <<<"$out3" || fail "core: recv-parked not listed"
  grep -q 'needs a live process' <<<"$out3" || fail "core: bt not refused"
else
  echo "(no core file written: the core-file check is skipped)"
fi
echo "PASS: fibers listed, parked stacks walked, registers restored, process exited normally"
exit 0
