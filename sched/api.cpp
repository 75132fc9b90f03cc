// sched/api.cpp: the library side of chronos/fiber.hpp and chronos/detail/spawn.hpp.
#include <stdexcept>
#include <string>

#include "chronos/cancel.hpp"
#include "chronos/detail/waiter.hpp"
#include "fiber/futex.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/scheduler.hpp"
#include "sched/trace.hpp"

namespace chronos::detail {

void throw_outside_fiber(const char* what) {
  throw std::logic_error(std::string("chronos: ") + what +
                         " called outside a fiber; start one with Runtime::block_on() or "
                         "Runtime::spawn()");
}

namespace {

Worker* fiber_worker_or_throw(const char* what) {
  Worker* w = current_worker();
  if (!w || w->current == &w->main) [[unlikely]]
    throw_outside_fiber(what);
  return w;
}

// Takes joiner `self` back out of f's join word, if the exit has not taken
// it yet. True if it did.
bool withdraw_joiner(Fiber* f, Fiber* self) {
  std::uintptr_t j = f->join.load(std::memory_order_acquire);
  do {
    if ((j & join_word::kDone) ||
        (j & join_word::kPtrMask) != reinterpret_cast<std::uintptr_t>(self))
      return false;
  } while (!f->join.compare_exchange_weak(j, j & ~join_word::kPtrMask, std::memory_order_acq_rel,
                                          std::memory_order_acquire));
  return true;
}

// kPark commit for a join: register `self` as f's joiner unless f is done.
// A stop requested before we registered is ours to act on here (the stop
// callback found nothing to withdraw); the seq_cst fences pair with
// StopJoin's, so one of the two always sees the other.
bool register_joiner(void* arg, Fiber* self) {
  auto* f = static_cast<Fiber*>(arg);
  // Copied first: once we are published, `self` may be resumed by f's exit
  // on another worker, and finish, before this commit returns.
  std::stop_token stop;
  if (self->stop_possible()) [[unlikely]]
    stop = self->stop;
  std::uintptr_t j = f->join.load(std::memory_order_acquire);
  do {
    if (j & join_word::kDone) return false;
    // release: publishes our saved context to the exiting fiber, which
    // resumes us after reading this word.
  } while (!f->join.compare_exchange_weak(j, j | reinterpret_cast<std::uintptr_t>(self),
                                          std::memory_order_release, std::memory_order_acquire));
  if (stop.stop_possible()) [[unlikely]] {
    // withdraw_joiner succeeds only while f is not done and we are still
    // its joiner, that is, while nobody can have resumed us.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (stop.stop_requested() && withdraw_joiner(f, self)) return false;  // run again now
  }
  return true;
}

// A stop request while a fiber joins: withdraw it and wake it, unless the
// exit got to it first.
struct StopJoin {
  Fiber* f;
  Fiber* self;
  void operator()() const noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (withdraw_joiner(f, self)) wake(current_worker(), self);
  }
};

}  // namespace

Fiber* spawn_here(const SpawnOptions& opts, const PayloadOps* ops, void* src) {
  Worker* w = fiber_worker_or_throw("chronos::go()");
  if (opts.priority > 15) [[unlikely]]
    throw std::invalid_argument("chronos: SpawnOptions::priority must be 0-15, got " +
                                std::to_string(opts.priority));
  Fiber* f = w->acquire_fiber();
  Stack* eager = nullptr;
  try {
    if (binds_at_spawn(opts, ops)) eager = w->acquire_stack(opts.small_stack);
    init_fiber(f, opts, ops, src, w->next_id(), eager, &fiber_main, w);
  } catch (...) {
    if (eager) w->release_stack(eager);
    w->release_fiber(f);
    throw;
  }
  w->spawned.bump();
  if (w->trace) [[unlikely]]
    w->trace->record(TraceKind::kSpawn, f->id, opts.priority);
  w->push(f);
  return f;
}

Fiber* spawn_into(Runtime& rt, const SpawnOptions& opts, const PayloadOps* ops, void* src) {
  return rt.impl().spawn_external(opts, ops, src);
}

void* fiber_wait(Fiber* f) {
  // acquire: pairs with the exit's release of DONE, so the result is visible.
  if (f->join.load(std::memory_order_acquire) & join_word::kDone) return f->payload;
  Worker* w = current_worker();
  if (w && w->current != &w->main) {
    Fiber* self = w->current;
    if (self->stop_possible()) {
      if (self->stop.stop_requested()) throw_cancelled();
      std::stop_callback<StopJoin> on_stop(self->stop, StopJoin{f, self});
      park_current(w, WaitKind::kJoin, f, &register_joiner, f);
    } else {
      park_current(w, WaitKind::kJoin, f, &register_joiner, f);
    }
    // Woken without DONE: only a stop does that (it withdrew us first).
    if (!(f->join.load(std::memory_order_acquire) & join_word::kDone)) throw_cancelled();
    return f->payload;
  } else {
    ThreadWaiter waiter;
    std::uintptr_t j = f->join.load(std::memory_order_acquire);
    do {
      if (j & join_word::kDone) return f->payload;
    } while (!f->join.compare_exchange_weak(
        j, j | reinterpret_cast<std::uintptr_t>(&waiter) | join_word::kThread,
        std::memory_order_release, std::memory_order_acquire));
    waiter.wait();
  }
  if (!(f->join.load(std::memory_order_acquire) & join_word::kDone)) [[unlikely]] {
    std::fputs("chronos: a joiner was woken before its fiber finished\n", stderr);
    std::abort();
  }
  return f->payload;
}

void fiber_rethrow(Fiber* f) {
  if (f->error) std::rethrow_exception(f->error);
}

void fiber_release(Fiber* f) {
  f->rt->release(f);
}

void fiber_detach(Fiber* f) noexcept {
  // acq_rel: if the fiber is done, acquire its result before freeing it;
  // otherwise release our hand-over to the exit path, which will free it.
  std::uintptr_t j = f->join.fetch_or(join_word::kDetached, std::memory_order_acq_rel);
  if (j & join_word::kDone) {
    if (f->error && !f->unwinding) f->rt->report_uncaught(f);
    f->rt->release(f);
  }
}

bool fiber_done(const Fiber* f) noexcept {
  return (f->join.load(std::memory_order_acquire) & join_word::kDone) != 0;
}

std::uint64_t fiber_id(const Fiber* f) noexcept {
  return f->id;
}

}  // namespace chronos::detail

namespace chronos {

// chronos::yield() is in sched/switch.cpp, next to the switch it inlines.

namespace this_fiber {
FiberId id() noexcept {
  detail::Worker* w = detail::current_worker();
  return (w && w->current != &w->main) ? w->current->id : 0;
}
std::string_view name() noexcept {
  detail::Worker* w = detail::current_worker();
  return (w && w->current != &w->main) ? std::string_view(w->current->name) : std::string_view();
}
}  // namespace this_fiber

}  // namespace chronos
