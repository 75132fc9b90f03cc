// sched/inspect.hpp: looking at fibers from outside them: snapshots for
// fiber dumps (chronos::dump_fibers) and for the deadlock detector.
//
// Where the fibers are. There is no list of all fibers (a shared list would
// cost every spawn a lock; scheduler.hpp, "Designs not taken"). The TCB
// pool knows every TCB it has carved, and one that holds no fiber reads Done,
// so a snapshot walks the pool (FiberPool::for_each_slot, which takes the
// pool's lock only to copy its list of chunks).
//
// What may be read. A Running or Ready fiber belongs to another thread: only
// its state word is read properly; its id and name are copied as a racy
// snapshot (arch::sanitizer_snapshot_reads_begin says why that is all right).
// A Waiting fiber is first held: one CAS sets the H bit of its state word
// (fiber/tcb.hpp), after which no waker can make it Ready, so its stack, its
// Waiter and the wait fields of its TCB stay put while they are read and its
// stack is walked. The hold is let go with a release store; a waker that met
// it spins until then (claim(), sched/switch.cpp). Waiting is published with
// release by the resumed side after the context was saved, and read here with
// acquire, so the saved context and stack are complete when held.
//
// Holding costs the walk of one stack (a few microseconds); symbols are looked
// up afterwards, with the fiber running again.
#pragma once

#include <chronos/config.hpp>

#include <compare>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "chronos/detail/waiter.hpp"
#include "fiber/tcb.hpp"

namespace chronos::detail {

struct FiberSnapshot {
  const Fiber* tcb = nullptr;
  FiberId id = 0;
  std::string name;
  FiberState state = FiberState::kReady;
  unsigned priority = 0;
  bool small_stack = false;
  int worker = -1;  // Running, or Ready in a worker's queues: its index
  // Waiting only:
  WaitKind kind = WaitKind::kNone;
  WaitReason reason = WaitReason::kOther;  // kSync
  const void* object = nullptr;            // kSync: the channel, mutex...
  FiberId joins = 0;                       // kJoin: the fiber it joins
  int fd = -1;                             // kIo
  bool io_write = false;                   // kIo
  std::int64_t waiting_ns = 0;             // how long it has waited (coarse)
  std::vector<void*> frames;               // its stack, innermost first
};

// What a fiber left out of a bounded snapshot is counted under: its state
// and, if Waiting, what it waits on (FiberSnapshot's fields, no text, so
// that counting a million costs a map lookup each).
struct WaitKey {
  FiberState state = FiberState::kReady;
  WaitKind kind = WaitKind::kNone;
  WaitReason reason = WaitReason::kOther;
  const void* object = nullptr;
  FiberId joins = 0;
  int fd = -1;
  bool io_write = false;
  auto operator<=>(const WaitKey&) const = default;
};
using WaitCounts = std::map<WaitKey, std::size_t>;

// Every live (not Done) fiber of rt, by id. backtraces: walk the Waiting
// ones' stacks. With `rest`, only the `keep` fibers with the lowest ids are
// returned (and only their stacks walked); each other fiber is counted in
// rest under what it waits on.
std::vector<FiberSnapshot> snapshot_fibers(RuntimeImpl* rt, bool backtraces,
                                           std::size_t keep = SIZE_MAX, WaitCounts* rest = nullptr);

// "channel recv 0x...", "fd 7 (read)", "join fiber 12", "sleep"...
std::string describe_wait(const WaitKey& k);

// The deadlock detector's question, asked of every live fiber without taking
// a snapshot: could any of them be woken by a timer, I/O or a thread outside
// the runtime that chronos can see (a spawn_blocking job), rather than only
// by another fiber? No allocation per fiber and no stack walk, so that a
// runtime with a million parked fibers answers it in milliseconds. Each
// Waiting fiber is held just long enough to read what it waits on.
enum class StuckScan {
  kNoFibers,  // no live fiber
  kAllStuck,  // every live fiber waits for something only another fiber can do
  kMayWake,   // some fiber waits on a timer, I/O or a spawn_blocking job
  kMoving,    // some fiber is not Waiting (or was woken while we looked)
};
// stuck: the number of fibers it found waiting on another fiber (all of the
// live ones when the verdict is kAllStuck).
StuckScan scan_for_deadlock(RuntimeImpl* rt, std::size_t& stuck);

// Writes a dump of every live runtime's fibers: one block per fiber with its
// id, name, state, priority, worker, wait and backtrace, Go style.
void write_dump(std::string& out);
// max_fibers: show at most this many fibers (the lowest ids) one by one, and
// count the rest by what they wait on.
void write_runtime_dump(RuntimeImpl* rt, std::string& out, std::size_t max_fibers = SIZE_MAX);

}  // namespace chronos::detail
