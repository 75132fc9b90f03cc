// chronos/detail/channel_core.hpp: what every Channel<T> shares, whatever T
// is: the lock, the two queues of parked senders and receivers, and closing.
// Not part of the API; chronos/channel.hpp is.
//
// The rules (Go's runtime/chan.go has the same shape):
//   - Everything here is guarded by `lock`, a spin lock: critical sections
//     are a few pointer moves and at most one move of a T.
//   - A parked operation is a ChanOp on its fiber's stack, queued on recvq or
//     sendq, pointing at a Waiter (chronos/detail/waiter.hpp). Several ChanOps
//     share one Waiter when they belong to one select().
//   - The side that completes an operation does all of it under the lock:
//     claims the Waiter (so that a deadline, a stop or another select case
//     cannot also win), moves the value, marks the op done, unqueues it, and
//     wakes the waiter after unlocking. The woken side never touches the
//     channel for that value again.
//   - A buffered channel's queues are non-empty only when the buffer is full
//     (senders wait) or empty (receivers wait); an unbuffered channel hands
//     values straight from a sender's stack to a receiver's.
#pragma once

#include <chronos/detail/waiter.hpp>
#include <chronos/export.hpp>

#include <immintrin.h>
#include <atomic>
#include <cstdint>

namespace chronos::detail {

struct ChanOp {
  ChanOp* next = nullptr;
  ChanOp* prev = nullptr;
  Waiter* waiter = nullptr;
  void* value = nullptr;      // send: the T to move from; recv: the std::optional<T> to fill
  std::uint32_t claimed = 0;  // the Waiter word claim() replaced, for resume()
  bool queued = false;
  bool done = false;  // completed by the other side (or by close())
  bool ok = false;    // done: a value moved (false: the channel was closed)
};

struct ChanQueue {
  ChanOp* head = nullptr;
  ChanOp* tail = nullptr;

  bool empty() const noexcept { return head == nullptr; }
  void push(ChanOp* op) noexcept {
    op->next = nullptr;
    op->prev = tail;
    (tail ? tail->next : head) = op;
    tail = op;
    op->queued = true;
  }
  void remove(ChanOp* op) noexcept {
    if (!op->queued) return;
    (op->prev ? op->prev->next : head) = op->next;
    (op->next ? op->next->prev : tail) = op->prev;
    op->next = op->prev = nullptr;
    op->queued = false;
  }
  // The oldest op whose waiter this call could claim (kNotified), unqueued;
  // null if none. Ops whose wait already ended (deadline, stop, another
  // select case) are dropped on the way: their owners find them unqueued.
  ChanOp* take() noexcept {
    while (ChanOp* op = head) {
      remove(op);
      op->claimed = op->waiter->claim(WakeReason::kNotified);
      if (op->claimed != Waiter::kLost) return op;
    }
    return nullptr;
  }
};

class ChannelCore {
 public:
  void lock() const noexcept {
    for (;;) {
      // acquire: the critical section sees the previous holder's writes.
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) _mm_pause();
    }
  }
  void unlock() const noexcept { locked_.store(false, std::memory_order_release); }

  // Wakes an op that take() returned, after the lock is dropped.
  static void resume(ChanOp* op) noexcept {
    Waiter::resume(op->waiter->fiber, op->waiter->thread, op->claimed);
  }

  ChanQueue recvq, sendq;
  bool closed = false;

 private:
  mutable std::atomic<bool> locked_{false};
};

// Parks on an op queued (under ch's lock) in one channel; see park_on.
CHRONOS_API WakeReason chan_park(const ChannelCore& ch, Waiter& w, std::int64_t deadline);

// Errors, out of line (they build strings).
[[noreturn]] CHRONOS_API void throw_channel_closed(const char* what);

}  // namespace chronos::detail
