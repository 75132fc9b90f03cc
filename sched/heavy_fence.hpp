// sched/heavy_fence.hpp: the heavy side of an asymmetric fence.
//
// Some protocols have a fast side that runs millions of times a second and a
// slow side that runs almost never: a worker filling and emptying its
// runnext slot, and the monitor taking a fiber out of that slot when the
// worker is stuck (sched/worker.cpp, "Retaking runnext"). A Dekker-style
// handshake needs a store-load fence on both sides, and on x86-64 that is a
// locked instruction, about 20 cycles, on every fill and take. With
// membarrier(2) the slow side pays for both: MEMBARRIER_CMD_PRIVATE_EXPEDITED
// runs a full barrier on every CPU that runs a thread of this process (an
// IPI), and a thread that is not running passes one when it is switched
// back in. So the fast side needs only a compiler barrier
// (std::atomic_signal_fence) between its store and its load: every fast-side
// sequence either completed before the heavy fence, and its store is
// visible to whoever called it, or runs its load after it, and sees what the
// caller stored before the call. This is the technique of liburcu's
// "membarrier" flavour and folly's asymmetricHeavyBarrier.
//
// The kernel must support it (Linux 4.14) and the process must register
// once; heavy_fence_available() does both and says whether it worked
// (seccomp filters may forbid the call). Where it does not, the slow side
// must do without (the monitor then never retakes).
#pragma once

namespace chronos::detail {

// Registers this process for the expedited private membarrier, once per
// process; true if the kernel supports it and the registration succeeded.
// Thread-safe; later calls return the first answer.
bool heavy_fence_available() noexcept;

// A full memory barrier on every thread of this process, the caller included.
// Takes about a microsecond and interrupts every CPU running one of them.
// Only after heavy_fence_available() has returned true.
void heavy_fence() noexcept;

}  // namespace chronos::detail
