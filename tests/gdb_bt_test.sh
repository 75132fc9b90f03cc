#!/usr/bin/env bash
# tests/gdb_bt_test.sh GDB DEMO: stops the demo inside a fiber and checks that
# gdb's backtrace walks back to the fiber's entry and stops there cleanly.
set -euo pipefail
gdb=$1 demo=$2
out=$("$gdb" -nx -batch -ex 'set debuginfod enabled off' -ex 'break chronos::yield' -ex run \
  -ex bt -ex kill "$demo" 2>&1 || true)
echo "$out" | sed -n '/^#0/,$p'
bt=$(echo "$out" | sed -n '/^#0/,/^$/p')
# Checks grep captured strings, never a pipe: under pipefail, grep -q quitting
# at its first match can kill the writer with SIGPIPE (bash's echo writes a
# line at a time) and fail the check; seen once in CI, under load.
grep -q '^#0 .*chronos::yield' <<<"$bt" || { echo "FAIL: not stopped in yield"; exit 1; }
grep -Eq '^#[0-9]+ +(0x[0-9a-f]+ in )?(main|start_thread|clone3?) ' <<<"$bt" && { echo "FAIL: the walk left the fiber's stack"; exit 1; }
last=$(grep '^#' <<<"$bt" | tail -n 1)
# The asm backend's trampoline ends the walk by CFI; Boost's fcontext leaves a
# null return address above its make_fcontext frame, which gdb shows as a
# final "0x0 in ??" frame.
before_last=$(grep '^#' <<<"$bt" | tail -n 2 | head -n 1)
case "$last" in
*chronos_context_trampoline*) echo "PASS: bt ends at: $last" ;;
*"0x0000000000000000 in ??"*)
  case "$before_last" in
  *make_fcontext*) echo "PASS (boost fcontext): bt ends at: $before_last" ;;
  *) echo "FAIL: bt ends at: $last"; exit 1 ;;
  esac
  ;;
*) echo "FAIL: bt ends at: $last"; exit 1 ;;
esac
grep -qi 'corrupt stack\|previous frame identical' <<<"$out" && { echo "FAIL: gdb complained"; exit 1; }
exit 0
