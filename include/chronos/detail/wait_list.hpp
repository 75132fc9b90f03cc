// chronos/detail/wait_list.hpp: the queue of parked waiters that chronos's
// synchronisation primitives are built on. Not part of the API.
//
// A WaitList is a spin lock (critical sections are a few pointer moves) and
// an intrusive FIFO of WaitNodes. A node lives on its waiter's stack: a
// fiber's or a plain thread's. The protocol, which every primitive follows:
//
//   lock(list); check the condition; if it holds, unlock and go on;
//   otherwise park(list, node): the node is queued and the caller sleeps.
//   The lock is released only once the caller is safely asleep (for a fiber:
//   after its context is saved, on the other side of the switch), so a waker,
//   which must take the lock to find the node, can never wake it too early.
//
//   A waker: lock(list); node = pop(list); unlock(list); wake(node).
#pragma once

#include <chronos/export.hpp>

#include <atomic>
#include <cstdint>

namespace chronos::detail {

struct Fiber;

struct WaitNode {
  WaitNode* next = nullptr;
  Fiber* fiber = nullptr;    // the parked fiber, or null for a thread
  void* thread = nullptr;    // the parked thread's ThreadWaiter
  std::uintptr_t token = 0;  // what the waker tells the waiter, if anything
};

struct WaitList {
  std::atomic<std::uint32_t> locked{0};
  WaitNode* head = nullptr;
  WaitNode* tail = nullptr;
};

CHRONOS_API void wait_list_lock(WaitList& l) noexcept;
CHRONOS_API void wait_list_unlock(WaitList& l) noexcept;
// With the lock held: queues `node` for the calling fiber or thread, sleeps,
// and returns once woken, without the lock.
CHRONOS_API void wait_list_park(WaitList& l, WaitNode& node);
// With the lock held: the oldest waiter, unqueued, or null.
CHRONOS_API WaitNode* wait_list_pop(WaitList& l) noexcept;
// Without the lock: wakes a node that pop() returned. The node may be gone
// (its waiter running again) as soon as this returns. False if the waiter
// could not take it: a fiber already being unwound at runtime shutdown, which
// will not come back for whatever was handed to it.
CHRONOS_API bool wait_list_wake(WaitNode* node) noexcept;
// Takes the lock, empties the list, releases the lock, wakes every waiter.
CHRONOS_API void wait_list_wake_all(WaitList& l) noexcept;

}  // namespace chronos::detail
