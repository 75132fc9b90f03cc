// sched/worker.hpp: one worker thread and what it owns.
//
// A Worker is an OS thread that runs fibers. Everything in it is owned by that
// thread ("owner only") unless marked otherwise: the local run queue, the
// stack caches, the id block and `current`. Other threads read only the stats.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "fiber/stack_pool.hpp"
#include "fiber/tcb.hpp"

namespace chronos::detail {

class RuntimeImpl;

// A single-writer counter that other threads may read.
struct Counter {
  std::atomic<std::uint64_t> v{0};
  void bump() noexcept {
    v.store(v.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  std::uint64_t get() const noexcept { return v.load(std::memory_order_relaxed); }
};

// A worker's private stash of free TCBs for one stack class: spawn and release
// touch only this, and the shared pool only once per kBatch.
struct FiberCache {
  static constexpr std::size_t kCapacity = 128;
  static constexpr std::size_t kBatch = 64;
  Fiber* slots[kCapacity];
  std::size_t n = 0;
};

class alignas(64) Worker {
 public:
  Worker(RuntimeImpl* rt, unsigned index);
  ~Worker();

  // The thread body: runs fibers until the runtime exits.
  void run();

  // ---- owner only ----
  // The local run queue: a FIFO, so a fiber that yields goes behind the
  // others. Linked through Fiber::next.
  void push_local(Fiber* f) noexcept {
    f->next = nullptr;
    if (tail_) {
      tail_->next = f;
    } else {
      head_ = f;
    }
    tail_ = f;
  }
  // The next fiber to run: local queue first, the injection queue when that is
  // empty and also every kInjectTick-th time, so outside spawns never starve.
  Fiber* pop_runnable() noexcept;

  Fiber* acquire_fiber(bool small);       // a free TCB; may throw (stack mapping failed)
  void release_fiber(Fiber* f) noexcept;  // a finished, released fiber back to the cache
  FiberId next_id() noexcept;

  Fiber main;                // this thread's own context (the scheduler loop)
  Fiber* current = nullptr;  // the fiber running now; &main in the scheduler loop
  RuntimeImpl* const rt;
  const unsigned index;

  Counter fibers_run, spawned, exited, parks, wakeups;

 private:
  Fiber* pop_local() noexcept {
    Fiber* f = head_;
    if (f) {
      head_ = f->next;
      if (!head_) tail_ = nullptr;
    }
    return f;
  }

  static constexpr std::uint32_t kInjectTick = 61;
  Fiber* head_ = nullptr;
  Fiber* tail_ = nullptr;
  std::uint32_t tick_ = kInjectTick;
  FiberCache cache_[2];  // [0] normal, [1] small
  FiberId id_next_ = 0, id_end_ = 0;
};

// The worker running on this thread, or null. Not inline on purpose: a fiber
// may resume on another thread, and a call keeps the compiler from reusing a
// thread-local address computed before a switch.
Worker* current_worker() noexcept;
void set_current_worker(Worker* w) noexcept;

}  // namespace chronos::detail
