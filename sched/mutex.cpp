// sched/mutex.cpp: chronos::Mutex, Semaphore and CondVar (chronos/sync.hpp),
// all on a WaitList (chronos/detail/wait_list.hpp).
#include "chronos/sync.hpp"

#include "chronos/cancel.hpp"

namespace chronos {

// The state word: kUnlocked, kLocked (no waiters), kContended (locked, and
// the wait list may be non-empty). Every change away from kContended happens
// under the wait list's lock, so a waiter that queued is always handed the
// mutex by some unlock().
bool Mutex::lock_slow(std::int64_t deadline) {
  detail::wait_list_lock(waiters_);
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (s == kUnlocked) {
      if (state_.compare_exchange_weak(s, kLocked, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        detail::wait_list_unlock(waiters_);
        return true;
      }
      continue;
    }
    // Locked: mark it contended (so the owner's unlock takes the slow path),
    // then queue.
    if (s == kContended || state_.compare_exchange_weak(s, kContended, std::memory_order_relaxed,
                                                        std::memory_order_relaxed))
      break;
  }
  detail::WaitNode node;
  switch (detail::wait_list_wait(waiters_, node, deadline)) {
    case detail::WakeReason::kNotified:
      // Woken by unlock_slow(), which handed us the mutex: it is ours,
      // locked, and the Waiter's acquire saw the previous owner's writes.
      return true;
    case detail::WakeReason::kCancelled:
      detail::throw_cancelled();
    default:
      return false;  // the deadline passed (still kContended: unlock_slow sorts it out)
  }
}

void Mutex::unlock_slow() {
  for (;;) {
    detail::wait_list_lock(waiters_);
    detail::WaitNode* next = detail::wait_list_take(waiters_);
    if (!next) {
      state_.store(kUnlocked, std::memory_order_release);
    } else {
      // Hand-off: the mutex stays locked and now belongs to `next`.
      state_.store(waiters_.head ? kContended : kLocked, std::memory_order_release);
    }
    detail::wait_list_unlock(waiters_);
    if (!next || detail::wait_list_wake(next)) return;
    // `next` is being unwound at shutdown and will not take it: still ours,
    // so pass it on.
  }
}

bool Semaphore::acquire_until_ns(std::int64_t deadline) {
  detail::wait_list_lock(waiters_);
  if (permits_ > 0 && !waiters_.head) {  // FIFO: no overtaking queued waiters
    --permits_;
    detail::wait_list_unlock(waiters_);
    return true;
  }
  detail::WaitNode node;
  switch (detail::wait_list_wait(waiters_, node, deadline)) {
    case detail::WakeReason::kNotified:
      return true;  // release() handed us a permit
    case detail::WakeReason::kCancelled:
      detail::throw_cancelled();
    default:
      return false;
  }
}

bool Semaphore::try_acquire() noexcept {
  detail::wait_list_lock(waiters_);
  bool got = permits_ > 0 && !waiters_.head;
  if (got) --permits_;
  detail::wait_list_unlock(waiters_);
  return got;
}

void Semaphore::release(std::int64_t n) {
  while (n > 0) {
    detail::wait_list_lock(waiters_);
    detail::WaitNode* next = detail::wait_list_take(waiters_);
    if (!next) ++permits_;  // nobody waits: keep the permit
    detail::wait_list_unlock(waiters_);
    // The permit goes straight to the waiter, unless it is being unwound at
    // shutdown: then it is still ours to give.
    if (!next || detail::wait_list_wake(next)) --n;
  }
}

std::int64_t Semaphore::available() const noexcept {
  detail::wait_list_lock(waiters_);
  std::int64_t p = permits_;
  detail::wait_list_unlock(waiters_);
  return p;
}

std::cv_status CondVar::wait_until_ns(std::unique_lock<Mutex>& lock, std::int64_t deadline) {
  // Queue first, then release the mutex, then sleep: a notify after the
  // unlock finds us queued. The wait list's lock is held across the unlock,
  // which only ever takes the mutex's own wait list, never ours.
  detail::wait_list_lock(waiters_);
  detail::WaitNode node;
  lock.unlock();
  detail::WakeReason why;
  try {
    why = detail::wait_list_wait(waiters_, node, deadline);
  } catch (...) {
    lock.lock();  // as std::condition_variable: the caller gets its lock back
    throw;
  }
  lock.lock();
  if (why == detail::WakeReason::kCancelled) detail::throw_cancelled();
  return why == detail::WakeReason::kNotified ? std::cv_status::no_timeout
                                              : std::cv_status::timeout;
}

void CondVar::notify_one() {
  detail::wait_list_lock(waiters_);
  detail::WaitNode* next = detail::wait_list_take(waiters_);
  detail::wait_list_unlock(waiters_);
  if (next) detail::wait_list_wake(next);
}

void CondVar::notify_all() {
  detail::wait_list_wake_all(waiters_);
}

}  // namespace chronos
