// fiber/futex.hpp: the two futex operations the runtime sleeps and wakes with.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <ctime>

namespace chronos::detail {

// Sleeps while *word == expected (returns at once otherwise). Spurious and
// EINTR returns are possible: callers re-check their condition in a loop.
inline void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected,
            nullptr, nullptr, 0);
}

// As futex_wait, for at most `timeout`. Returns true if it timed out.
inline bool futex_wait_for(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                           const struct timespec& timeout) noexcept {
  long r = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_PRIVATE,
                     expected, &timeout, nullptr, 0);
  return r == -1 && errno == ETIMEDOUT;
}

// Returns how many threads it woke.
inline int futex_wake(std::atomic<std::uint32_t>* word, int count) noexcept {
  return static_cast<int>(::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word),
                                    FUTEX_WAKE_PRIVATE, count, nullptr, nullptr, 0));
}

// Blocks one plain thread until another thread (or a fiber) wakes it. The
// waiter lives on the blocked thread's stack. wake() may touch the word after
// the waiter has returned and reused that stack; the futex contract makes that
// harmless (a spurious wake-up at most), and the flag is only ever read by its
// own waiter.
struct ThreadWaiter {
  alignas(64) std::atomic<std::uint32_t> flag{0};

  void wait() noexcept {
    while (flag.load(std::memory_order_acquire) == 0) futex_wait(&flag, 0);
  }
  void wake() noexcept {
    flag.store(1, std::memory_order_release);  // release: publishes what the waker did
    futex_wake(&flag, 1);
  }
};

}  // namespace chronos::detail
