// arch/context_fcontext.hpp: the portable fallback, Boost.Context's fcontext.
//
// Selected with -DCHRONOS_CONTEXT=boost. fcontext has the very semantics of
// arch/context.hpp (it is where they come from), so each call maps to one
// Boost call and the Transfer layouts are checked to be identical.
#pragma once

#include <boost/context/detail/fcontext.hpp>
#include <cstddef>
#include <cstring>

namespace chronos::arch {

namespace bctx = boost::context::detail;
static_assert(sizeof(bctx::transfer_t) == sizeof(Transfer));
static_assert(offsetof(bctx::transfer_t, fctx) == offsetof(Transfer, ctx));
static_assert(offsetof(bctx::transfer_t, data) == offsetof(Transfer, data));

inline constexpr const char* kBackendName = "boost-fcontext";
inline constexpr bool kSwitchSavesFpEnv = true;  // jump_fcontext saves MXCSR and the x87 CW

inline Context make(void* top, std::size_t size, EntryFn fn) {
  // The same ABI (a two-pointer struct by value, layouts checked above); the
  // detour through void(*)() is the sanctioned spelling of that cast.
  auto generic = reinterpret_cast<void (*)()>(fn);
  return bctx::make_fcontext(top, size, reinterpret_cast<void (*)(bctx::transfer_t)>(generic));
}

// On x86-64 System V, jump_fcontext saves the very frame of the out-of-line
// switch (arch/context_x86_64.hpp's SavedFrame: MXCSR/x87 CW, r12-r15, rbx,
// rbp, then the return address). Elsewhere the dump goes without backtraces.
inline bool suspended_regs(Context ctx, SuspendedRegs* out) {
#if defined(__x86_64__)
  auto* w = static_cast<void**>(ctx);
  *out = SuspendedRegs{w[7], reinterpret_cast<char*>(ctx) + 64, w[6], w[5], w[1], w[2], w[3], w[4]};
  return true;
#else
  (void)ctx;
  (void)out;
  return false;
#endif
}

inline Transfer jump(Context to, void* data) {
  bctx::transfer_t t = bctx::jump_fcontext(to, data);
  return Transfer{t.fctx, t.data};
}

}  // namespace chronos::arch
