// sched/backtrace.hpp: backtraces of fibers that are not running, and of a
// thread interrupted by a signal, and their symbols.
//
// The walk is DWARF-based (libunwind, the nongnu one Debian ships), so it
// works through code built without frame pointers. libunwind is opened with
// dlopen(RTLD_LOCAL) on first use rather than linked: linked, its _Unwind_*
// would interpose on libgcc's and take over C++ exception unwinding in every
// program that uses chronos. Without libunwind installed, the walks return
// no frames and the dump says so.
//
// A suspended fiber's registers come from its saved context
// (arch::suspended_regs). The caller must keep the fiber from running while
// its stack is walked (the inspection hold, fiber/tcb.hpp).
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>

#include "arch/context.hpp"

namespace chronos::detail {

// Return addresses of a suspended context, innermost first: at most max of
// them into out. Returns how many (0 if it cannot walk).
std::size_t backtrace_suspended(arch::Context ctx, void** out, std::size_t max) noexcept;

// The same for the thread a signal interrupted, from the handler's ucontext,
// starting at the interrupted instruction. Async-signal-safe once
// backtrace_init() has run (libunwind's per-thread caching).
std::size_t backtrace_signal(void* ucontext, void** out, std::size_t max) noexcept;

// Loads libunwind (once, thread-safe). Done ahead of any signal handler that
// walks. False if it is not available; backtrace_unavailable_why() says what
// failed (it looks for libunwind first, if nothing has yet).
bool backtrace_init() noexcept;
const char* backtrace_unavailable_why() noexcept;

// "function+0x12 (module)" for a code address, demangled. Frames other than
// the innermost hold return addresses: pass is_return so that the lookup uses
// the call instruction (a noreturn call may end its function). Cached per
// address, so a dump of many fibers parked in the same places is cheap.
class Symbolizer {
 public:
  const std::string& name(void* pc, bool is_return);

 private:
  std::unordered_map<void*, std::string> cache_;
};

}  // namespace chronos::detail
