// chronos/config.hpp: how a Runtime is set up and how a fiber is spawned.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <stop_token>
#include <string>
#include <string_view>

namespace chronos {

using FiberId = std::uint64_t;  // 0 is never a fiber's id

// What on_uncaught is told about the fiber an exception escaped from.
struct FiberInfo {
  FiberId id;
  std::string_view name;  // empty if the fiber was not given one
};

// What the runtime does when every fiber is parked and nothing it can see
// will ever wake one (README, "Seeing inside").
enum class DeadlockAction {
  kReport,  // write the report (with a fiber dump) to stderr once, and keep going
  kAbort,   // write the report, then std::abort()
  kIgnore,  // do not look for deadlocks
};

struct Config {
  // Worker threads that run fibers. 0: one per CPU this process may run on
  // (sched_getaffinity).
  unsigned workers = 0;

  // Pin worker i to the i-th CPU of the process's affinity mask.
  bool pin_workers = true;

  // Capacity of each of a worker's three run queues (one per priority
  // class), rounded up to a power of two. A full queue moves half of itself
  // to the shared injection queue.
  std::size_t run_queue_capacity = 1024;

  // Address space reserved for a normal fiber stack. Pages are committed on
  // first touch; a PROT_NONE guard page sits below each stack. Rounded up to
  // whole pages.
  std::size_t stack_size = 256 * 1024;

  // Size of a small stack (SpawnOptions::small_stack), built for density: no
  // guard page of its own (see README, "Stacks"). Either at least 8 KiB,
  // rounded up to whole pages, or packed: a power of two from 2 KiB to half
  // a page, slots that share pages, 128 bytes of each taken by its header
  // and canary. Packed 2 KiB stacks (1,920 bytes of stack, half a page per
  // parked fiber) are for fibers that only park and do shallow work. Under
  // ASan or TSan a packed size is given four times the room.
  std::size_t small_stack_size = 16 * 1024;

  // Freed stacks kept for reuse, per size class, beyond the per-worker caches.
  // Past this a normal stack is unmapped and a small one has its pages
  // returned to the kernel (madvise), so a burst does not pin memory forever.
  std::size_t max_cached_stacks = 16384;

  // Called when an exception escapes a fiber nobody will join (detached, or
  // whose JoinHandle was dropped). It may run on any thread, including inside
  // the scheduler, so it must not block, yield or spawn. The default writes
  // the fiber's id, name and the exception to stderr, then std::terminate().
  std::function<void(const FiberInfo&, std::exception_ptr)> on_uncaught = nullptr;

  // ---- seeing inside (README, "Seeing inside") ----

  // On this signal (say SIGQUIT), write a dump of every fiber to stderr and
  // carry on. 0: none, unless the environment variable CHRONOS_DUMP_SIGNAL
  // names one (QUIT, SIGUSR1, 10...).
  int dump_signal = 0;

  // Record an execution trace to this file (Chrome trace-event JSON, for
  // ui.perfetto.dev or chrome://tracing), written when the runtime shuts
  // down. Empty: the environment variable CHRONOS_TRACE, if set.
  std::string trace_path = {};

  // A fiber that runs this long without yielding is reported once per run,
  // with its id, name and backtrace (cooperative scheduling's main pitfall).
  // Zero: no watchdog. CHRONOS_SLOW_FIBER_MS=N in the environment overrides
  // it (0: off).
  std::chrono::nanoseconds slow_fiber_threshold = std::chrono::milliseconds(10);
  // Called with the report instead of writing it to stderr. On the monitor
  // thread: it may block briefly, but not on the runtime's fibers.
  std::function<void(std::string_view report)> on_slow_fiber = nullptr;

  // Deadlock detection: every fiber parked on a channel, mutex, condition
  // variable, semaphore, wait group, future or join, with no timer armed, no
  // I/O wait and no spawn_blocking job that could wake one, for at least
  // deadlock_grace. Threads outside the runtime are invisible to chronos: one
  // that will later wake a fiber (a Promise set from a plain thread, a send
  // from a thread) makes the report a false alarm, which is why the default
  // reports rather than aborts. The environment variable CHRONOS_DEADLOCK
  // (report, abort, ignore) overrides the action.
  DeadlockAction deadlock_action = DeadlockAction::kReport;
  std::chrono::nanoseconds deadlock_grace = std::chrono::milliseconds(100);
  // Called with the report (which starts "all fibers are asleep: deadlock")
  // instead of writing it to stderr; with kAbort, std::abort() follows.
  std::function<void(std::string_view report)> on_deadlock = nullptr;
};

struct SpawnOptions {
  // 0 (lowest) to 15 (highest); 8 is the default. Anything above 15 is rejected.
  unsigned priority = 8;
  // Use a small stack (Config::small_stack_size) instead of a normal one.
  bool small_stack = false;
  // Shown in error reports and dumps. Copied; at most 31 bytes are kept.
  std::string_view name = {};
  // Keep this fiber's floating-point control state (MXCSR: rounding mode,
  // exception masks, DAZ/FTZ; the x87 control word) its own across switches.
  // Needed only by fibers that change it: the default inline switch does not
  // save it otherwise (README, "Floating-point control state").
  bool preserve_fp_env = false;
  // Blocking calls in this fiber throw chronos::Cancelled once a stop is
  // requested on this token (chronos/cancel.hpp). Empty: not cancellable.
  std::stop_token stop_token = {};
  // Start the fiber detached, as Go's `go f()`: go() and Runtime::spawn
  // return an empty JoinHandle, and an exception that escapes the fiber goes
  // to Config::on_uncaught. The same as detaching the handle at once, less
  // the locked instruction that dropping a live handle costs.
  bool detached = false;
};

}  // namespace chronos
