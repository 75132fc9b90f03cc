// fiber/overflow.cpp: the SIGSEGV handler, the alternate signal stacks and
// the move of other handlers onto them, behind fiber/overflow.hpp.
#include "fiber/overflow.hpp"

#include <dlfcn.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>

namespace chronos::detail {
namespace {

std::mutex g_mu;
int g_installs = 0;
std::atomic<CurrentFiberFn> g_current{nullptr};
std::atomic<SignalBacktraceFn> g_backtrace{nullptr};
struct sigaction g_old_segv;
struct sigaction g_old_bus;

// Async-signal-safe formatting into a fixed buffer.
struct Out {
  char buf[512];
  std::size_t n = 0;
  void str(const char* s) {
    while (*s && n < sizeof buf) buf[n++] = *s++;
  }
  void dec(std::uint64_t v) {
    char tmp[24];
    int i = 0;
    do tmp[i++] = char('0' + v % 10);
    while ((v /= 10) && i < 24);
    while (i && n < sizeof buf) buf[n++] = tmp[--i];
  }
  void hex(std::uintptr_t v) {
    str("0x");
    char tmp[16];
    int i = 0;
    do tmp[i++] = "0123456789abcdef"[v & 15];
    while ((v >>= 4) && i < 16);
    while (i && n < sizeof buf) buf[n++] = tmp[--i];
  }
  void flush() {
    std::size_t off = 0;
    while (off < n) {
      ssize_t w = ::write(STDERR_FILENO, buf + off, n - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      off += std::size_t(w);
    }
    n = 0;
  }
};

// The interrupted thread's frames, one line each: address, then module and
// offset (dladdr only reads the loader's tables; symbolizing would allocate).
void write_frames(void* uc) {
  SignalBacktraceFn backtrace = g_backtrace.load(std::memory_order_relaxed);
  void* frames[32];
  const std::size_t n = backtrace && uc ? backtrace(uc, frames, 32) : 0;
  Out o;
  if (n == 0) {
    o.str(backtrace ? "    (no backtrace: libunwind could not walk this stack)\n"
                    : "    (no backtrace: libunwind is not available)\n");
    o.flush();
    return;
  }
  for (std::size_t k = 0; k < n; ++k) {
    const auto pc = reinterpret_cast<std::uintptr_t>(frames[k]);
    o.str("    #");
    o.dec(k);
    o.str(" ");
    o.hex(pc);
    // A return address (every frame but the first) may lie past the end of
    // its function: look up the call instruction instead.
    const std::uintptr_t look = pc - (k > 0 ? 1 : 0);
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void*>(look), &info) && info.dli_fname && info.dli_fbase) {
      const char* slash = std::strrchr(info.dli_fname, '/');
      const char* base = slash ? slash + 1 : info.dli_fname;
      o.str(" (");
      o.str(base);
      o.str("+");
      o.hex(pc - reinterpret_cast<std::uintptr_t>(info.dli_fbase));
      if (info.dli_sname && info.dli_saddr) {
        o.str(", ");
        o.str(info.dli_sname);
        o.str("+");
        o.hex(pc - reinterpret_cast<std::uintptr_t>(info.dli_saddr));
      }
      o.str(")");
    }
    o.str("\n");
    o.flush();
  }
}

const char* fault_kind(int sig, const siginfo_t* info) {
  if (sig == SIGSEGV) {
    if (info->si_code == SEGV_MAPERR) return "nothing is mapped there";
    if (info->si_code == SEGV_ACCERR) return "the mapping forbids this access";
  } else if (sig == SIGBUS) {
    if (info->si_code == BUS_ADRALN) return "misaligned";
    if (info->si_code == BUS_ADRERR) return "past the end of a mapped file, or no such memory";
  }
  return "a fault";
}

// f crashed on a fault no handler will catch (the default action follows).
void report_fatal_fault(const Fiber* f, int sig, const siginfo_t* info, void* uc) {
  Out o;
  o.str("chronos: fatal ");
  o.str(sig == SIGBUS ? "SIGBUS" : "SIGSEGV");
  o.str(" in fiber #");
  o.dec(f->id);
  o.str(" \"");
  o.str(f->name);
  if (info->si_code <= 0) {  // SI_USER, SI_TKILL, ...: no fault, no address
    o.str("\": sent by process ");
    o.dec(static_cast<std::uint64_t>(info->si_pid));
    o.str(" (kill or tgkill), not a fault\n");
  } else {
    o.str("\": address ");
    o.hex(reinterpret_cast<std::uintptr_t>(info->si_addr));
    o.str(" (");
    o.str(fault_kind(sig, info));
    o.str(")\n");
  }
  o.flush();
  write_frames(uc);
}

const struct sigaction& old_action(int sig) {
  return sig == SIGBUS ? g_old_bus : g_old_segv;
}

bool chains_to_default(int sig) {
  const struct sigaction& old = old_action(sig);
  return !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL;
}

void chain(int sig, siginfo_t* info, void* uc) {
  const struct sigaction& old = old_action(sig);
  if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction) {
    old.sa_sigaction(sig, info, uc);
    return;
  }
  if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN && old.sa_handler) {
    old.sa_handler(sig);
    return;
  }
  // Default action: reinstate it and return; a fault repeats and kills us.
  // A sent signal does not repeat: send it again, to be taken (blocked in
  // here) as the handler returns.
  ::signal(sig, SIG_DFL);
  if (info->si_code <= 0) ::raise(sig);
}

void on_fault(int sig, siginfo_t* info, void* uc) {
  CurrentFiberFn current = g_current.load(std::memory_order_relaxed);
  const Fiber* f = current ? current() : nullptr;
  if (f) {
    auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
    auto lo = reinterpret_cast<std::uintptr_t>(f->stack_lo);
    std::uintptr_t sp = 0;
#if defined(__x86_64__)
    sp = static_cast<std::uintptr_t>(static_cast<ucontext_t*>(uc)->uc_mcontext.gregs[REG_RSP]);
#elif defined(__aarch64__)
    sp = static_cast<std::uintptr_t>(static_cast<ucontext_t*>(uc)->uc_mcontext.sp);
#endif
    const std::uintptr_t page = 4096;
    // The guard, or just past it. (A sent signal has no fault address: its
    // si_addr shares bytes with si_pid.)
    bool in_guard = info->si_code > 0 && addr < lo && addr + 16 * page >= lo;
    bool sp_out = sp != 0 && sp < lo && sp + 16 * page >= lo;
    if (in_guard || sp_out) die_stack_overflow(f, info->si_addr, "guard page hit", uc);
    if (chains_to_default(sig)) report_fatal_fault(f, sig, info, uc);
  }
  chain(sig, info, uc);
}

}  // namespace

void die_stack_overflow(const Fiber* f, const void* where, const char* how, void* uc) noexcept {
  Out o;
  o.str("chronos: stack overflow in fiber #");
  o.dec(f->id);
  o.str(" \"");
  o.str(f->name);
  o.str("\": stack [");
  const auto lo = reinterpret_cast<std::uintptr_t>(f->stack_lo);
  // (The header's address only: an overflow may have trashed the header.)
  const auto top = f->stack ? reinterpret_cast<std::uintptr_t>(stack_top(f, f->stack)) : lo;
  o.hex(lo);
  o.str(", ");
  o.hex(top);
  o.str(") (");
  o.dec(top - lo);
  o.str(" bytes, ");
  o.str(f->small_stack() ? "small" : "normal");
  o.str(" stack), ");
  o.str(how);
  o.str(" at ");
  o.hex(reinterpret_cast<std::uintptr_t>(where));
  o.str("\n");
  o.flush();
  if (uc) write_frames(uc);
  ::signal(SIGABRT, SIG_DFL);
  ::abort();
}

void install_overflow_handler(CurrentFiberFn current, SignalBacktraceFn backtrace) {
  std::lock_guard lock(g_mu);
  g_current.store(current, std::memory_order_relaxed);
  g_backtrace.store(backtrace, std::memory_order_relaxed);
  if (g_installs++ > 0) return;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGSEGV, &sa, &g_old_segv);
  ::sigaction(SIGBUS, &sa, &g_old_bus);
}

void uninstall_overflow_handler() noexcept {
  std::lock_guard lock(g_mu);
  if (--g_installs > 0) return;
  ::sigaction(SIGSEGV, &g_old_segv, nullptr);
  ::sigaction(SIGBUS, &g_old_bus, nullptr);
}

void move_handlers_to_alt_stack() noexcept {
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction sa;
    // glibc keeps two signals for itself and answers EINVAL for them.
    if (::sigaction(sig, nullptr, &sa) != 0 || (sa.sa_flags & SA_ONSTACK)) continue;
    if (!(sa.sa_flags & SA_SIGINFO) && (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN))
      continue;  // no handler runs
    sa.sa_flags |= SA_ONSTACK;
    ::sigaction(sig, &sa, nullptr);  // best effort, like the sweep itself
  }
}

AltSignalStack::AltSignalStack() {
  // 64 KiB: ASan's and TSan's handlers need more than SIGSTKSZ, and the
  // program's own handlers run here too. A guard page below it turns a
  // handler that overruns it into a fault (which, with no room left to
  // report it, kills the process) instead of a write into a neighbour.
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  size_ = 64 * 1024 + page;
  mem_ = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem_ == MAP_FAILED) {
    mem_ = nullptr;
    return;  // no alternate stack: an overflow then dies without the report
  }
  ::mprotect(mem_, page, PROT_NONE);  // best effort
  stack_t ss{};
  ss.ss_sp = static_cast<char*>(mem_) + page;
  ss.ss_size = size_ - page;
  ::sigaltstack(&ss, nullptr);
}

AltSignalStack::~AltSignalStack() {
  if (!mem_) return;
  stack_t ss{};
  ss.ss_flags = SS_DISABLE;
  ::sigaltstack(&ss, nullptr);
  ::munmap(mem_, size_);
}

}  // namespace chronos::detail
