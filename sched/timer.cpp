// sched/timer.cpp: the clock, arming and cancelling timers (sched/timer.hpp),
// and sleeping.

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <stdexcept>

#include "chronos/detail/waiter.hpp"
#include "chronos/time.hpp"
#include "fiber/backoff.hpp"
#include "sched/scheduler.hpp"
#include "sched/timer.hpp"
#include "sched/timer_wheel.hpp"

namespace chronos::detail {

static_assert(kNoDeadline == kNoDeadlineNs);

std::int64_t now_ns() noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO: no system call
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

void timer_arm(Timer& t) noexcept {
  Worker* w = current_worker();
  if (!w) {
    std::fputs("chronos: a timer was armed outside the runtime's worker threads\n", stderr);
    std::abort();
  }
  w->timers.arm(&t);
}

bool timer_cancel(Timer& t) noexcept {
  // acquire: pairs with timer_fired's release; after it, fire() is done with t.
  std::uint32_t s = t.state.load(std::memory_order_acquire);
  if (s == Timer::kIdle) return false;
  if (s == Timer::kArmed && t.wheel->cancel(&t)) return true;
  // Firing on some thread right now: its fire() is a handful of instructions,
  // but that thread may be preempted, so stop spinning after a while.
  Backoff backoff(128);
  while (t.state.load(std::memory_order_acquire) != Timer::kIdle) backoff();
  return false;
}

void sleep_until_ns(std::int64_t deadline) {
  Worker* w = current_worker();
  if (!w || w->current == &w->main)
    throw std::logic_error(
        "chronos::sleep_for()/sleep_until() called outside a fiber (a plain thread should use "
        "std::this_thread::sleep_for)");
  if (deadline <= now_ns()) {
    if (w->current->stop.stop_requested()) throw_cancelled();
    return;
  }
  Waiter waiter;  // registered nowhere: only the deadline or a stop ends it
  waiter.what = WaitReason::kSleep;
  if (park_on(waiter, deadline, nullptr, nullptr) == WakeReason::kCancelled) throw_cancelled();
}

}  // namespace chronos::detail
