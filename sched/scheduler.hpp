// sched/scheduler.hpp: how chronos runs fibers. Read this first.
//
// Concepts
// --------
// A fiber is a function with its own stack (fiber/tcb.hpp). A worker is an OS
// thread, pinned to a CPU, that runs fibers one at a time (sched/worker.hpp).
// The runtime owns the workers, the stack pools and the injection queue
// (sched/runtime_impl.hpp). A fiber is in exactly one place at any moment:
// running on one worker, queued in one run queue (a worker's runnext, deque or
// yield queue, or the injection queue), parked in one wait registration, or
// done. Fibers migrate: an idle worker steals from a busy one's deques
// (sched/deque.hpp), and a fiber resumes wherever it was last queued.
//
// Switching
// ---------
// Fibers switch directly to one another: a yield between two fibers is one
// context switch, not two through a scheduler context. Each worker also has
// its own context (Worker::main, the thread's native stack), which runs the
// scheduler loop and is switched to only when there is nothing to run.
//
// Every switch goes through switch_to(), which hands the resumed side a
// SwitchRecord: who switched away, and what must happen to it now that its
// context is saved (PostAction). That is this file's central rule:
//
//   A fiber is published (queued, registered as a waiter, marked done) only
//   by the side that resumes after it has switched away, never by the fiber
//   itself.
//
// Publishing before the switch would let another thread resume, free or run
// the fiber while its registers are still being saved on its stack. Go does
// the same with mcall + gopark's unlockf; Boost.Context has ontop_fcontext.
// Here the record travels in the jump's data pointer, so both context
// backends need nothing beyond a plain jump. The record lives in the worker
// (Worker::switch_rec): the switcher fills it in just before the jump, and
// the resumed side, on the same thread, acts on it right after, before any
// other switch there can overwrite it. (It used to live on the switcher's
// stack: 56 more bytes of stack between a parked fiber's frames and its
// switch, which a resume after a long wait reads back cold.)
//
// Parking and waking
// ------------------
// park(commit, arg) switches away and then, on the other side, calls
// commit(arg, fiber) to register the fiber wherever it waits; if commit returns
// false (the event already happened) the fiber is made ready at once. A waker
// claims a parked fiber with one CAS of its state word from Waiting to Ready,
// so two wakers (an event and the shutdown unwinder, say) can never both
// queue it.
//
// Joining
// -------
// The join word (fiber/tcb.hpp) decides the race between a fiber's exit and
// its joiner. When a finishing fiber finds a fiber joiner already registered,
// it switches straight to it (the "hand-off"): a spawn+join on one worker is
// two switches and no queue traffic.
//
// Designs not taken
// -----------------
// * Always switching through the worker's own context (Go's g0, Boost.Fiber's
//   dispatcher): two switches per yield instead of one.
// * Publishing the fiber before switching, guarded by a "switching" spin flag
//   that the resumer waits on: it spins a core when the switch is preempted.
// * A global all-fibers list for shutdown and dumps: a shared lock or contended
//   line on every spawn. The TCB pool already knows every TCB; it is walked
//   instead, off the hot path.
// * A FIFO owner end (Go's and Tokio's run queues): the issue asks for
//   Chase-Lev, whose LIFO owner end keeps a fan-out's newest (cache-warm)
//   fibers local; yields get a FIFO of their own, and the fairness tick takes
//   the oldest fiber every 16th round, so nothing starves.
//
// Idle workers and the wake-up rule
// ---------------------------------
// A worker with nothing to run first spins (RuntimeImpl::spin_for_work):
// stealing, with a CPU pause (cpu_relax) between rounds, for a few microseconds
// (kSpinRounds), and only while fewer spin than half the workers awake (at
// least one, at most kMaxSpinners = 2: max_spinners), Go's rule for its
// spinning Ms. Then it sleeps on a futex (RuntimeImpl::idle_wait): it announces
// itself in `sleepers`, fences, then re-checks every queue before sleeping.
// Whoever queues work from outside pushes, fences, then checks `sleepers` and
// wakes one: one of the two always sees the other. A worker queueing on its own
// deque skips the fence (notify_work): a missed wake-up there only delays the
// fiber until its own worker gets to it. notify_work wakes a sleeper only when
// nobody spins, and hands it the spinning slot, which it holds until it finds
// work anywhere (its queues, a steal, timers, I/O); a spinner that finds work
// wakes the next. So a burst wakes as many workers as there is work for.
//
// Shutdown
// --------
// Runtime::shutdown() stops spawns from outside, then waits until the runtime
// is quiescent: every worker asleep, every queue empty, no timer armed, no
// blocking-pool job owing a wake-up (Poller::wakeups_owed). Fibers still
// alive then are parked, and nothing inside the runtime is left to wake
// them; an fd turning ready still may, even during the sweep. So each is won
// with the wakers' own CAS (Waiting -> Ready) before anything of it is
// touched, and one the reactor wins is left alone. The won are marked to
// unwind and only then queued, all at once, so that one unwinding early
// cannot resume another normally. Each park() then throws FiberUnwind,
// destructors run, and stacks go back to the pool. A join on such a fiber
// throws "unwound at shutdown". Then the workers exit.
#pragma once

#include <cstdint>

#include "fiber/tcb.hpp"
#include "sched/worker.hpp"

namespace chronos::detail {

// Thrown inside a parked fiber that is being unwound at runtime shutdown. Do
// not swallow it (as with abi::__forced_unwind): catch (...) must rethrow.
struct FiberUnwind {};

// Throws the std::logic_error for `what` (a chronos call that needs a fiber,
// "chronos::go()") made outside any fiber.
[[noreturn]] void throw_outside_fiber(const char* what);

// Parks the running fiber (see "Parking and waking"). Returns the worker the
// fiber resumed on. Throws FiberUnwind if resumed to be unwound.
// kind and on say what it waits on (fiber/tcb.hpp, WaitKind); a kIo waiter
// passes the IoSite in its frame.
Worker* park_current(Worker* w, WaitKind kind, const void* on, CommitFn commit, void* arg);

// Claims a parked fiber: Waiting -> Ready, or Running for a direct hand-off
// (w: the worker it will be ready on or run on, or null). False if it is not
// Waiting: someone else has claimed it. Waits out an inspection hold.
bool claim(Fiber* f, FiberState to, Worker* w) noexcept;

// Makes a parked fiber ready, from code running on worker w (any runtime's) or
// from a plain thread (w null). Returns false if someone else already woke it.
bool wake(Worker* w, Fiber* f) noexcept;

// The entry every fiber starts in (arch::make's entry function).
[[noreturn]] void fiber_main(arch::Transfer t);

// The scheduler loop's switch into a runnable fiber; returns when some fiber
// switches back to the loop.
void run_fiber(Worker* w, Fiber* f);

}  // namespace chronos::detail
