// bench/switch_bench.cpp: the raw context switch, with no scheduler around it.
//
// Each benchmark ping-pongs between the benchmark's own context and one other
// context that does nothing but switch straight back. Every iteration is one
// switch in one direction (the loop runs in batches of 2, one round trip), so
// the Time column is the time per single switch; items_per_second is
// switches per second.
//
//   BM_ChronosJump   chronos::arch::make / arch::jump (asm backend, or Boost's
//                    fcontext when built with CHRONOS_CONTEXT=boost; see label)
//   BM_BoostFcontext boost::context::detail::make_fcontext / jump_fcontext
//   BM_Ucontext      POSIX makecontext / swapcontext (saves the signal mask:
//                    one rt_sigprocmask system call per switch)
//
//   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCHRONOS_BUILD_TESTS=OFF
//   cmake --build build-bench -j2 --target switch_bench && build-bench/bench/switch_bench
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <cstddef>
#include <cstdlib>

#include "arch/context.hpp"

#if CHRONOS_BENCH_HAVE_BOOST
#include <boost/context/detail/fcontext.hpp>
#endif

namespace {

// An mmap'd stack. The context left suspended on it is abandoned, never resumed.
class Stack {
 public:
  static constexpr std::size_t kSize = 256 * 1024;
  Stack() {
    lo_ = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                 -1, 0);
    if (lo_ == MAP_FAILED) std::abort();
  }
  ~Stack() { ::munmap(lo_, kSize); }
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
  void* lo() const { return lo_; }
  void* top() const { return static_cast<char*>(lo_) + kSize; }

 private:
  void* lo_;
};

// ---------------------------------------------------------------- chronos
[[noreturn]] void chronos_echo(chronos::arch::Transfer t) {
  for (;;) t = chronos::arch::jump(t.ctx, t.data);
}

void BM_ChronosJump(benchmark::State& state) {
  namespace arch = chronos::arch;
  Stack stack;
  arch::Context other = arch::make(stack.top(), Stack::kSize, &chronos_echo);
  other = arch::jump(other, nullptr).ctx;  // start it; it jumps straight back
  while (state.KeepRunningBatch(2)) other = arch::jump(other, nullptr).ctx;
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(arch::kBackendName);
}
BENCHMARK(BM_ChronosJump);

// ---------------------------------------------------------------- Boost.Context
#if CHRONOS_BENCH_HAVE_BOOST
namespace bctx = boost::context::detail;

[[noreturn]] void boost_echo(bctx::transfer_t t) {
  for (;;) t = bctx::jump_fcontext(t.fctx, t.data);
}

void BM_BoostFcontext(benchmark::State& state) {
  Stack stack;
  bctx::fcontext_t other = bctx::make_fcontext(stack.top(), Stack::kSize, &boost_echo);
  other = bctx::jump_fcontext(other, nullptr).fctx;
  while (state.KeepRunningBatch(2)) other = bctx::jump_fcontext(other, nullptr).fctx;
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_BoostFcontext);
#endif

// ---------------------------------------------------------------- ucontext
ucontext_t g_uc_bench, g_uc_other;

[[noreturn]] void ucontext_echo() {
  for (;;) ::swapcontext(&g_uc_other, &g_uc_bench);
}

void BM_Ucontext(benchmark::State& state) {
  Stack stack;
  ::getcontext(&g_uc_other);
  g_uc_other.uc_stack.ss_sp = stack.lo();
  g_uc_other.uc_stack.ss_size = Stack::kSize;
  g_uc_other.uc_link = nullptr;
  ::makecontext(&g_uc_other, &ucontext_echo, 0);
  ::swapcontext(&g_uc_bench, &g_uc_other);
  while (state.KeepRunningBatch(2)) ::swapcontext(&g_uc_bench, &g_uc_other);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Ucontext);

}  // namespace
