// sched/monitor.hpp: the runtime's monitor thread, chronos's sysmon.
//
// One thread per runtime that watches the workers from outside, so that
// nothing on the scheduler's hot path has to:
//
//   the coarse clock   RuntimeImpl::coarse_now, refreshed every tick, stamps
//                      each park (Fiber::wait_since) for the price of a load.
//   the watchdog       a worker whose dispatch counter (Worker::fibers_run,
//                      bumped by every switch anyway) has not moved for
//                      Config::slow_fiber_threshold while the worker is not
//                      asleep (parks == wakeups) runs one fiber that long.
//                      The monitor then asks that worker's thread for a
//                      backtrace with a signal (SIGURG, as Go preempts), whose
//                      handler copies the running fiber's id, name and stack
//                      into the worker's probe. Reported once per dispatch.
//   deadlocks          when every worker sleeps, no timer is armed and no
//                      queue holds work, and that has lasted, with no worker
//                      waking, for Config::deadlock_grace, a scan of every
//                      fiber (sched/inspect.hpp, scan_for_deadlock) says
//                      whether live fibers remain that only another fiber
//                      could wake. Reported once; either way the scan is not
//                      repeated until some worker runs a fiber again.
//   dump requests      Config::dump_signal's handler writes to an eventfd
//                      that the monitor polls; the dump is written here, not
//                      in the handler, which could not allocate.
//   runnext retakes    a worker that has not switched for a whole tick, with
//                      the same fiber in its runnext slot at both ends of
//                      it, loses that fiber to the injection queue, where an
//                      idle worker finds it (sched/worker.cpp, "Retaking
//                      runnext"). With two workers or more, where the kernel
//                      has membarrier(2).
//
// The tick is half the watchdog threshold (1 to 100 ms) while fibers run, at
// most kRetakeTickNs when retakes are on, and backs off to 250 ms while every
// worker sleeps, so an idle runtime costs a few wake-ups a second. With
// every feature off there is no thread at all.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "chronos/config.hpp"

namespace chronos::detail {

class RuntimeImpl;
class Worker;
struct Fiber;
struct WatchdogProbe;

// Reads CHRONOS_DUMP_SIGNAL, CHRONOS_TRACE and CHRONOS_DEADLOCK into c where
// the Config leaves them at their defaults. Throws std::invalid_argument for
// a value it cannot parse.
void apply_environment(Config& c);

// The watchdog's probe: asks the worker running on `thread` (through its
// SIGURG handler) for the fiber it runs and that fiber's frames, and waits
// for the answer up to `wait`, looking every `poll`. True: answered, and p
// holds them until the caller sets p.state to kIdle (p.id 0: the worker was
// in its scheduler loop). False: no answer; the request is taken back, so a
// late handler does nothing.
bool request_probe(WatchdogProbe& p, pthread_t thread, std::chrono::microseconds wait,
                   std::chrono::microseconds poll);

class Monitor {
 public:
  explicit Monitor(RuntimeImpl* rt);
  ~Monitor();
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // Stops and joins the thread. Idempotent.
  void stop() noexcept;

  // How many times the deadlock detector has scanned every fiber (for tests).
  std::uint64_t deadlock_scans() const noexcept {
    return deadlock_scans_.load(std::memory_order_relaxed);
  }

 private:
  struct WorkerWatch {
    // fibers_run at the last tick; none yet at first, so that the first tick
    // starts the clock (a worker that had not switched yet was once reported
    // as running one fiber since the clock's epoch)
    std::uint64_t runs = ~0ull;
    std::int64_t since = 0;          // when it last changed
    std::uint64_t reported = ~0ull;  // the runs value already reported
    Fiber* runnext = nullptr;        // in its runnext slot at the last tick
  };
  // The longest a fiber waits in a stuck worker's runnext is two ticks.
  static constexpr std::int64_t kRetakeTickNs = 5'000'000;
  void run();
  void tick(std::int64_t now, bool all_asleep);
  void watch_workers(std::int64_t now);
  void retake(Worker* w, WorkerWatch& ww);
  void report_slow(unsigned worker, std::int64_t ran_ns);
  void check_deadlock(std::int64_t now);
  void emit(const std::function<void(std::string_view)>& sink, const std::string& text);

  RuntimeImpl* const rt_;
  const std::int64_t threshold_ns_;
  const bool retake_;  // runnext retakes are on
  int wake_fd_ = -1;   // eventfd: stop()
  std::thread thread_;
  std::vector<WorkerWatch> watch_;
  // Deadlock detection: the activity count (sum of the workers' dispatches
  // and wake-ups) when the current suspicion began, and since when.
  std::uint64_t suspect_activity_ = ~0ull;
  std::int64_t suspect_since_ = 0;
  // The activity count at which the last full scan (sched/inspect.hpp,
  // scan_for_deadlock) settled the question either way: reported, or some
  // fiber could still wake. No fiber changes its wait without a dispatch.
  std::uint64_t settled_activity_ = ~0ull;
  std::atomic<std::uint64_t> deadlock_scans_{0};
};

}  // namespace chronos::detail
