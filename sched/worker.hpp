// sched/worker.hpp: one worker thread and the run queues it owns.
//
// A Worker is an OS thread that runs fibers. Everything in it is owned by that
// thread ("owner only") unless marked otherwise: the run queues' owner ends,
// runnext, the yield queue, the stack caches, the id block and `current`.
// Other workers touch only the deques' steal ends, and read the stats.
//
// Where a runnable fiber waits, in the order the worker looks (pop_runnable):
//
//   runnext      one slot: the fiber this worker woke last runs next, for
//                locality (Go's runnext, Tokio's LIFO slot). It may be used
//                kRunnextStreak times in a row, then the queues get a turn, so
//                two fibers waking each other cannot starve the rest. Not
//                stealable, but the monitor moves its fiber to the injection
//                queue when this worker has run one fiber for a whole tick
//                (worker.cpp, "Retaking runnext").
//   deques       one Chase-Lev deque per priority class (high, normal, low),
//                popped in that order, LIFO: go() pushes here. Thieves take
//                the oldest half from the other end, high class first.
//   yield queue  a FIFO of fibers that called yield(): they go behind
//                everything else runnable here. While some worker is idle, a
//                yielding fiber goes to the injection queue instead, where
//                that worker can pick it up.
//   injection    the runtime's shared queue (spawns from outside, overflow).
//   other workers, by stealing.
//
// Fairness: every kInjectTick-th round the injection queue is checked first,
// and every kFairTick-th round what the normal order could starve goes first
// (pop_oldest): the head of the yield queue, else the oldest low-class fiber,
// else, while high-class work waits, the oldest normal one. So a low-priority
// fiber waits a bounded number of rounds (the "fairness tick"; README,
// "Scheduling"), while fork-join work keeps its depth-first order.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#if defined(CHRONOS_SWITCH_INLINE)
#include "arch/fp_env_x86_64.hpp"
#endif
#include "fiber/fiber_pool.hpp"
#include "fiber/stack_pool.hpp"
#include "fiber/tcb.hpp"
#include "sched/deque.hpp"
#include "sched/timer_wheel.hpp"

namespace chronos::detail {

class RuntimeImpl;
class TraceBuffer;
class Worker;

// The watchdog's request for the running fiber's backtrace (sched/monitor.hpp):
// the monitor sets kRequested and signals the worker's thread; the handler,
// on that thread, takes it (kBusy), fills it in and sets kDone.
struct WatchdogProbe {
  static constexpr std::uint32_t kIdle = 0, kRequested = 1, kBusy = 2, kDone = 3;
  static constexpr std::size_t kMaxFrames = 48;
  std::atomic<std::uint32_t> state{kIdle};
  FiberId id = 0;  // 0: the worker was in its scheduler loop
  char name[kNameCapacity] = {};
  std::uint64_t runs = 0;
  std::size_t nframes = 0;
  void* frames[kMaxFrames] = {};
};

// A single-writer counter that other threads may read.
struct Counter {
  std::atomic<std::uint64_t> v{0};
  [[gnu::always_inline]] void bump(std::uint64_t n = 1) noexcept {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t get() const noexcept { return v.load(std::memory_order_relaxed); }
};

// A worker's private stash of free TCBs, or of free stacks of one class:
// spawn, exit and release touch only this, and the shared pool (FiberPool,
// StackPool) only once per kBatch.
template <class T>
struct Stash {
  static constexpr std::size_t kCapacity = 128;
  static constexpr std::size_t kBatch = 64;
  template <class Pool>
  T* take(Pool& pool) {
    if (n == 0) [[unlikely]]
      return refill_and_take(pool);
    return items[--n];
  }
  // The item the k-th next take() returns (0: the next), if the stash holds
  // it (a prefetch hint).
  T* peek(std::size_t k = 0) const noexcept { return n > k ? items[n - 1 - k] : nullptr; }
  template <class Pool>
  void give(Pool& pool, T* x) noexcept {
    if (n == kCapacity) [[unlikely]]
      return spill_and_give(pool, x);
    items[n++] = x;
  }
  template <class Pool>
  void drain(Pool& pool) noexcept {
    if (n) pool.give(items, n);
    n = 0;
  }
  T* items[kCapacity];
  std::size_t n = 0;

 private:
  // The pool's side, out of line and in tail position: inlined, its call
  // made every take and give save and restore the registers that only the
  // call, once per batch, needs.
  template <class Pool>
  [[gnu::noinline]] T* refill_and_take(Pool& pool) {
    n = pool.take(items, kBatch);
    return items[--n];
  }
  template <class Pool>
  [[gnu::noinline]] void spill_and_give(Pool& pool, T* x) noexcept {
    pool.give(items + (n - kBatch), kBatch);
    n -= kBatch;
    items[n++] = x;
  }
};

// Priority classes. The TCB's priority 0-15 maps: 12-15 high, 4-11 normal
// (8 is the default), 0-3 low.
enum PriorityClass : unsigned { kHigh = 0, kNormal = 1, kLow = 2, kClasses = 3 };
constexpr PriorityClass class_of(unsigned priority) noexcept {
  // 12-15 high, 4-11 normal, 0-3 low, as a sum of two compares: the nested
  // conditional compiled to a dozen instructions, on every push.
  return PriorityClass(unsigned{priority < 12} + unsigned{priority < 4});
}
static_assert(class_of(0) == kLow && class_of(3) == kLow && class_of(4) == kNormal &&
              class_of(11) == kNormal && class_of(12) == kHigh && class_of(15) == kHigh);
inline PriorityClass class_of(const Fiber* f) noexcept {
  return class_of(state_word::priority(f->state.load(std::memory_order_relaxed)));
}

// What a switch asks of the side it resumes (sched/scheduler.hpp,
// "Switching"), once the switcher's context is saved.
enum class PostAction : std::uint8_t {
  kNone,     // nothing: the switcher was the scheduler loop, or is resumed by a plain call
  kRequeue,  // yield: queue the switcher behind the others
  kPark,     // park: run the commit callback, ready the fiber if it declines
  kExit,     // the switcher has finished: publish DONE, wake the joiner, or free it
  kHandoff,  // the switcher has finished and already handed itself to us, its joiner
};

using CommitFn = bool (*)(void* arg, Fiber* self);

// The switch in flight on a worker: filled in by the switcher, read by the
// side it resumes (sched/switch.cpp, finish_switch).
struct SwitchRecord {
  Fiber* from;
  Fiber* to;
  Worker* worker;  // the worker this switch happens on; the resumed side now runs there
  PostAction action;
  CommitFn commit;  // kPark only
  void* arg;
  // kPark only: the switcher's state word once parked (Waiting, pointing at
  // what it waits on), made here where its old word is at hand.
  std::uint64_t parked;
};

class alignas(64) Worker {
 public:
  Worker(RuntimeImpl* rt, unsigned index, std::size_t deque_capacity);
  ~Worker();

  // The thread body: runs fibers until the runtime exits.
  void run();

  // ---- owner only ----
  // A new or readied fiber onto its class's deque (go(), overflow handling).
  // Inline: it is on every spawn.
  void push(Fiber* f) noexcept {
    const PriorityClass c = class_of(f);
    if (!deques_[c].push(f)) [[unlikely]]
      push_overflowing(f, c);
    maybe_queued_ |= 1u << c;
    if (sleepers_->load(std::memory_order_relaxed) != 0) [[unlikely]]
      wake_a_sleeper();
  }
  // A fiber this worker has just woken: it runs next.
  void push_next(Fiber* f) noexcept;
  // A fiber that yielded: behind everything runnable here, or, while some
  // worker sleeps, onto the injection queue where that worker can take it.
  void push_yielded(Fiber* f) noexcept {
    if (sleepers_->load(std::memory_order_relaxed) != 0) [[unlikely]] {
      inject_yielded(f);
      return;
    }
    f->next = nullptr;
    if (yield_tail_) {
      yield_tail_->next = f;
    } else {
      yield_head_ = f;
    }
    yield_tail_ = f;
  }
  // The next fiber to run, from anywhere (see the top of this file), or null.
  Fiber* pop_runnable() noexcept;
  // Only this worker's own queues; no stealing, no injection queue.
  bool has_local_work() const noexcept;

  // The caches: inline, a few instructions each; the pools only once per batch.
  // A free TCB; may throw (no memory for a chunk).
  // Prefetches the one kSpawnPrefetch spawns ahead, which that spawn fills in.
  Fiber* acquire_fiber() {
    Fiber* f = fibers_.take(*fiber_pool_);
    prefetch_tcb_for_spawn(fibers_.peek(kSpawnPrefetch));
    return f;
  }
  // A finished, released fiber back to the cache.
  void release_fiber(Fiber* f) noexcept { fibers_.give(*fiber_pool_, f); }
  // Retires f, a fiber of this worker's runtime that nobody holds any more,
  // and gives its TCB (and an eager fiber's stack) to the caches.
  void release_retired(Fiber* f) noexcept {
    if (Stack* s = retire_fiber(f)) release_stack(s);
    release_fiber(f);
  }
  // A free stack; may throw (mapping failed).
  Stack* acquire_stack(bool small) { return stacks_[small].take(*stack_pools_[small]); }
  // A stack nobody runs on back to the cache.
  void release_stack(Stack* s) noexcept { stacks_[s->pool == stack_pools_[1]].give(*s->pool, s); }
  // A cached stack, ready to run on (its top page touched when it was
  // prepared), or null if the cache is empty. Never faults, maps or locks.
  Stack* cached_stack(bool small) noexcept {
    Stash<Stack>& c = stacks_[small];
    return c.n ? c.items[--c.n] : nullptr;
  }
  FiberId next_id() noexcept {
    if (id_next_ == id_end_) [[unlikely]]
      take_ids();
    return id_next_++;
  }

  // ---- the monitor ----
  // What runnext holds now (a snapshot).
  Fiber* runnext_snapshot() const noexcept { return runnext_.load(std::memory_order_relaxed); }
  // Takes `seen` out of runnext if it is still there, and returns it (null if
  // not, or if the owner has not yet noticed the last retake). The caller
  // queues it elsewhere. Only where heavy_fence_available().
  Fiber* retake_runnext(Fiber* seen) noexcept;

  // ---- any thread ----
  // Takes up to half of one of this worker's deques (high class first) into
  // out. Returns how many.
  std::size_t steal_from(Fiber** out, std::size_t max) noexcept;
  bool deques_empty() const noexcept;
  std::size_t queued() const noexcept;  // in the deques, a snapshot

  Fiber main;                // this thread's own context (the scheduler loop)
  Fiber* current = nullptr;  // the fiber running now; &main in the scheduler loop
  // The switch in flight on this thread (see SwitchRecord). Owner only.
  SwitchRecord switch_rec;
  RuntimeImpl* const rt;
  const unsigned index;

  Counter fibers_run, spawned, exited, parks, wakeups, steals, stolen, failed_steals;
  Counter io_waits, timers_fired;
  // Fibers retake_runnext took from here. An RMW, not a Counter: a retake
  // is rare, and a test retakes from its own thread beside the monitor.
  std::atomic<std::uint64_t> retaken{0};

  // The execution trace's buffer for this worker, or null when tracing is
  // off: every trace point is one load and one predictable branch on it.
  TraceBuffer* trace = nullptr;

  // Timers armed by fibers on this worker (sched/timer_wheel.hpp). Polled by
  // this worker every kInjectTick-th round and when it runs dry; idle workers
  // poll it too when it is due.
  TimerWheel timers;
  // Set while this worker fires timers: the fibers they wake queue FIFO, in
  // deadline order, instead of each taking runnext (sched/switch.cpp, wake).
  bool firing_timers = false;
  // Set while this worker, idle, polls I/O (RuntimeImpl::idle_wait): it
  // counts as a sleeper then, so the fibers it readies for itself must not
  // wake another worker each; idle_wait wakes one afterwards if there is more
  // than it can run.
  bool polling_idle = false;
  // Set while this worker, busy, polls I/O without blocking (its tick): the
  // fibers it readies are not its to run (see reactor/reactor.cpp, "Where the
  // readied fibers go"), so wake() collects them here, and the end of the
  // poll hands them to the injection queue as one batch: one critical
  // section and one wake-up per poll instead of one per fiber.
  bool batching_injections() const noexcept { return inject_batching_; }
  void begin_injection_batch() noexcept { inject_batching_ = true; }
  void defer_injection(Fiber* f) noexcept {
    inject_buf_[inject_buf_n_++] = f;
    if (inject_buf_n_ == kInjectBuf) flush_injections();
  }
  void end_injection_batch() noexcept {
    flush_injections();
    inject_batching_ = false;
  }
  std::size_t fire_timers(TimerWheel& wheel, std::int64_t now, bool try_only) noexcept {
    firing_timers = true;
    std::size_t n = try_only ? wheel.try_poll(now) : wheel.poll(now);
    firing_timers = false;
    if (n) {
      timers_fired.bump(n);
      if (trace) [[unlikely]]
        trace_timers(n);
    }
    return n;
  }

#if defined(CHRONOS_SWITCH_INLINE)
  // The FP control state of fibers that did not ask for their own
  // (sched/switch.cpp, swap_fp_env). Owner only.
  arch::FpEnv ambient_fp;
#endif

  // The slow-fiber watchdog's probe (sched/monitor.hpp). Cold: kept apart
  // from the fields above, which every switch touches.
  alignas(64) WatchdogProbe probe;

  static constexpr std::size_t kInjectBuf = 64;
  static constexpr std::uint32_t kInjectTick = 61;
  static constexpr std::uint32_t kFairTick = 16;
  static constexpr std::uint32_t kRunnextStreak = 3;
  static constexpr std::size_t kStealBatch = 32;
  static constexpr std::size_t kInjectBatch = 32;
  // How many spawns ahead acquire_fiber fetches a TCB. A pooled TCB has
  // usually gone cold (fiber/fiber_pool.hpp, "Which end"), and one spawn
  // ahead did not hide the miss: in a two-worker spawn burst the spawning
  // loop took 60-65 ns per spawn fetching 1 ahead and 51-56 fetching 4.
  // Once the spawn path had lost a sixth of its instructions, 4 ahead was
  // too close again: 8 took the two-worker peer `spawn` from a median of
  // 55.3 to 51.8 ns and the one-worker one from 63.5 to 62.3 (six pairs).
  static constexpr std::size_t kSpawnPrefetch = 8;
  static constexpr std::size_t kOverflowBatch = 256;  // the most one overflow() moves

 private:
  Fiber* pop_oldest() noexcept;  // the fairness tick's pick
  void trace_timers(std::size_t n) noexcept;
  void tick_timers_and_io() noexcept;
  void inject_yielded(Fiber* f) noexcept;
  Fiber* take_injected() noexcept;
  const std::atomic<std::uint32_t>* sleepers_;  // the runtime's count of sleeping workers
  Fiber* steal_other() noexcept;
  void overflow(PriorityClass c) noexcept;
  void push_overflowing(Fiber* f, PriorityClass c) noexcept;
  void wake_a_sleeper() noexcept;    // push's slow path: some worker sleeps
  void take_ids() noexcept;          // next_id's slow path: a new block of ids
  std::uint64_t random() noexcept {  // xorshift64*, for victim order
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return rng_ * 0x2545F4914F6CDD1Dull;
  }

  ChaseLevDeque deques_[kClasses];
  // Bit c set: deques_[c] may hold fibers. Set by the owner on every push,
  // cleared by the owner when a pop finds the deque empty (thieves only ever
  // empty a deque, so a stale set bit costs one look and nothing else). Lets
  // the common "nothing queued here" case skip three deques' cache lines.
  unsigned maybe_queued_ = 0;
  // runnext and the word of the retake protocol (worker.cpp, "Retaking
  // runnext"): 0, kRetaking while the monitor decides, or the fiber it took
  // until the owner has seen that. Written by the monitor only on a retake,
  // so sharing the owner's line costs nothing.
  std::atomic<Fiber*> runnext_{nullptr};
  std::atomic<std::uintptr_t> retake_{0};
  static constexpr std::uintptr_t kRetaking = 1;
  std::uint32_t runnext_streak_ = 0;
  // pop_runnable's take from runnext, which holds f: empties it and returns
  // f, or, if the monitor took f meanwhile, what pop_runnable finds instead.
  // The slow side is a tail call, so that the fast one needs no registers
  // kept across a call (kept, they cost pop_runnable 10 instructions).
  Fiber* take_runnext(Fiber* f) noexcept {
    runnext_.store(nullptr, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);  // the store before the load
    if (retake_.load(std::memory_order_relaxed) != 0) [[unlikely]]
      return take_runnext_settling(f);
    return f;
  }
  Fiber* take_runnext_settling(Fiber* f) noexcept;
  Fiber* settle_retake() noexcept;
  Fiber* yield_head_ = nullptr;  // the yield queue, linked through Fiber::next
  Fiber* yield_tail_ = nullptr;
  std::uint32_t inject_countdown_ = kInjectTick;  // the fairness ticks, counted down
  std::uint32_t fair_countdown_ = kFairTick;
  std::uint64_t rng_;
  FiberPool* const fiber_pool_;      // the runtime's pools, for the caches above
  StackPool* const stack_pools_[2];  // [0] normal, [1] small
  void flush_injections() noexcept;
  Fiber* inject_buf_[kInjectBuf];  // see batching_injections()
  // Batches in flight, kept off the stack: pop_runnable runs on the stack of
  // the fiber that parks or yields, which may be a packed 2 KiB one
  // (fiber/stack_pool.hpp). take_injected and steal_other share one (neither
  // calls the other); overflow, which either may call, has its own.
  Fiber* batch_buf_[kStealBatch > kInjectBatch ? kStealBatch : kInjectBatch];
  Fiber* overflow_buf_[kOverflowBatch];
  std::size_t inject_buf_n_ = 0;
  bool inject_batching_ = false;
  Stash<Fiber> fibers_;
  Stash<Stack> stacks_[2];  // [0] normal, [1] small
  FiberId id_next_ = 0, id_end_ = 0;
};

// The worker running on this thread, or null. Not inline on purpose: a fiber
// may resume on another thread, and a call keeps the compiler from reusing a
// thread-local address computed before a switch.
Worker* current_worker() noexcept;
void set_current_worker(Worker* w) noexcept;

}  // namespace chronos::detail
