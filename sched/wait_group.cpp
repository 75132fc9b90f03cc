// sched/wait_group.cpp: chronos::WaitGroup (chronos/sync.hpp).
#include <stdexcept>

#include "chronos/cancel.hpp"
#include "chronos/sync.hpp"

namespace chronos {

void WaitGroup::add(std::int64_t delta) {
  // acq_rel: a done() releases the work it finished; the last one acquires
  // every other's, and wakes the waiters, who then see all of it.
  std::int64_t now = count_.fetch_add(delta, std::memory_order_acq_rel) + delta;
  if (now < 0) {
    count_.fetch_sub(delta, std::memory_order_relaxed);
    throw std::logic_error("chronos: WaitGroup counter would go negative");
  }
  if (now != 0 || delta >= 0) return;
  // Reached zero: wake everyone queued. They were queued under the lock after
  // seeing a non-zero count, and we take the lock after making it zero, so
  // nobody is missed.
  detail::wait_list_wake_all(waiters_);
}

bool WaitGroup::wait_until_ns(std::int64_t deadline) {
  if (count_.load(std::memory_order_acquire) == 0) return true;
  detail::wait_list_lock(waiters_);
  if (count_.load(std::memory_order_acquire) == 0) {
    detail::wait_list_unlock(waiters_);
    return true;
  }
  detail::WaitNode node(detail::WaitReason::kWaitGroup, this);
  detail::WakeReason why = detail::wait_list_wait(waiters_, node, deadline);
  if (why == detail::WakeReason::kCancelled) detail::throw_cancelled();
  return why == detail::WakeReason::kNotified;
}

}  // namespace chronos
