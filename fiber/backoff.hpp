// fiber/backoff.hpp: waiting out another thread that is a few instructions
// from a store we need.
//
// Several hand-offs in the runtime end with one side publishing "I am done
// with this" a handful of instructions after the other side could already
// see the result: a timer's fire(), a blocking-pool job, an I/O waker, the
// last done() of a WaitGroup, the caller that ran a call_once. The other side
// waits for that store with a Backoff: it pauses the CPU for a bounded number
// of rounds (the common case: the store lands within them), then gives the
// CPU away with sched_yield, in case the thread it waits on was preempted
// and needs this CPU to finish. It never sleeps on a futex: the wait is
// always for code that is already running, never for an event.
//
// A fiber may wait here only for another thread: no fiber switch may come
// between the two stores, or a fiber waiting on the same worker would spin
// forever. Every caller says why that holds.
#pragma once

#include <sched.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace chronos::detail {

// One spin-wait hint to the CPU (x86 pause; aarch64 yield).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

class Backoff {
 public:
  // spins: pause rounds before each further round yields the CPU instead.
  explicit Backoff(unsigned spins) noexcept : spins_(spins) {}
  void operator()() noexcept {
    if (n_ < spins_) {
      ++n_;
      cpu_relax();
    } else {
      ::sched_yield();
    }
  }

 private:
  unsigned spins_;
  unsigned n_ = 0;
};

}  // namespace chronos::detail
