// sched/mutex.cpp: chronos::Mutex, Semaphore and CondVar (chronos/sync.hpp),
// all on a WaitList (chronos/detail/wait_list.hpp).
#include "chronos/sync.hpp"

#include "chronos/cancel.hpp"
#include "fiber/backoff.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/timer.hpp"

namespace chronos {

namespace {

constexpr std::int64_t kStarveNs = 1'000'000;  // a waiter queued this long: hand-off mode
constexpr std::uintptr_t kHandedOff = 1;       // WaitNode::token: unlock_slow gave us the mutex
constexpr int kSpinRounds = 4;

// Spinning pays only if the owner may be running right now on another
// worker (or thread).
bool may_spin() noexcept {
  detail::Worker* w = detail::current_worker();
  return !w || w->rt->worker_count() > 1;
}

}  // namespace

// Every change of kWaiters, kWoken and kStarving happens under the wait
// list's lock, as does every change of the word while kLocked is set by
// someone who then takes the slow path; so unlock_slow() can read the word
// once under that lock and store the new one. Only kLocked itself is taken
// without the lock (the fast path, try_lock, and spinning, all in normal
// mode), by a CAS from a word without it.
bool Mutex::lock_slow(std::int64_t deadline) {
  if (may_spin()) {
    for (int round = 0; round < kSpinRounds; ++round) {
      std::uint32_t s = state_.load(std::memory_order_relaxed);
      if (s & kStarving) break;  // newcomers queue in hand-off mode
      if (!(s & kLocked)) {
        if (state_.compare_exchange_weak(s, s | kLocked, std::memory_order_acquire,
                                         std::memory_order_relaxed))
          return true;
        continue;
      }
      for (int k = 0; k < 30; ++k) detail::cpu_relax();
    }
  }
  bool woken = false;      // woken once to compete, and lost: we go back first
  std::int64_t since = 0;  // when we first queued
  for (;;) {
    detail::wait_list_lock(waiters_);
    const bool starve = since != 0 && detail::now_ns() - since > kStarveNs;
    std::uint32_t s = state_.load(std::memory_order_relaxed);
    for (;;) {
      if (!(s & (kLocked | kStarving))) {
        std::uint32_t n = (s | kLocked) & ~(woken ? kWoken : 0);
        // acquire: the critical section sees the previous owner's writes.
        if (state_.compare_exchange_weak(s, n, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
          detail::wait_list_unlock(waiters_);
          return true;
        }
        continue;
      }
      std::uint32_t n = (s | kWaiters) & ~(woken ? kWoken : 0);
      if (starve && (s & kLocked)) n |= kStarving;
      if (state_.compare_exchange_weak(s, n, std::memory_order_relaxed, std::memory_order_relaxed))
        break;
    }
    if (since == 0) since = detail::now_ns();
    detail::WaitNode node(detail::WaitReason::kMutex, this);
    switch (detail::wait_list_wait(waiters_, node, deadline, /*front=*/woken)) {
      case detail::WakeReason::kNotified:
        break;
      case detail::WakeReason::kCancelled:
        detail::throw_cancelled();
      default:
        return false;  // the deadline passed (a stale kWaiters costs unlock one look)
    }
    // The Waiter's acquire saw what the unlocker did before waking us.
    if (node.token == kHandedOff) return true;
    woken = true;
  }
}

void Mutex::unlock_slow() {
  for (;;) {
    std::uint32_t s = state_.load(std::memory_order_relaxed);
    if (!(s & kStarving) && (!(s & kWaiters) || (s & kWoken))) {
      // Nobody to wake, or a woken waiter is on its way: just release.
      // release: publishes the critical section to the next owner.
      if (state_.compare_exchange_weak(s, s & ~kLocked, std::memory_order_release,
                                       std::memory_order_relaxed))
        return;
      continue;
    }
    detail::wait_list_lock(waiters_);
    s = state_.load(std::memory_order_relaxed);
    detail::WaitNode* next = detail::wait_list_take(waiters_);
    const std::uint32_t empty = waiters_.head ? 0 : (kWaiters | kStarving);
    std::uint32_t n;
    if (!next) {
      // Every waiter left (deadlines): release with the stale bits cleared.
      // The list lock goes first: once the mutex is free, its next owner may
      // unlock and destroy it at once, so the release must be our last touch.
      // A waiter that queued since changed the word, and the CAS sends us
      // round again to wake it. release: the critical section.
      detail::wait_list_unlock(waiters_);
      if (state_.compare_exchange_strong(s, s & ~(kLocked | kWaiters | kStarving),
                                         std::memory_order_release, std::memory_order_relaxed))
        return;
      continue;
    }
    if (s & kStarving) {
      next->token = kHandedOff;  // it stays locked, and is next's now
      n = s & ~empty;
    } else {
      next->token = 0;  // released: next competes for it
      n = ((s & ~kLocked) | kWoken) & ~(empty & kWaiters);
    }
    // release: the critical section. (Touching the list after this is safe:
    // `next` still waits in lock(), so the mutex may not be destroyed yet.)
    state_.store(n, std::memory_order_release);
    detail::wait_list_unlock(waiters_);
    if (detail::wait_list_wake(next)) return;
    // `next` is being unwound at shutdown and will not come back.
    if (!(s & kStarving)) {
      state_.fetch_and(~kWoken, std::memory_order_relaxed);
      return;
    }
    // Hand-off mode: the mutex is still ours; pass it on.
  }
}

bool Semaphore::acquire_until_ns(std::int64_t deadline) {
  detail::wait_list_lock(waiters_);
  if (permits_ > 0 && !waiters_.head) {  // FIFO: no overtaking queued waiters
    --permits_;
    detail::wait_list_unlock(waiters_);
    return true;
  }
  detail::WaitNode node(detail::WaitReason::kSemaphore, this);
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
  detail::WaitNode node(detail::WaitReason::kCondVar, this);
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

namespace detail {

void once_await_done(const std::atomic<std::uint8_t>& state, std::uint8_t done) noexcept {
  // No switch can come between the runner's kRan and kDone (it only unlocks
  // the mutex, which wakes without switching), so a fiber on the runner's own
  // worker never gets here before kDone: waiting on another thread is short.
  // acquire: see call_once.
  Backoff backoff(64);
  while (state.load(std::memory_order_acquire) != done) backoff();
}

}  // namespace detail

}  // namespace chronos
