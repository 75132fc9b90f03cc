// chronos/sync.hpp: synchronisation that parks the fiber, never the worker.
//
//   chronos::WaitGroup wg;
//   wg.add(n);
//   for (...) chronos::go([&] { work(); wg.done(); });
//   wg.wait();   // parks this fiber (or blocks a plain thread) until n done()s
//
//   chronos::Mutex mu;                 // works with std::lock_guard / std::unique_lock
//   chronos::CondVar cv;
//   std::unique_lock lk(mu);
//   cv.wait(lk, [&] { return ready; });
//
// Every primitive here works from fibers on any worker and from plain
// threads alike: a fiber parks, a thread blocks on a futex. None is copyable
// or movable (waiters point into it). Every wait that parks also has a
// deadline form (..._until / ..._for, chronos/time.hpp), and throws
// chronos::Cancelled when the fiber's stop token is triggered while it waits
// (chronos/cancel.hpp).
#pragma once

#include <chronos/detail/wait_list.hpp>
#include <chronos/export.hpp>
#include <chronos/time.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

namespace chronos {

// Waits for a collection of fibers (or threads) to finish, as Go's
// sync.WaitGroup. Any number of fibers and threads may wait at once; done()
// from any thread. add() with a negative delta that takes the counter below
// zero, or above 2^31 - 1, throws std::logic_error. Not copyable or movable:
// waiters point into it.
//
// Once wait() has returned, no add() or done() touches the wait group again,
// so the waiter may destroy it at once: the usual shape, a wait group on the
// waiting fiber's stack, is safe even when the last done() is still returning
// on another worker.
//
// It fills a cache line of its own (alignas(64), 64 bytes): a wait group
// usually lives in the waiting fiber's frame while every worker's done()
// writes its counter, and sharing a line with that frame's spills cost a
// two-worker spawn burst 28 % (README, "Numbers").
class CHRONOS_API WaitGroup {
 public:
  WaitGroup() = default;
  explicit WaitGroup(std::int64_t count) : state_(init(count)) {}
  WaitGroup(const WaitGroup&) = delete;
  WaitGroup& operator=(const WaitGroup&) = delete;

  void add(std::int64_t delta = 1);
  void done();  // add(-1)
  // Returns once the counter is zero: at once if it is. Parks a fiber, blocks
  // a plain thread.
  void wait() { wait_until_ns(detail::kForever); }
  // As wait(), but gives up at the deadline: false if the counter is not zero by then.
  bool wait_until(Deadline d) { return wait_until_ns(detail::to_ns(d)); }
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) {
    return wait_until_ns(detail::after_ns(d));
  }
  std::int64_t count() const noexcept { return counter(state_.load(std::memory_order_acquire)); }

 private:
  bool wait_until_ns(std::int64_t deadline);
  void wake() noexcept;
  [[noreturn, gnu::noinline, gnu::cold]] void out_of_range(std::uint64_t step, std::int64_t now);
  static void unqueued(void* self) noexcept;
  static std::int64_t counter(std::uint64_t state) noexcept {
    return static_cast<std::int32_t>(state >> 32);
  }
  static std::uint64_t init(std::int64_t count);
  // The counter (signed, high 32 bits) and the number of waiters queued on
  // waiters_ (low 32 bits), in one word: the done() that zeroes the counter
  // learns from its own atomic add whether anyone must be woken, and touches
  // nothing else when nobody is (sched/wait_group.cpp).
  alignas(64) std::atomic<std::uint64_t> state_{0};  // the line of its own (above)
  detail::WaitList waiters_;
};

// A mutex for fibers, in the manner of Go's sync.Mutex. Uncontended, lock()
// and unlock() are one CAS each. Under contention it has two modes:
//   normal     unlock() releases the mutex and wakes the oldest waiter, which
//              competes for it with fibers arriving meanwhile (they may
//              "barge", and on a multi-worker runtime spin briefly first). A
//              woken waiter that loses goes back to the head of the queue.
//              Throughput stays high: a fiber can take and release the mutex
//              many times without a switch.
//   starving   once a waiter has waited over 1 ms, unlock() hands the mutex
//              straight to the oldest waiter (FIFO), newcomers queue behind,
//              and nobody barges, until the queue drains or the waiter served
//              had waited less than 1 ms.
// So no waiter waits much beyond 1 ms for its turn behind a stream of
// newcomers, and waiters are served in arrival order. Not recursive; unlock()
// by a non-owner is undefined, as for std::mutex.
class CHRONOS_API Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() {
    std::uint32_t unlocked = 0;
    // acquire: the critical section sees the previous owner's writes.
    if (state_.compare_exchange_strong(unlocked, kLocked, std::memory_order_acquire,
                                       std::memory_order_relaxed))
      return;
    lock_slow(detail::kForever);
  }
  bool try_lock() noexcept {
    std::uint32_t s = state_.load(std::memory_order_relaxed);
    do {
      if (s & (kLocked | kStarving)) return false;
    } while (!state_.compare_exchange_weak(s, s | kLocked, std::memory_order_acquire,
                                           std::memory_order_relaxed));
    return true;
  }
  // Timed locking, as std::timed_mutex: false if the deadline passed first.
  bool try_lock_until(Deadline d) { return try_lock() || lock_slow(detail::to_ns(d)); }
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> d) {
    return try_lock() || lock_slow(detail::after_ns(d));
  }
  void unlock() {
    std::uint32_t locked = kLocked;
    // release: publishes the critical section to the next owner.
    if (state_.compare_exchange_strong(locked, 0, std::memory_order_release,
                                       std::memory_order_relaxed))
      return;
    unlock_slow();
  }

 private:
  // The state word. kWaiters: the wait list may be non-empty. kWoken: a
  // waiter has been woken to compete and has not run yet, so unlock() need
  // not wake another. kStarving: hand-off mode (above).
  static constexpr std::uint32_t kLocked = 1, kWoken = 2, kStarving = 4, kWaiters = 8;
  bool lock_slow(std::int64_t deadline);
  void unlock_slow();
  std::atomic<std::uint32_t> state_{0};
  detail::WaitList waiters_;
};

// A counting semaphore. acquire() takes a permit, parking (FIFO) while there
// is none; release() gives one back, to the oldest waiter if any.
class CHRONOS_API Semaphore {
 public:
  explicit Semaphore(std::int64_t permits = 0) : permits_(permits) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  void acquire() { acquire_until_ns(detail::kForever); }
  bool try_acquire() noexcept;
  bool try_acquire_until(Deadline d) { return acquire_until_ns(detail::to_ns(d)); }
  template <class Rep, class Period>
  bool try_acquire_for(std::chrono::duration<Rep, Period> d) {
    return acquire_until_ns(detail::after_ns(d));
  }
  void release(std::int64_t n = 1);
  std::int64_t available() const noexcept;

 private:
  bool acquire_until_ns(std::int64_t deadline);
  std::int64_t permits_;              // under waiters_'s lock
  mutable detail::WaitList waiters_;  // mutable: available() takes its lock
};

// A condition variable for chronos::Mutex. wait() releases the mutex and
// parks in one step (no notify between the two is lost), and re-locks it
// before returning. Spurious wake-ups do not happen, but use the predicate
// form anyway: another fiber may have changed the state first.
class CHRONOS_API CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  void wait(std::unique_lock<Mutex>& lock) { wait_until_ns(lock, detail::kForever); }
  template <class Pred>
  void wait(std::unique_lock<Mutex>& lock, Pred pred) {
    while (!pred()) wait(lock);
  }
  // With a deadline, as std::condition_variable.
  std::cv_status wait_until(std::unique_lock<Mutex>& lock, Deadline d) {
    return wait_until_ns(lock, detail::to_ns(d));
  }
  template <class Pred>
  bool wait_until(std::unique_lock<Mutex>& lock, Deadline d, Pred pred) {
    while (!pred())
      if (wait_until(lock, d) == std::cv_status::timeout) return pred();
    return true;
  }
  template <class Rep, class Period>
  std::cv_status wait_for(std::unique_lock<Mutex>& lock, std::chrono::duration<Rep, Period> d) {
    return wait_until_ns(lock, detail::after_ns(d));
  }
  template <class Rep, class Period, class Pred>
  bool wait_for(std::unique_lock<Mutex>& lock, std::chrono::duration<Rep, Period> d, Pred pred) {
    return wait_until(lock, Clock::now() + std::chrono::ceil<Clock::duration>(d), std::move(pred));
  }
  void notify_one();
  void notify_all();

 private:
  std::cv_status wait_until_ns(std::unique_lock<Mutex>& lock, std::int64_t deadline);
  detail::WaitList waiters_;
};

// Runs a callable once across all fibers and threads, as std::call_once, but
// a caller that finds it running parks (a fiber) instead of blocking its
// worker. If the callable throws, the exception reaches that caller and the
// flag stays unset: the next caller tries again. As with std::call_once, the
// return of the call that ran the callable happens before every other call
// returns: once every call has returned, the flag may be destroyed, even by
// a caller that found the callable run.
class OnceFlag {
 public:
  OnceFlag() = default;
  OnceFlag(const OnceFlag&) = delete;
  OnceFlag& operator=(const OnceFlag&) = delete;

 private:
  template <class F, class... Args>
  friend void call_once(OnceFlag& flag, F&& fn, Args&&... args);
  // kRan: the callable has returned, and its caller still holds or is
  // releasing mu_. kDone: that caller has let go of the flag.
  static constexpr std::uint8_t kNotRun = 0, kRan = 1, kDone = 2;
  std::atomic<std::uint8_t> state_{kNotRun};
  Mutex mu_;
};

namespace detail {
// Backs off until a OnceFlag's state reaches `done` (kDone): the caller that
// ran the callable is a few instructions from that store.
CHRONOS_API void once_await_done(const std::atomic<std::uint8_t>& state,
                                 std::uint8_t done) noexcept;
}  // namespace detail

template <class F, class... Args>
void call_once(OnceFlag& flag, F&& fn, Args&&... args) {
  // acquire: sees fn's effects, and the running caller's last touch of the flag.
  if (flag.state_.load(std::memory_order_acquire) == OnceFlag::kDone) return;
  bool ran = false;
  {
    std::lock_guard guard(flag.mu_);
    // relaxed: kRan is written under mu_, which orders us after it.
    if (flag.state_.load(std::memory_order_relaxed) == OnceFlag::kNotRun) {
      std::invoke(std::forward<F>(fn), std::forward<Args>(args)...);
      flag.state_.store(OnceFlag::kRan, std::memory_order_relaxed);  // (a throw leaves kNotRun)
      ran = true;
    }
  }
  if (ran) {
    // release: publishes fn's effects and our unlock of mu_; the last touch.
    flag.state_.store(OnceFlag::kDone, std::memory_order_release);
    return;
  }
  detail::once_await_done(flag.state_, OnceFlag::kDone);
}

}  // namespace chronos
