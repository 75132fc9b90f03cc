// fiber/overflow.hpp: turning a stack overflow into a clear death.
//
// A normal stack overflows into its guard page and faults. A SIGSEGV/SIGBUS
// handler, running on an alternate signal stack (the faulting stack has no room
// left), asks the scheduler which fiber this thread runs; if the fault address
// or the stack pointer lies at or below that fiber's stack, it writes
//
//   chronos: stack overflow in fiber #42 "name": stack [lo, hi) (N bytes), fault at 0x...
//
// to stderr with async-signal-safe calls only, and aborts. Any other fault is
// passed on to the handler that was installed before (a sanitizer's, or the
// program's own, which may expect faults and handle them). Where that is the
// default action, which kills the process without a word, the handler first
// writes what a crash in a fiber needs to be found:
//
//   chronos: fatal SIGSEGV in fiber #42 "name": address 0x10 (nothing is mapped there)
//       #0 0x5581e2c4a1b3 (server+0x1a1b3)
//       #1 0x5581e2c4b020 (server+0x1b020)
//
// (module and offset, for `addr2line -Cfe server 0x1a1b3`: naming functions
// takes malloc, which a crash may have broken). An overflow report carries the
// same frames. Small stacks are checked at switches instead (stack_pool.hpp).
//
// Every other signal handler must stay off fiber stacks too. The kernel
// writes a signal frame on the stack the thread is running on, unless the
// handler was installed with SA_ONSTACK and the thread has an alternate
// stack; that frame holds the vector state (AT_MINSIGSTKSZ is 3,376 bytes
// with AVX-512), more than a packed small stack holds in all (1,920 bytes),
// and a small stack's slot has no guard page below it: the frame would land
// in the neighbour's slot. So each worker has an AltSignalStack, and
// move_handlers_to_alt_stack() adds SA_ONSTACK to every handler installed
// when a runtime starts (a thread without an alternate stack, such as
// main, still runs them on its own stack: the flag changes nothing there).
#pragma once

#include "fiber/tcb.hpp"

namespace chronos::detail {

// How the handler learns the running fiber: installed by the scheduler, which
// keeps that in a thread-local. Must be async-signal-safe; null outside fibers.
using CurrentFiberFn = Fiber* (*)() noexcept;

// The frames of the thread a signal interrupted, from the handler's ucontext:
// at most max return addresses into out, innermost first; 0 if it cannot walk.
// Async-signal-safe. The scheduler installs one (sched/backtrace.hpp) where
// libunwind is available; without one, a report says so instead of frames.
using SignalBacktraceFn = std::size_t (*)(void* ucontext, void** out, std::size_t max) noexcept;

// Process-wide and reference-counted: one per Runtime, the first installs.
void install_overflow_handler(CurrentFiberFn current, SignalBacktraceFn backtrace = nullptr);
void uninstall_overflow_handler() noexcept;

// Adds SA_ONSTACK to every signal handler installed now that lacks it, the
// handler, mask and other flags unchanged. A handler another thread installs
// at the same moment may be overwritten by the one read here (sigaction has
// no compare-and-swap): the runtime calls this from its constructor, before
// its workers run.
void move_handlers_to_alt_stack() noexcept;

// An alternate signal stack for the calling thread, for as long as it lives.
class AltSignalStack {
 public:
  AltSignalStack();
  ~AltSignalStack();
  AltSignalStack(const AltSignalStack&) = delete;
  AltSignalStack& operator=(const AltSignalStack&) = delete;

 private:
  void* mem_ = nullptr;
  std::size_t size_ = 0;
};

// Writes the overflow report for f and aborts. Async-signal-safe. ucontext:
// the fault's, whose frames the report lists; null at a switch.
[[noreturn]] void die_stack_overflow(const Fiber* f, const void* where, const char* how,
                                     void* ucontext = nullptr) noexcept;

}  // namespace chronos::detail
