// sched/wait_list.cpp: parking and waking on a WaitList (chronos/detail/wait_list.hpp).
#include "chronos/detail/wait_list.hpp"

#include "fiber/backoff.hpp"

#include "sched/scheduler.hpp"

namespace chronos::detail {
namespace {

void append(WaitList& l, WaitNode* n) noexcept {
  n->next = nullptr;
  n->prev = l.tail;
  if (l.tail) {
    l.tail->next = n;
  } else {
    l.head = n;
  }
  l.tail = n;
  n->queued = true;
}

void prepend(WaitList& l, WaitNode* n) noexcept {
  n->prev = nullptr;
  n->next = l.head;
  (l.head ? l.head->prev : l.tail) = n;
  l.head = n;
  n->queued = true;
}

// False if the node was no longer queued.
bool unlink(WaitList& l, WaitNode* n) noexcept {
  if (!n->queued) return false;  // a waker took it already
  (n->prev ? n->prev->next : l.head) = n->next;
  (n->next ? n->next->prev : l.tail) = n->prev;
  n->next = n->prev = nullptr;
  n->queued = false;
  return true;
}

// The waiter takes its own node off the list (lock held by the caller).
void unqueue_self(WaitList& l, WaitNode* n, Unqueued hook) noexcept {
  if (unlink(l, n) && hook.fn) hook.fn(hook.arg);
}

void release_list(void* list) {
  wait_list_unlock(*static_cast<WaitList*>(list));
}

}  // namespace

void wait_list_lock(WaitList& l) noexcept {
  for (;;) {
    // acquire: the critical section sees the previous holder's writes.
    if (l.locked.exchange(1, std::memory_order_acquire) == 0) return;
    while (l.locked.load(std::memory_order_relaxed) != 0) cpu_relax();
  }
}

void wait_list_unlock(WaitList& l) noexcept {
  l.locked.store(0, std::memory_order_release);  // release: publishes the critical section
}

WakeReason wait_list_wait(WaitList& l, WaitNode& node, std::int64_t deadline, bool front,
                          Unqueued on_unqueue) {
  if (front) {
    prepend(l, &node);
  } else {
    append(l, &node);
  }
  WakeReason why;
  try {
    why = park_on(node.waiter, deadline, &release_list, &l);
  } catch (const FiberUnwind&) {
    // Runtime shutdown unwinds us: unqueue, so that no waker ever touches
    // this dead stack frame.
    wait_list_lock(l);
    unqueue_self(l, &node, on_unqueue);
    wait_list_unlock(l);
    throw;
  }
  if (why != WakeReason::kNotified) {
    // Our deadline or a stop won. Taking the lock also waits out a waker
    // that popped us and lost the race, so it is done with the node.
    wait_list_lock(l);
    unqueue_self(l, &node, on_unqueue);
    wait_list_unlock(l);
  }
  return why;
}

WaitNode* wait_list_take(WaitList& l, std::uint64_t* unqueued) noexcept {
  while (WaitNode* n = l.head) {
    unlink(l, n);
    if (unqueued) ++*unqueued;
    n->claimed = n->waiter.claim(WakeReason::kNotified);
    if (n->claimed != Waiter::kLost) return n;
    // Its wait ended by deadline or stop; it unqueues itself (finding itself
    // gone already), and we try the next one.
  }
  return nullptr;
}

bool wait_list_wake(WaitNode* node) noexcept {
  // Read everything first: the node lives on the waiter's stack, and the
  // waiter may run (and return) the moment it is woken.
  return Waiter::resume(node->waiter.fiber, node->waiter.thread, node->claimed);
}

WaitNode* wait_list_take_all(WaitList& l, std::uint64_t* unqueued) noexcept {
  *unqueued = 0;
  WaitNode* head = nullptr;  // oldest first, linked through next
  WaitNode** tail = &head;
  while (WaitNode* n = wait_list_take(l, unqueued)) {
    *tail = n;
    tail = &n->next;
  }
  *tail = nullptr;
  return head;
}

void wait_list_wake_chain(WaitNode* chain) noexcept {
  WakeBatch batch;  // from a plain thread: a batch at a time (waiter.hpp)
  while (chain) {
    WaitNode* next = chain->next;  // read before the waiter can run
    wait_list_wake(chain);
    chain = next;
  }
}

void wait_list_wake_all(WaitList& l) noexcept {
  std::uint64_t unqueued;
  wait_list_lock(l);
  WaitNode* chain = wait_list_take_all(l, &unqueued);
  wait_list_unlock(l);
  wait_list_wake_chain(chain);
}

}  // namespace chronos::detail
