// chronos/detail/wait_list.hpp: the queue of parked waiters that chronos's
// synchronisation primitives are built on. Not part of the API.
//
// A WaitList is a spin lock (critical sections are a few pointer moves) and
// an intrusive FIFO of WaitNodes. A node lives on its waiter's stack: a
// fiber's or a plain thread's. The protocol, which every primitive follows:
//
//   lock(list); check the condition; if it holds, unlock and go on;
//   otherwise wait(list, node, deadline): the node is queued and the caller
//   sleeps. The lock is released only once the caller can safely be woken
//   (chronos/detail/waiter.hpp), so a waker, which must take the lock to find
//   the node, can never wake it too early.
//
//   A waker: lock(list); node = take(list); unlock(list); wake(node).
//
// A wait may also end by its deadline or by a stop request; then the waiter
// unqueues itself, and take() skips any node whose wait has already ended.
#pragma once

#include <chronos/detail/waiter.hpp>
#include <chronos/export.hpp>

#include <atomic>
#include <cstdint>
#include <limits>

namespace chronos::detail {

struct WaitNode {
  WaitNode() = default;
  WaitNode(WaitReason what, const void* object) noexcept {
    waiter.what = what;
    waiter.object = object;
  }
  WaitNode* next = nullptr;
  WaitNode* prev = nullptr;
  bool queued = false;
  std::uint32_t claimed = 0;  // the Waiter word take() replaced, for wake()
  std::uintptr_t token = 0;   // what the waker tells the waiter, if anything
  Waiter waiter;
};

struct WaitList {
  std::atomic<std::uint32_t> locked{0};
  WaitNode* head = nullptr;
  WaitNode* tail = nullptr;
};

inline constexpr std::int64_t kForever = std::numeric_limits<std::int64_t>::max();

CHRONOS_API void wait_list_lock(WaitList& l) noexcept;
CHRONOS_API void wait_list_unlock(WaitList& l) noexcept;
// With the lock held: queues `node` for the calling fiber or thread, sleeps,
// and returns once woken, without the lock. kNotified: a waker took the node
// (and maybe handed something over through `token`). kTimedOut / kCancelled:
// the deadline (on the now_ns() clock) passed or the fiber's stop token was
// triggered; the node is no longer queued. Throws FiberUnwind (unqueued) at
// runtime shutdown. front: queue at the head instead of the tail (a waiter
// that was woken once and lost the race goes back first).
//
// on_unqueue, if given, runs with the lock held whenever the waiter takes its
// own node off the list (deadline, stop, unwinding), for a primitive that
// keeps count of its queued waiters (WaitGroup).
struct Unqueued {
  void (*fn)(void* arg) noexcept = nullptr;
  void* arg = nullptr;
};
CHRONOS_API WakeReason wait_list_wait(WaitList& l, WaitNode& node, std::int64_t deadline = kForever,
                                      bool front = false, Unqueued on_unqueue = {});
// With the lock held: the oldest waiter whose wait has not ended, unqueued
// and claimed (kNotified), or null. Nodes whose wait had ended are unqueued
// on the way; *unqueued, if given, grows by every node taken off the list.
CHRONOS_API WaitNode* wait_list_take(WaitList& l, std::uint64_t* unqueued = nullptr) noexcept;
// Without the lock: wakes a node that take() returned. The node may be gone
// (its waiter running again) as soon as this returns. False if the waiter
// could not take it: a fiber already being unwound at runtime shutdown, which
// will not come back for whatever was handed to it.
CHRONOS_API bool wait_list_wake(WaitNode* node) noexcept;
// Takes the lock, takes every waiter, releases the lock, wakes them all.
CHRONOS_API void wait_list_wake_all(WaitList& l) noexcept;
// wake_all in two halves, for a primitive that must do something between
// releasing the lock and waking. With the lock held: unqueues every node,
// counting them all in *unqueued, and returns the claimed ones, oldest first,
// linked through next. Without the lock: wakes such a chain (its nodes live on
// their waiters' stacks, not in the list's owner, which may be gone by then).
CHRONOS_API WaitNode* wait_list_take_all(WaitList& l, std::uint64_t* unqueued) noexcept;
CHRONOS_API void wait_list_wake_chain(WaitNode* chain) noexcept;

}  // namespace chronos::detail
