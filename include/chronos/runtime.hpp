// chronos/runtime.hpp: the runtime that owns the worker threads.
//
//   chronos::Runtime rt{chronos::Config{.workers = 1}};
//   int r = rt.block_on([] { return 42; });   // runs as a fiber; this thread waits
//
// Destroying the runtime (or calling shutdown()) stops new spawns from outside,
// lets every fiber run until it finishes or parks with nothing left to wake
// it, unwinds those (README "Shutdown"), then joins the workers.
#pragma once

#include <chronos/config.hpp>
#include <chronos/export.hpp>
#include <chronos/fiber.hpp>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace chronos {

namespace detail {
class RuntimeImpl;
}

// Counters of one worker, read without stopping it (each is exact on its own,
// the set is not a snapshot).
struct WorkerStats {
  std::uint64_t fibers_run = 0;     // dispatches: a fiber started or resumed (or yielded alone)
  std::uint64_t spawned = 0;        // fibers created on this worker by go()
  std::uint64_t steals = 0;         // successful steals from another worker...
  std::uint64_t stolen = 0;         // ...and the fibers they took
  std::uint64_t failed_steals = 0;  // a victim looked non-empty, the steal got nothing
  std::uint64_t retaken = 0;        // fibers the monitor moved out of this worker's runnext
                                    // slot while it ran one fiber for a whole tick
  std::uint64_t parks = 0;          // the worker thread went to sleep
  std::uint64_t wakeups = 0;        // ... and was woken
  std::uint64_t io_waits = 0;       // fibers parked on a socket or fd by this worker
  std::uint64_t timers_fired = 0;   // timers this worker fired (on any worker's wheel)
  // Gauges, a snapshot:
  std::uint64_t queued = 0;        // fibers in this worker's run queues (deques)
  std::uint64_t timers_armed = 0;  // timers armed on this worker's wheel
};

struct RuntimeStats {
  std::vector<WorkerStats> workers;
  std::uint64_t live_fibers = 0;    // spawned and not yet finished
  std::uint64_t stacks_mapped = 0;  // stacks the pool holds, in use or cached
  std::uint64_t stacks_free = 0;    // ... of which cached for reuse
  std::uint64_t inject_queued = 0;  // fibers in the shared injection queue
  std::uint64_t sleeping_workers = 0;
};

class CHRONOS_API Runtime {
 public:
  // Starts the workers. Also adds SA_ONSTACK to every signal handler already
  // installed, so that it runs on a worker's alternate signal stack and not
  // on the small stack of the fiber it interrupts (README, "Stacks"); install
  // later handlers with SA_ONSTACK yourself.
  explicit Runtime(Config config = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Spawns a fiber from any thread, including threads that run no fiber.
  // Throws std::logic_error after shutdown() has begun.
  template <class F>
  auto spawn(F&& fn) {
    return detail::spawn_handle(SpawnOptions{}, std::forward<F>(fn), this);
  }
  template <class F>
  auto spawn(const SpawnOptions& opts, F&& fn) {
    return detail::spawn_handle(opts, std::forward<F>(fn), this);
  }

  // Runs fn as a fiber and blocks the calling thread until it returns, then
  // returns its result or rethrows its exception. Must not be called from a
  // fiber (that would block a worker): std::logic_error there.
  template <class F>
  auto block_on(F&& fn) {
    check_block_on();
    return spawn(std::forward<F>(fn)).join();
  }

  // Stops accepting spawns from outside and waits until every fiber has
  // finished or is parked with nothing left to wake it (a sleep, a deadline
  // and a spawn_blocking job are waited for). Those are unwound: the call
  // each is parked in throws, its destructors run, a join on it throws. Then
  // joins the workers. Idempotent; the destructor calls it.
  void shutdown();

  unsigned workers() const noexcept;
  RuntimeStats stats() const;

  detail::RuntimeImpl& impl() noexcept { return *impl_; }

 private:
  void check_block_on() const;
  std::unique_ptr<detail::RuntimeImpl> impl_;
};

}  // namespace chronos
