// sched/worker.cpp: the worker thread's loop and its owner-only helpers.
#include "sched/worker.hpp"

#include <pthread.h>

#include <cstdio>

#include "fiber/overflow.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/scheduler.hpp"

namespace chronos::detail {
namespace {
// initial-exec: one %fs-relative load, even in a shared build.
thread_local Worker* t_worker [[gnu::tls_model("initial-exec")]] = nullptr;
}  // namespace

Worker* current_worker() noexcept {
  return t_worker;
}
void set_current_worker(Worker* w) noexcept {
  t_worker = w;
}

Worker::Worker(RuntimeImpl* runtime, unsigned idx) : rt(runtime), index(idx) {
  main.rt = runtime;
  current = &main;
}

Worker::~Worker() = default;

void Worker::run() {
  char name[16];
  std::snprintf(name, sizeof name, "chronos-w%u", index);
  ::pthread_setname_np(::pthread_self(), name);
  set_current_worker(this);
  AltSignalStack alt_stack;  // for the stack-overflow report
  arch::sanitizer_init_thread(main.san);
  main.set_state(FiberState::kRunning, this);
  current = &main;

  for (;;) {
    if (Fiber* f = pop_runnable()) {
      run_fiber(this, f);  // returns when a fiber switches back to this loop
      continue;
    }
    if (rt->exiting()) break;
    rt->idle_wait(this);
  }

  for (FiberCache& c : cache_) {
    if (c.n) rt->pool(&c == &cache_[1]).give(c.slots, c.n);
    c.n = 0;
  }
  set_current_worker(nullptr);
}

Fiber* Worker::pop_runnable() noexcept {
  if (--tick_ == 0) [[unlikely]] {
    tick_ = kInjectTick;
    if (Fiber* f = rt->inject_queue().pop()) return f;
  }
  if (Fiber* f = pop_local()) return f;
  return rt->inject_queue().pop();
}

Fiber* Worker::acquire_fiber(bool small) {
  FiberCache& c = cache_[small ? 1 : 0];
  if (c.n == 0) c.n = rt->pool(small).take(c.slots, FiberCache::kBatch);
  return c.slots[--c.n];
}

void Worker::release_fiber(Fiber* f) noexcept {
  FiberCache& c = cache_[f->pool->small() ? 1 : 0];
  if (c.n == FiberCache::kCapacity) {
    f->pool->give(c.slots + (c.n - FiberCache::kBatch), FiberCache::kBatch);
    c.n -= FiberCache::kBatch;
  }
  c.slots[c.n++] = f;
}

FiberId Worker::next_id() noexcept {
  if (id_next_ == id_end_) {
    constexpr FiberId kBlock = 1024;  // one shared RMW per 1024 spawns
    id_next_ = rt->take_id_block(kBlock);
    id_end_ = id_next_ + kBlock;
  }
  return id_next_++;
}

}  // namespace chronos::detail
