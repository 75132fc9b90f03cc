// tests/sched_unwind_test.cpp: unwinding a fiber's stack, by the libgcc
// unwinder (what exceptions and backtraces use) and by gdb.
#include <gtest/gtest.h>
#include <unwind.h>

#include <chronos/chronos.hpp>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace {

struct Walk {
  std::vector<std::uintptr_t> ips;
  static _Unwind_Reason_Code step(_Unwind_Context* ctx, void* arg) {
    auto* w = static_cast<Walk*>(arg);
    w->ips.push_back(_Unwind_GetIP(ctx));
    return w->ips.size() < 256 ? _URC_NO_REASON : _URC_NORMAL_STOP;
  }
};

[[gnu::noinline]] Walk walk_here(int depth) {
  if (depth > 0) {
    Walk w = walk_here(depth - 1);
    asm volatile("" : : : "memory");  // not a tail call
    return w;
  }
  Walk w;
  _Unwind_Reason_Code rc = _Unwind_Backtrace(&Walk::step, &w);
  if (rc != _URC_END_OF_STACK) w.ips.clear();  // signals a walk that did not end cleanly
  return w;
}

TEST(Unwind, TheLibgccUnwinderStopsCleanlyAtTheFibersEntry) {
  chronos::Runtime rt{chronos::Config{.workers = 1}};
  auto walk = rt.block_on([] {
    return chronos::go([] {
             chronos::yield();  // walk after a real switch, not only on a fresh stack
             return walk_here(5);
           })
        .join();
  });
  // _URC_END_OF_STACK: the walk reached the trampoline, whose CFI marks the
  // return address undefined, and stopped there without running into garbage.
  ASSERT_FALSE(walk.ips.empty()) << "the unwinder did not end with _URC_END_OF_STACK";
  EXPECT_GE(walk.ips.size(), 7u);   // walk_here x6, the lambda, the fiber's entry...
  EXPECT_LT(walk.ips.size(), 40u);  // ...and nothing of the worker thread's own stack
}

}  // namespace
