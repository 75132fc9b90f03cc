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
// passed on to the handler that was installed before, or to the default one.
// Small stacks are checked at switches instead (stack_pool.hpp).
#pragma once

#include "fiber/tcb.hpp"

namespace chronos::detail {

// How the handler learns the running fiber: installed by the scheduler, which
// keeps that in a thread-local. Must be async-signal-safe; null outside fibers.
using CurrentFiberFn = Fiber* (*)() noexcept;

// Process-wide and reference-counted: one per Runtime, the first installs.
void install_overflow_handler(CurrentFiberFn current);
void uninstall_overflow_handler() noexcept;

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

// Writes the overflow report for f and aborts. Async-signal-safe.
[[noreturn]] void die_stack_overflow(const Fiber* f, const void* where, const char* how) noexcept;

}  // namespace chronos::detail
