// sched/switch.cpp: every context switch chronos makes, and what happens on
// either side of it. The rules are in sched/scheduler.hpp; this is the hot path.

#include <cstdio>
#include <cstdlib>

#include "chronos/detail/waiter.hpp"
#include "fiber/overflow.hpp"
#if defined(CHRONOS_SWITCH_INLINE)
#include "arch/fp_env_x86_64.hpp"
#endif
#include "fiber/backoff.hpp"
#include "fiber/futex.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/scheduler.hpp"
#include "sched/trace.hpp"

namespace chronos::detail {
namespace {

// A small stack has no guard page of its own (fiber/stack_pool.hpp). Its
// safety net is checked at every switch of a small-stack fiber, each check
// where it is cheapest and still in time:
//   - switching out (its own overflow runs downward): the canary of the slot
//     below, which that overflow smashes first, and the saved stack pointer
//     against the stack's bottom (in finish_switch), which catches a fiber
//     that is still deep when it switches;
//   - switching in: its own canary, which an overflow from the slot above
//     smashes first, so that a victim is never resumed.
// So every overflow is caught twice over: by the culprit at its next switch
// out, and by the victim before it runs again. The two checks are inline:
// one load and compare each.
[[gnu::noinline, gnu::cold]] void die_smashed_from_above(Fiber* f) {
  char how[200];
  std::snprintf(how, sizeof how,
                "its canary was smashed by an overflow from the small-stack slot above (stack "
                "[%p, ...)), detected at a switch",
                static_cast<void*>(f->stack->top() + sizeof(Stack) + StackPool::kTail));
  die_stack_overflow(f, StackPool::canary_of(f->stack), how);
}

[[gnu::noinline, gnu::cold]] void die_ran_into_below(Fiber* f, Stack* below) {
  die_stack_overflow(f, StackPool::canary_of(below),
                     "it ran into the slot below (whose canary is smashed), detected at a switch");
}

[[gnu::noinline, gnu::cold]] void die_deep_at_switch(Fiber* f, const void* sp) {
  die_stack_overflow(f, sp, "stack pointer below the small stack, detected at a switch");
}

// f, a small-stack fiber, is switching out.
inline void check_small_out(Fiber* f) {
  if (Stack* below = f->stack->pool->slot_below(f->stack)) {
    // 0: the slot below is trimmed (its pages returned), so not in use.
    std::uint64_t c = StackPool::load_canary(below);
    if (c != StackPool::canary_value(below) && c != 0) [[unlikely]]
      die_ran_into_below(f, below);
  }
}

// f, a small-stack fiber, is about to run.
inline void check_small_in(Fiber* f) {
  if (!StackPool::canary_intact(f->stack)) [[unlikely]]
    die_smashed_from_above(f);
}

// We run on f's stack and stay on it (a yield with nothing else to run).
inline void check_small_running(Fiber* f) {
  if (!f->small_stack()) return;
  char* sp = static_cast<char*>(__builtin_frame_address(0));
  if (sp < f->stack_lo + 256) [[unlikely]]
    die_deep_at_switch(f, sp);
  check_small_out(f);
}

#if defined(CHRONOS_SWITCH_INLINE)
// The inline switch leaves MXCSR and the x87 control word alone, so fibers
// that asked for their own (preserve_fp_env) get them swapped here. Fibers
// that did not ask share the worker's "ambient" state, as functions share a
// thread's. Called only when one side asked: one predictable branch otherwise.
[[gnu::noinline]] void swap_fp_env(Worker* w, Fiber* from, Fiber* to) noexcept {
  arch::FpEnv now = arch::fp_env_read();
  if (from->state.load(std::memory_order_relaxed) & state_word::kFpEnv) {
    from->fp_mxcsr = now.mxcsr;
    from->fp_x87_cw = now.x87_cw;
  } else {
    w->ambient_fp = now;
  }
  arch::FpEnv next = w->ambient_fp;
  if (to->state.load(std::memory_order_relaxed) & state_word::kFpEnv)
    next = arch::FpEnv{to->fp_mxcsr, to->fp_x87_cw};
  if (!(next == now)) arch::fp_env_write(next);
}
#endif

// Tracing is on (Worker::trace): what this switch means for the trace. Out of
// line, so that tracing off costs switch_to one load and one branch.
[[gnu::noinline, gnu::cold]] void trace_switch(Worker* w, Fiber* from, Fiber* to, PostAction action,
                                               const void* on) noexcept {
  TraceBuffer* t = w->trace;
  switch (action) {
    case PostAction::kNone:
      break;
    case PostAction::kRequeue:
      t->record(TraceKind::kYield, from->id, 0);
      break;
    case PostAction::kPark:
      if (from->wait_kind == WaitKind::kIo) {
        // The IoSite is in the switcher's frame, intact until it resumes.
        const auto* site = static_cast<const IoSite*>(on);
        t->record(TraceKind::kIoWait, from->id,
                  site ? static_cast<std::uint64_t>(site->fd) << 1 | (site->write ? 1 : 0) : 0);
      } else {
        // The reason's number: a WaitReason, then 10 for a join and 11 for
        // spawn_blocking (sched/runtime.cpp, trace_reason_name).
        std::uint64_t why = from->wait_kind == WaitKind::kJoin       ? 10
                            : from->wait_kind == WaitKind::kBlocking ? 11
                            : on ? static_cast<std::uint64_t>(static_cast<const Waiter*>(on)->what)
                                 : 0;
        t->record(TraceKind::kPark, from->id, why);
      }
      break;
    case PostAction::kHandoff:
      t->record(TraceKind::kExit, from->id, 0);
      t->record(TraceKind::kUnpark, to->id, 0);  // the exit readied its joiner
      break;
    case PostAction::kExit:
      t->record(TraceKind::kExit, from->id, 0);
      break;
  }
  if (to != &w->main) t->record(TraceKind::kRun, to->id, 0);
}

void finish_exit(Worker* w, Fiber* f);

// The resumed side of every switch: record where the switcher stopped, then
// carry out what it asked for. Returns the worker we now run on. Inline in
// every switch_to (rec->action is the switcher's, known only at run time),
// which saves a call and its register saves on every switch.
[[gnu::always_inline]] inline Worker* finish_switch(arch::Transfer t) {
  auto* rec = static_cast<SwitchRecord*>(t.data);
  Fiber* prev = rec->from;
  Worker* w = rec->worker;
  arch::sanitizer_finish_switch(rec->to->san, &prev->san);
  prev->ctx = t.ctx;
  if (prev->small_stack() && static_cast<char*>(t.ctx) < prev->stack_lo + 256) [[unlikely]]
    die_deep_at_switch(prev, t.ctx);
  switch (rec->action) {
    case PostAction::kNone:
      break;
    case PostAction::kRequeue:
      prev->set_state(FiberState::kReady, w);
      w->push_yielded(prev);
      break;
    case PostAction::kPark:
      // release: an inspector that reads Waiting with acquire (sched/inspect.cpp)
      // sees the context saved above and the stack under it. A plain store on
      // x86-64. Before the commit: a waker finds the fiber only through it.
      prev->state.store(rec->parked, std::memory_order_release);
      if (!rec->commit(rec->arg, prev)) wake(w, prev);  // the event already happened
      break;
    case PostAction::kExit:
      if (!prev->eager) w->release_stack(unbind_stack(prev));  // before DONE frees prev
      finish_exit(w, prev);
      break;
    case PostAction::kHandoff:
      if (!prev->eager) w->release_stack(unbind_stack(prev));
      w->exited.bump();
      break;
  }
  return w;
}

// A fresh fiber's first code: the same, out of line.
[[gnu::noinline]] Worker* finish_first_switch(arch::Transfer t) {
  return finish_switch(t);
}

// f is about to run for the first time and has no stack (fiber/tcb.hpp,
// "Binding"): bind one from w's cache, if it holds one. Never refills it:
// refilling carves slots whose first touch faults in a page each (64 at a
// time), and a switcher may hold a lock that its commit releases only after
// the switch (a channel's, for one), which every fiber that wants that lock
// would spin on meanwhile. The scheduler loop refills instead (run_fiber),
// holding nothing.
[[gnu::noinline]] bool bind_cached(Worker* w, Fiber* f) noexcept {
  Stack* s = w->cached_stack(f->small_stack());
  if (!s) return false;
  bind_stack(f, s, &fiber_main);
  return true;
}

// Owner: w's thread, running `from`. `to` has been claimed (popped from a run
// queue, or handed off by its waker) and is not running anywhere.
[[gnu::always_inline]] inline Worker* switch_to(Worker* w, Fiber* from, Fiber* to,
                                                PostAction action, CommitFn commit = nullptr,
                                                void* arg = nullptr, const void* on = nullptr) {
  if (!to->ctx && !bind_cached(w, to)) [[unlikely]] {
    w->push_next(to);  // it runs next, started by the scheduler loop (run_fiber)
    to = &w->main;
  }
  // Each state word is read once here (only their owner, us, writes them).
  const std::uint64_t fs = from->state.load(std::memory_order_relaxed);
  const std::uint64_t ts = to->state.load(std::memory_order_relaxed);
  // In the worker, not on our stack (sched/scheduler.hpp, "Switching").
  SwitchRecord& rec = w->switch_rec;
  rec = SwitchRecord{
      from,
      to,
      w,
      action,
      commit,
      arg,
      action == PostAction::kPark ? state_word::with(fs, FiberState::kWaiting, on) : 0};
  if ((fs | ts) & state_word::kSmall) [[unlikely]] {
    if (fs & state_word::kSmall) check_small_out(from);
    if (ts & state_word::kSmall) check_small_in(to);
  }
#if defined(CHRONOS_SWITCH_INLINE)
  if ((fs | ts) & state_word::kFpEnv) [[unlikely]]
    swap_fp_env(w, from, to);
#endif
  if (w->trace) [[unlikely]]
    trace_switch(w, from, to, action, on);
  w->current = to;
  to->state.store(state_word::with(ts, FiberState::kRunning, w), std::memory_order_relaxed);
  w->fibers_run.bump();
  arch::sanitizer_start_switch(from->san, to->san,
                               action == PostAction::kExit || action == PostAction::kHandoff);
  return finish_switch(arch::jump(to->ctx, &rec));
}

// Publishes a finished fiber: DONE, then the joiner's wake-up or the free.
void finish_exit(Worker* w, Fiber* f) {
  w->exited.bump();
  // A detached fiber has nobody left to race with: DETACHED is set once, by
  // a handle that forgets the fiber as it sets it, so the exit that sees it
  // frees alone, without the locked fetch_or (acquire: pairs with the
  // detacher's release, so its writes happen before the free). Otherwise
  // fetch_or, acq_rel: release publishes the result and error to the joiner,
  // or to a detach that races us; acquire sees that detacher's writes.
  std::uintptr_t j = f->join.load(std::memory_order_acquire);
  if (!(j & join_word::kDetached))
    j = f->join.fetch_or(join_word::kDone, std::memory_order_acq_rel);
  if (j & join_word::kDetached) {
    if (f->error && !f->unwinding) w->rt->report_uncaught(f);
    w->release_retired(f);  // RuntimeImpl::release, without asking which worker we are
    return;
  }
  void* joiner = reinterpret_cast<void*>(j & join_word::kPtrMask);
  if (!joiner) return;
  if (j & join_word::kThread) {
    static_cast<ThreadWaiter*>(joiner)->wake();
  } else {
    wake(w, static_cast<Fiber*>(joiner));
  }
}

// A dump holds this parked fiber (the H bit, fiber/tcb.hpp) while it walks
// its stack: wait until it lets go. Returns the word without the hold.
[[gnu::noinline, gnu::cold]] std::uint64_t await_unheld(Fiber* f) noexcept {
  std::uint64_t s;
  // acquire: pairs with the inspector's release of the hold, so that its
  // reads of the stack happen before the fiber runs again.
  while ((s = f->state.load(std::memory_order_acquire)) & state_word::kHeld) cpu_relax();
  return s;
}

}  // namespace

bool claim(Fiber* f, FiberState to, Worker* w) noexcept {
  std::uint64_t s = f->state.load(std::memory_order_relaxed);
  do {
    // One compare covers both "not Waiting" and "held" on the fast path.
    if ((s & (state_word::kStateMask | state_word::kHeld)) !=
        static_cast<std::uint64_t>(FiberState::kWaiting)) [[unlikely]] {
      if (state_word::state(s) != FiberState::kWaiting) return false;
      s = await_unheld(f);
      continue;
    }
    // acquire: the CAS decides who wakes it; the fiber's saved context was
    // published to us by the acquire that found its wait registration. The
    // acquire here orders an inspector's last reads of the stack (it held the
    // fiber and wrote this word back) before the fiber runs again; on x86-64
    // it is the same instruction as relaxed.
  } while (!f->state.compare_exchange_weak(s, state_word::with(s, to, w), std::memory_order_acquire,
                                           std::memory_order_relaxed));
  return true;
}

namespace {

// The switch away from self (switch_to) runs the small-stack checks.
[[noreturn]] void exit_current(Worker* w, Fiber* self) {
  std::uintptr_t j = self->join.load(std::memory_order_acquire);
  if (j & join_word::kDetached) {
    // Nobody will take the result: report an escaped exception here, on the
    // fiber itself, and destroy the payload on its own stack.
    if (self->error && !self->unwinding) w->rt->report_uncaught(self);
    destroy_payload(self);
  }
  self->set_state(FiberState::kDone, nullptr);

  // The hand-off: our joiner is parked and waits only for us. Publish DONE and
  // switch straight to it; nothing else may resume it meanwhile.
  auto* joiner = reinterpret_cast<Fiber*>(j & join_word::kPtrMask);
  if (joiner && !(j & (join_word::kThread | join_word::kDetached)) && joiner->rt == w->rt &&
      self->join.compare_exchange_strong(j, j | join_word::kDone, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
    if (claim(joiner, FiberState::kRunning, w)) {
      switch_to(w, self, joiner, PostAction::kHandoff);
    } else {  // already woken by someone else (the shutdown unwinder)
      Fiber* next = w->pop_runnable();
      switch_to(w, self, next ? next : &w->main, PostAction::kHandoff);
    }
  } else {
    Fiber* next = w->pop_runnable();
    switch_to(w, self, next ? next : &w->main, PostAction::kExit);
  }
  std::fputs("chronos: a finished fiber was resumed\n", stderr);
  std::abort();
}

}  // namespace

void fiber_main(arch::Transfer t) {
  Worker* w = finish_first_switch(t);
  Fiber* self = w->current;
  if (!self->unwinding) {
    try {
      self->ops->run(self->payload);
    } catch (const FiberUnwind&) {
      // Unwound at shutdown: see below.
    } catch (...) {
      self->error = std::current_exception();
    }
  }
  if (self->unwinding && !self->error) {
    char msg[128];
    std::snprintf(msg, sizeof msg,
                  "chronos: fiber #%llu was unwound at runtime shutdown: it was parked with "
                  "nothing left to wake it",
                  static_cast<unsigned long long>(self->id));
    self->error = std::make_exception_ptr(std::runtime_error(msg));
  }
  exit_current(current_worker(), self);
}

void run_fiber(Worker* w, Fiber* f) {
  if (!f->ctx && !bind_cached(w, f)) [[unlikely]] {
    try {
      bind_stack(f, w->acquire_stack(f->small_stack()), &fiber_main);
    } catch (...) {
      // No stack can be mapped for it: it fails without running, with the
      // error the mapping threw, which its JoinHandle rethrows. Finished here,
      // on the scheduler's own stack, as exit_current and the switch after it
      // would have finished it.
      f->error = std::current_exception();
      f->set_state(FiberState::kDone, nullptr);
      finish_exit(w, f);
      return;
    }
  }
  switch_to(w, &w->main, f, PostAction::kNone);
}

Worker* park_current(Worker* w, WaitKind kind, const void* on, CommitFn commit, void* arg) {
  Fiber* self = w->current;
  if (self->unwinding) throw FiberUnwind{};
  self->wait_kind = kind;
  self->wait_since = wait_stamp(w->rt->coarse_now());  // (the hot line: no miss on a cold TCB)
  Fiber* next = w->pop_runnable();
  // A fiber the reactor readied (its wait_kind still says so) has waited on
  // the network, long enough to go cold. One a channel or a join woke
  // usually runs right after its waker, warm, and would only pay for the
  // prefetches. Only here: the scheduler loop's run_fiber starts what its
  // own blocking poll just woke (warm, and its waker ran prefetch_resume)
  // or what a burst queued, mostly fresh fibers that have no frames yet.
  if (next && next->wait_kind == WaitKind::kIo) prefetch_run(next);
  w = switch_to(w, self, next ? next : &w->main, PostAction::kPark, commit, arg, on);
  self->wait_kind = WaitKind::kNone;
  if (self->unwinding) throw FiberUnwind{};
  return w;
}

[[gnu::noinline, gnu::cold]] void trace_unpark(Worker* w, Fiber* f) noexcept {
  if (w) {
    w->trace->record(TraceKind::kUnpark, f->id, 0);
  } else if (Tracer* t = f->rt->tracer()) {
    t->record_foreign(TraceKind::kUnpark, f->id, 0);
  }
}

bool wake(Worker* w, Fiber* f) noexcept {
  const bool local = w && w->rt == f->rt;
  // Queued here, unless this worker is collecting what it readies for the
  // injection queue (a busy worker's I/O poll).
  Worker* const queue = local && !w->batching_injections() ? w : nullptr;
  if (!claim(f, FiberState::kReady, queue)) return false;
  if (local ? w->trace != nullptr : f->rt->tracer() != nullptr) [[unlikely]]
    trace_unpark(local ? w : nullptr, f);
  if (queue) {
    if (w->firing_timers) [[unlikely]] {
      w->push_yielded(f);  // timers wake in deadline order: keep it (FIFO)
    } else {
      w->push_next(f);  // woken here: runs next, for locality
    }
  } else if (local) {
    w->defer_injection(f);  // one batch per poll (Worker::batching_injections)
  } else if (!WakeBatch::defer(f)) {
    f->rt->inject_batch(&f, 1);  // never waits: this may be a worker thread
  }
  return true;
}

namespace {
thread_local WakeBatch* t_wake_batch = nullptr;  // the innermost scope
}  // namespace

WakeBatch::WakeBatch() noexcept : prev_(t_wake_batch) {
  t_wake_batch = this;
}

WakeBatch::~WakeBatch() {
  flush();
  t_wake_batch = prev_;
}

void WakeBatch::flush() noexcept {
  if (n_ == 0) return;
  static_cast<RuntimeImpl*>(rt_)->inject_batch(fibers_, n_);
  n_ = 0;
}

bool WakeBatch::defer(Fiber* f) noexcept {
  WakeBatch* b = t_wake_batch;
  if (!b) return false;
  if (b->n_ == kCapacity || (b->n_ != 0 && b->rt_ != f->rt)) b->flush();
  b->rt_ = f->rt;
  b->fibers_[b->n_++] = f;
  return true;
}

}  // namespace chronos::detail

namespace chronos {

// Here rather than in sched/api.cpp: one function from the caller to the
// switch, so a yield pays for one call and one set of register saves.
void yield() {
  detail::Worker* w = detail::current_worker();
  if (!w || w->current == &w->main) [[unlikely]]
    detail::throw_outside_fiber("chronos::yield()");
  detail::Fiber* next = w->pop_runnable();
  if (!next) {  // nothing else to run: carry on
    detail::check_small_running(w->current);
    w->fibers_run.bump();  // it did yield: the watchdog (sched/monitor.hpp) counts this
    return;
  }
  detail::switch_to(w, w->current, next, detail::PostAction::kRequeue);
}

}  // namespace chronos
