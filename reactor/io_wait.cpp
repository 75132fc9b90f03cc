// reactor/io_wait.cpp: the wait slot protocol (reactor/io_wait.hpp has the
// state machine and why it never loses a wake-up).
#include "reactor/io_wait.hpp"

#include <poll.h>

#include <atomic>
#include <climits>
#include <optional>
#include <stop_token>

#include "fiber/backoff.hpp"
#include "sched/scheduler.hpp"
#include "sched/timer.hpp"

namespace chronos::detail {
namespace {

// The parked fiber's record, on its own stack. Every wait has this much; a
// wait that a deadline or a stop request may end early has the rest
// (IoWait). The commit reads the extension only when can_end says it exists.
struct IoWaitCore {
  IoSite site;  // what dumps and traces show (the state word points here)
  Descriptor* d = nullptr;
  Direction dir = kRead;
  bool busy = false;     // commit found another fiber in the slot
  bool can_end = false;  // a deadline or a stop token may end the wait early
};

struct IoWait : IoWaitCore {
  Fiber* self = nullptr;
  // can_end only: set by the commit after its last touch of this record. The
  // commit reads `ended` after publishing the fiber, when a waker may already
  // have resumed it elsewhere; the fiber waits for this before it leaves.
  std::atomic<bool> committed{false};
  // Why the wait may end early: kTimedOutBit (the timer's fire()) and
  // kCancelledBit (the fiber's stop token), set before the slot is claimed.
  std::atomic<std::uint32_t> ended{0};
  Timer timer;
};

constexpr std::uint32_t kTimedOutBit = 1;
constexpr std::uint32_t kCancelledBit = 2;

// Pause rounds while a waker finishes a hand-off it has already claimed
// (fiber/backoff.hpp): it is a few instructions away, with no switch between.
constexpr unsigned kHandOffSpins = 256;

// The slot's value once no waker is half-way through waking `self`.
std::uintptr_t settle(std::atomic<std::uintptr_t>& s, std::uintptr_t self) noexcept {
  Backoff backoff(kHandOffSpins);
  for (;;) {
    // acquire: pairs with the waker's final release store, so that this fiber
    // sees everything the waker did before it (and may leave its frame).
    std::uintptr_t v = s.load(std::memory_order_acquire);
    if (v != (self | slot::kWaking)) return v;
    backoff();
  }
}

// Claims fiber value v in slot s for waking, waits out other wakers. Shared
// by the readiness and close paths; `final` is the value the slot keeps.
// Returns true if it woke a fiber.
bool hand_over(Worker* w, std::atomic<std::uintptr_t>& s, std::uintptr_t final) noexcept {
  // relaxed: the first load is only a guess; every decision is a CAS below.
  std::uintptr_t v = s.load(std::memory_order_relaxed);
  Backoff backoff(kHandOffSpins);
  for (;;) {
    if (v == final) return false;
    if (v == slot::kClosed) return false;            // closed is sticky
    if (slot::is_fiber(v) && (v & slot::kWaking)) {  // another waker is mid-way
      backoff();
      v = s.load(std::memory_order_relaxed);
      continue;
    }
    if (slot::is_fiber(v)) {
      // acquire: pairs with the commit's release, which published the parked
      // fiber's saved context; wake() hands it to whoever runs it next.
      if (s.compare_exchange_weak(v, v | slot::kWaking, std::memory_order_acquire,
                                  std::memory_order_relaxed)) {
        // Still parked, and ours to wake: its saved context is stable until
        // wake() queues it.
        prefetch_resume(reinterpret_cast<Fiber*>(v));
        wake(w, reinterpret_cast<Fiber*>(v));
        // release: the woken fiber's settle() (acquire) waits for this store.
        s.store(final, std::memory_order_release);
        return true;
      }
      continue;
    }
    // kNone, or kReady on the way to kClosed. relaxed: readiness carries no
    // data of ours (the kernel orders the socket's data), and closed is only
    // read back through this same word.
    if (s.compare_exchange_weak(v, final, std::memory_order_relaxed)) return false;
  }
}

// park_current's commit: runs on the far side of the switch, with the fiber
// saved. Publishes the registration, or declines (the fiber runs on at once).
bool commit_wait(void* arg, Fiber* self) {
  auto* iw = static_cast<IoWaitCore*>(arg);
  auto& s = iw->d->slot[iw->dir];
  const bool can_end = iw->can_end;  // read before the fiber can be resumed
  const auto me = reinterpret_cast<std::uintptr_t>(self);
  auto done = [iw, can_end](bool parked) {
    // release: the fiber's acquire spin on `committed` orders our reads of
    // its record before it leaves the frame.
    if (can_end) static_cast<IoWait*>(iw)->committed.store(true, std::memory_order_release);
    return parked;
  };
  std::uintptr_t v = slot::kNone;
  for (;;) {
    if (v == slot::kNone) {
      // seq_cst: release publishes our saved context to the waker's acquire
      // CAS; and it is the store half of a store-load pair with the timer and
      // the stop callback: they set `ended` and then CAS the slot (seq_cst),
      // we set the slot and then read `ended` (seq_cst). One sees the other.
      if (s.compare_exchange_weak(v, me, std::memory_order_seq_cst, std::memory_order_relaxed))
        break;
      continue;
    }
    if (v == slot::kReady) {
      // relaxed: consuming readiness publishes nothing (see hand_over).
      if (s.compare_exchange_weak(v, slot::kNone, std::memory_order_relaxed)) return done(false);
      continue;
    }
    if (v != slot::kClosed) iw->busy = true;  // another fiber waits here
    return done(false);
  }
  if (!can_end) return true;  // published: not one more touch of iw
  if (static_cast<IoWait*>(iw)->ended.load(std::memory_order_seq_cst) != 0) {
    // The deadline passed (or a stop was requested) before we were
    // registered: withdraw, unless a waker has claimed us already (then it
    // wakes us).
    std::uintptr_t expect = me;
    if (s.compare_exchange_strong(expect, slot::kNone, std::memory_order_relaxed))
      return done(false);
  }
  return done(true);
}

// Ends a wait early (deadline or stop request): wakes the fiber only if it
// is still parked in the slot. `done` runs once iw is no longer needed.
template <class Done>
void end_wait(IoWait* iw, std::uint32_t why, Done done) noexcept {
  auto& s = iw->d->slot[iw->dir];
  Fiber* f = iw->self;
  const auto me = reinterpret_cast<std::uintptr_t>(f);
  iw->ended.fetch_or(why, std::memory_order_seq_cst);  // see commit_wait
  std::uintptr_t expect = me;
  const bool claimed = s.compare_exchange_strong(
      expect, me | slot::kWaking, std::memory_order_seq_cst, std::memory_order_relaxed);
  done();  // iw (on the fiber's stack) may be gone after this
  if (claimed) {
    wake(current_worker(), f);
    s.store(slot::kNone, std::memory_order_release);  // see hand_over
  }
}

// Timer::fire for a deadline on a wait.
void fire_wait(Timer* t) {
  end_wait(static_cast<IoWait*>(t->arg), kTimedOutBit, [t] { timer_fired(*t); });
}

// The stop token's callback. The fiber's ~stop_callback waits for it to
// return, so iw stays valid throughout.
struct CancelWait {
  IoWait* iw;
  void operator()() const noexcept {
    end_wait(iw, kCancelledBit, [] {});
  }
};

// A thread that runs no fiber waits with poll(2).
WaitResult wait_thread(Descriptor* d, Direction dir, std::int64_t deadline) {
  for (;;) {
    int ms = -1;
    if (deadline != kNoDeadline) {
      std::int64_t left = deadline - now_ns();
      if (left <= 0) return WaitResult::kTimedOut;
      ms = left / 1'000'000 + 1 > INT_MAX ? INT_MAX : static_cast<int>(left / 1'000'000 + 1);
    }
    pollfd p{d->fileno(), static_cast<short>(dir == kRead ? POLLIN : POLLOUT), 0};
    int r = ::poll(&p, 1, ms);
    // relaxed: a glance at the sticky closed state, nothing more.
    if (d->slot[dir].load(std::memory_order_relaxed) == slot::kClosed) return WaitResult::kClosed;
    if (r > 0) return WaitResult::kReady;
  }
}

// Runtime shutdown unwinds a parked fiber: withdraw its registration, so that
// no waker ever touches its frame again.
void withdraw(std::atomic<std::uintptr_t>& s, std::uintptr_t me) noexcept {
  for (;;) {
    std::uintptr_t cur = settle(s, me);
    if (cur != me) return;
    // relaxed: our own registration, which nobody else may now take.
    if (s.compare_exchange_strong(cur, slot::kNone, std::memory_order_relaxed)) return;
  }
}

// What a resumed wait reports, once no waker is half-way through waking it;
// `ended` is why it may have ended early (0 if it cannot).
WaitResult outcome(std::atomic<std::uintptr_t>& s, std::uintptr_t me, bool busy,
                   std::uint32_t ended) noexcept {
  std::uintptr_t v = settle(s, me);
  if (v == slot::kClosed) return WaitResult::kClosed;
  if (v == slot::kReady) {
    // relaxed: see hand_over. If this fails the slot became kClosed, which
    // the caller's next wait reports.
    s.compare_exchange_strong(v, slot::kNone, std::memory_order_relaxed);
    return WaitResult::kReady;
  }
  if (busy) return WaitResult::kBusy;
  if (ended & kCancelledBit) return WaitResult::kCancelled;
  if (ended & kTimedOutBit) return WaitResult::kTimedOut;
  return WaitResult::kReady;  // woken with nothing to report: the caller retries
}

// The common wait: no deadline and no stop token, so only the slot can end
// it. No timer, no stop callback and no hand-shake with the commit, and so a
// small frame. That matters because a fiber resumed after a long wait reads
// every stack line between its switch and the blocking call, each gone cold,
// and writes the lines below on its way down to the next wait: in the echo
// server at 1,000 connections those lines were most of chronos's own cache
// misses per request, and the general wait's frame alone was four of them.
[[gnu::noinline]] WaitResult wait_plain(Worker* w, Descriptor* d, Direction dir) {
  IoWaitCore iw;
  iw.site.fd = d->fileno();
  iw.site.write = dir == kWrite;
  iw.d = d;
  iw.dir = dir;
  auto& s = d->slot[dir];
  const auto me = reinterpret_cast<std::uintptr_t>(w->current);
  w->io_waits.bump();
  try {
    park_current(w, WaitKind::kIo, &iw.site, &commit_wait, static_cast<IoWaitCore*>(&iw));
  } catch (const FiberUnwind&) {
    withdraw(s, me);
    throw;
  }
  return outcome(s, me, iw.busy, 0);
}

// A wait that a deadline or the fiber's stop token may end early (wait_io
// sends no other here, so can_end is always set).
[[gnu::noinline]] WaitResult wait_ending(Worker* w, Descriptor* d, Direction dir,
                                         std::int64_t deadline) {
  auto& s = d->slot[dir];
  IoWait iw;
  iw.d = d;
  iw.dir = dir;
  iw.self = w->current;
  const auto me = reinterpret_cast<std::uintptr_t>(w->current);
  // The fiber's stop token (stable while it runs), looked at only if it has
  // one: the common fiber's wait touches no cold line of its TCB.
  const bool stoppable = w->current->stop_possible();
  if (stoppable && w->current->stop.stop_requested()) return WaitResult::kCancelled;
  const bool timed = deadline != kNoDeadline;
  if (timed && now_ns() >= deadline) return WaitResult::kTimedOut;
  // Constructed only when a stop is possible: no allocation either way.
  std::optional<std::stop_callback<CancelWait>> on_stop;
  if (stoppable) on_stop.emplace(w->current->stop, CancelWait{&iw});
  iw.can_end = true;
  if (timed) {
    iw.timer.deadline = deadline;
    iw.timer.fire = &fire_wait;
    iw.timer.arg = &iw;
    timer_arm(iw.timer);
  }
  // The commit may still be reading our record when a waker resumes us.
  auto await_commit = [&iw] {
    Backoff backoff(kHandOffSpins);
    // acquire: see commit_wait's done().
    while (!iw.committed.load(std::memory_order_acquire)) backoff();
  };
  w->io_waits.bump();
  iw.site.fd = d->fileno();
  iw.site.write = dir == kWrite;
  try {
    park_current(w, WaitKind::kIo, &iw.site, &commit_wait, static_cast<IoWaitCore*>(&iw));
  } catch (const FiberUnwind&) {
    await_commit();
    withdraw(s, me);
    if (timed) timer_cancel(iw.timer);
    throw;  // on_stop's destructor waits out a running stop callback
  }
  await_commit();
  // After timer_cancel, fire() is done with iw (it may still be finishing
  // its wake and the slot's store: outcome() waits that out); after
  // on_stop.reset(), no stop callback is running.
  if (timed) timer_cancel(iw.timer);
  on_stop.reset();
  // relaxed: fire() set it before letting go of iw (timer_fired's release,
  // which timer_cancel acquired), and the stop callback before returning.
  return outcome(s, me, iw.busy, iw.ended.load(std::memory_order_relaxed));
}

}  // namespace

WaitResult wait_io(Descriptor* d, Direction dir, std::int64_t deadline) {
  auto& s = d->slot[dir];
  // The fast path: readiness that arrived since the last EAGAIN.
  // relaxed: see hand_over (readiness publishes no data of ours).
  std::uintptr_t v = s.load(std::memory_order_relaxed);
  if (v == slot::kReady && s.compare_exchange_strong(v, slot::kNone, std::memory_order_relaxed))
    return WaitResult::kReady;
  if (v == slot::kClosed) return WaitResult::kClosed;
  if (slot::is_fiber(v)) return WaitResult::kBusy;

  Worker* w = current_worker();
  if (!w || w->current == &w->main) return wait_thread(d, dir, deadline);
  // Tail calls when optimised: this function then leaves no frame of its own
  // under the wait.
  if (deadline == kNoDeadline && !w->current->stop_possible()) return wait_plain(w, d, dir);
  return wait_ending(w, d, dir, deadline);
}

bool notify_ready(Worker* w, Descriptor* d, Direction dir) noexcept {
  return hand_over(w, d->slot[dir], slot::kReady);
}

void notify_closed(Worker* w, Descriptor* d, Direction dir) noexcept {
  hand_over(w, d->slot[dir], slot::kClosed);
}

}  // namespace chronos::detail
