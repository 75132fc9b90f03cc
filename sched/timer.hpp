// sched/timer.hpp: timers, the clock and deadlines. The wheel itself is in
// sched/timer_wheel.hpp; this is what the rest of chronos uses.
//
// A Timer is an intrusive record that lives in its owner's frame (a parked
// fiber's stack, usually), so arming one allocates nothing. Arming puts it on
// the calling worker's timer wheel; when its deadline passes, some worker
// calls fire(timer), once, outside every lock.
//
// The firing protocol. The wheel unlinks an expired timer and marks it Firing
// under the wheel's lock, then drops the lock and calls fire(). fire() must
// call timer_fired(t) once it no longer needs the Timer, and before it wakes
// whoever owns the Timer's memory, because that owner may return (and reuse
// the frame) the moment it runs. timer_cancel() waits while a timer is
// Firing, so after it returns nobody touches the Timer any more.
#pragma once

#include <atomic>
#include <cstdint>

namespace chronos::detail {

class TimerWheel;

// CLOCK_MONOTONIC in nanoseconds: the clock every chronos deadline is on
// (std::chrono::steady_clock on Linux reads the same clock).
std::int64_t now_ns() noexcept;

// "No deadline".
inline constexpr std::int64_t kNoDeadline = INT64_MAX;

struct Timer {
  enum State : std::uint32_t { kIdle, kArmed, kFiring };
  using FireFn = void (*)(Timer* t);

  Timer* prev = nullptr;  // intrusive links in the wheel's slot list
  Timer* next = nullptr;
  std::int64_t deadline = kNoDeadline;  // ns on the now_ns() clock
  FireFn fire = nullptr;
  void* arg = nullptr;          // for fire()
  TimerWheel* wheel = nullptr;  // set while armed or firing
  std::uint8_t level = 0;       // where the wheel filed it (its slot list's head)
  std::uint8_t slot = 0;
  std::atomic<std::uint32_t> state{kIdle};
};

// Arms t (deadline and fire set by the caller) on the calling worker's wheel.
// Must be called on a worker thread (a fiber or the scheduler loop). A
// deadline in the past fires at the wheel's next poll, never synchronously.
void timer_arm(Timer& t) noexcept;

// Disarms t. True if it was still armed (fire() will never run); false if it
// fired or is firing, in which case this returns only after fire() has called
// timer_fired(). Any thread. O(1).
bool timer_cancel(Timer& t) noexcept;

// Called by fire(): nobody will touch t after this (see the top of the file).
inline void timer_fired(Timer& t) noexcept {
  t.state.store(Timer::kIdle, std::memory_order_release);  // pairs with timer_cancel's acquire
}

}  // namespace chronos::detail
