// sched/inject_queue.hpp: the runtime's shared injection queue.
//
// Fibers spawned from outside the runtime, and fibers made ready by a thread
// that is not one of its workers, enter here; every worker takes from it. It is
// a bounded lock-free MPMC ring in the style of Dmitry Vyukov's bounded queue:
// each cell carries a sequence number that says whose turn it is, producers
// claim a cell by CAS on `tail_`, consumers by CAS on `head_`, and the
// sequence store publishes the cell.
//
// Full ring: push() returns false and the caller decides. Runtime::spawn
// applies back-pressure (it waits, yielding the thread, until a worker makes
// room). Workers hand over whole batches instead (their deque's overflow,
// fibers readied for another runtime): push_batch() splices them onto an
// unbounded list under a mutex, one critical section per batch, never waiting
// for room, and pop_batch() takes up to a batch back the same way. The list
// is checked after the ring, through an atomic count, without the lock when
// empty. No fiber is ever dropped. See README, "Spawning from outside".
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>

#include "fiber/tcb.hpp"

namespace chronos::detail {

class InjectQueue {
 public:
  explicit InjectQueue(std::size_t capacity_pow2)
      : mask_(capacity_pow2 - 1), cells_(new Cell[capacity_pow2]) {
    for (std::size_t i = 0; i < capacity_pow2; ++i)
      cells_[i].seq.store(i, std::memory_order_relaxed);
  }

  bool push(Fiber* f) noexcept {
    std::size_t pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cells_[pos & mask_];
      // acquire: pairs with the consumer's release of seq, so our write of
      // c.f cannot race with its read of the previous occupant.
      std::size_t seq = c.seq.load(std::memory_order_acquire);
      auto dif = static_cast<std::intptr_t>(seq) - static_cast<std::intptr_t>(pos);
      if (dif == 0) {
        // relaxed: the CAS only claims the cell; publication is the seq store.
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          c.f = f;
          c.seq.store(pos + 1, std::memory_order_release);  // release: publishes c.f
          return true;
        }
      } else if (dif < 0) {
        return false;  // full
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  // A batch from a worker (its deque's overflow, a hand-off): never fails and
  // never waits. It goes to the batch list in one critical section, as Go's
  // runqputslow moves half a run queue to the global queue under one lock.
  void push_batch(Fiber* const* fs, std::size_t n) noexcept {
    if (n == 0) return;
    for (std::size_t i = 0; i + 1 < n; ++i) fs[i]->next = fs[i + 1];
    fs[n - 1]->next = nullptr;
    std::lock_guard lock(batch_mu_);
    if (batch_tail_) {
      batch_tail_->next = fs[0];
    } else {
      batch_head_ = fs[0];
    }
    batch_tail_ = fs[n - 1];
    batched_.fetch_add(n, std::memory_order_release);  // release: the links are visible
  }

  // Up to max fibers into out (at least 1 if any is queued): one from the
  // ring, or a batch from the batch list in one critical section.
  std::size_t pop_batch(Fiber** out, std::size_t max) noexcept {
    if (Fiber* f = pop_ring()) {
      out[0] = f;
      return 1;
    }
    if (batched_.load(std::memory_order_acquire) == 0) return 0;
    std::lock_guard lock(batch_mu_);
    std::size_t n = 0;
    while (n < max && batch_head_) {
      out[n++] = batch_head_;
      batch_head_ = batch_head_->next;
    }
    if (!batch_head_) batch_tail_ = nullptr;
    batched_.fetch_sub(n, std::memory_order_relaxed);
    return n;
  }

  // A snapshot for stats: may be stale at once.
  std::size_t size() const noexcept {
    std::size_t t = tail_.load(std::memory_order_relaxed);
    std::size_t h = head_.load(std::memory_order_relaxed);
    return (t > h ? t - h : 0) + batched_.load(std::memory_order_relaxed);
  }

  // A hint: may be stale by the time the caller acts on it.
  bool empty() const noexcept {
    return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire) &&
           batched_.load(std::memory_order_acquire) == 0;
  }

 private:
  Fiber* pop_ring() noexcept {
    std::size_t pos = head_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cells_[pos & mask_];
      std::size_t seq =
          c.seq.load(std::memory_order_acquire);  // acquire: pairs with push's release
      auto dif = static_cast<std::intptr_t>(seq) - static_cast<std::intptr_t>(pos + 1);
      if (dif == 0) {
        if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          Fiber* f = c.f;
          // release: hands the cell back to producers one lap later.
          c.seq.store(pos + mask_ + 1, std::memory_order_release);
          return f;
        }
      } else if (dif < 0) {
        return nullptr;  // empty
      } else {
        pos = head_.load(std::memory_order_relaxed);
      }
    }
  }

  struct Cell {
    std::atomic<std::size_t> seq;
    Fiber* f;
  };
  const std::size_t mask_;
  std::unique_ptr<Cell[]> cells_;
  alignas(64) std::atomic<std::size_t> head_{0};  // consumers
  alignas(64) std::atomic<std::size_t> tail_{0};  // producers
  alignas(64) std::atomic<std::size_t> batched_{0};
  std::mutex batch_mu_;
  Fiber* batch_head_ = nullptr;
  Fiber* batch_tail_ = nullptr;
};

}  // namespace chronos::detail
