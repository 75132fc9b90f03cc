// sched/worker.cpp: the worker thread's loop, its run queues and stealing.
// The queue order and the fairness rules are at the top of worker.hpp.
//
// Retaking runnext
//
// runnext is the owner's: thieves steal from the deques only, as with
// Tokio's LIFO slot. Go lets thieves take it too, with an atomic exchange to
// fill it and a CAS to empty it; here that cost 23 ns more per channel round
// trip (README, "Limits"). But a slot nobody else may touch has a failure:
// a fiber woken into it by a fiber that then computes for 600 ms waits 600
// ms, while every other worker sleeps. So the monitor thread, which already
// watches each worker's dispatch counter (sched/monitor.hpp), takes the
// fiber out when the worker has not switched for a whole tick and the same
// fiber sat in runnext at the start of it, and queues it on the injection
// queue, where any worker finds it. The owner's fills and takes stay plain
// stores, because the monitor pays for both sides' fences (an asymmetric
// fence, sched/heavy_fence.hpp):
//
//   owner (push_next, take_runnext)      monitor (retake_runnext)
//   load runnext; store runnext          retake_ = kRetaking
//   compiler barrier                     heavy_fence()
//   load retake_: 0 -> done              load runnext; CAS it seen -> null
//   else settle_retake(): wait while     retake_ = what it took, or 0
//     kRetaking; the fiber it took, if
//     any, is not the owner's; then 0
//
// The heavy fence puts a full barrier at some point P in the owner's
// instruction stream. An owner operation whose load of retake_ comes before
// P has its stores visible at P, so the monitor's load sees the slot after
// it: only one of them can have the fiber. An operation with any access
// after P also loads retake_ after P, sees kRetaking or the fiber taken, and
// settles: the monitor's CAS decides who has the fiber, and the owner drops
// it if the monitor took it (a take), or does not queue it (the old fiber a
// fill displaced). Nothing else can change the slot meanwhile: the owner is
// the only other writer and it is waiting. The fiber taken stays in retake_
// until the owner's next fill or take sees it and writes 0, and the monitor
// starts no retake while retake_ is not 0, so the owner never writes 0 over
// another retake's kRetaking. The owner's cost: one load and one branch per
// fill and per take; the monitor's: a membarrier(2) per retake, which
// happens only to a worker that has run one fiber for a whole tick.
#include "sched/worker.hpp"

#include <pthread.h>
#include <sched.h>

#include <bit>
#include <cstdio>

#include "fiber/backoff.hpp"
#include "fiber/overflow.hpp"
#include "sched/heavy_fence.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/scheduler.hpp"
#include "sched/trace.hpp"

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

Worker::Worker(RuntimeImpl* runtime, unsigned idx, std::size_t deque_capacity)
    : rt(runtime),
      index(idx),
      timers(now_ns()),
      sleepers_(runtime->sleepers_counter()),
      deques_{ChaseLevDeque(deque_capacity), ChaseLevDeque(deque_capacity),
              ChaseLevDeque(deque_capacity)},
      rng_(0x9E3779B97F4A7C15ull * (idx + 1)),
      fiber_pool_(&runtime->fibers()),
      stack_pools_{&runtime->pool(false), &runtime->pool(true)} {
  main.rt = runtime;
  current = &main;
}

Worker::~Worker() = default;

void Worker::run() {
  char name[16];
  std::snprintf(name, sizeof name, "chronos-w%u", index);
  ::pthread_setname_np(::pthread_self(), name);
  rt->pin(index);
  set_current_worker(this);
  AltSignalStack alt_stack;  // SA_ONSTACK handlers run here (fiber/overflow.hpp)
  arch::sanitizer_init_thread(main.san);
  main.set_state(FiberState::kRunning, this);
  current = &main;
#if defined(CHRONOS_SWITCH_INLINE)
  ambient_fp = arch::fp_env_read();
#endif

  bool woken = false;
  for (;;) {
    // A worker back from idle_wait may hold the spinning slot notify_work
    // handed it. It counts as spinning until it finds work, from wherever
    // (its queues, a steal, timers or I/O): then, if it was the last spinner,
    // it wakes the next sleeper (Go's resetspinning), so a burst wakes as
    // many workers as there is work for. Before this, pop_runnable's steal
    // found the work and nobody gave the slot up, so no notify_work woke
    // anyone until some worker ran dry: on 16 CPUs, skynet ran on 5 workers.
    const bool handed = woken && rt->take_handed_spin();
    woken = false;
    Fiber* f = pop_runnable();
    if (!f && rt->run_due_timers_and_io(this)) {  // they may have readied fibers here
      if (handed) rt->stop_spinning(true);
      continue;
    }
    if (f) {
      if (handed) rt->stop_spinning(true);
    } else {
      f = rt->spin_for_work(this, handed);
    }
    if (f) {
      run_fiber(this, f);  // returns when a fiber switches back to this loop
      continue;
    }
    if (rt->exiting()) break;
    rt->idle_wait(this);
    woken = true;
  }

  fibers_.drain(*fiber_pool_);
  stacks_[0].drain(*stack_pools_[0]);
  stacks_[1].drain(*stack_pools_[1]);
  set_current_worker(nullptr);
}

[[gnu::noinline]] void Worker::wake_a_sleeper() noexcept {
  if (!polling_idle) rt->notify_work();
}

// The deque was full: make room (overflow) until the push succeeds. Kept out
// of line so that push() itself stays a few instructions.
[[gnu::noinline]] void Worker::push_overflowing(Fiber* f, PriorityClass c) noexcept {
  do overflow(c);
  while (!deques_[c].push(f));
}

void Worker::push_next(Fiber* f) noexcept {
  Fiber* old = runnext_.load(std::memory_order_relaxed);
  // release: a retaking monitor reads f's TCB after its acquire load.
  runnext_.store(f, std::memory_order_release);
  std::atomic_signal_fence(std::memory_order_seq_cst);  // the store before the load
  if (retake_.load(std::memory_order_relaxed) != 0) [[unlikely]]
    if (settle_retake() == old) old = nullptr;  // the monitor has it
  if (old) {
    PriorityClass c = class_of(old);
    if (!deques_[c].push(old)) [[unlikely]]
      push_overflowing(old, c);
    maybe_queued_ |= 1u << c;
  }
  if (sleepers_->load(std::memory_order_relaxed) != 0) [[unlikely]]
    if (!polling_idle) rt->notify_work();
}

void Worker::flush_injections() noexcept {
  rt->inject_batch(inject_buf_, inject_buf_n_);  // (nothing, if empty)
  inject_buf_n_ = 0;
}

void Worker::inject_yielded(Fiber* f) noexcept {
  rt->inject_batch(&f, 1);
}

// The deque is full: move its older half to the injection queue, where any
// worker can take it. Never blocks and never drops a fiber.
// The batch is a member, not a local: this runs on whatever stack the owner
// is on, a 2 KiB packed one included (a wake that spills, a refill from the
// injection queue).
void Worker::overflow(PriorityClass c) noexcept {
  std::size_t n = deques_[c].take_oldest(overflow_buf_, kOverflowBatch);
  if (n == 0) n = deques_[c].steal(overflow_buf_, 1);  // (thieves are racing us for it)
  rt->inject_batch(overflow_buf_, n);
}

// From the injection queue: one fiber to run, and the rest of the batch onto
// our own deques, where other workers can steal them.
Fiber* Worker::take_injected() noexcept {
  Fiber** const batch = batch_buf_;  // (a member: see batch_buf_)
  std::size_t n = rt->inject_pop(batch, kInjectBatch);
  if (n == 0) return nullptr;
  // The loop below reads and writes each TCB's state, and each fiber's
  // start reads its payload on the second line: ask for all of those lines
  // at once, so that the misses (a TCB that sat in the queue behind a burst
  // of spawns has gone cold) overlap instead of following one another.
  // Fetching the second line too took a two-worker spawn burst from 67-71
  // to 60-65 ns per fiber.
  for (std::size_t i = 0; i < n; ++i) prefetch_tcb(batch[i]);
  // The rest go to the deques, a run of one class at a time in one bulk push
  // (usually the whole batch is one class).
  for (std::size_t k = 1; k < n;) {
    const PriorityClass c = class_of(batch[k]);
    std::size_t end = k;
    for (; end < n && class_of(batch[end]) == c; ++end)
      batch[end]->set_state(FiberState::kReady, this);
    maybe_queued_ |= 1u << c;
    while (k < end) {
      k += deques_[c].push_some(batch + k, end - k);
      if (k < end) overflow(c);
    }
  }
  return batch[0];
}

// Every kInjectTick-th round: due timers, and I/O if a poller exists and
// nobody has polled it for a while (RuntimeImpl::poll_io). What they ready
// lands in runnext and the deques, which the rest of pop_runnable looks at.
[[gnu::noinline]] void Worker::tick_timers_and_io() noexcept {
  const bool timers_armed = timers.next_due() != kNoDeadline;
  if (!timers_armed && !rt->poller()) return;
  std::int64_t now = now_ns();
  if (timers_armed && timers.next_due() <= now) fire_timers(timers, now, false);
  rt->poll_io(this, now);
}

// The fairness tick's pick: what the normal order could starve. A yielded
// fiber; else the oldest low-class fiber; else, if high-class work is
// waiting (which the normal order always serves first), the oldest normal
// one. Never the oldest of an unstarved class: in a fork-join workload that
// would be the biggest pending subtree, and taking it breaks the depth-first
// order that keeps the number of live fibers small.
Fiber* Worker::pop_oldest() noexcept {
  if (Fiber* f = yield_head_) {
    yield_head_ = f->next;
    if (!yield_head_) yield_tail_ = nullptr;
    return f;
  }
  Fiber* out[1];
  if (!deques_[kLow].owner_sees_empty() && deques_[kLow].steal(out, 1) == 1) return out[0];
  if (!deques_[kHigh].owner_sees_empty() && !deques_[kNormal].owner_sees_empty() &&
      deques_[kNormal].steal(out, 1) == 1)
    return out[0];
  return nullptr;
}

Fiber* Worker::pop_runnable() noexcept {
  if (--inject_countdown_ == 0) [[unlikely]] {
    inject_countdown_ = kInjectTick;
    tick_timers_and_io();
    if (Fiber* f = take_injected()) return f;
  }
  if (--fair_countdown_ == 0) [[unlikely]] {
    fair_countdown_ = kFairTick;
    if (Fiber* f = pop_oldest()) return f;
  }
  if (Fiber* f = runnext_.load(std::memory_order_relaxed)) {
    // runnext goes first, unless it has had its streak, or it is not high
    // class and a high-class fiber waits.
    if (runnext_streak_ < kRunnextStreak &&
        (class_of(f) == kHigh || !(maybe_queued_ & (1u << kHigh)) || deques_[kHigh].empty())) {
      ++runnext_streak_;
      return take_runnext(f);
    }
  }
  runnext_streak_ = 0;
  while (maybe_queued_) {
    const unsigned c = static_cast<unsigned>(std::countr_zero(maybe_queued_));  // high first
    if (Fiber* f = deques_[c].pop()) {
      prefetch_tcb(deques_[c].peek());
      return f;
    }
    maybe_queued_ &= ~(1u << c);  // found empty: only our own push sets it again
  }
  if (Fiber* f = runnext_.load(std::memory_order_relaxed)) return take_runnext(f);
  if (Fiber* f = yield_head_) {
    yield_head_ = f->next;
    if (!yield_head_) yield_tail_ = nullptr;
    return f;
  }
  if (Fiber* f = take_injected()) return f;
  return steal_other();
}

bool Worker::has_local_work() const noexcept {
  return runnext_.load(std::memory_order_relaxed) || yield_head_ ||
         !deques_empty();  // (the real deques, not the hint)
}

// The owner's slow side of a retake (top of this file): waits for the
// monitor's decision and acknowledges it. Returns the fiber the monitor took
// out of runnext, or null.
[[gnu::noinline]] Fiber* Worker::settle_retake() noexcept {
  std::uintptr_t r;
  // A few microseconds (one membarrier), unless the monitor is preempted.
  // The monitor is a plain thread, so no fiber switch comes between its
  // two stores (fiber/backoff.hpp's rule).
  Backoff backoff(64);
  while ((r = retake_.load(std::memory_order_acquire)) == kRetaking) backoff();
  // Only after a take: 0 may already be a new retake's starting point.
  if (r != 0) retake_.store(0, std::memory_order_relaxed);
  return reinterpret_cast<Fiber*>(r);
}

[[gnu::noinline]] Fiber* Worker::take_runnext_settling(Fiber* f) noexcept {
  if (settle_retake() != f) return f;
  return pop_runnable();  // the monitor has it: look again
}

Fiber* Worker::retake_runnext(Fiber* seen) noexcept {
  std::uintptr_t idle = 0;
  // relaxed: the heavy fence below orders it before the load of the slot,
  // and before every owner access that follows the fence's point.
  if (!retake_.compare_exchange_strong(idle, kRetaking, std::memory_order_relaxed)) return nullptr;
  heavy_fence();
  Fiber* f = runnext_.load(std::memory_order_acquire);  // acquire: pairs with push_next's release
  const bool took = f == seen && f != nullptr &&
                    runnext_.compare_exchange_strong(f, nullptr, std::memory_order_acquire,
                                                     std::memory_order_relaxed);
  // release: an owner that settles on it reads it with acquire (it drops the
  // fiber, touching nothing of it; the order is for TSan and for clarity).
  retake_.store(took ? reinterpret_cast<std::uintptr_t>(f) : 0, std::memory_order_release);
  if (!took) return nullptr;
  retaken.fetch_add(1, std::memory_order_relaxed);
  return f;
}

bool Worker::deques_empty() const noexcept {
  for (auto& d : deques_)
    if (!d.empty()) return false;
  return true;
}

std::size_t Worker::steal_from(Fiber** out, std::size_t max) noexcept {
  for (auto& d : deques_)  // high class first
    if (std::size_t n = d.steal(out, max)) return n;
  return 0;
}

// Victims in random order; one steal takes up to half of a victim's deque.
// All but one of the stolen fibers go onto our own deque.
Fiber* Worker::steal_other() noexcept {
  std::size_t n = rt->worker_count();
  if (n < 2) return nullptr;
  std::size_t start = static_cast<std::size_t>(random() % n);
  Fiber** const batch = batch_buf_;  // (a member: see batch_buf_)
  for (std::size_t i = 0; i < n; ++i) {
    Worker* victim = rt->worker(static_cast<unsigned>((start + i) % n));
    if (victim == this || victim->deques_empty()) continue;
    std::size_t got = victim->steal_from(batch, kStealBatch);
    if (got == 0) {
      failed_steals.bump();
      continue;
    }
    steals.bump();
    stolen.bump(got);
    // As in take_injected: the loop below writes each stolen TCB, which the
    // victim's spawn has just written; ask for all of them at once.
    for (std::size_t k = 0; k < got; ++k) prefetch_tcb(batch[k]);
    if (trace) [[unlikely]]
      trace->record(TraceKind::kSteal, batch[got - 1]->id, got);
    for (std::size_t k = 0; k + 1 < got; ++k) {
      batch[k]->set_state(FiberState::kReady, this);
      PriorityClass c = class_of(batch[k]);
      while (!deques_[c].push(batch[k])) overflow(c);
      maybe_queued_ |= 1u << c;
    }
    return batch[got - 1];
  }
  return nullptr;
}

std::size_t Worker::queued() const noexcept {
  std::size_t n = 0;
  for (const ChaseLevDeque& d : deques_) n += d.size();
  return n;
}

void Worker::trace_timers(std::size_t n) noexcept {
  trace->record(TraceKind::kTimerFire, 0, n);
}

[[gnu::noinline]] void Worker::take_ids() noexcept {
  constexpr FiberId kBlock = 1024;  // one shared RMW per 1024 spawns
  id_next_ = rt->take_id_block(kBlock);
  id_end_ = id_next_ + kBlock;
}

}  // namespace chronos::detail
