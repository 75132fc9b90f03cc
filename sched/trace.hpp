// sched/trace.hpp: the execution tracer's storage and its Chrome trace writer.
//
// What it records
// ---------------
// While tracing is on, the scheduler records one TraceEvent per scheduling
// step (a fiber runs, yields, parks, is woken, exits; a worker sleeps, wakes,
// steals, fires timers). Tracer::write() turns them into a Chrome trace-event
// JSON file (ui.perfetto.dev, chrome://tracing): one track per worker with a
// slice for every stretch a fiber ran, "idle" slices while the worker slept,
// instants for spawns, steals, timers and wake-ups, and a flow arrow from each
// wake-up to the run it caused.
//
// Invariants
// ----------
// * A TraceBuffer has exactly one writer. A worker's buffer is written only by
//   that worker's thread ("owner only", as in sched/worker.hpp); the shared
//   buffer for threads that are not workers is written only under
//   Tracer::foreign_mu_. So record() needs no lock and no atomic
//   read-modify-write: it is a bounds check, a timestamp and four plain stores
//   into memory no other thread touches while tracing runs.
// * Nobody reads the events while they are being written. Tracer::write() reads
//   every buffer, and is called only once all workers have stopped (joining
//   their threads orders their stores before the read). The one value other
//   threads may read at any time is dropped(): a single-writer relaxed
//   atomic, stored with a plain load + store (no RMW), like Counter in
//   sched/worker.hpp.
// * Storage only grows, in fixed-size chunks (kChunkBytes, 64 KiB) that never
//   move once allocated, so a record() never copies old events. The chunk
//   allocation is out of line and cold; the inline path never calls malloc.
// * The cap: each buffer holds at most max_bytes / sizeof(TraceEvent) events
//   (exactly; its last chunk is cut to fit). Once full, record() stores
//   nothing and counts the event in dropped() instead, so a forgotten trace
//   costs bounded memory, not all of it. The written file then shows a
//   "trace buffer full" instant at the worker's last recorded event, with the
//   count; what was recorded before stays valid (a prefix of the run). A
//   failed chunk allocation counts the same way.
//
// Timestamps
// ----------
// record() is on every context switch while tracing, so its clock must be
// cheap: it stores the raw TSC (__rdtsc(): no syscall, no vDSO page read, no
// fence; we need ordering, not serialisation). Measured on a 2-core KVM guest
// (AMD EPYC): rdtsc ~10 ns, clock_gettime ~23 ns; record() ~12 ns an event
// into warm memory, ~30 ns counting the first touch of fresh chunk pages,
// ~2 ns once the buffer is full. Raw ticks are
// converted to nanoseconds only in write(), by a linear fit between two paired
// (TSC, CLOCK_MONOTONIC) samples: one taken when the Tracer is built, one in
// write() (at least 10 ms apart, so the fit is tight even for short runs).
// The TSC is used only where the CPU says it is invariant (CPUID 0x80000007
// EDX bit 8: constant rate across P-/C-states, synchronised across cores), so
// one fit serves every worker. Elsewhere (no invariant TSC, not x86-64, or
// TraceClock::kMonotonic) record() reads clock_gettime(CLOCK_MONOTONIC)
// instead, and the same fit degenerates to the identity. write() also makes
// each buffer's timestamps non-decreasing before merging, so a worker's own
// events keep their recorded order whatever the clock did. (The CPUID bit is
// the CPU's claim; a multi-socket machine whose TSCs the kernel found out of
// sync would need TraceClock::kMonotonic.)
//
// The file
// --------
// Built in write(): all buffers merged, one stable sort by time, then a walk
// that pairs each kUnpark of fiber F with F's next kRun (flow ids from 1) and
// emits slices when they close. Viewers bind a flow event to the slice open on
// its track at that moment, reading in (time, file) order, so a flow's "s"
// follows its unpark instant and its "f" follows its run slice, at the same
// times. 1M events write in ~0.15-0.2 s (about 100 bytes of JSON each).
#pragma once

#include <time.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace chronos::detail {

enum class TraceKind : std::uint8_t {
  kSpawn,         // fiber = the new fiber; arg = its priority
  kRun,           // fiber starts or resumes running on this worker
  kYield,         // fiber yielded (stops running, stays runnable)
  kPark,          // fiber parked; arg = a WaitReason number (Tracer::set_reason_names)
  kUnpark,        // fiber made ready by whoever records this event (a worker or a plain thread)
  kExit,          // fiber finished
  kSteal,         // this worker stole; fiber = first stolen fiber id, arg = count
  kWorkerPark,    // the worker thread goes to sleep (no fiber)
  kWorkerUnpark,  // ... and wakes up
  kIoWait,        // fiber parks on I/O; arg = (fd << 1) | (0 read, 1 write)
  kTimerFire,     // timers fired on this worker; arg = how many
};

struct TraceEvent {
  std::uint64_t ts;  // raw clock ticks (TSC or CLOCK_MONOTONIC ns, see the top of this file)
  std::uint64_t fiber;
  std::uint64_t arg;
  TraceKind kind;
};
static_assert(sizeof(TraceEvent) <= 32, "TraceEvent must stay small: it is stored per switch");

// Which clock record() reads. kAuto: the TSC where it is invariant, else
// CLOCK_MONOTONIC.
enum class TraceClock : std::uint8_t { kAuto, kTsc, kMonotonic };

// True if this CPU has an invariant TSC (what kAuto picks). Cached.
bool trace_tsc_usable() noexcept;

class alignas(64) TraceBuffer {
 public:
  static constexpr std::size_t kChunkBytes = std::size_t{64} << 10;
  static constexpr std::size_t kChunkEvents = kChunkBytes / sizeof(TraceEvent);
  static constexpr std::size_t kDefaultMaxBytes = std::size_t{256} << 20;

  // kTsc where the TSC is not usable falls back to CLOCK_MONOTONIC.
  explicit TraceBuffer(std::size_t max_bytes = kDefaultMaxBytes,
                       TraceClock clock = TraceClock::kAuto);
  TraceBuffer(const TraceBuffer&) = delete;
  TraceBuffer& operator=(const TraceBuffer&) = delete;
  ~TraceBuffer();

  // ---- owner only ----
  void record(TraceKind k, std::uint64_t fiber, std::uint64_t arg) noexcept {
    if (cur_ == end_) [[unlikely]] {
      if (!grow()) return;  // full: counted in dropped()
    }
    *cur_++ = TraceEvent{now(), fiber, arg, k};
  }

  // record() with a timestamp taken earlier by now() (or made up, in tests).
  void record_at(std::uint64_t ts, TraceKind k, std::uint64_t fiber, std::uint64_t arg) noexcept {
    if (cur_ == end_) [[unlikely]] {
      if (!grow()) return;
    }
    *cur_++ = TraceEvent{ts, fiber, arg, k};
  }

  // The raw timestamp record() stores.
  std::uint64_t now() const noexcept {
#if defined(__x86_64__)
    if (tsc_) [[likely]]
      return __rdtsc();
#endif
    return monotonic_ns();
  }

  // ---- any thread ----
  // Events not recorded because the buffer was full.
  std::uint64_t dropped() const noexcept {
    return dropped_.load(std::memory_order_relaxed);
  }

  // ---- the owner, or anyone once the owner has stopped ----
  std::size_t size() const noexcept;
  std::size_t capacity() const noexcept {
    return max_events_;
  }
  bool uses_tsc() const noexcept {
    return tsc_;
  }
  // Calls fn(const TraceEvent* first, std::size_t n) for each chunk, oldest first.
  template <class Fn>
  void for_each_chunk(Fn&& fn) const {
    for (std::size_t i = 0; i < chunks_.size(); ++i) {
      const TraceEvent* p = chunks_[i].events.get();
      std::size_t n = i + 1 == chunks_.size() ? static_cast<std::size_t>(cur_ - p) : chunks_[i].n;
      if (n) fn(p, n);
    }
  }

  static std::uint64_t monotonic_ns() noexcept {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return static_cast<std::uint64_t>(t.tv_sec) * 1000000000u +
           static_cast<std::uint64_t>(t.tv_nsec);
  }

 private:
  struct Chunk {
    std::unique_ptr<TraceEvent[]> events;
    std::size_t n;  // its capacity in events
  };

  // A new chunk, or false (and one more dropped event) when full.
  [[gnu::noinline, gnu::cold]] bool grow() noexcept;

  // Hot: read on every record().
  TraceEvent* cur_ = nullptr;
  TraceEvent* end_ = nullptr;
  bool tsc_;
  // Cold.
  std::atomic<std::uint64_t> dropped_{0};
  std::size_t max_events_;
  std::size_t allocated_ = 0;  // events in all chunks
  std::vector<Chunk> chunks_;
};

class Tracer {
 public:
  // path: the JSON file write() creates. workers: how many worker buffers.
  Tracer(std::string path, unsigned workers,
         std::size_t max_bytes_per_worker = TraceBuffer::kDefaultMaxBytes,
         TraceClock clock = TraceClock::kAuto);
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;
  ~Tracer();

  // Worker i's buffer (i < workers()), for that worker's thread only.
  TraceBuffer* worker(unsigned i) noexcept {
    return i < workers_.size() ? workers_[i].get() : nullptr;
  }
  unsigned workers() const noexcept { return static_cast<unsigned>(workers_.size()); }

  // From a thread that is not a worker (a plain thread waking a fiber,
  // spawning from outside): into the shared buffer, under a mutex.
  void record_foreign(TraceKind k, std::uint64_t fiber, std::uint64_t arg) noexcept;

  // How kPark's arg is shown ("park: channel recv"). name_of may return null
  // (shown as "reason N"). Set it before write(); unset, parks show "reason N".
  void set_reason_names(const char* (*name_of)(std::uint64_t arg)) noexcept {
    reason_name_ = name_of;
  }

  // Writes the JSON file at path(). Call once every worker has stopped
  // recording; record_foreign may still run (it is locked out meanwhile).
  // Returns false and sets *error (if non-null) to a message naming the path
  // and the errno text on failure. May be called again (it rewrites the file).
  bool write(std::string* error);

  // Events dropped by all buffers (cap reached).
  std::uint64_t dropped() const noexcept;
  const std::string& path() const noexcept { return path_; }
  bool uses_tsc() const noexcept { return tsc_; }

  // A paired (raw clock, CLOCK_MONOTONIC ns) sample; public for the tests.
  struct ClockSample {
    std::uint64_t raw;
    std::uint64_t ns;
  };
  ClockSample sample_clock() const noexcept;
  // The sample taken at construction: raw timestamp start().raw is time 0 in the file.
  ClockSample start() const noexcept { return start_; }

 private:
  std::string path_;
  bool tsc_;
  ClockSample start_;
  std::vector<std::unique_ptr<TraceBuffer>> workers_;
  std::mutex foreign_mu_;
  TraceBuffer foreign_;  // guarded by foreign_mu_
  const char* (*reason_name_)(std::uint64_t) = nullptr;
};

}  // namespace chronos::detail
