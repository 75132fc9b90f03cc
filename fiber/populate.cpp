// fiber/populate.cpp: populate_pages (fiber/populate.hpp).
#include "fiber/populate.hpp"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>

#include "arch/sanitizer.hpp"

namespace chronos::detail {
namespace {

#ifndef MADV_POPULATE_WRITE
constexpr int MADV_POPULATE_WRITE = 23;  // Linux 5.14; glibc headers older than 2.35 lack it
#endif
constexpr int kPidfdSelf = -10000;  // PIDFD_SELF (linux/pidfd.h, 6.15): the calling thread

enum Mode : int { kBatched, kPerRange, kOff };

// Which call works here. Starts optimistic and only ever steps down; relaxed:
// each value is a complete answer on its own, and a thread that reads a stale
// one makes a call that fails harmlessly and steps down itself.
std::atomic<int> g_mode{kBatched};

bool unsupported(int err) noexcept {
  // EBADF/ESRCH: no PIDFD_SELF; EINVAL: no such advice (or not for
  // process_madvise); ENOSYS: no such call; EPERM: refused (a seccomp filter).
  return err == EBADF || err == ESRCH || err == EINVAL || err == ENOSYS || err == EPERM;
}

}  // namespace

void populate_pages(const PageRange* ranges, std::size_t n) noexcept {
  if (n == 0 || arch::running_on_valgrind()) return;
  if (n > kMaxPopulate) n = kMaxPopulate;  // (the contract; the rest would fault in)
  int mode = g_mode.load(std::memory_order_relaxed);
  if (mode == kBatched) {
    // A few ranges a call: a spawn that refills the TCB cache comes here on
    // the spawner's stack, which may be a 2 KiB packed one.
    constexpr std::size_t kPerCall = 16;
    iovec iov[kPerCall];
    std::size_t done = 0;
    while (done < n) {
      const std::size_t k = std::min(n - done, kPerCall);
      for (std::size_t i = 0; i < k; ++i) iov[i] = {ranges[done + i].lo, ranges[done + i].len};
      if (::syscall(SYS_process_madvise, kPidfdSelf, iov, k, MADV_POPULATE_WRITE, 0) < 0) {
        // A partial or failed populate of memory we own (ENOMEM) leaves the
        // rest to fault in: nothing to do. Only a missing feature changes
        // the mode.
        if (!unsupported(errno)) return;
        mode = kPerRange;
        g_mode.store(mode, std::memory_order_relaxed);
        break;
      }
      done += k;
    }
    if (done == n) return;
    ranges += done;
    n -= done;
  }
  if (mode == kPerRange) {
    for (std::size_t i = 0; i < n; ++i) {
      if (::madvise(ranges[i].lo, ranges[i].len, MADV_POPULATE_WRITE) != 0 && errno == EINVAL) {
        g_mode.store(kOff, std::memory_order_relaxed);
        return;
      }
    }
  }
}

bool populate_enabled() noexcept {
  return !arch::running_on_valgrind() && g_mode.load(std::memory_order_relaxed) != kOff;
}

void* map_for_huge_pages(std::size_t len, std::size_t lead, int flags) noexcept {
  // Over-map by one huge page, keep the len bytes that put p + lead on a
  // boundary, give back the rest.
  const std::size_t over = len + kHugePage;
  void* raw =
      ::mmap(nullptr, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
  if (raw == MAP_FAILED) return MAP_FAILED;
  char* lo = static_cast<char*>(raw);
  auto at = (reinterpret_cast<std::uintptr_t>(lo) + lead + kHugePage - 1) & ~(kHugePage - 1);
  char* p = reinterpret_cast<char*>(at) - lead;
  if (p > lo) ::munmap(lo, static_cast<std::size_t>(p - lo));
  if (lo + over > p + len) ::munmap(p + len, static_cast<std::size_t>(lo + over - (p + len)));
  ::madvise(p + lead, len - lead, MADV_HUGEPAGE);
  return p;
}

}  // namespace chronos::detail
