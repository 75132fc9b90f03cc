// arch/context_x86_64.hpp: C++ view of switch_x86_64_sysv_elf.S.
//
// The frame layout here is the single source of truth that the assembly
// mirrors; tests/arch_test.cpp checks a freshly made frame against it.
#pragma once

#include <cstddef>

namespace chronos::arch {

// The frame a suspended context leaves at its saved stack pointer.
struct SavedFrame {
  unsigned int mxcsr;     // 0x00
  unsigned short x87_cw;  // 0x04
  unsigned short pad;     // 0x06
  void* r12;              // 0x08
  void* r13;              // 0x10
  void* r14;              // 0x18
  void* r15;              // 0x20
  void* rbx;              // 0x28  (a fresh context: the entry function)
  void* rbp;              // 0x30
  void* rip;              // 0x38  resume address
};
static_assert(offsetof(SavedFrame, mxcsr) == 0x00);
static_assert(offsetof(SavedFrame, x87_cw) == 0x04);
static_assert(offsetof(SavedFrame, r12) == 0x08);
static_assert(offsetof(SavedFrame, rbx) == 0x28);
static_assert(offsetof(SavedFrame, rbp) == 0x30);
static_assert(offsetof(SavedFrame, rip) == 0x38);
static_assert(sizeof(SavedFrame) == 0x40);

inline constexpr unsigned int kDefaultMxcsr = 0x1F80;  // all exceptions masked, round to nearest
inline constexpr unsigned short kDefaultX87Cw = 0x037F;

}  // namespace chronos::arch

extern "C" {
// The out-of-line switch (switch_x86_64_sysv_elf.S).
chronos::arch::Transfer chronos_context_jump(chronos::arch::Context to, void* data);
chronos::arch::Context chronos_context_make(void* top, std::size_t size, chronos::arch::EntryFn fn);
}

#include "arch/switch_inline_x86_64.hpp"

namespace chronos::arch {

// The out-of-line switch, always available (benchmarks compare it).
inline constexpr const char* kAsmBackendName = "asm-x86_64-sysv";
inline Context asm_make(void* top, std::size_t size, EntryFn fn) {
  return chronos_context_make(top, size, fn);
}
inline Transfer asm_jump(Context to, void* data) {
  return chronos_context_jump(to, data);
}

// A context saved by the out-of-line switch: the frame above, then the
// resume address's frame as it was before the call into the switch.
inline bool asm_suspended_regs(Context ctx, SuspendedRegs* out) {
  const auto* f = static_cast<const SavedFrame*>(ctx);
  *out = SuspendedRegs{f->rip, reinterpret_cast<char*>(ctx) + sizeof(SavedFrame),
                       f->rbp, f->rbx,
                       f->r12, f->r13,
                       f->r14, f->r15};
  return true;
}

// What the scheduler uses: CHRONOS_SWITCH=inline (the default) or asm. The
// two kinds of context must never be mixed: a context made by one is only
// ever jumped to by the same one.
#if defined(CHRONOS_SWITCH_INLINE)
inline constexpr bool kSwitchSavesFpEnv = false;
inline constexpr const char* kBackendName = kInlineBackendName;
[[gnu::always_inline]] inline Context make(void* top, std::size_t size, EntryFn fn) {
  return make_inline(top, size, fn);
}
[[gnu::always_inline]] inline Transfer jump(Context to, void* data) {
  return jump_inline(to, data);
}
inline bool suspended_regs(Context ctx, SuspendedRegs* out) {
  return inline_suspended_regs(ctx, out);
}
#else
inline constexpr bool kSwitchSavesFpEnv = true;
inline constexpr const char* kBackendName = kAsmBackendName;
inline Context make(void* top, std::size_t size, EntryFn fn) {
  return asm_make(top, size, fn);
}
inline Transfer jump(Context to, void* data) {
  return asm_jump(to, data);
}
inline bool suspended_regs(Context ctx, SuspendedRegs* out) {
  return asm_suspended_regs(ctx, out);
}
#endif

}  // namespace chronos::arch
