// arch/sanitizer.hpp: telling ASan, TSan and valgrind about stack switches.
//
// Every switch in sched/ goes through start_switch() before the jump and
// finish_switch() right after it (and at the top of a fresh fiber), so the
// tools always know which stack is live:
//
//   ASan  __sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber, so
//         that stack-use-after-return and the fake stacks follow the fiber,
//         and no false "stack-buffer-overflow" fires on the new stack. A
//         context that will never run again passes a null fake-stack slot,
//         which lets ASan free its fake frames.
//   TSan  one TSan fiber per chronos fiber; switching with flags 0 makes the
//         switch a synchronisation point, as the hand-off through the run
//         queues really is.
//   valgrind  each stack is registered while it is mapped, so memcheck does not
//         mistake a switch for a huge stack-pointer change.
//
// Without the tools all of this compiles to nothing; the valgrind client
// requests are a few no-op instructions when not running under valgrind.
#pragma once

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define CHRONOS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHRONOS_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define CHRONOS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CHRONOS_TSAN 1
#endif
#endif

#if CHRONOS_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#if CHRONOS_TSAN
#include <sanitizer/tsan_interface.h>
#endif
#if CHRONOS_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif

namespace chronos::arch {

// Per-context bookkeeping. Empty unless a sanitizer is compiled in.
struct SanitizerState {
#if CHRONOS_ASAN
  void* fake_stack = nullptr;
  const void* stack_bottom = nullptr;  // lowest address of the stack
  std::size_t stack_size = 0;
#endif
#if CHRONOS_TSAN
  void* tsan_fiber = nullptr;
#endif
};

// A new context; its stack is set by sanitizer_set_stack before it first runs.
inline void sanitizer_init_fiber([[maybe_unused]] SanitizerState& s) {
#if CHRONOS_ASAN
  s.fake_stack = nullptr;
  s.stack_bottom = nullptr;
  s.stack_size = 0;
#endif
#if CHRONOS_TSAN
  s.tsan_fiber = __tsan_create_fiber(0);
#endif
}

// The context runs on [bottom, bottom + size).
inline void sanitizer_set_stack([[maybe_unused]] SanitizerState& s,
                                [[maybe_unused]] const void* bottom,
                                [[maybe_unused]] std::size_t size) {
#if CHRONOS_ASAN
  s.stack_bottom = bottom;
  s.stack_size = size;
#endif
}

// Called on a context that will never be switched to again, from another one.
inline void sanitizer_destroy_fiber([[maybe_unused]] SanitizerState& s) {
#if CHRONOS_TSAN
  if (s.tsan_fiber) __tsan_destroy_fiber(s.tsan_fiber);
  s.tsan_fiber = nullptr;
#endif
}

// The thread's own context (a worker's scheduler loop). Its stack bounds are
// learned from the first finish_switch that leaves it.
inline void sanitizer_init_thread([[maybe_unused]] SanitizerState& s) {
#if CHRONOS_TSAN
  s.tsan_fiber = __tsan_get_current_fiber();
#endif
}

// Right before jumping from `from` to `to`. `from_exits`: `from` never runs again.
inline void sanitizer_start_switch([[maybe_unused]] SanitizerState& from,
                                   [[maybe_unused]] const SanitizerState& to,
                                   [[maybe_unused]] bool from_exits) {
#if CHRONOS_ASAN
  __sanitizer_start_switch_fiber(from_exits ? nullptr : &from.fake_stack, to.stack_bottom,
                                 to.stack_size);
#endif
#if CHRONOS_TSAN
  __tsan_switch_to_fiber(to.tsan_fiber, 0);
#endif
}

// First thing after a jump returns (or a fresh context starts) in `self`.
// `from` is the context that jumped here, if known: a thread context learns
// its own stack bounds this way.
inline void sanitizer_finish_switch([[maybe_unused]] SanitizerState& self,
                                    [[maybe_unused]] SanitizerState* from) {
#if CHRONOS_ASAN
  const void* bottom = nullptr;
  std::size_t size = 0;
  __sanitizer_finish_switch_fiber(self.fake_stack, &bottom, &size);
  if (from && !from->stack_bottom) {
    from->stack_bottom = bottom;
    from->stack_size = size;
  }
#endif
}

#if CHRONOS_TSAN
extern "C" void AnnotateIgnoreReadsBegin(const char* file, int line);
extern "C" void AnnotateIgnoreReadsEnd(const char* file, int line);
#endif

// Brackets a deliberate racy snapshot: a fiber dump copying the id and name
// of a fiber that another thread may be setting up or running. The copy may
// be stale, is never dereferenced, and does not order anything, so TSan is
// told not to check these reads (and only these).
inline void sanitizer_snapshot_reads_begin() {
#if CHRONOS_TSAN
  AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
#endif
}
inline void sanitizer_snapshot_reads_end() {
#if CHRONOS_TSAN
  AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
#endif
}

// True under valgrind: a few no-op instructions otherwise (see above).
inline bool running_on_valgrind() noexcept {
#if CHRONOS_HAVE_VALGRIND
  return RUNNING_ON_VALGRIND != 0;
#else
  return false;
#endif
}

// valgrind: register a stack while it is mapped. Returns an id (0 if none).
inline unsigned valgrind_stack_register([[maybe_unused]] void* lo, [[maybe_unused]] void* hi) {
#if CHRONOS_HAVE_VALGRIND
  return VALGRIND_STACK_REGISTER(lo, hi);
#else
  return 0;
#endif
}

inline void valgrind_stack_deregister([[maybe_unused]] unsigned id) {
#if CHRONOS_HAVE_VALGRIND
  VALGRIND_STACK_DEREGISTER(id);
#endif
}

}  // namespace chronos::arch
