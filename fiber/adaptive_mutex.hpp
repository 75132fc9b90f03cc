// fiber/adaptive_mutex.hpp: the lock of the shared pools and queues that a
// worker reaches once per batch (TCBs, stacks, the injection queue's spill,
// descriptors).
//
// Those critical sections are short (a copy of a few dozen pointers, at most
// the first touch of a fresh chunk), and their holder is a running worker
// thread. std::mutex sleeps in the kernel at the first sign of contention,
// and on the VMs we measure on a futex wait plus its wake costs 5-20 us of
// system time, against a wait of well under a microsecond for the holder to
// finish: with two workers spawning and running a million fibers, glibc's
// mutex made ~5,000 futex calls a round, ~6 % of the CPU time in the kernel.
// So this lock spins first, briefly, and sleeps only if the holder is still
// not done (it may have been preempted), as Go's runtime lock does.
//
// The word is Drepper's three-state futex mutex ("Futexes Are Tricky",
// mutex 3): 0 free, 1 held, 2 held and somebody may sleep on it. Only an
// unlock that sees 2 makes the wake system call, so an uncontended or a
// spun-out contention costs no system call at all.
//
// Orders: the lock's successful exchange/CAS is acquire and the unlock's
// exchange is release, which is all a mutex needs: everything the previous
// holder wrote happens-before what the next one reads. The spin reads are
// relaxed; they only decide when to try again.
#pragma once

#include <atomic>
#include <cstdint>

#include "fiber/backoff.hpp"
#include "fiber/futex.hpp"

namespace chronos::detail {

class AdaptiveMutex {
 public:
  AdaptiveMutex() = default;
  AdaptiveMutex(const AdaptiveMutex&) = delete;
  AdaptiveMutex& operator=(const AdaptiveMutex&) = delete;

  void lock() noexcept {
    std::uint32_t free = kFree;
    if (word_.compare_exchange_strong(free, kHeld, std::memory_order_acquire,
                                      std::memory_order_relaxed)) [[likely]]
      return;
    lock_slow();
  }

  bool try_lock() noexcept {
    std::uint32_t free = kFree;
    return word_.compare_exchange_strong(free, kHeld, std::memory_order_acquire,
                                         std::memory_order_relaxed);
  }

  void unlock() noexcept {
    if (word_.exchange(kFree, std::memory_order_release) == kContended) [[unlikely]]
      futex_wake(&word_, 1);
  }

 private:
  // Spin rounds before sleeping. A round is one look at the word and a
  // pause (about 40-140 cycles on the x86-64 cores we run on), so this is a
  // few microseconds: longer than any critical section of a running holder,
  // far shorter than a futex round trip.
  static constexpr int kSpinRounds = 128;
  static constexpr std::uint32_t kFree = 0, kHeld = 1, kContended = 2;

  [[gnu::noinline]] void lock_slow() noexcept {
    for (int i = 0; i < kSpinRounds; ++i) {
      cpu_relax();
      std::uint32_t v = word_.load(std::memory_order_relaxed);
      // Taking it as merely held while others sleep is safe: the unlock
      // that freed it woke one of them, which marks it contended again
      // before it sleeps (Drepper's argument for mutex 3).
      if (v == kFree && word_.compare_exchange_weak(v, kHeld, std::memory_order_acquire,
                                                    std::memory_order_relaxed))
        return;
    }
    // Mark the lock contended before sleeping, so that the holder's unlock
    // wakes someone. Taking it this way leaves it marked contended, which
    // costs at most one spurious wake call at our unlock.
    while (word_.exchange(kContended, std::memory_order_acquire) != kFree)
      futex_wait(&word_, kContended);
  }

  std::atomic<std::uint32_t> word_{kFree};
};

}  // namespace chronos::detail
