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
// fibers readied for another runtime): push_batch() copies them into the
// spill, a growable ring of pointers under a mutex, one critical section per
// batch, never waiting for room, and pop_batch() copies up to a batch back
// the same way. Pointers in an array, not a list linked through the TCBs: a
// pop then copies 32 pointers instead of chasing 32 dependent cache misses
// (a million queued fibers do not stay in cache). The spill only grows, to
// the most fibers it has held, so the steady state does not allocate, and it
// grows outside the lock (grow_spill), so that taking a batch never waits
// behind the page faults of a new ring. If growing fails, the batch is linked
// through Fiber::next onto an overflow list instead, which pop_batch drains
// first. The spill is checked after the ring, through an atomic count,
// without the lock when empty. No fiber is ever dropped. See README,
// "Spawning from outside".
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <utility>

#include "fiber/adaptive_mutex.hpp"
#include "fiber/populate.hpp"
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
    Ring unused;  // freed after the lock is let go
    {
      std::unique_lock lock(batch_mu_);
      bool room = true;
      while (room && spill_count_ + n > spill_.cap)
        room = grow_spill(lock, spill_count_ + n, unused);
      if (room) {
        const std::size_t mask = spill_.cap - 1;
        for (std::size_t i = 0; i < n; ++i)
          spill_.cells[(spill_head_ + spill_count_ + i) & mask] = fs[i];
        spill_count_ += n;
      } else {  // out of memory: link them instead
        for (std::size_t i = 0; i + 1 < n; ++i) fs[i]->next = fs[i + 1];
        fs[n - 1]->next = nullptr;
        if (list_tail_) {
          list_tail_->next = fs[0];
        } else {
          list_head_ = fs[0];
        }
        list_tail_ = fs[n - 1];
      }
      batched_.fetch_add(n, std::memory_order_release);  // release: the batch is visible
    }
  }

  // Up to max fibers into out (at least 1 if any is queued): one from the
  // ring, or a batch from the spill in one critical section.
  std::size_t pop_batch(Fiber** out, std::size_t max) noexcept {
    if (Fiber* f = pop_ring()) {
      out[0] = f;
      return 1;
    }
    if (batched_.load(std::memory_order_acquire) == 0) return 0;
    std::lock_guard lock(batch_mu_);
    std::size_t n = 0;
    // The list first: it only grows when memory ran out, and must not wait
    // behind a spill that keeps being refilled.
    while (n < max && list_head_) {
      out[n++] = list_head_;
      list_head_ = list_head_->next;
    }
    if (!list_head_) list_tail_ = nullptr;
    const std::size_t from_spill = std::min(max - n, spill_count_);
    const std::size_t mask = spill_.cap - 1;
    for (std::size_t i = 0; i < from_spill; ++i) out[n++] = spill_.cells[(spill_head_ + i) & mask];
    if (from_spill) spill_head_ = (spill_head_ + from_spill) & mask;
    spill_count_ -= from_spill;
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
  // The spill's storage: a power of two of pointers, or none. Not a vector:
  // growing must not zero (and so fault in) the new ring under the lock.
  struct Ring {
    std::unique_ptr<Fiber*[]> cells;  // made with new[] without (), so not zeroed
    std::size_t cap = 0;
  };

  // Makes room for `need` pointers in the spill, keeping their order. Holds
  // the lock on entry and on return, but lets it go while the bigger ring is
  // allocated and its pages committed (fiber/populate.hpp): a million queued
  // fibers need 8 MB, a few milliseconds of page faults on a VM, and the
  // workers taking batches meanwhile must not wait behind them. What it
  // replaces, or a ring it no longer needs, goes to `unused`, for the caller
  // to free after the lock (if it is called again, because others filled the
  // spill meanwhile, the first one is freed under the lock: rare). False if
  // the memory cannot be had.
  bool grow_spill(std::unique_lock<AdaptiveMutex>& lock, std::size_t need, Ring& unused) noexcept {
    std::size_t cap = spill_.cap ? 2 * spill_.cap : 1024;
    while (cap < need) cap *= 2;
    lock.unlock();
    Ring bigger{std::unique_ptr<Fiber*[]>(new (std::nothrow) Fiber*[cap]), cap};
    if (bigger.cells) commit(bigger);
    lock.lock();
    if (!bigger.cells) return false;
    if (spill_.cap < cap) {  // (another pusher may have grown it meanwhile)
      for (std::size_t i = 0; i < spill_count_; ++i)
        bigger.cells[i] = spill_.cells[(spill_head_ + i) & (spill_.cap - 1)];
      spill_head_ = 0;
      std::swap(spill_, bigger);
    }
    unused = std::move(bigger);
    return true;
  }

  // Commits a new ring's whole pages in one call instead of a fault each.
  static void commit(const Ring& r) noexcept {
    static const auto kPage = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    auto lo = (reinterpret_cast<std::uintptr_t>(r.cells.get()) + kPage - 1) & ~(kPage - 1);
    auto hi = reinterpret_cast<std::uintptr_t>(r.cells.get() + r.cap) & ~(kPage - 1);
    if (hi <= lo) return;
    PageRange range{reinterpret_cast<void*>(lo), hi - lo};
    populate_pages(&range, 1);
  }

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
  AdaptiveMutex batch_mu_;
  Ring spill_;
  std::size_t spill_head_ = 0;
  std::size_t spill_count_ = 0;
  Fiber* list_head_ = nullptr;  // what did not fit when the spill could not grow
  Fiber* list_tail_ = nullptr;
};

}  // namespace chronos::detail
