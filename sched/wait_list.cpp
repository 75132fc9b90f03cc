// sched/wait_list.cpp: parking and waking on a WaitList (chronos/detail/wait_list.hpp).
#include "chronos/detail/wait_list.hpp"

#include <immintrin.h>

#include "sched/futex.hpp"
#include "sched/scheduler.hpp"

namespace chronos::detail {
namespace {

void append(WaitList& l, WaitNode* n) noexcept {
  n->next = nullptr;
  if (l.tail) {
    l.tail->next = n;
  } else {
    l.head = n;
  }
  l.tail = n;
}

// Removes n if it is still queued (it is not, once a waker popped it).
void unlink(WaitList& l, WaitNode* n) noexcept {
  WaitNode* prev = nullptr;
  for (WaitNode* p = l.head; p; prev = p, p = p->next) {
    if (p != n) continue;
    (prev ? prev->next : l.head) = p->next;
    if (l.tail == p) l.tail = prev;
    return;
  }
}

// kPark commit: the fiber is switched out; now let wakers at the list.
bool release_list(void* list, Fiber*) {
  wait_list_unlock(*static_cast<WaitList*>(list));
  return true;
}

}  // namespace

void wait_list_lock(WaitList& l) noexcept {
  for (;;) {
    // acquire: the critical section sees the previous holder's writes.
    if (l.locked.exchange(1, std::memory_order_acquire) == 0) return;
    while (l.locked.load(std::memory_order_relaxed) != 0) _mm_pause();
  }
}

void wait_list_unlock(WaitList& l) noexcept {
  l.locked.store(0, std::memory_order_release);  // release: publishes the critical section
}

void wait_list_park(WaitList& l, WaitNode& node) {
  Worker* w = current_worker();
  if (w && w->current != &w->main) {
    node.fiber = w->current;
    node.thread = nullptr;
    append(l, &node);
    try {
      park_current(w, WaitKind::kSync, &l, &release_list, &l);
    } catch (const FiberUnwind&) {
      // Runtime shutdown unwinds us while we are still queued: unqueue, so
      // that no waker ever touches this dead stack frame.
      wait_list_lock(l);
      unlink(l, &node);
      wait_list_unlock(l);
      throw;
    }
    return;
  }
  ThreadWaiter waiter;
  node.fiber = nullptr;
  node.thread = &waiter;
  append(l, &node);
  wait_list_unlock(l);
  waiter.wait();
}

WaitNode* wait_list_pop(WaitList& l) noexcept {
  WaitNode* n = l.head;
  if (n) {
    l.head = n->next;
    if (!l.head) l.tail = nullptr;
    n->next = nullptr;
  }
  return n;
}

bool wait_list_wake(WaitNode* node) noexcept {
  // Read everything first: the node lives on the waiter's stack, and the
  // waiter may run (and return) the moment it is woken.
  Fiber* f = node->fiber;
  auto* thread = static_cast<ThreadWaiter*>(node->thread);
  if (f) return wake(current_worker(), f);
  thread->wake();
  return true;
}

}  // namespace chronos::detail

namespace chronos::detail {

void wait_list_wake_all(WaitList& l) noexcept {
  wait_list_lock(l);
  WaitNode* all = l.head;
  l.head = l.tail = nullptr;
  wait_list_unlock(l);
  while (all) {
    WaitNode* next = all->next;  // read before the waiter can run
    wait_list_wake(all);
    all = next;
  }
}

}  // namespace chronos::detail
