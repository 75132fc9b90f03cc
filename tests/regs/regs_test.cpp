// tests/regs/regs_test.cpp: values live across a switch come back intact.
//
// The inline switch (arch/switch_inline_x86_64.hpp) saves only rbp, rsp and
// the resume address and declares every other register clobbered, trusting
// the compiler to spill what is live. That is easy to get right at one
// optimisation level and wrong at another, so CMake builds this file once per
// -O0/-O1/-O2/-O3, with and without -fomit-frame-pointer, with whichever
// compiler the build uses (CI builds with g++ and with clang).
//
// Two contexts keep many integer and floating-point values live across
// thousands of switches, in loops the compiler cannot hoist, interleaved with
// calls; each compares its result with the same computation done without any
// switch. Then fibers do the same across chronos::yield().
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <chronos/chronos.hpp>

#include <cstdint>
#include <vector>

#include "arch/context.hpp"

namespace {

using chronos::arch::Context;
using chronos::arch::Transfer;

volatile std::uint64_t g_seed = 0x1234'5678'9ABC'DEF0ull;  // defeats constant folding
volatile int g_rounds = 5000;

[[gnu::noinline]] std::uint64_t churn(std::uint64_t x) {  // a call between switches
  return (x ^ (x >> 29)) * 0xBF58'476D'1CE4'E5B9ull;
}

// The computation both sides run: 8 integers and 6 doubles live throughout.
// `yield` is called between every step with all of them live.
template <class Yield>
std::uint64_t work(std::uint64_t seed, int rounds, Yield&& yield) {
  std::uint64_t a = seed, b = seed * 3, c = seed ^ 0xFF, d = seed + 7, e = ~seed, f = seed >> 3,
                g = seed << 5, h = seed * seed;
  double x = static_cast<double>(seed & 0xFFFF), y = 1.5, z = -2.25, u = 0.125, v = 3.0, w = 1e-3;
  for (int i = 0; i < rounds; ++i) {
    a += static_cast<std::uint64_t>(i);
    b ^= a;
    c = c * 31 + b;
    d -= c;
    e ^= d << 1;
    f += e >> 2;
    g = g * 7 + f;
    h ^= g;
    x = x * 1.000001 + static_cast<double>(a & 0xFF);
    y = y - x * 1e-9;
    z = z * 0.999999 + y;
    u += z * 1e-6;
    v = v * 1.0000001 - u;
    w += v * 1e-12;
    yield(i);
    if (i % 7 == 0) a = churn(a);
  }
  auto fp = static_cast<std::uint64_t>(x + y + z + u + v + w);
  return a ^ b ^ c ^ d ^ e ^ f ^ g ^ h ^ fp;
}

#if defined(__x86_64__) && !defined(CHRONOS_CONTEXT_BOOST)
std::uint64_t g_fiber_result = 0;

void fiber_entry(Transfer t) {
  Context back = t.ctx;
  int rounds = g_rounds;
  g_fiber_result =
      work(g_seed + 1, rounds, [&](int) { back = chronos::arch::jump_inline(back, nullptr).ctx; });
  chronos::arch::jump_inline(back, reinterpret_cast<void*>(1));
  __builtin_trap();
}

TEST(InlineSwitchRegisters, LiveValuesSurviveThousandsOfSwitches) {
  constexpr std::size_t kStack = 256 * 1024;
  void* mem = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  Context other =
      chronos::arch::make_inline(static_cast<char*>(mem) + kStack, kStack, &fiber_entry);
  bool finished = false;
  int rounds = g_rounds;
  std::uint64_t mine = work(g_seed, rounds, [&](int) {
    if (finished) return;
    Transfer t = chronos::arch::jump_inline(other, nullptr);
    other = t.ctx;
    finished = t.data != nullptr;
  });
  while (!finished) {  // let the other side run to its end
    Transfer t = chronos::arch::jump_inline(other, nullptr);
    other = t.ctx;
    finished = t.data != nullptr;
  }
  auto none = [](int) {};
  EXPECT_EQ(mine, work(g_seed, rounds, none));
  EXPECT_EQ(g_fiber_result, work(g_seed + 1, rounds, none));
  munmap(mem, kStack);
}
#endif

TEST(InlineSwitchRegisters, LiveValuesSurviveYieldAcrossFibers) {
  chronos::Runtime rt{chronos::Config{.workers = 2}};
  const int rounds = g_rounds / 5;
  std::vector<std::uint64_t> got = rt.block_on([&] {
    std::vector<chronos::JoinHandle<std::uint64_t>> hs;
    for (std::uint64_t k = 0; k < 6; ++k)
      hs.push_back(chronos::go(
          [k, rounds] { return work(g_seed + k, rounds, [](int) { chronos::yield(); }); }));
    std::vector<std::uint64_t> r;
    for (auto& h : hs) r.push_back(h.join());
    return r;
  });
  auto none = [](int) {};
  for (std::uint64_t k = 0; k < 6; ++k) EXPECT_EQ(got[k], work(g_seed + k, rounds, none)) << k;
}

}  // namespace
