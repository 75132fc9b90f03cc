// sched/runtime_impl.hpp: the runtime behind chronos::Runtime.
#pragma once

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "chronos/runtime.hpp"
#include "fiber/fiber_pool.hpp"
#include "fiber/stack_pool.hpp"
#include "sched/inject_queue.hpp"
#include "sched/poller.hpp"
#include "sched/registry.hpp"
#include "sched/timer.hpp"
#include "sched/worker.hpp"

namespace chronos::detail {

class Monitor;
class Tracer;

class RuntimeImpl {
 public:
  explicit RuntimeImpl(Config cfg);
  ~RuntimeImpl();

  // Runtime::spawn: from any thread, through the injection queue.
  Fiber* spawn_external(const SpawnOptions& opts, const PayloadOps* ops, void* src);
  // Queues ready fibers on the shared injection queue and wakes a worker.
  // From any thread. inject() is Runtime::spawn's: it waits for room if the
  // ring is full (back-pressure on outside producers). inject_batch() is for
  // everything else (workers' overflow and hand-offs, wake-ups from other
  // threads), which must never wait: one batch, one critical section.
  void inject(Fiber* f) noexcept;
  void inject_batch(Fiber* const* fs, std::size_t n) noexcept;
  // Up to max fibers from the injection queue (one from its ring, or a batch).
  std::size_t inject_pop(Fiber** out, std::size_t max) noexcept;

  // A worker queued work on its own deque: if workers sleep and none spins,
  // wake one to come and steal (it starts out spinning). Go's wakep().
  void notify_work() noexcept;
  const std::atomic<std::uint32_t>* sleepers_counter() const noexcept { return &sleepers_; }
  // Called by a worker that found nothing to run: spins a bounded while,
  // looking for work (stealing), if fewer than max_spinners() already spin.
  // handed: the caller already holds a spinning slot (take_handed_spin).
  Fiber* spin_for_work(Worker* w, bool handed = false);
  // A worker back from idle_wait takes the spinning slot notify_work handed
  // it, if any: it then counts as spinning until it finds work (stop_spinning
  // or spin_for_work), as a woken M does in Go.
  bool take_handed_spin() noexcept;
  // A spinning worker found work (or gives up its slot): if it was the last
  // spinner and found work, wake the next sleeper (Go's resetspinning).
  void stop_spinning(bool found) noexcept;
  // Pins the calling worker thread to its CPU, if Config::pin_workers.
  void pin(unsigned index) noexcept;

  Worker* worker(unsigned i) noexcept { return workers_[i].get(); }

  void shutdown();
  // Finished fibers whose JoinHandle has not been joined or dropped yet.
  std::size_t unreleased_fibers();

  // Called by a worker that has found nothing to run. Returns when there may
  // be work, a timer is due, or the runtime exits (exiting()). Sleeps on the
  // futex, or, if this runtime has a poller and nobody is polling it, blocks
  // in the poller (sched/poller.hpp).
  void idle_wait(Worker* w);

  // A worker that ran dry: fires what is due on every worker's timer wheel
  // and polls I/O without blocking. True if that may have readied fibers.
  bool run_due_timers_and_io(Worker* w);
  // A busy worker's look at I/O: polls without blocking, if there is a
  // poller, nobody else is polling it, and nobody has for kIoPollIntervalNs
  // (the blocking poll of an idle worker is in idle_wait). Returns how many
  // fibers it readied.
  int poll_io(Worker* w, std::int64_t now);
  // The earliest deadline on any worker's wheel (a hint), or kNoDeadline.
  std::int64_t earliest_timer() const noexcept;
  std::size_t timers_armed() const noexcept;  // on every wheel, a snapshot
  static constexpr std::int64_t kIoPollIntervalNs = 100'000;
  bool exiting() const noexcept { return exiting_.load(std::memory_order_acquire); }

  StackPool& pool(bool small) noexcept { return small ? small_pool_ : normal_pool_; }
  FiberPool& fibers() noexcept { return fibers_; }
  FiberId take_id_block(FiberId n) noexcept {
    return next_id_.fetch_add(n, std::memory_order_relaxed);
  }

  // Reports an exception nobody will observe (Config::on_uncaught).
  void report_uncaught(Fiber* f) noexcept;
  // Frees a finished fiber whose handle is gone, from any thread.
  void release(Fiber* f) noexcept;

  RuntimeStats stats() const;
  unsigned worker_count() const noexcept { return static_cast<unsigned>(workers_.size()); }

  const Config& config() const noexcept { return cfg_; }

  // The runtime's I/O poller (sched/poller.hpp), or null while nothing has
  // installed one. The reactor installs its own on first use.
  Poller* poller() const noexcept { return poller_.load(std::memory_order_acquire); }
  // Installs p unless a poller is installed already, and returns the one in
  // place. Any thread. The poller lives until the runtime is destroyed, after
  // its workers have been joined.
  Poller* install_poller(std::unique_ptr<Poller> p);

  static constexpr std::uint32_t kMaxSpinners = 2;
  // Go's rule: no more spinners than half the workers that are not asleep
  // (the one asking included), at least one, at most kMaxSpinners. A spinner
  // burns a CPU that another process beside us may need: on 2 workers, with
  // the load generator on the same 2 CPUs, a second spinner cost the echo
  // benchmark requests/s, and spinning for long doubled its p99.
  static constexpr std::uint32_t max_spinners(std::uint32_t workers,
                                              std::uint32_t sleepers) noexcept {
    const std::uint32_t awake = workers > sleepers ? workers - sleepers : 0;
    return std::clamp<std::uint32_t>(awake / 2, 1, kMaxSpinners);
  }
  // A spinner's rounds of looking everywhere (pop_runnable), 16 pauses apart:
  // a few microseconds. 64 (about 25 us) doubled the echo p99 at 50
  // connections against 8 (the README, "Sleeping and waking").
  static constexpr int kSpinRounds = 8;

  const Monitor* monitor() const noexcept { return monitor_.get(); }  // null: none runs
  // A clock that costs a load: now_ns() as of the last time the monitor
  // thread ticked or a worker woke up (within a few ms while fibers run). It
  // stamps Fiber::wait_since on every park, which must not read the clock.
  std::int64_t coarse_now() const noexcept { return coarse_now_.load(std::memory_order_relaxed); }
  void set_coarse_now(std::int64_t now) noexcept {
    coarse_now_.store(now, std::memory_order_relaxed);
  }

  // For the monitor (sched/monitor.hpp): every worker asleep and no queue
  // holding work; spawns still accepted; the workers' dispatches plus
  // wake-ups (it moves whenever anything runs); a worker's thread.
  bool all_asleep() const noexcept;
  bool accepting() const noexcept { return accepting_.load(std::memory_order_relaxed); }
  std::uint64_t activity() const noexcept;
  // True in a process forked from the one that made this runtime, where none
  // of its threads exist (sched/registry.hpp, "fork()").
  bool forked_away() const noexcept { return fork_generation() != born_in_; }
  // Throws std::logic_error naming `what` if forked_away().
  void check_not_forked(const char* what) const;
  pthread_t worker_thread(unsigned i) { return threads_[i].native_handle(); }

  // The execution trace (sched/trace.hpp), or null when off.
  Tracer* tracer() const noexcept { return tracer_.get(); }

  // The next live runtime (sched/registry.hpp). Under the list's mutex.
  RuntimeImpl* next_runtime_ = nullptr;

 private:
  void wake_one() noexcept;
  void wake_sleeper() noexcept;  // futex first; else the worker blocked in the poller
  // Wakes a sleeper holding the spinning slot, unless a worker holds it
  // already (two workers or more).
  void wake_spinner() noexcept;
  bool any_work_visible() const noexcept;
  bool quiescent() const noexcept;
  std::int64_t live() const noexcept;
  int unwind_parked();

  const Config cfg_;
  const std::uint32_t born_in_;  // fork_generation() at construction
  FiberPool fibers_;
  StackPool normal_pool_;
  StackPool small_pool_;
  InjectQueue inject_;
  std::vector<int> cpus_;  // the CPUs we may run on, for pinning
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;

  std::atomic<bool> accepting_{true};
  std::atomic<bool> exiting_{false};
  std::mutex shutdown_mu_;
  bool joined_ = false;

  alignas(64) std::atomic<std::uint32_t> sleepers_{0};
  std::atomic<std::uint32_t> wake_epoch_{0};
  alignas(64) std::atomic<std::uint32_t> spinning_{0};
  // A spinning slot handed to a worker that notify_work() woke; whoever goes
  // idle or wakes next takes it (see notify_work).
  std::atomic<bool> spin_token_{false};
  alignas(64) std::atomic<std::uint32_t> quiet_epoch_{
      0};  // bumped when a worker idles after shutdown()
  alignas(64) std::atomic<std::uint64_t> external_spawned_{0};  // by Runtime::spawn (see live())
  std::atomic<FiberId> next_id_{1};
  alignas(64) std::atomic<std::int64_t> coarse_now_{0};  // read on every park: a line of its own

  // The poller: one worker at a time polls (poll_busy_); poller_blocked_ is
  // set while one blocks in it, so that wake-ups interrupt it.
  alignas(64) std::atomic<bool> poll_busy_{false};
  std::atomic<bool> poller_blocked_{false};
  std::atomic<std::int64_t> last_io_poll_{0};
  std::mutex poller_mu_;
  std::unique_ptr<Poller> poller_owner_;
  std::atomic<Poller*> poller_{nullptr};

  std::unique_ptr<Tracer> tracer_;
  std::unique_ptr<Monitor> monitor_;  // last: it watches everything above
};

}  // namespace chronos::detail
