// arch/context.hpp: the one interface every context-switch backend provides.
//
// A context is an opaque pointer: the stack pointer of a suspended execution,
// at which the backend has saved whatever it needs to resume it. The model is
// Boost.Context's fcontext, so that the hand-written backend and the Boost
// fallback are interchangeable with no adapter on the hot path:
//
//   make(top, size, entry)  prepares a fresh stack [top - size, top) so that the
//                           first jump to it calls entry(Transfer) there. entry
//                           must never return.
//   jump(to, data)          suspends the caller, resumes `to`, and hands it a
//                           Transfer {the caller's new context, data}. When the
//                           caller is resumed in turn, jump returns the Transfer
//                           its resumer sent.
//
// A context can be resumed exactly once: jumping to it consumes it, and the
// suspended side gets a fresh one the next time it jumps away. Every jump is
// therefore paired with a store of Transfer::ctx by the side that is resumed;
// sched/ does that before anything else, see sched/switch.hpp.
//
// Saved by a jump (both backends): rbx, rbp, r12-r15, rsp, the resume address,
// MXCSR and the x87 control word, i.e. exactly the callee-saved state of the
// x86-64 System V psABI. Not saved: caller-saved registers (the compiler has
// already spilled what it needs around the call), and the thread pointer (fs):
// a fiber that migrates between workers sees the new thread's thread_locals
// after a switch. A fresh context starts with the psABI default floating-point
// control state (MXCSR 0x1F80, x87 CW 0x037F), not its creator's.
#pragma once

#include <cstddef>

namespace chronos::arch {

using Context = void*;

struct Transfer {
  Context ctx;  // the context of whoever jumped to us; store it to resume them later
  void* data;   // the value they passed to jump()
};

using EntryFn = void (*)(Transfer);

// The registers of a suspended context as an unwinder needs them: where it
// resumes (pc), its stack pointer at that point, and the callee-saved
// registers the backend keeps (null where it keeps none). Filled in by
// suspended_regs(ctx), which each backend defines; false where the backend
// cannot say (then fiber dumps show no backtrace).
struct SuspendedRegs {
  void* pc = nullptr;
  void* sp = nullptr;
  void* rbp = nullptr;
  void* rbx = nullptr;
  void* r12 = nullptr;
  void* r13 = nullptr;
  void* r14 = nullptr;
  void* r15 = nullptr;
};

}  // namespace chronos::arch

#if defined(CHRONOS_CONTEXT_BOOST)
#include "arch/context_fcontext.hpp"
#elif defined(__x86_64__)
#include "arch/context_x86_64.hpp"
#else
#error \
    "chronos: no hand-written context switch for this ISA; configure with -DCHRONOS_CONTEXT=boost"
#endif
