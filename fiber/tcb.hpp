// fiber/tcb.hpp: the task control block, chronos's record of one fiber.
//
// Where it lives. TCBs are carved side by side from chunks (fiber/fiber_pool.hpp),
// apart from stacks (fiber/stack_pool.hpp). A TCB is 192 bytes, three cache
// lines: a hot one that every switch, spawn, join and exit reads and writes,
// which holds the state and the stack fields; a warm one that spawn writes
// and the fiber then only reads (the payload pointer, id, runtime, escaped
// exception and room for a small payload: the callable and its result,
// chronos/detail/spawn.hpp); and a cold one (name, stop token, FP control
// state) that a fiber which is spawned, runs, parks and exits never touches:
// what a parked fiber waits on is in its state word, wait_kind and
// wait_since, all on the hot line. A burst of
// a million fibers outgrows every cache, so each line a fiber touches is
// memory traffic: two lines, not three, and of those only the hot one is
// dirtied again, and written back again, while the fiber runs.
//
// Binding. A fiber and a stack meet in one of two ways:
//   lazily   a small-stack fiber whose payload fits the TCB (kTcbPayload bytes)
//            has no stack until it first runs: the switch that starts it
//            takes one from its worker's cache (sched/switch.cpp, bind_fresh),
//            and the switch that leaves it for the last time gives it back.
//            A million spawned fibers that have not run yet cost a million
//            TCBs and no stack; fibers that run to completion one after
//            another all run on the same, cache-hot stack. If no stack can be
//            had when the fiber starts, it fails instead of running: the
//            scheduler finishes it, stackless, with the std::system_error
//            (ENOMEM) that the mapping threw, which its JoinHandle rethrows
//            (a detached one reports it as uncaught).
//   eagerly  every other fiber: a normal stack, or a payload too large for the
//            TCB. The stack is taken at spawn (so spawn() throws if none can
//            be mapped), the payload goes right below its header, and the
//            stack stays with the TCB until the TCB is released, because the
//            result lives there.
// The stack fields (stack, stack_lo) describe the bound stack, whose usable
// part ends at stack_top(); ctx is null exactly while a fiber has never run
// and has no stack.
//
// The state word. One atomic 64-bit word, laid out as
//
//     63      53 52  51    48 47                              3 2   1 0
//    +----------+---+--------+---------------------------------+---+---+
//    | 0      F | S | prio   | pointer >> 3                    | H |st |
//    +----------+---+--------+---------------------------------+---+---+
//
// st is the state, S the small-stack flag, prio 0-15, F preserve_fp_env. H is
// the inspection hold: a dump (sched/inspect.hpp) sets it on a Waiting fiber
// while it walks that fiber's stack, and a waker that finds it set waits the
// few microseconds until it is clear again (see claim() in sched/switch.cpp). The pointer says
// where the fiber is: its Worker while Ready or Running, the object it waits on while Waiting, null
// once Done. User-space pointers on x86-64 and aarch64 fit in 48 bits and are at least 8-aligned.
// Because state and pointer are one word, a reader on another thread (a dump, the deadlock
// detector) always sees a consistent pair, and a transition is one store.
//
// States, by who owns the fiber and its stack:
//   Ready    runnable, in exactly one run queue (or being handed to a worker).
//            The queue owns it; nobody touches its stack.
//   Running  on a worker. That worker's thread owns it and runs on its stack.
//   Waiting  parked. Whoever holds its wait registration (a joiner slot, a
//            channel's wait list...) owns the right to make it Ready, once.
//   Done     its body has returned or thrown. The stack is dead; the JoinHandle
//            (or nobody, if detached) owns the TCB until it is released.
// Only the thread that owns the fiber writes its state word, so plain atomic
// stores suffice (relaxed: the hand-offs between owners are ordered by the
// queues and by the join word, not by this word). One exception: Waiting is
// stored with release, by the side that resumes after the fiber has switched
// away (sched/switch.cpp), so that an inspector that reads Waiting with
// acquire also sees the saved context and the stack under it.
//
// The join word. The race between a fiber finishing and someone joining or
// detaching it is decided on a second word, by atomic read-modify-writes:
//   bit 0  DONE       set once, by the exit path, after the body has finished
//   bit 1  DETACHED   set once, when the JoinHandle is dropped unjoined
//   bit 2  THREAD     the pointer is a ThreadWaiter, not a Fiber
//   rest   the joiner, registered once (64-byte aligned)
// Whoever sets the second of DONE and DETACHED frees the fiber.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <stop_token>

#include "arch/context.hpp"
#include "arch/sanitizer.hpp"
#include "chronos/config.hpp"
#include "chronos/detail/spawn.hpp"
#include "fiber/stack_pool.hpp"

#if CHRONOS_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace chronos::detail {

class RuntimeImpl;

enum class FiberState : std::uint64_t { kReady = 0, kRunning = 1, kWaiting = 2, kDone = 3 };

const char* to_string(FiberState s) noexcept;

namespace state_word {
inline constexpr std::uint64_t kStateMask = 0x3;
inline constexpr std::uint64_t kHeld = 0x4;  // the inspection hold (above)
inline constexpr std::uint64_t kPtrMask = 0x0000'FFFF'FFFF'FFF8;
inline constexpr int kPrioShift = 48;
inline constexpr std::uint64_t kPrioMask = std::uint64_t{0xF} << kPrioShift;
inline constexpr std::uint64_t kSmall = std::uint64_t{1} << 52;
inline constexpr std::uint64_t kFpEnv = std::uint64_t{1} << 53;  // SpawnOptions::preserve_fp_env

inline std::uint64_t pack(FiberState s, const void* p, unsigned prio, bool small,
                          bool fp_env = false) {
  return static_cast<std::uint64_t>(s) | (reinterpret_cast<std::uintptr_t>(p) & kPtrMask) |
         (std::uint64_t{prio & 0xF} << kPrioShift) | (small ? kSmall : 0) | (fp_env ? kFpEnv : 0);
}
// The same word with another state and pointer; priority and flags kept.
inline std::uint64_t with(std::uint64_t w, FiberState s, const void* p) {
  return (w & (kPrioMask | kSmall | kFpEnv)) | static_cast<std::uint64_t>(s) |
         (reinterpret_cast<std::uintptr_t>(p) & kPtrMask);
}
inline constexpr FiberState state(std::uint64_t w) {
  return FiberState(w & kStateMask);
}
inline void* pointer(std::uint64_t w) {
  return reinterpret_cast<void*>(w & kPtrMask);
}
inline constexpr unsigned priority(std::uint64_t w) {
  return unsigned((w & kPrioMask) >> kPrioShift);
}
inline constexpr bool small(std::uint64_t w) {
  return (w & kSmall) != 0;
}
}  // namespace state_word

namespace join_word {
inline constexpr std::uintptr_t kDone = 1;
inline constexpr std::uintptr_t kDetached = 2;
inline constexpr std::uintptr_t kThread = 4;
inline constexpr std::uintptr_t kPtrMask = ~std::uintptr_t{7};
}  // namespace join_word

// How to read a parked fiber's state-word pointer, for dumps and the deadlock
// detector:
//   kJoin      the Fiber it joins
//   kSync      the Waiter of a blocking call (chronos/detail/waiter.hpp), which
//              says what it waits on (WaitReason) and where
//   kIo        the IoSite of an I/O wait, on the parked fiber's stack
//   kBlocking  the spawn_blocking pool: a job runs on a pool thread
// (A kSync Waiter and a kIo IoSite live in the parked fiber's frame: read them
// only while the fiber cannot resume, as a dump does under its hold.)
enum class WaitKind : std::uint8_t { kNone, kJoin, kSync, kIo, kBlocking };

// What an I/O wait is on, kept in the waiting fiber's frame rather than in
// its TCB's cold line, which the reactor's wait would otherwise touch on
// every park of a connection's fiber.
struct alignas(8) IoSite {
  int fd = -1;
  bool write = false;
};

// Fiber::wait_since counts the coarse clock in ticks of 2^20 ns (1.05 ms), 32
// bits of them: it wraps after 52 days, so a wait longer than that reads
// short by a multiple of 52 days. 0 means never stamped.
inline constexpr int kWaitTickShift = 20;
inline std::uint32_t wait_stamp(std::int64_t now_ns) noexcept {
  return static_cast<std::uint32_t>(static_cast<std::uint64_t>(now_ns) >> kWaitTickShift) | 1u;
}
// How long ago, at now_ns, a wait stamped `since` began: whole ticks, modulo
// 2^32 of them (the subtraction wraps with the stamp), within two ticks.
inline std::int64_t waited_ns(std::uint32_t since, std::int64_t now_ns) noexcept {
  const std::uint32_t ticks = wait_stamp(now_ns) - since;
  return static_cast<std::int64_t>(std::uint64_t{ticks} << kWaitTickShift);
}

inline constexpr std::size_t kNameCapacity = 32;

// The payload bytes a TCB holds (see "Binding").
inline constexpr std::size_t kTcbPayload = 32;

struct alignas(64) Fiber {
  // ---- hot: everything a switch, spawn, join or exit reads or writes ----
  // see "The state word". A TCB that holds no fiber reads Done.
  std::atomic<std::uint64_t> state{static_cast<std::uint64_t>(FiberState::kDone)};
  std::atomic<std::uintptr_t> join{0};  // see "The join word"
  arch::Context ctx = nullptr;          // saved context while not running; null: never ran
  Fiber* next = nullptr;                // intrusive link: yield and wait lists
  char* stack_lo = nullptr;             // lowest usable byte of the bound stack
  Stack* stack = nullptr;               // the bound stack, or null (see "Binding")
  const PayloadOps* ops = nullptr;      // the payload's type-erased operations
  std::uint32_t wait_since = 0;         // when it last parked: wait_stamp(coarse clock)
  WaitKind wait_kind = WaitKind::kNone;
  bool unwinding = false;  // resumed only to be unwound (runtime shutdown)
  bool eager = false;      // bound at spawn, payload on the stack (see "Binding")
  std::uint8_t cold = 0;   // which cold fields hold something (kCold* below)

  // ---- warm: written at spawn, only read while the fiber runs and exits ----
  // (A fiber with a result writes it into its payload.)
  void* payload = nullptr;  // callable + result: in inline_payload or on the stack
  FiberId id = 0;
  RuntimeImpl* rt = nullptr;
  std::exception_ptr error;  // what escaped the body, until joined or reported
  alignas(16) unsigned char inline_payload[kTcbPayload];

  // ---- cold: a fiber that is spawned, runs, parks and exits never touches it ----
  std::stop_token stop;              // blocking calls watch it (chronos/cancel.hpp); kColdStop
  char name[kNameCapacity] = {};     // kColdName while not empty
  std::uint32_t fp_mxcsr = 0x1F80;   // preserve_fp_env fibers: their FP control state while
  std::uint16_t fp_x87_cw = 0x037F;  // switched out (the inline switch does not save it)
  [[no_unique_address]] arch::SanitizerState san;

  // Bits of `cold`: set while the field may hold something to clear, so that
  // spawn and release look at the warm line only.
  static constexpr std::uint8_t kColdName = 1;
  static constexpr std::uint8_t kColdStop = 2;

  // Whether a stop may be requested through this fiber's stop token. The
  // flag, on the hot line, answers for the common fiber without one, so a
  // blocking call reads the cold line only for a fiber that has a token.
  bool stop_possible() const noexcept { return (cold & kColdStop) && stop.stop_possible(); }

  FiberState load_state() const noexcept {
    return state_word::state(state.load(std::memory_order_relaxed));
  }
  // Owner-only transition (see "States"): one relaxed store of state and pointer.
  [[gnu::always_inline]] void set_state(FiberState s, const void* where) noexcept {
    std::uint64_t w = state.load(std::memory_order_relaxed);
    state.store(state_word::with(w, s, where), std::memory_order_relaxed);
  }
  bool small_stack() const noexcept {
    return state_word::small(state.load(std::memory_order_relaxed));
  }
};

// The first cache line holds the hot fields, the second the warm ones and
// the inline payload, the third the cold ones; the README states the sizes.
static_assert(offsetof(Fiber, cold) < 64, "the hot part of the TCB must fit one cache line");
static_assert(offsetof(Fiber, payload) == 64 &&
                  offsetof(Fiber, inline_payload) + kTcbPayload == 128,
              "the warm part of the TCB and the inline payload must fill the second line");
static_assert(alignof(Fiber) == 64);
#if !CHRONOS_ASAN && !CHRONOS_TSAN
static_assert(sizeof(Fiber) == 192, "a TCB is three cache lines (see the top of this file)");
#endif

// A hint that f (which may be null or stale) runs soon: fetch the two lines a
// switch and the fiber's start read, the hot one for writing. A prefetch
// never faults, so a TCB that was stolen or released meanwhile costs nothing
// but the fetch. Used where the scheduler knows the next fiber one switch
// ahead, so that the miss on a TCB that went cold in a long queue overlaps
// the run of the fiber before it.
[[gnu::always_inline]] inline void prefetch_tcb(const Fiber* f) noexcept {
  if (!f) return;
  __builtin_prefetch(f, 1, 3);
  __builtin_prefetch(reinterpret_cast<const char*>(f) + 64, 0, 3);
}

// A hint that a free TCB is about to be filled in by a spawn: fetch both
// lines the spawn writes, for writing.
[[gnu::always_inline]] inline void prefetch_tcb_for_spawn(const Fiber* f) noexcept {
  if (!f) return;
  __builtin_prefetch(f, 1, 3);
  __builtin_prefetch(reinterpret_cast<const char*>(f) + 64, 1, 3);
}

// A hint for a parked fiber about to be readied, called by its waker while
// the fiber is still parked and no one else can wake it (once queued, it may
// run and switch out again elsewhere, rewriting ctx): fetch the top of its
// saved stack, which the switch that resumes it reads first. Its context
// points at the two words the switch saved; the red zone lies above them,
// then the frames that park_current and its callers left, whose spilled
// registers the resumed code reloads. After a long wait those lines have gone
// cold: in the echo server, park_current's first loads were the largest share
// of chronos's own time. The reactor uses it (reactor/io_wait.cpp); a
// channel's waker does not, since what it wakes usually runs next, warm.
// The first `lines` cache lines above f's saved context (the two words the
// switch saved, the red zone, then the frames under it). False, fetching
// nothing, if f never ran.
[[gnu::always_inline]] inline bool prefetch_saved_frames(const Fiber* f, int lines) noexcept {
  const char* sp = static_cast<const char*>(f->ctx);
  if (!sp) return false;
  for (int line = 0; line < lines; ++line) __builtin_prefetch(sp + 64 * line, 0, 3);
  return true;
}

[[gnu::always_inline]] inline void prefetch_resume(const Fiber* f) noexcept {
  prefetch_saved_frames(f, 6);
}

// A hint from the worker that has just taken f, a parked fiber readied since,
// to run next: fetch, all at once, what its resume reads. Eight lines above
// its saved context: the switch's two words, the red zone the switch steps
// over, then the frames of park_current, the wait and the blocking call (0.4
// KB in a socket read) and the first line of the read's buffer above them.
// Then the lines right under its stack's header (an eager fiber's payload,
// where its body's captures live; else the outermost frames) and the TCB's
// warm line (a lazy fiber's inline payload). Without it they miss one after
// another as the frames return, each on a line (and, at the stack's top, a
// page) that went cold while the fiber waited; with it the misses overlap.
// The taker owns f, so its ctx and stack are stable. Not for a fiber that
// switched out just before (a yield, a hand-off): its lines are warm, and the
// prefetches would be pure cost.
[[gnu::always_inline]] inline void prefetch_run(const Fiber* f) noexcept {
  if (!prefetch_saved_frames(f, 8)) return;  // never ran
  if (const char* top = reinterpret_cast<const char*>(f->stack)) {
    __builtin_prefetch(top - 64, 0, 3);
    __builtin_prefetch(top - 128, 0, 3);
  }
  __builtin_prefetch(reinterpret_cast<const char*>(f) + 64, 0, 3);
}

// True if a fiber spawned with these options and payload binds its stack at
// spawn rather than when it first runs (see "Binding").
inline bool binds_at_spawn(const SpawnOptions& opts, const PayloadOps* ops) noexcept {
  return !opts.small_stack || ops->size > kTcbPayload || ops->align > 16;
}

// Fills in a pooled TCB for a new fiber and constructs its payload (may throw,
// leaving the TCB and stack untouched for release). `eager`: the stack to bind
// now, with the payload on it; null to bind lazily, with the payload in the
// TCB (binds_at_spawn must be false). The fiber starts Ready, with `queue`
// as its state word's pointer (the worker whose queue it goes to, or null).
inline void init_fiber(Fiber* f, const SpawnOptions& opts, const PayloadOps* ops, void* src,
                       FiberId id, Stack* eager, arch::EntryFn entry, const void* queue = nullptr);

// Binds stack s to f, which has none, and makes f's first context on it.
inline void bind_stack(Fiber* f, Stack* s, arch::EntryFn entry) noexcept;

// The end of the usable part of f's bound stack s: right below the payload
// of an eager fiber, below the stack's header otherwise. Usable bytes run
// from f->stack_lo up to it.
inline char* stack_top(const Fiber* f, Stack* s) noexcept {
  return f->eager ? reinterpret_cast<char*>(reinterpret_cast<std::uintptr_t>(f->payload) &
                                            ~std::uintptr_t{15})
                  : s->top();
}

// Unbinds f's stack and returns it; f's context on it is dead (f finished,
// or, for an eager fiber, was released).
inline Stack* unbind_stack(Fiber* f) noexcept {
  Stack* s = f->stack;
  f->stack = nullptr;
#if CHRONOS_ASAN
  // Frames that never returned (the entry's) leave poisoned redzones behind;
  // the next fiber on this stack must not trip over them.
  ASAN_UNPOISON_MEMORY_REGION(s->lo, s->size());
#endif
  return s;
}

// Destroys whatever the payload still holds (the result, or the callable if
// the fiber never ran). Safe on the fiber itself, as it finishes.
inline void destroy_payload(Fiber* f) noexcept {
  if (f->ops) {
    if (f->ops->destroy) f->ops->destroy(f->payload);  // null: nothing to destroy
    f->ops = nullptr;
  }
  if (f->error) f->error = nullptr;  // read, not written, on the common path (warm line)
}

// destroy_payload, and forgets the fiber's sanitizer state. From any context
// but the fiber's own: done when the TCB goes back to the pool. Returns the
// stack of an eager fiber, unbound, for the caller to pool (null otherwise).
inline Stack* retire_fiber(Fiber* f) noexcept {
  destroy_payload(f);
  arch::sanitizer_destroy_fiber(f->san);
  if (f->cold & Fiber::kColdStop) {
    f->stop = {};
    f->cold &= ~Fiber::kColdStop;
  }
  return f->eager && f->stack ? unbind_stack(f) : nullptr;
}

// Inline: only the two spawn paths call it, and out of line it cost a call
// with eight arguments and the register saves and restores around it.
inline void init_fiber(Fiber* f, const SpawnOptions& opts, const PayloadOps* ops, void* src,
                       FiberId id, Stack* eager, arch::EntryFn entry, const void* queue) {
  // Eager: the payload goes right below the stack's header, the stack below
  // the payload. Lazy: the payload goes in the TCB.
  void* payload = f->inline_payload;
  if (eager) {
    auto top = reinterpret_cast<std::uintptr_t>(eager->top());
    payload = reinterpret_cast<void*>((top - ops->size) & ~(std::uintptr_t{ops->align} - 1));
  }
  ops->construct(payload, src);  // may throw: nothing changed yet

  f->ops = ops;
  f->payload = payload;
  f->id = id;
  // (Published with the fiber: nobody can see it before it is queued.)
  f->join.store(opts.detached ? join_word::kDetached : 0, std::memory_order_relaxed);
  f->wait_kind = WaitKind::kNone;
  f->unwinding = false;
  f->eager = eager != nullptr;
  f->next = nullptr;
  f->ctx = nullptr;
  // The name: copied only when there is one, cleared only when a previous
  // fiber left one, so that an unnamed spawn does not touch the cold line.
  if (std::size_t n = std::min(opts.name.size(), kNameCapacity - 1);
      n || (f->cold & Fiber::kColdName)) {
    if (n) std::memcpy(f->name, opts.name.data(), n);  // data() may be null when empty
    f->name[n] = '\0';
    f->cold =
        static_cast<std::uint8_t>(n ? f->cold | Fiber::kColdName : f->cold & ~Fiber::kColdName);
  }
  f->state.store(state_word::pack(FiberState::kReady, queue, opts.priority, opts.small_stack,
                                  opts.preserve_fp_env),
                 std::memory_order_relaxed);
  if (opts.stop_token.stop_possible()) {
    f->stop = opts.stop_token;  // (retire_fiber empties it)
    f->cold |= Fiber::kColdStop;
  }
  if (opts.preserve_fp_env) {
    f->fp_mxcsr = 0x1F80;  // a fresh fiber starts from the psABI defaults
    f->fp_x87_cw = 0x037F;
  }
  arch::sanitizer_init_fiber(f->san);
  if (eager) bind_stack(f, eager, entry);
}

inline void bind_stack(Fiber* f, Stack* s, arch::EntryFn entry) noexcept {
  char* top = stack_top(f, s);
  const auto size = static_cast<std::size_t>(top - s->lo);
  f->stack = s;
  f->stack_lo = s->lo;
  f->ctx = arch::make(top, size, entry);
  arch::sanitizer_set_stack(f->san, s->lo, size);
}

}  // namespace chronos::detail
