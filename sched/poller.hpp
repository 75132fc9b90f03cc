// sched/poller.hpp: the scheduler's view of an I/O poller (reactor/ has the
// one chronos ships). sched/ knows nothing about epoll; it only knows that a
// runtime may have one Poller, and when to call it:
//
//   - An idle worker that finds no fiber to run, before it sleeps, becomes
//     the runtime's one polling worker if nobody else is: it blocks in
//     poll(w, timeout) instead of on the futex, until I/O is ready, the next
//     timer is due (timeout), or interrupt() is called because work arrived.
//     So the worker that finds a ready fd runs the fiber parked on it, with no
//     hop through another thread (Go's netpoller does the same).
//   - A busy worker polls without blocking (timeout 0) every kInjectTick-th
//     scheduling round, so I/O is never starved by a runtime that never idles.
//
// poll() wakes the fibers it readies with wake(w, f), which queues them on w.
#pragma once

#include <cstddef>
#include <cstdint>

namespace chronos::detail {

class Worker;

class Poller {
 public:
  virtual ~Poller() = default;
  // Waits up to timeout_ns (0: do not block; < 0: until interrupted) for I/O
  // readiness, and readies the fibers it concerns on w. Returns how many it
  // readied. Called by one worker at a time (the runtime makes sure).
  virtual int poll(Worker* w, std::int64_t timeout_ns) noexcept = 0;
  // Makes a poll() that blocks now, or is about to, return soon. Any thread.
  virtual void interrupt() noexcept = 0;
  // How many parked fibers a thread outside the workers has yet to wake (the
  // blocking pool's jobs, queued or running): runtime shutdown waits for
  // them, as it waits for timers, before it unwinds what is still parked.
  // Counted before the fiber's worker next goes idle and dropped only after
  // the wake-up, so that a shutdown that reads 0 after seeing every worker
  // asleep also sees the woken fiber queued (acquire, any thread).
  virtual std::size_t wakeups_owed() const noexcept = 0;
};

}  // namespace chronos::detail
