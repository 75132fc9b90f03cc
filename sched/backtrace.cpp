// sched/backtrace.cpp: libunwind, opened at run time (see backtrace.hpp).
#include "sched/backtrace.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#if __has_include(<libunwind.h>) && defined(__x86_64__)
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#define CHRONOS_HAVE_LIBUNWIND 1
#endif

namespace chronos::detail {

#if defined(CHRONOS_HAVE_LIBUNWIND)
namespace {

// The handful of libunwind entry points we use, by their real (macro-free)
// names: UNW_LOCAL_ONLY maps unw_step to _ULx86_64_step, and so on.
struct Unwind {
  int (*init_local)(unw_cursor_t*, unw_context_t*) = nullptr;
  int (*init_local2)(unw_cursor_t*, unw_context_t*, int) = nullptr;
  int (*step)(unw_cursor_t*) = nullptr;
  int (*get_reg)(unw_cursor_t*, unw_regnum_t, unw_word_t*) = nullptr;
  int (*get_proc_name)(unw_cursor_t*, char*, std::size_t, unw_word_t*) = nullptr;
  int (*set_caching_policy)(unw_addr_space_t, unw_caching_policy_t) = nullptr;
  unw_addr_space_t* local_space = nullptr;
  bool ok = false;
  char why[200] = "not loaded yet";
};

Unwind& unwind() {
  static Unwind u;
  return u;
}

std::size_t walk(unw_cursor_t& c, void** out, std::size_t max);

void load() {
  Unwind& u = unwind();
  void* h = ::dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    std::snprintf(u.why, sizeof u.why, "libunwind is not available (%s); install libunwind8",
                  ::dlerror());
    return;
  }
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(h, name));
    return fn != nullptr;
  };
  if (!sym(u.init_local, "_ULx86_64_init_local") || !sym(u.init_local2, "_ULx86_64_init_local2") ||
      !sym(u.step, "_ULx86_64_step") || !sym(u.get_reg, "_ULx86_64_get_reg") ||
      !sym(u.get_proc_name, "_ULx86_64_get_proc_name") ||
      !sym(u.set_caching_policy, "_ULx86_64_set_caching_policy") ||
      !(u.local_space = static_cast<unw_addr_space_t*>(::dlsym(h, "_ULx86_64_local_addr_space")))) {
    std::snprintf(u.why, sizeof u.why, "libunwind.so.8 lacks an expected symbol");
    return;
  }
  // Per-thread caches: what makes a walk from a signal handler safe.
  u.set_caching_policy(*u.local_space, UNW_CACHE_PER_THREAD);
  u.ok = true;
  // One walk now, of this very thread: libunwind creates what it keeps for
  // good on its first walk (a pipe it validates addresses with) here, at a
  // predictable time, rather than inside the first dump or signal handler.
  ucontext_t here;
  if (::getcontext(&here) == 0) {
    unw_cursor_t c;
    void* frames[4];
    if (u.init_local(&c, reinterpret_cast<unw_context_t*>(&here)) >= 0) walk(c, frames, 4);
  }
}

// A context that libunwind's init_local accepts: on x86-64 it is a ucontext.
void fill(unw_context_t& uc, const arch::SuspendedRegs& r) {
  std::memset(&uc, 0, sizeof uc);
  auto* g = reinterpret_cast<ucontext_t*>(&uc)->uc_mcontext.gregs;
  g[REG_RIP] = reinterpret_cast<greg_t>(r.pc);
  g[REG_RSP] = reinterpret_cast<greg_t>(r.sp);
  g[REG_RBP] = reinterpret_cast<greg_t>(r.rbp);
  g[REG_RBX] = reinterpret_cast<greg_t>(r.rbx);
  g[REG_R12] = reinterpret_cast<greg_t>(r.r12);
  g[REG_R13] = reinterpret_cast<greg_t>(r.r13);
  g[REG_R14] = reinterpret_cast<greg_t>(r.r14);
  g[REG_R15] = reinterpret_cast<greg_t>(r.r15);
}

std::size_t walk(unw_cursor_t& c, void** out, std::size_t max) {
  Unwind& u = unwind();
  std::size_t n = 0;
  while (n < max) {
    unw_word_t ip = 0;
    if (u.get_reg(&c, UNW_REG_IP, &ip) < 0 || ip == 0) break;
    out[n++] = reinterpret_cast<void*>(ip);
    if (u.step(&c) <= 0) break;  // 0: the outermost frame (the entry trampoline's CFI)
  }
  return n;
}

}  // namespace

bool backtrace_init() noexcept {
  static std::once_flag once;
  std::call_once(once, load);
  return unwind().ok;
}

const char* backtrace_unavailable_why() noexcept {
  backtrace_init();  // the reason is known once libunwind has been looked for
  return unwind().why;
}

std::size_t backtrace_suspended(arch::Context ctx, void** out, std::size_t max) noexcept {
  arch::SuspendedRegs regs;
  if (!backtrace_init() || !ctx || !arch::suspended_regs(ctx, &regs)) return 0;
  unw_context_t uc;
  fill(uc, regs);
  unw_cursor_t c;
  if (unwind().init_local(&c, &uc) < 0) return 0;
  return walk(c, out, max);
}

std::size_t backtrace_signal(void* ucontext, void** out, std::size_t max) noexcept {
  Unwind& u = unwind();
  if (!u.ok || !ucontext) return 0;
  unw_cursor_t c;
  // UNW_INIT_SIGNAL_FRAME: the pc is the interrupted instruction itself, not
  // a return address.
  if (u.init_local2(&c, static_cast<unw_context_t*>(ucontext), UNW_INIT_SIGNAL_FRAME) < 0) return 0;
  return walk(c, out, max);
}

const std::string& Symbolizer::name(void* pc, bool is_return) {
  void* key = static_cast<char*>(pc) - (is_return ? 1 : 0);
  auto [it, fresh] = cache_.try_emplace(key);
  if (!fresh) return it->second;
  std::string& s = it->second;
  char buf[512] = "";
  unw_word_t off = 0;
  bool named = false;
  if (backtrace_init()) {
    // A cursor placed at the address: libunwind's name lookup reads the ELF
    // symbol tables (static functions included), not the stack.
    arch::SuspendedRegs r;
    void* scratch[4] = {};
    r.pc = key;
    r.sp = scratch;
    unw_context_t uc;
    fill(uc, r);
    unw_cursor_t c;
    named = unwind().init_local(&c, &uc) >= 0 &&
            unwind().get_proc_name(&c, buf, sizeof buf, &off) == 0 && buf[0];
  }
  Dl_info info{};
  const bool have_module = ::dladdr(key, &info) != 0 && info.dli_fname;
  if (!named && have_module && info.dli_sname) {
    std::snprintf(buf, sizeof buf, "%s", info.dli_sname);
    off = static_cast<unw_word_t>(static_cast<char*>(key) - static_cast<char*>(info.dli_saddr));
    named = true;
  }
  if (named) {
    int status = 0;
    char* demangled = abi::__cxa_demangle(buf, nullptr, nullptr, &status);
    s = status == 0 && demangled ? demangled : buf;
    std::free(demangled);
    char tail[32];
    std::snprintf(tail, sizeof tail, "+0x%llx", static_cast<unsigned long long>(off + is_return));
    s += tail;
  } else {
    char addr[32];
    std::snprintf(addr, sizeof addr, "%p", pc);
    s = addr;
  }
  if (have_module) {
    const char* base = std::strrchr(info.dli_fname, '/');
    s += " (";
    s += base ? base + 1 : info.dli_fname;
    s += ")";
  }
  return s;
}

#else  // no libunwind at build time

bool backtrace_init() noexcept {
  return false;
}
const char* backtrace_unavailable_why() noexcept {
  return "chronos was built without libunwind's header (install libunwind-dev)";
}
std::size_t backtrace_suspended(arch::Context, void**, std::size_t) noexcept {
  return 0;
}
std::size_t backtrace_signal(void*, void**, std::size_t) noexcept {
  return 0;
}
const std::string& Symbolizer::name(void* pc, bool) {
  auto [it, fresh] = cache_.try_emplace(pc);
  if (fresh) {
    char addr[32];
    std::snprintf(addr, sizeof addr, "%p", pc);
    it->second = addr;
  }
  return it->second;
}

#endif

}  // namespace chronos::detail
