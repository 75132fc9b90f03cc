// sched/park.cpp: parking on a Waiter with a deadline and a stop token
// (chronos/detail/waiter.hpp), and chronos/cancel.hpp.
#include <optional>
#include <stdexcept>

#include "chronos/cancel.hpp"
#include "chronos/detail/waiter.hpp"
#include "fiber/futex.hpp"
#include "sched/scheduler.hpp"
#include "sched/timer.hpp"

namespace chronos::detail {
namespace {

// A stop request ends the wait with kCancelled. Runs on whichever thread
// requests the stop (or, if it was requested already, in the constructor).
struct StopCancel {
  Waiter* w;
  void operator()() const noexcept { w->complete(WakeReason::kCancelled); }
};

// The deadline's timer: ends the wait with kTimedOut.
void fire_deadline(Timer* t) {
  auto* w = static_cast<Waiter*>(t->arg);
  Fiber* f = w->fiber;
  void* thread = w->thread;
  std::uint32_t old = w->claim(WakeReason::kTimedOut);
  timer_fired(*t);  // our last touch of t and w (sched/timer.hpp)
  if (old != Waiter::kLost) Waiter::resume(f, thread, old);
}

struct ParkCommit {
  Waiter* w;
  Timer* timer;  // null: no deadline
  void (*release)(void*);
  void* arg;
};

// Runs on the other side of the switch (sched/scheduler.hpp, kPark). Order:
// arm the deadline before kParked (so the fiber, once woken, always finds its
// timer armed or done); set kParked before releasing the registration's lock
// (so a waker, which needs that lock, always finds it set).
bool park_commit(void* p, Fiber*) {
  auto* c = static_cast<ParkCommit*>(p);
  void (*release)(void*) = c->release;  // read everything first: once kParked is
  void* arg = c->arg;                   // set, a timer or a stop may wake the fiber
  Waiter* w = c->w;
  if (c->timer) timer_arm(*c->timer);
  // acq_rel: release publishes the saved context to a winner that sees
  // kParked and wakes us; acquire sees a winner that got in first.
  std::uint32_t old = w->word.fetch_or(Waiter::kParked, std::memory_order_acq_rel);
  if (release) release(arg);
  return (old & Waiter::kReasonMask) == 0;  // false: already ended, run again now
}

}  // namespace

bool Waiter::resume(Fiber* fiber, void* thread, std::uint32_t old) noexcept {
  if (thread) {
    static_cast<ThreadWaiter*>(thread)->wake();
    return true;
  }
  if (!(old & kParked)) return true;  // the park commit sees the reason and readies it
  return wake(current_worker(), fiber);
}

bool Waiter::complete(WakeReason why) noexcept {
  Fiber* f = fiber;
  void* th = thread;
  std::uint32_t old = claim(why);
  return old != kLost && resume(f, th, old);
}

WakeReason park_on_timed(Worker* wk, Fiber* self, Waiter& w, std::int64_t deadline,
                         void (*release)(void*), void* arg);

WakeReason park_on(Waiter& w, std::int64_t deadline, void (*release)(void*), void* arg) {
  Worker* wk = current_worker();
  if (!wk || wk->current == &wk->main) {
    // A plain thread: it needs no timer of its own, the futex has a timeout.
    ThreadWaiter tw;
    w.fiber = nullptr;
    w.thread = &tw;
    w.word.fetch_or(Waiter::kParked, std::memory_order_relaxed);
    if (release) release(arg);
    while (tw.flag.load(std::memory_order_acquire) == 0) {
      std::int64_t now = now_ns();
      if (deadline != kNoDeadline && now >= deadline) {
        if (!w.complete(WakeReason::kTimedOut)) tw.wait();  // a winner is waking us
        break;
      }
      if (deadline == kNoDeadline) {
        futex_wait(&tw.flag, 0);
      } else {
        std::int64_t left = deadline - now;
        futex_wait_for(&tw.flag, 0, timespec{left / 1'000'000'000, left % 1'000'000'000});
      }
    }
    return w.reason();
  }

  Fiber* self = wk->current;
  w.fiber = self;
  w.thread = nullptr;
  if (self->unwinding) [[unlikely]] {  // a destructor parking while unwinding
    if (release) release(arg);
    throw FiberUnwind{};
  }
  if (deadline == kNoDeadline && !self->stop_possible()) [[likely]] {
    // Only the event can end this wait: no timer, no stop callback.
    ParkCommit commit{&w, nullptr, release, arg};
    park_current(wk, WaitKind::kSync, &w, &park_commit, &commit);
    return w.reason();
  }
  return park_on_timed(wk, self, w, deadline, release, arg);
}

// park_on with a deadline or a stop token (or both).
WakeReason park_on_timed(Worker* wk, Fiber* self, Waiter& w, std::int64_t deadline,
                         void (*release)(void*), void* arg) {
  std::optional<std::stop_callback<StopCancel>> on_stop;
  if (self->stop_possible()) on_stop.emplace(self->stop, StopCancel{&w});
  Timer timer;
  ParkCommit commit{&w, nullptr, release, arg};
  if (deadline != kNoDeadline) {
    timer.deadline = deadline;
    timer.fire = &fire_deadline;
    timer.arg = &w;
    commit.timer = &timer;
  }
  if ((w.word.load(std::memory_order_acquire) & Waiter::kReasonMask) != 0) {
    // Stopped already (the callback ran in its constructor): do not park.
    if (release) release(arg);
    return w.reason();
  }
  struct Cleanup {  // also on FiberUnwind: nothing may fire into this frame later
    Timer& t;
    bool armed;
    ~Cleanup() {
      if (armed) timer_cancel(t);
    }
  } cleanup{timer, commit.timer != nullptr};
  park_current(wk, WaitKind::kSync, &w, &park_commit, &commit);
  return w.reason();
}

void throw_cancelled() {
  throw Cancelled();
}

}  // namespace chronos::detail

namespace chronos {

Cancelled::Cancelled()
    : std::system_error(std::make_error_code(std::errc::operation_canceled),
                        "chronos: cancelled (the fiber's stop token was triggered)") {}

namespace this_fiber {

std::stop_token stop_token() noexcept {
  detail::Worker* w = detail::current_worker();
  if (!w || w->current == &w->main) return {};
  return w->current->stop;
}

CancelScope::CancelScope(std::stop_token token) : token_(std::move(token)) {
  detail::Worker* w = detail::current_worker();
  if (!w || w->current == &w->main)
    throw std::logic_error("chronos: this_fiber::CancelScope created outside a fiber");
  saved_ = std::exchange(w->current->stop, token_);
  w->current->cold |= detail::Fiber::kColdStop;  // retire_fiber empties it
}

CancelScope::~CancelScope() {
  // The fiber may have moved to another worker meanwhile: look it up again.
  detail::Worker* w = detail::current_worker();
  w->current->stop = std::move(saved_);
}

}  // namespace this_fiber
}  // namespace chronos
