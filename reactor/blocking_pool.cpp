// reactor/blocking_pool.cpp: spawn_blocking's threads (reactor/blocking_pool.hpp).
#include "reactor/blocking_pool.hpp"

#include "fiber/backoff.hpp"
#include "sched/scheduler.hpp"

namespace chronos::detail {
namespace {

struct CommitArg {
  BlockingPool* pool;
  BlockingPool::Job* job;
};

// Waits for a running job to finish: the pool thread stores kDone right
// after the wake-up, so this is short unless that thread was preempted.
void await_done(BlockingPool::Job& job) noexcept {
  Backoff backoff(256);
  // acquire: pairs with the pool thread's release of kDone, after which it
  // touches neither the job nor the fiber.
  while (job.state.load(std::memory_order_acquire) != BlockingPool::Job::kDone) backoff();
}

}  // namespace

BlockingPool::BlockingPool(unsigned max_threads) : max_threads_(max_threads ? max_threads : 1) {}

BlockingPool::~BlockingPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void BlockingPool::run(Job& job) {
  Worker* w = current_worker();
  if (!w || w->current == &w->main) {  // a plain thread may simply block
    job.fn(job.arg);
    return;
  }
  job.fiber = w->current;
  job.state.store(Job::kQueued, std::memory_order_relaxed);  // not shared yet
  ensure_thread();                                           // may throw; nothing is queued yet
  CommitArg arg{this, &job};
  try {
    park_current(w, WaitKind::kBlocking, this, &BlockingPool::commit, &arg);
  } catch (const FiberUnwind&) {
    if (!withdraw(&job)) await_done(job);
    throw;
  }
  await_done(job);
}

bool BlockingPool::commit(void* arg, Fiber*) {
  auto* a = static_cast<CommitArg*>(arg);
  a->pool->submit(a->job);
  return true;
}

void BlockingPool::submit(Job* j) noexcept {
  // relaxed: the parking worker's next idle (a seq_cst RMW of the sleeper
  // count) publishes it to shutdown, which reads it after that count.
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(mu_);
    j->next = nullptr;
    (tail_ ? tail_->next : head_) = j;
    tail_ = j;
    ++queued_;
  }
  cv_.notify_one();
}

bool BlockingPool::withdraw(Job* j) noexcept {
  std::lock_guard lock(mu_);
  // relaxed: state changes from kQueued only under mu_.
  if (j->state.load(std::memory_order_relaxed) != Job::kQueued) return false;
  Job* prev = nullptr;
  for (Job* p = head_; p; prev = p, p = p->next) {
    if (p != j) continue;
    (prev ? prev->next : head_) = p->next;
    if (tail_ == p) tail_ = prev;
    --queued_;
    in_flight_.fetch_sub(1, std::memory_order_relaxed);  // owes no wake-up now
    return true;
  }
  return false;  // not queued yet: cannot happen once parked; be safe
}

void BlockingPool::ensure_thread() {
  std::lock_guard lock(mu_);
  // The job about to be queued needs an idle thread beyond those the queued
  // jobs will take.
  if (idle_ > queued_ || threads_.size() >= max_threads_) return;
  threads_.emplace_back([this] { loop(); });
}

void BlockingPool::loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    while (!head_ && !stop_) {
      ++idle_;
      cv_.wait(lock);
      --idle_;
    }
    if (!head_) return;  // stopping, nothing left
    Job* j = head_;
    head_ = j->next;
    if (!head_) tail_ = nullptr;
    --queued_;
    j->state.store(Job::kRunning, std::memory_order_relaxed);  // read under mu_ only
    lock.unlock();
    j->fn(j->arg);
    Fiber* f = j->fiber;
    wake(nullptr, f);
    // release: whoever reads the smaller count sees the fiber queued.
    in_flight_.fetch_sub(1, std::memory_order_release);
    j->state.store(Job::kDone, std::memory_order_release);  // see await_done
    lock.lock();
  }
}

}  // namespace chronos::detail
