// sched/timer_wheel.hpp: a hierarchical timing wheel, one per worker.
//
// Time is counted in ticks of 1 ms since the wheel was made. A timer due at
// deadline d fires at the first poll whose clock reads at least tick(d) =
// ceil(d / 1 ms): never early, and late by at most a tick plus however long
// the worker takes to poll again (README, "Timers").
//
// Six levels of 64 slots each. Level L slot s holds timers whose tick agrees
// with `elapsed_` (the last tick processed) in every 6-bit group above L and
// has s in group L, so level 0 spans the current 64 ms, level 1 the current
// 4 s in 64 ms slots, and so on up to 2^36 ms (2.2 years) at level 5. Arming
// and cancelling are O(1): pick the level from the highest bit in which the
// tick differs from elapsed_, and link into (or unlink from) a doubly linked
// slot list. Each level has a 64-bit occupancy mask, so finding the next
// expiry is a rotate and a count-trailing-zeros per level.
//
// Polling advances elapsed_ to now: it repeatedly takes the earliest occupied
// slot that is due, fires its timers whose tick has come, and re-files the
// rest one level down (a "cascade"). A timer is re-filed at most once per
// level. A deadline beyond the top level's reach is filed at the farthest
// top-level slot and re-filed when that comes round.
//
// Timers due at the same tick fire in deadline order (each batch is sorted
// by its nanosecond deadline before firing), so sleepers wake in the order
// of their deadlines.
//
// Concurrency. The owning worker arms and polls; any thread may cancel, and
// an idle worker may poll another's wheel. A spin lock serialises them: its
// critical sections are a few pointer moves (fire() runs outside it, see
// sched/timer.hpp). next_due() is a lock-free hint for sleepers.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "sched/timer.hpp"

namespace chronos::detail {

class TimerWheel {
 public:
  explicit TimerWheel(std::int64_t origin_ns) noexcept;
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  void arm(Timer* t) noexcept;
  // True if t was armed here and is now unlinked (it will not fire).
  bool cancel(Timer* t) noexcept;
  // Fires every timer due at `now`. Returns how many fired. try_poll gives up
  // at once if another thread holds the wheel.
  std::size_t poll(std::int64_t now) noexcept;
  std::size_t try_poll(std::int64_t now) noexcept;

  // The earliest time anything here may be due (ns on the now_ns() clock),
  // or kNoDeadline. Relaxed and possibly stale: a hint for a sleeper's
  // timeout, re-checked under the lock by poll().
  std::int64_t next_due() const noexcept { return next_due_.load(std::memory_order_relaxed); }
  std::size_t armed() const noexcept { return armed_.load(std::memory_order_relaxed); }

  static constexpr int kLevels = 6;
  static constexpr int kSlotBits = 6;
  static constexpr int kSlots = 1 << kSlotBits;
  static constexpr std::int64_t kTickNs = 1'000'000;

 private:
  struct Expiry {
    int level = 0;
    int slot = 0;
    std::uint64_t tick = 0;
  };

  void lock() noexcept;
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }
  bool try_lock() noexcept { return !locked_.exchange(true, std::memory_order_acquire); }

  std::uint64_t tick_of(std::int64_t deadline) const noexcept;
  void file(Timer* t) noexcept;  // links t into its slot (or the due list)
  void unlink(Timer* t) noexcept;
  bool next_expiry(Expiry& out) const noexcept;
  std::size_t poll_locked(std::int64_t now) noexcept;  // unlocks
  void publish_next_due() noexcept;

  std::atomic<bool> locked_{false};
  const std::int64_t origin_;
  std::uint64_t elapsed_ = 0;  // every tick up to this one has been processed
  std::uint64_t occupied_[kLevels] = {};
  Timer* slots_[kLevels][kSlots] = {};
  Timer* due_ = nullptr;  // armed with a tick already processed: fire at the next poll
  std::atomic<std::size_t> armed_{0};
  std::atomic<std::int64_t> next_due_{kNoDeadline};
};

}  // namespace chronos::detail
