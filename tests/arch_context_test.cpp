// tests/arch_context_test.cpp: the raw context switch, with no scheduler.
// Runs against whichever backend the build selected (asm or Boost fcontext).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cfenv>
#include <cstdint>
#include <string>
#include <vector>

#include "arch/context.hpp"
#include "arch/sanitizer.hpp"
#if CHRONOS_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace {

using chronos::arch::Context;
using chronos::arch::Transfer;

// The switches under test. Each has make/jump and says whether it carries the
// FP control state; a context is only ever jumped to by the switch that made it.
#if defined(CHRONOS_CONTEXT_BOOST)
struct BoostSwitch {
  static Context make(void* top, std::size_t size, chronos::arch::EntryFn fn) {
    return chronos::arch::make(top, size, fn);
  }
  static Transfer jump(Context to, void* data) { return chronos::arch::jump(to, data); }
  static constexpr bool kSavesFp = true;
  static constexpr bool kFreshDefaults = false;  // make_fcontext copies its creator's state
};
using Switches = testing::Types<BoostSwitch>;
#else
struct AsmSwitch {
  static Context make(void* top, std::size_t size, chronos::arch::EntryFn fn) {
    return chronos::arch::asm_make(top, size, fn);
  }
  static Transfer jump(Context to, void* data) { return chronos::arch::asm_jump(to, data); }
  static constexpr bool kSavesFp = true;
  static constexpr bool kFreshDefaults = true;
};
struct InlineSwitch {
  static Context make(void* top, std::size_t size, chronos::arch::EntryFn fn) {
    return chronos::arch::make_inline(top, size, fn);
  }
  [[gnu::always_inline]] static Transfer jump(Context to, void* data) {
    return chronos::arch::jump_inline(to, data);
  }
  static constexpr bool kSavesFp = false;
  static constexpr bool kFreshDefaults = false;
};
using Switches = testing::Types<AsmSwitch, InlineSwitch>;
#endif

// The raw switch with the sanitizer annotations the scheduler would add, so
// that ASan and TSan follow the stack changes.
struct Sides {
  chronos::arch::SanitizerState main, fiber;
};
thread_local Sides g_sides;

void prepare(void* lo, std::size_t size) {
  chronos::arch::sanitizer_init_thread(g_sides.main);
  chronos::arch::sanitizer_init_fiber(g_sides.fiber);
  chronos::arch::sanitizer_set_stack(g_sides.fiber, lo, size);
}
void finish() {
  chronos::arch::sanitizer_destroy_fiber(g_sides.fiber);
}
// From the test's thread into the context.
template <class S>
Transfer enter(Context c, void* data) {
  chronos::arch::sanitizer_start_switch(g_sides.main, g_sides.fiber, false);
  Transfer t = S::jump(c, data);
  chronos::arch::sanitizer_finish_switch(g_sides.main, nullptr);
  return t;
}
// From the context back to the test's thread.
template <class S>
Transfer leave(Context c, void* data, bool for_good = false) {
  chronos::arch::sanitizer_start_switch(g_sides.fiber, g_sides.main, for_good);
  Transfer t = S::jump(c, data);
  chronos::arch::sanitizer_finish_switch(g_sides.fiber, &g_sides.main);
  return t;
}
// First thing in every entry function.
void started() {
  chronos::arch::sanitizer_finish_switch(g_sides.fiber, &g_sides.main);
}

// A context that left for good leaves its frames' redzones poisoned, and
// ASan keeps that shadow after munmap: the next mapping at the same address
// (a TCB chunk, in a later test of the same process) would trip over it. The
// runtime unpoisons a stack when a fiber gives it up (unbind_stack).
void unmap_stack(void* mem, std::size_t size) {
#if CHRONOS_ASAN
  ASAN_UNPOISON_MEMORY_REGION(mem, size);
#endif
  munmap(mem, size);
}

// A stack mapped for one test.
struct TestStack {
  static constexpr std::size_t kSize = 256 * 1024;
  void* mem;
  TestStack() {
    mem = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(mem, MAP_FAILED);
    prepare(mem, kSize);
  }
  ~TestStack() {
    finish();
    unmap_stack(mem, kSize);
  }
  void* top() const { return static_cast<char*>(mem) + kSize; }
};

// The entries below receive the "main" context in t.ctx and keep it here.
thread_local Context g_back;
thread_local std::vector<int> g_log;

template <class S>
void counting_entry(Transfer t) {
  started();
  g_back = t.ctx;
  auto n = reinterpret_cast<std::intptr_t>(t.data);
  for (std::intptr_t i = 0; i < n; ++i) {
    g_log.push_back(static_cast<int>(i));
    g_back = leave<S>(g_back, reinterpret_cast<void*>(i * 10)).ctx;
  }
  leave<S>(g_back, reinterpret_cast<void*>(-1), true);
  std::abort();  // never resumed again
}

template <class S>
class ArchContext : public testing::Test {};
TYPED_TEST_SUITE(ArchContext, Switches);

TYPED_TEST(ArchContext, JumpPassesDataBothWaysAndResumesInOrder) {
  using S = TypeParam;
  TestStack stack;
  g_log.clear();
  Context c = S::make(stack.top(), TestStack::kSize, &counting_entry<S>);
  Transfer t = enter<S>(c, reinterpret_cast<void*>(std::intptr_t{5}));
  std::vector<std::intptr_t> got;
  while (reinterpret_cast<std::intptr_t>(t.data) != -1) {
    got.push_back(reinterpret_cast<std::intptr_t>(t.data));
    g_log.push_back(100);
    t = enter<S>(t.ctx, nullptr);
  }
  EXPECT_EQ(got, (std::vector<std::intptr_t>{0, 10, 20, 30, 40}));
  EXPECT_EQ(g_log, (std::vector<int>{0, 100, 1, 100, 2, 100, 3, 100, 4, 100}));
}

[[gnu::noinline]] std::uintptr_t frame_address() {
  return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
}

template <class S>
void alignment_entry(Transfer t) {
  started();
  // With a frame pointer, rbp = (rsp at entry) - 8, which the ABI makes
  // 16-byte aligned. A misaligned stack would also crash in movaps below.
  alignas(16) volatile double v[2] = {1.0, 2.0};
  std::uintptr_t fa = frame_address();
  leave<S>(t.ctx, reinterpret_cast<void*>(fa + static_cast<std::uintptr_t>(v[0] - 1)), true);
  std::abort();
}

TYPED_TEST(ArchContext, FreshStackIsAbiAligned) {
  using S = TypeParam;
  TestStack stack;
  // Several deliberately misaligned tops: make() must align them down.
  for (std::uintptr_t skew : {0, 1, 8, 15}) {
    Context c =
        S::make(static_cast<char*>(stack.top()) - skew, TestStack::kSize - 64, &alignment_entry<S>);
    Transfer t = enter<S>(c, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data) % 16, 0u) << "skew " << skew;
  }
}

template <class S>
void throwing_entry(Transfer t) {
  started();
  // Static: this context is abandoned, so nothing on its stack is destroyed.
  static std::string result;
  try {
    throw std::runtime_error("inside a raw context");
  } catch (const std::exception& e) {
    result = e.what();
  }
  leave<S>(t.ctx, &result, true);
  std::abort();
}

TYPED_TEST(ArchContext, ExceptionThrownAndCaughtOnAFreshStack) {
  using S = TypeParam;
  TestStack stack;
  Context c = S::make(stack.top(), TestStack::kSize, &throwing_entry<S>);
  Transfer t = enter<S>(c, nullptr);
  EXPECT_EQ(*static_cast<std::string*>(t.data), "inside a raw context");
}

#if defined(__x86_64__)
unsigned read_mxcsr() {
  unsigned v;
  asm volatile("stmxcsr %0" : "=m"(v));
  return v;
}
void write_mxcsr(unsigned v) {
  asm volatile("ldmxcsr %0" : : "m"(v));
}
unsigned short read_x87cw() {
  unsigned short v;
  asm volatile("fnstcw %0" : "=m"(v));
  return v;
}
void write_x87cw(unsigned short v) {
  asm volatile("fldcw %0" : : "m"(v));
}

struct FpSeen {
  unsigned mxcsr_at_start, mxcsr_after_switch;
  unsigned short x87_at_start, x87_after_switch;
};

template <class S>
void fp_entry(Transfer t) {
  started();
  auto* seen = static_cast<FpSeen*>(t.data);
  seen->mxcsr_at_start = read_mxcsr() & ~0x3Fu;  // control bits only (not the sticky flags)
  seen->x87_at_start = read_x87cw();
  write_mxcsr((read_mxcsr() & ~0x6000u) | 0x4000u);  // round up
  write_x87cw(static_cast<unsigned short>((read_x87cw() & ~0x0C00) | 0x0800));
  t = leave<S>(t.ctx, nullptr);
  seen->mxcsr_after_switch = read_mxcsr() & ~0x3Fu;
  seen->x87_after_switch = read_x87cw();
  leave<S>(t.ctx, nullptr, true);
  std::abort();
}

TYPED_TEST(ArchContext, FloatingPointControlStateStaysWithItsContext) {
  using S = TypeParam;
  if (!S::kSavesFp) GTEST_SKIP() << "this switch leaves FP control state to the scheduler";
  TestStack stack;
  const unsigned mx0 = read_mxcsr();
  const unsigned short cw0 = read_x87cw();
  // The caller runs toward zero; the context picks round-up for itself.
  write_mxcsr((mx0 & ~0x6000u) | 0x6000u);
  FpSeen seen{};
  Context c = S::make(stack.top(), TestStack::kSize, &fp_entry<S>);
  Transfer t = enter<S>(c, &seen);
  // Back here the caller's mode is ours again, not the context's round-up.
  EXPECT_EQ(read_mxcsr() & 0x6000u, 0x6000u);
  EXPECT_EQ(read_x87cw(), cw0);
  t = enter<S>(t.ctx, nullptr);
  EXPECT_EQ(seen.mxcsr_after_switch & 0x6000u, 0x4000u);
  EXPECT_EQ(seen.x87_after_switch & 0x0C00, 0x0800);
  if (S::kFreshDefaults) {  // the asm switch starts every context with the psABI defaults
    EXPECT_EQ(seen.mxcsr_at_start, 0x1F80u);  // the psABI defaults
    EXPECT_EQ(seen.x87_at_start, 0x037F);
  }
  write_mxcsr(mx0);
  write_x87cw(cw0);
}
#endif

#if !defined(CHRONOS_CONTEXT_BOOST) && defined(__x86_64__)
void never_runs(Transfer) {
  std::abort();
}

TEST(ArchAsmSwitch, FreshFrameMatchesTheSharedLayout) {
  TestStack stack;
  Context c = chronos::arch::asm_make(stack.top(), TestStack::kSize, &never_runs);
  auto* frame = static_cast<chronos::arch::SavedFrame*>(c);
  EXPECT_EQ(frame->mxcsr, chronos::arch::kDefaultMxcsr);
  EXPECT_EQ(frame->x87_cw, chronos::arch::kDefaultX87Cw);
  EXPECT_EQ(frame->rbx, reinterpret_cast<void*>(&never_runs));
  EXPECT_EQ(frame->rbp, nullptr);
  EXPECT_NE(frame->rip, nullptr);
  // After the frame is popped, rsp must be 16-aligned for the trampoline's call.
  EXPECT_EQ((reinterpret_cast<std::uintptr_t>(c) + sizeof(chronos::arch::SavedFrame)) % 16, 0u);
  EXPECT_LE(reinterpret_cast<char*>(c) + sizeof(chronos::arch::SavedFrame) + 16,
            static_cast<char*>(stack.top()));
}
#endif

}  // namespace
