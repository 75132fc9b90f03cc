// arch/switch_inline_x86_64.hpp: the context-aware switch (CACS), inlined at
// every call site. x86-64 System V, GCC and clang.
//
// Why. The out-of-line switch (switch_x86_64_sysv_elf.S) saves every
// callee-saved register and the FP control words on every switch, live or
// not. Written as inline assembly that declares every other register
// clobbered, the switch makes the compiler spill only what is live at that
// call site, and usually that is nothing. See "Stackful Coroutine Made Fast"
// (Li, Du, Lin, Hsu; Photon).
//
// The contract.
//   jump_inline(to, data) suspends the caller and resumes `to`; when someone
//   resumes the caller in turn, it returns {their context, their data}. The
//   suspended side's context is its stack pointer, where two words lie:
//
//       ctx + 0x00   saved rbp
//       ctx + 0x08   resume address (the local label after the jump)
//
//   and 128 bytes above them the caller's red zone, stepped over on the way
//   down and restored on the way back, so leaf functions that keep data there
//   are safe.
//
//   Saved explicitly: rbp (it may be the frame pointer, which the compiler
//   cannot be told is clobbered), rsp (it is the context) and rip (the resume
//   address). That is all.
//
//   Declared clobbered, so the compiler saves around the switch whatever it
//   still needs from them:
//     rbx, rcx, rsi, r8-r15        every other general-purpose register: the
//                                  resumed fiber runs arbitrary code (rdi
//                                  carries `to` in and is an in-out operand,
//                                  which says the same thing while leaving
//                                  the compiler a register for the input, even
//                                  at -O0 with a frame pointer)
//     xmm0-xmm15 (xmm16-31 with AVX-512), st(0-7), mm0-7
//                                  the same for vector and x87 state
//     "cc"                         the flags
//     "memory"                     the other fiber reads and writes memory,
//                                  so nothing may be cached across the switch
//   rax and rdx carry the result: the other side puts its context in rax and
//   its data in rdx before jumping to our resume address.
//
//   Not saved: MXCSR and the x87 control word. The psABI makes their control
//   bits callee-saved, so a fiber that changes its rounding mode would leak it
//   to the next one. The scheduler saves them only around fibers spawned with
//   SpawnOptions::preserve_fp_env (sched/switch.cpp); the README says why.
//
// A fresh context (make_inline) holds {rbp = 0, rip = the trampoline, fn} so
// that the first jump to it lands in chronos_context_trampoline_inline
// (switch_x86_64_sysv_elf.S), which calls fn(Transfer{rax, rdx}) on a
// 16-byte aligned stack and whose CFI ends unwinding there.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" void chronos_context_trampoline_inline();

namespace chronos::arch {

inline constexpr const char* kInlineBackendName = "inline-x86_64-sysv";

[[gnu::always_inline]] inline Transfer jump_inline(Context to, void* data) {
  void* from;
  void* out = data;
  void* target = to;  // in rdi, declared in-out: rdi comes back with whatever the other side left
  asm volatile(
      "leaq   -128(%%rsp), %%rsp\n\t"  // step over the red zone
      "leaq   1f(%%rip), %%rsi\n\t"
      "pushq  %%rsi\n\t"         // resume address
      "pushq  %%rbp\n\t"         // frame pointer
      "movq   %%rsp, %%rax\n\t"  // our context, handed to the other side
      "movq   %%rdi, %%rsp\n\t"  // switch stacks
      "popq   %%rbp\n\t"
      "popq   %%rsi\n\t"
      "jmp    *%%rsi\n"               // an indirect jmp, not ret: the return-stack
      "1:\n\t"                        // predictor would guess the wrong caller
      "leaq   128(%%rsp), %%rsp\n\t"  // back over the red zone
      : "=&a"(from), "+d"(out), "+D"(target)
      :
      : "rbx", "rcx", "rsi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "memory", "cc",
        "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
#if defined(__AVX512F__)
        "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25",
        "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k1", "k2", "k3", "k4", "k5", "k6",
        "k7",
#endif
        "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)", "mm0", "mm1", "mm2",
        "mm3", "mm4", "mm5", "mm6", "mm7");
  return Transfer{from, out};
}

// A context saved by jump_inline, as an unwinder sees it: the resume address
// lies inside the asm statement, where the compiler's CFI describes the frame
// as it was before the statement began, so the stack pointer to report is
// the one from before the two pushes and the red-zone step.
inline bool inline_suspended_regs(Context ctx, SuspendedRegs* out) {
  auto* w = static_cast<void**>(ctx);
  *out = SuspendedRegs{};
  out->rbp = w[0];
  out->pc = w[1];
  out->sp = reinterpret_cast<char*>(ctx) + 16 + 128;
  return true;
}

// Prepares [top - size, top) for jump_inline: the first jump calls fn there.
inline Context make_inline(void* top, std::size_t /*size*/, EntryFn fn) {
  auto t = reinterpret_cast<std::uintptr_t>(top) & ~std::uintptr_t{15};
  auto* w = reinterpret_cast<void**>(t);
  w[-1] = nullptr;                                                      // (padding)
  w[-2] = reinterpret_cast<void*>(fn);                                  // for the trampoline
  w[-3] = reinterpret_cast<void*>(&chronos_context_trampoline_inline);  // resume address
  w[-4] = nullptr;                                                      // rbp: ends frame walks
  return &w[-4];
}

}  // namespace chronos::arch
