// sched/wait_group.cpp: chronos::WaitGroup (chronos/sync.hpp).
//
// One word, state_, holds the counter (high 32 bits, signed) and the number
// of waiters queued on the wait list (low 32 bits). The hazard this layout
// answers: a waiter that finds the counter at zero returns, and may destroy
// the wait group at once (it usually lives in the waiter's frame), while the
// done() that zeroed the counter is still running on another worker. So:
//
//   - A waiter queues only with the list lock held, and only by a CAS that
//     sees a non-zero counter and counts itself in. When it takes its own node
//     off the list (deadline, stop, unwinding) it counts itself out, under the
//     lock again.
//   - The add() that zeroes the counter learns the number of waiters from its
//     own atomic add. None: it returns and touches nothing more. Some: it
//     takes the list lock, unqueues them all, releases the lock, and only then
//     takes their number off the word: its last touch of the wait group. Then
//     it wakes them, through nodes that live on their own stacks.
//   - wait() returns at once only on a word of exactly zero. A zero counter
//     with waiters still counted is such a wake in flight, a few instructions
//     from its last touch (on another thread: a fiber is not preempted inside
//     add()), and wait() backs off until the count drains.
//
// A new round (add() after the counter reached zero) may begin only once the
// last round's wait() calls have returned, as with Go's: a waker that finds
// the next round's waiters queued wakes them too.
#include <climits>
#include <stdexcept>

#include "chronos/cancel.hpp"
#include "chronos/sync.hpp"
#include "fiber/backoff.hpp"

namespace chronos {
namespace {

constexpr std::uint64_t kWaiterMask = 0xffff'ffffu;

std::uint64_t waiters(std::uint64_t state) noexcept {
  return state & kWaiterMask;
}

}  // namespace

std::uint64_t WaitGroup::init(std::int64_t count) {
  if (count < 0 || count > INT32_MAX)
    throw std::logic_error("chronos: WaitGroup count out of range (0 to 2^31 - 1)");
  return static_cast<std::uint64_t>(count) << 32;
}

// The fast path is a leaf: its rare ends are calls in tail position.
void WaitGroup::add(std::int64_t delta) {
  // |delta| < 2^31, in one compare (unsigned: no overflow for any delta).
  if (static_cast<std::uint64_t>(delta) + INT32_MAX > 2 * std::uint64_t{INT32_MAX}) [[unlikely]]
    return out_of_range(0, 0);
  const std::uint64_t step = static_cast<std::uint64_t>(delta) << 32;  // leaves the low half
  // acq_rel: a done() releases the work it finished; the one that zeroes the
  // counter acquires every other's (they are all RMWs on this word), and its
  // wake passes all of it on to the waiters.
  const std::uint64_t old = state_.fetch_add(step, std::memory_order_acq_rel);
  const std::int64_t now = counter(old) + delta;
  if (static_cast<std::uint64_t>(now) > INT32_MAX) [[unlikely]]
    return out_of_range(step, now);  // below zero or past 2^31 - 1
  if (now == 0 && waiters(old) != 0) wake();
  // Nobody queued: not one more touch of *this.
}

// add(-1), with no delta to check (the spawn benchmarks call it per fiber).
void WaitGroup::done() {
  constexpr std::uint64_t step = ~std::uint64_t{0} << 32;  // -1 in the high half
  const std::uint64_t old = state_.fetch_add(step, std::memory_order_acq_rel);  // as add()
  const std::int64_t now = counter(old) - 1;
  if (now < 0) [[unlikely]]
    return out_of_range(step, now);
  if (now == 0 && waiters(old) != 0) wake();
}

void WaitGroup::out_of_range(std::uint64_t step, std::int64_t now) {
  if (step == 0)
    throw std::logic_error("chronos: WaitGroup::add delta out of range (|delta| < 2^31)");
  // Undo. A waiter may have queued on the passing non-zero value: if the
  // counter is back at zero, it must be woken.
  const std::uint64_t back = state_.fetch_sub(step, std::memory_order_acq_rel) - step;
  if (counter(back) == 0 && waiters(back) != 0) wake();
  throw std::logic_error(now < 0 ? "chronos: WaitGroup counter would go negative"
                                 : "chronos: WaitGroup counter would exceed 2^31 - 1");
}

void WaitGroup::wake() noexcept {
  std::uint64_t unqueued;
  detail::wait_list_lock(waiters_);
  detail::WaitNode* chain = detail::wait_list_take_all(waiters_, &unqueued);
  detail::wait_list_unlock(waiters_);
  // release: our last touch of *this. A wait() that sees the count drain
  // (acquire) may destroy the wait group; our writes to it came first.
  state_.fetch_sub(unqueued, std::memory_order_release);
  detail::wait_list_wake_chain(chain);
}

void WaitGroup::unqueued(void* self) noexcept {
  // relaxed: this waiter is still inside wait(), so the wait group is alive
  // whatever anyone sees; only the count itself matters, and it is an RMW.
  static_cast<WaitGroup*>(self)->state_.fetch_sub(1, std::memory_order_relaxed);
}

bool WaitGroup::wait_until_ns(std::int64_t deadline) {
  detail::Backoff backoff(64);  // (fiber/backoff.hpp)
  for (;;) {
    // acquire: see add(); and, on a drained count, wake()'s last touch.
    std::uint64_t s = state_.load(std::memory_order_acquire);
    if (s == 0) return true;
    if (counter(s) == 0) {  // a wake in flight
      backoff();
      continue;
    }
    detail::wait_list_lock(waiters_);
    // Count ourselves in while the counter is not zero. release: the add()
    // that reads this count then takes the list lock after us and finds our
    // node. acquire: for the zero we may find instead.
    while (counter(s) != 0 && !state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel,
                                                            std::memory_order_acquire)) {
    }
    if (counter(s) == 0) {
      detail::wait_list_unlock(waiters_);
      continue;
    }
    detail::WaitNode node(detail::WaitReason::kWaitGroup, this);
    detail::WakeReason why =
        detail::wait_list_wait(waiters_, node, deadline, false, {&unqueued, this});
    if (why == detail::WakeReason::kCancelled) detail::throw_cancelled();
    return why == detail::WakeReason::kNotified;
  }
}

}  // namespace chronos
