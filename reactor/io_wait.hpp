// reactor/io_wait.hpp: parking a fiber until an fd is ready, and waking it.
//
// The wait slot
// -------------
// Each descriptor has a reader slot and a writer slot, one atomic word each:
//
//   kNone     nobody waits, no readiness pending
//   kReady    readiness arrived while nobody waited; the next wait consumes it
//   kClosed   the descriptor was closed (sticky until the descriptor is reused)
//   F         fiber F is parked here (a Fiber*, 64-byte aligned)
//   F|kWaking a waker has claimed F and is between its CAS and its final store
//
// Transitions (who: what):
//   waiter, before parking: kReady -> kNone (consume; retry the system call)
//   waiter's commit, after the switch: kNone -> F; or kReady -> kNone and
//       decline the park (the fiber is readied at once); kClosed: decline
//   epoll event:  kNone -> kReady;  F -> F|kWaking -> (wake F) -> kReady
//   close:        kNone/kReady -> kClosed;  F -> F|kWaking -> (wake F) -> kClosed
//   deadline, stop request: F -> F|kWaking -> (wake F) -> kNone, only if F is
//       still there (the reason goes in the waiter's record first)
//   waiter, after resuming: waits out F|kWaking (a few instructions of the
//       waker), then kReady -> kNone and retries, kClosed -> EBADF, kNone ->
//       cancelled or timed out if that ended it, else retry.
//
// Why the edge-triggered wake-up is never lost: a fiber parks only after its
// system call returned EAGAIN. An event after that EAGAIN either finds the
// slot kNone (it leaves kReady, which the commit consumes and declines the
// park) or finds F (it wakes F). The slot word is the single point where the
// event and the parking fiber meet, and every transition is a CAS on it.
//
// Why kWaking: between a waker's claim of F and its wake(F), F cannot run,
// except when runtime shutdown unwinds it. The unwinding fiber waits out
// kWaking before it leaves its frame, so a waker never touches a fiber that
// has finished (and whose TCB may be reused).
//
// Cost per wait: no allocation (the wait record is on the parked fiber's
// stack: 32 bytes for the common wait, which nothing but the slot can end;
// with a Timer and a stop callback only for a wait that a deadline or a stop
// token can end); a CAS to publish, a CAS and a store to wake, one exchange
// to consume; plus timer_arm/timer_cancel when a deadline is set.
#pragma once

#include <cstdint>

#include "reactor/descriptor.hpp"

namespace chronos::detail {

struct Fiber;
class Worker;

namespace slot {
inline constexpr std::uintptr_t kNone = 0;
inline constexpr std::uintptr_t kReady = 1;
inline constexpr std::uintptr_t kClosed = 2;
inline constexpr std::uintptr_t kWaking = 4;  // or'ed into a Fiber*
// A parked fiber (perhaps with kWaking), not one of the values above.
inline constexpr bool is_fiber(std::uintptr_t v) noexcept {
  return v > kWaking;
}
}  // namespace slot

enum Direction : int { kRead = 0, kWrite = 1 };

// kBusy: another fiber already waits in this slot (one reader and one writer
// per socket at a time). kCancelled: the fiber's stop token was triggered
// (chronos/cancel.hpp).
enum class WaitResult { kReady, kClosed, kTimedOut, kBusy, kCancelled };

// Parks the calling fiber until d's slot `dir` is ready, the descriptor is
// closed, deadline (now_ns() clock; kNoDeadline for none) passes, or the
// fiber's stop token is triggered. Returns
// at once with kReady if readiness is pending. Must run in a fiber. Throws
// FiberUnwind at runtime shutdown, after withdrawing the registration.
WaitResult wait_io(Descriptor* d, Direction dir, std::int64_t deadline);

// An epoll event for d's slot: records readiness or wakes the parked fiber on
// w (null: from a plain thread, through the injection queue). Returns true if
// it woke a fiber.
bool notify_ready(Worker* w, Descriptor* d, Direction dir) noexcept;

// A hint that an event for d's slot `dir` is about to be handled: fetch the
// TCB of the fiber parked there, if any, which notify_ready will read and
// write. The slot's value is only a guess (relaxed; the fiber may leave, and
// its TCB be reused), which a prefetch may act on: it never faults.
inline void prefetch_waiter(const Descriptor* d, Direction dir) noexcept {
  const std::uintptr_t v = d->slot[dir].load(std::memory_order_relaxed);
  if (slot::is_fiber(v))
    __builtin_prefetch(reinterpret_cast<const void*>(v & ~slot::kWaking), 1, 3);
}

// Close: marks the slot closed, waking its fiber if one is parked.
void notify_closed(Worker* w, Descriptor* d, Direction dir) noexcept;

}  // namespace chronos::detail
