// chronos/detail/waiter.hpp: one parked waiter, and how its wait ends. Not
// part of the API.
//
// Every blocking call in chronos parks its caller on a Waiter that lives on
// the caller's stack, registered wherever the event will come from (a wait
// list, a channel's queue). Three kinds of party may end the wait:
//
//   the event    a waker that found the Waiter in its registration;
//   a deadline   a timer armed for the wait (sched/timer.hpp);
//   a stop       a std::stop_callback on the fiber's stop token.
//
// They race, and exactly one wins: complete(reason) is one CAS of `word` from
// pending to the reason, and only its winner wakes the waiter. The losers
// leave; the waiter, once resumed, takes its registration back (under the
// registration's own lock) if it is still there. Before it returns, it
// cancels its timer and destroys its stop callback, both of which wait for a
// firing/running one to finish, and takes the registration's lock, which
// waits for a waker holding it: so nobody touches the Waiter after it is gone.
//
// A fiber registers itself before it has switched away, so a winner must not
// wake it too early. The kParked bit settles that: the fiber's park commit
// (run on the other side of the switch) sets it; a winner that finds it set
// wakes the fiber; a winner that does not leaves the wake-up to the commit,
// which sees the reason and declines to park.
#pragma once

#include <chronos/export.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace chronos::detail {

struct Fiber;

enum class WakeReason : std::uint32_t {
  kPending = 0,
  kNotified = 1,
  kTimedOut = 2,
  kCancelled = 3
};

// What a blocking call waits on, as fiber dumps and traces show it. The
// deadlock detector treats kSleep as something time will end, and everything
// else here as needing another fiber (or thread) to act.
enum class WaitReason : std::uint8_t {
  kOther,
  kChannelSend,
  kChannelRecv,
  kSelect,
  kMutex,
  kCondVar,
  kSemaphore,
  kWaitGroup,
  kFuture,
  kSleep,
};

struct Waiter {
  static constexpr std::uint32_t kReasonMask = 3;
  static constexpr std::uint32_t kParked = 4;

  Fiber* fiber = nullptr;  // the parked fiber, or null for a thread
  void* thread = nullptr;  // the parked thread's ThreadWaiter
  std::atomic<std::uint32_t> word{0};
  // For dumps: what this wait is for, and the object (a channel, a mutex...).
  // Set by the blocking call before it parks; read only under the inspection
  // hold (fiber/tcb.hpp), while the waiter cannot run.
  WaitReason what = WaitReason::kOther;
  const void* object = nullptr;

  // Ends the wait with `why` unless it has ended already. True if this call
  // ended it and the waiter will run again: false if another party won, or
  // (rarely) if the fiber is being unwound at runtime shutdown and will not
  // come back for whatever was handed to it. claim() + resume().
  CHRONOS_API bool complete(WakeReason why) noexcept;

  // The two halves of complete(), for a waker that hands something over in
  // between (a channel value): claim() decides the race and returns the word
  // it replaced, or kLost; resume(old) then wakes the waiter. Between the
  // two, the waiter cannot run: a waker reaches it only through a
  // registration whose lock the waiter held until it had set kParked.
  static constexpr std::uint32_t kLost = ~std::uint32_t{0};
  std::uint32_t claim(WakeReason why) noexcept {
    std::uint32_t old = word.load(std::memory_order_relaxed);
    do {
      if (old & kReasonMask) return kLost;
      // acq_rel: release publishes what the winner did before (and, through
      // the wake-up, after) to the waiter; acquire pairs with the park
      // commit's kParked, after which the fiber's context is saved.
    } while (!word.compare_exchange_weak(old, old | static_cast<std::uint32_t>(why),
                                         std::memory_order_acq_rel, std::memory_order_relaxed));
    return old;
  }
  // Wakes the waiter whose claim() returned `old`; fiber and thread as read
  // from it before. Touches nothing of the Waiter itself, which may be gone
  // as soon as the waiter runs.
  CHRONOS_API static bool resume(Fiber* fiber, void* thread, std::uint32_t old) noexcept;

  WakeReason reason() const noexcept {
    // acquire: pairs with the winner's release, so the waiter sees what the
    // winner handed over (a value, a lock) before it woke us.
    return WakeReason(word.load(std::memory_order_acquire) & kReasonMask);
  }
};

// A scope in which the fibers this thread readies for a runtime it is not a
// worker of (a plain thread closing a channel that many fibers wait on, say)
// are handed over in batches: one critical section on the injection queue
// and one wake-up call per batch, instead of one per fiber, which let the
// workers drain the queue, sleep and be woken again for nearly every fiber
// while the waker was slowed down (a loaded machine). Flushed when full, when
// a fiber of another runtime comes, and when the scope ends. Nests. Fibers a
// worker readies for its own runtime are queued as usual.
class CHRONOS_API WakeBatch {
 public:
  WakeBatch() noexcept;
  ~WakeBatch();
  WakeBatch(const WakeBatch&) = delete;
  WakeBatch& operator=(const WakeBatch&) = delete;

  // Takes f into the innermost scope of this thread; false if there is none.
  static bool defer(Fiber* f) noexcept;

 private:
  void flush() noexcept;
  static constexpr std::size_t kCapacity = 32;  // 256 bytes: fits a small stack
  WakeBatch* prev_;
  void* rt_ = nullptr;  // the runtime of the fibers held
  std::size_t n_ = 0;
  Fiber* fibers_[kCapacity];
};

// Parks the calling fiber, or plain thread, on `w`, which the caller has just
// registered somewhere under a lock. release(arg) must drop that lock; it is
// called once the caller can safely be woken (for a fiber: after it has
// switched away). deadline is on the now_ns() clock (kNoDeadline: none). A
// fiber's stop token (SpawnOptions::stop_token, this_fiber::CancelScope) may
// end the wait too. Returns why the wait ended; the caller then takes its
// registration back, under the lock, if the reason is not kNotified. Throws
// FiberUnwind (after calling release) when the runtime shuts down.
CHRONOS_API WakeReason park_on(Waiter& w, std::int64_t deadline, void (*release)(void*), void* arg);

// Throws chronos::Cancelled (chronos/cancel.hpp).
[[noreturn]] CHRONOS_API void throw_cancelled();

}  // namespace chronos::detail
