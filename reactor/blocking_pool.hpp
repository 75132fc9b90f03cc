// reactor/blocking_pool.hpp: the bounded thread pool behind
// chronos::spawn_blocking.
//
// A fiber that calls spawn_blocking parks; its park commit queues a Job (on
// the fiber's stack, so nothing is allocated) here. A pool thread runs it and
// wakes the fiber with wake(nullptr, f), which goes through the runtime's
// injection queue.
//
// Invariants
// ----------
// * A job is queued only after its fiber is parked (by the commit), so the
//   wake-up always finds the fiber Waiting.
// * Job::state goes kQueued -> kRunning -> kDone; kDone is stored (release)
//   after the last touch of the job, the wake included. The fiber leaves its
//   frame only once it has seen kDone (or withdrew the job while kQueued), so
//   a pool thread never writes to a frame that is gone, even when runtime
//   shutdown unwinds the fiber while its job runs.
// * in_flight() counts the jobs queued or running; runtime shutdown waits for
//   it to reach 0 (see Poller::wakeups_owed), so a fiber waiting on a job is
//   never unwound as if parked forever.
// * At most max_threads threads, started on demand, joined by the destructor.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace chronos::detail {

struct Fiber;

class BlockingPool {
 public:
  struct Job {
    enum State : std::uint32_t { kQueued, kRunning, kDone };
    void (*fn)(void*) = nullptr;  // must not throw (the caller's wrapper catches)
    void* arg = nullptr;
    Fiber* fiber = nullptr;
    Job* next = nullptr;
    std::atomic<std::uint32_t> state{kQueued};
  };

  static constexpr unsigned kDefaultMaxThreads = 64;

  explicit BlockingPool(unsigned max_threads = kDefaultMaxThreads);
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // Runs job->fn(job->arg) on a pool thread, parks the calling fiber until it
  // has run, and returns. Throws FiberUnwind at runtime shutdown (after the
  // job was withdrawn or has finished).
  void run(Job& job);

  // Jobs queued or running: each owes its parked fiber a wake-up. Counted
  // when queued (by the parking worker's commit, before that worker can next
  // go idle) and dropped after the wake-up; acquire pairs with that release.
  std::size_t in_flight() const noexcept { return in_flight_.load(std::memory_order_acquire); }

 private:
  static bool commit(void* arg, Fiber* self);
  void submit(Job* j) noexcept;
  bool withdraw(Job* j) noexcept;
  void ensure_thread();
  void loop();

  const unsigned max_threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  Job* head_ = nullptr;
  Job* tail_ = nullptr;
  unsigned idle_ = 0;    // threads waiting for a job
  unsigned queued_ = 0;  // jobs in the queue
  bool stop_ = false;
  std::atomic<std::size_t> in_flight_{0};
  std::vector<std::thread> threads_;  // under mu_
};

}  // namespace chronos::detail
