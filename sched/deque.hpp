// sched/deque.hpp: a worker's run queue, the Chase-Lev work-stealing deque.
//
//   D. Chase and Y. Lev, "Dynamic Circular Work-Stealing Deque", SPAA 2005.
//   N. M. Lê, A. Pop, A. Cohen and F. Zappa Nardelli, "Correct and Efficient
//   Work-Stealing for Weak Memory Models", PPoPP 2013 (the memory orders).
//
// One owner pushes and pops at the bottom, LIFO, with plain loads and stores
// on the fast path; only taking the last item races with thieves, and that
// race is settled by a CAS on `top`. Any number of thieves take from the top,
// FIFO, by CAS on `top`. A thief may take a batch, up to half of what it
// sees, so one trip to a victim's cache lines moves many fibers; each fiber
// still costs one CAS (see steal() for why not one CAS per batch).
//
// Unlike the paper the ring does not grow: its capacity is fixed, a power of
// two, and it is allocated and touched once when the worker starts. push()
// reports a full ring, and the worker moves half of it to the injection queue
// (Worker::push), so nothing is lost and nothing waits.
//
// Indices only ever grow (64-bit, they do not wrap in practice); a slot is
// index & mask. The invariant is top <= bottom + 1, with bottom - top items.
//
// Why each order is enough (numbers refer to Lê et al., fig. 1):
//   push   the slot store is relaxed; the release store of `bottom` publishes
//          it to a thief that acquires `bottom`. The fullness check reads an
//          owner-held lower bound of `top`, loaded with acquire (see push()).
//   pop    bottom is decremented with a relaxed store, then a seq_cst fence
//          orders it before the load of `top`: either the thief's CAS sees
//          the smaller bottom, or we see its larger top. For the last item
//          both sides CAS `top` (seq_cst, as in the paper), so exactly one
//          takes it.
//   steal  `top` is loaded with acquire, then a seq_cst fence, then `bottom`
//          with acquire (pairs with push's release, so the slot is
//          visible). The slot is read before the CAS; a successful CAS
//          (seq_cst) proves nobody took it meanwhile, and the size check
//          against capacity proves the owner has not overwritten it.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

#include "fiber/tcb.hpp"

namespace chronos::detail {

class ChaseLevDeque {
 public:
  explicit ChaseLevDeque(std::size_t capacity_pow2)
      : mask_(capacity_pow2 - 1), slots_(new std::atomic<Fiber*>[capacity_pow2]) {
    // Touch every page now, not on the first burst of spawns.
    for (std::size_t i = 0; i < capacity_pow2; ++i)
      slots_[i].store(nullptr, std::memory_order_relaxed);
  }
  ChaseLevDeque(const ChaseLevDeque&) = delete;
  ChaseLevDeque& operator=(const ChaseLevDeque&) = delete;

  std::size_t capacity() const noexcept { return mask_ + 1; }

  // Owner only. Returns false if the ring is full (nothing changed).
  //
  // The fullness check uses the owner's own copy of `top`, refreshed only
  // when the ring looks full, so a push does not read the cache line that
  // thieves write (a spawning worker that others steal from would otherwise
  // miss on it at every spawn). `top` never decreases, so the copy is a lower
  // bound and can only make the ring look fuller than it is. It was loaded
  // with acquire, and every change to `top` is a CAS (a release RMW), so that
  // load synchronised with the CAS of every index below it: each thief that
  // took a slot below the copy finished reading it before we overwrite it.
  bool push(Fiber* f) noexcept {
    std::int64_t b = bottom_.load(std::memory_order_relaxed);
    if (b - top_seen_ > static_cast<std::int64_t>(mask_)) [[unlikely]] {
      top_seen_ = top_.load(std::memory_order_acquire);
      if (b - top_seen_ > static_cast<std::int64_t>(mask_)) return false;
    }
    slots_[static_cast<std::size_t>(b) & mask_].store(f, std::memory_order_relaxed);
    bottom_.store(b + 1, std::memory_order_release);  // release: publishes the slot to thieves
    return true;
  }

  // Owner only. Pushes as many of in[0..n) as fit, in order, and publishes
  // them with one release store of `bottom` (push() does one per fiber).
  // Returns how many it pushed.
  std::size_t push_some(Fiber* const* in, std::size_t n) noexcept {
    std::int64_t b = bottom_.load(std::memory_order_relaxed);
    auto room = [&] { return static_cast<std::int64_t>(mask_) + 1 - (b - top_seen_); };
    if (room() < static_cast<std::int64_t>(n)) top_seen_ = top_.load(std::memory_order_acquire);
    const std::size_t k = std::min(n, static_cast<std::size_t>(std::max<std::int64_t>(room(), 0)));
    for (std::size_t i = 0; i < k; ++i)
      slots_[static_cast<std::size_t>(b + static_cast<std::int64_t>(i)) & mask_].store(
          in[i], std::memory_order_relaxed);
    if (k) bottom_.store(b + static_cast<std::int64_t>(k), std::memory_order_release);  // as push()
    return k;
  }

  // Owner only. True if the deque is certainly empty, without a fence: only
  // the owner adds, and a stale `top` can only be smaller than the real one,
  // so bottom <= top here means empty. (A false answer may still be empty.)
  bool owner_sees_empty() const noexcept {
    return bottom_.load(std::memory_order_relaxed) <= top_.load(std::memory_order_relaxed);
  }

  // Owner only. The most recently pushed fiber, or null.
  Fiber* pop() noexcept {
    if (owner_sees_empty()) return nullptr;  // skip the fence on the common empty case
    std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    bottom_.store(b, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // order our bottom before reading top
    std::int64_t t = top_.load(std::memory_order_relaxed);
    if (t > b) {  // empty
      bottom_.store(b + 1, std::memory_order_relaxed);
      return nullptr;
    }
    Fiber* f = slots_[static_cast<std::size_t>(b) & mask_].load(std::memory_order_relaxed);
    if (t == b) {  // the last item: race the thieves for it
      if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed))
        f = nullptr;  // a thief won
      bottom_.store(b + 1, std::memory_order_relaxed);
    }
    return f;
  }

  // Owner only. The fiber the next pop() would return, or null if the deque
  // looks empty; a hint for prefetching only. A thief may take it first, so
  // it is not claimed and must not be touched beyond a prefetch (which never
  // faults). `top` is read relaxed, as owner_sees_empty() does: pop() has just
  // read it, so the line is at hand.
  Fiber* peek() const noexcept {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    if (b < top_.load(std::memory_order_relaxed)) return nullptr;
    return slots_[static_cast<std::size_t>(b) & mask_].load(std::memory_order_relaxed);
  }

  // Owner only. Takes up to `max` of the oldest fibers (at most half) with one
  // CAS on top, for moving an overflowing deque's older half elsewhere. Safe
  // where a thief's batch is not (see steal()): the only CAS-free taker, the
  // owner's pop(), is this same thread, so `bottom` cannot move meanwhile,
  // and a thief's single steal and this CAS are ordered by `top`.
  std::size_t take_oldest(Fiber** out, std::size_t max) noexcept {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed);
    for (int tries = 0; tries < 8; ++tries) {
      std::int64_t t = top_.load(std::memory_order_acquire);
      if (t >= b) return 0;
      auto n = static_cast<std::size_t>((b - t) / 2);
      if (n > max) n = max;
      if (n == 0) return 0;
      for (std::size_t i = 0; i < n; ++i)
        out[i] = slots_[(static_cast<std::size_t>(t) + i) & mask_].load(std::memory_order_relaxed);
      if (top_.compare_exchange_strong(t, t + static_cast<std::int64_t>(n),
                                       std::memory_order_seq_cst, std::memory_order_relaxed)) {
        top_seen_ = t + static_cast<std::int64_t>(n);  // (the CAS acquired, as push() needs)
        return n;
      }
    }
    return 0;  // thieves kept winning: they are emptying it anyway
  }

  // Any thread. Takes up to `max` (and at most half, rounded up) of the
  // oldest fibers into out[], oldest first. Returns how many; 0 if empty or
  // if it lost the first race (the caller may retry or move on).
  //
  // One CAS per fiber. A single CAS for the whole batch would be wrong here:
  // the owner pops without a CAS whenever it sees more than one item, so if
  // it popped several while this thief sized its batch from a stale bottom,
  // the batch would overlap fibers the owner had already taken (the test
  // BatchStealsNeverOverlapTheOwnersPopBursts catches exactly that). Each
  // single steal is the paper's, and is safe.
  std::size_t steal(Fiber** out, std::size_t max) noexcept {
    std::size_t got = 0;
    std::size_t want = max;
    while (got < want) {
      std::int64_t t = top_.load(std::memory_order_acquire);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      std::int64_t b = bottom_.load(std::memory_order_acquire);
      if (t >= b) break;
      if (got == 0) {  // the batch: half of what we first see, rounded up
        auto half = static_cast<std::size_t>((b - t + 1) / 2);
        if (half < want) want = half;
      }
      Fiber* f = slots_[static_cast<std::size_t>(t) & mask_].load(std::memory_order_relaxed);
      if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed))
        break;  // lost to the owner or another thief: keep what we have
      out[got++] = f;
    }
    return got;
  }

  // Any thread; a snapshot that may be stale at once.
  std::size_t size() const noexcept {
    std::int64_t b = bottom_.load(std::memory_order_acquire);
    std::int64_t t = top_.load(std::memory_order_acquire);
    return b > t ? static_cast<std::size_t>(b - t) : 0;
  }
  bool empty() const noexcept { return size() == 0; }

 private:
  alignas(64) std::atomic<std::int64_t> top_{0};     // thieves' end
  alignas(64) std::atomic<std::int64_t> bottom_{0};  // owner's end
  std::int64_t top_seen_ = 0;  // owner only: a lower bound of top_ (see push())
  alignas(64) const std::size_t mask_;
  std::unique_ptr<std::atomic<Fiber*>[]> slots_;
};

}  // namespace chronos::detail
