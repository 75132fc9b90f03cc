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
// room). A worker must never wait, so its overflow goes through spill(): an
// unbounded list under a mutex, used only while the ring is full, and checked
// by pop() (through an atomic count, without the lock) after the ring. No
// fiber is ever dropped. See README, "Spawning from outside".
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

  // Never fails: the ring, or the spill list when the ring is full.
  void push_or_spill(Fiber* f) noexcept {
    if (push(f)) return;
    std::lock_guard lock(spill_mu_);
    f->next = nullptr;
    if (spill_tail_) {
      spill_tail_->next = f;
    } else {
      spill_head_ = f;
    }
    spill_tail_ = f;
    spilled_.fetch_add(1, std::memory_order_release);
  }

  Fiber* pop() noexcept {
    if (Fiber* f = pop_ring()) return f;
    if (spilled_.load(std::memory_order_acquire) == 0) return nullptr;
    std::lock_guard lock(spill_mu_);
    Fiber* f = spill_head_;
    if (f) {
      spill_head_ = f->next;
      if (!spill_head_) spill_tail_ = nullptr;
      spilled_.fetch_sub(1, std::memory_order_relaxed);
    }
    return f;
  }

  // A hint: may be stale by the time the caller acts on it.
  bool empty() const noexcept {
    return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire) &&
           spilled_.load(std::memory_order_acquire) == 0;
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
  alignas(64) std::atomic<std::size_t> spilled_{0};
  std::mutex spill_mu_;
  Fiber* spill_head_ = nullptr;
  Fiber* spill_tail_ = nullptr;
};

}  // namespace chronos::detail
