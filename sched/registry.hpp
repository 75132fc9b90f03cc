// sched/registry.hpp: every live runtime, for what looks at fibers from
// outside the scheduler: fiber dumps (sched/dump.cpp), the monitor thread
// (sched/monitor.cpp) and the gdb extension (tools/gdb/chronos.py).
//
// The list is intrusive (RuntimeImpl::next_runtime_) and changes only when a
// runtime is created or destroyed, under a mutex; nothing on a hot path
// touches it. gdb reads it without that mutex, from a stopped process.
//
// fork(). In a forked child only the thread that called fork() runs: none of
// a runtime's workers, its monitor or its blocking-pool threads exist there.
// A child handler (pthread_atfork, registered with the first runtime) bumps
// a generation that each runtime compares with the one it was created under
// (RuntimeImpl::forked_away), so that using a parent's runtime in the child
// is a clear error instead of a wait for workers that do not exist, and its
// destructor lets it go instead of joining them. The list's mutex is held
// across fork(), so that the child never inherits it locked by a thread it
// does not have.
#pragma once

#include <cstdint>
#include <mutex>

namespace chronos::detail {

class RuntimeImpl;

struct RuntimeList {
  std::mutex mu;
  RuntimeImpl* head = nullptr;  // newest first, linked through RuntimeImpl::next_runtime_
};
RuntimeList& runtime_list() noexcept;

void register_runtime(RuntimeImpl* rt);
void unregister_runtime(RuntimeImpl* rt) noexcept;

// How many fork()s this process is removed from the first runtime's
// process: 0 there, 1 in its children, and so on.
std::uint32_t fork_generation() noexcept;
void watch_forks();  // registers the pthread_atfork handlers, once per process
// A parent's runtime in a forked child: out of the list, and kept (never
// freed: its threads' stacks and state are the parent's to release).
void retire_forked(RuntimeImpl* rt) noexcept;

}  // namespace chronos::detail

// For debuggers, by these names (plain C linkage, so a script needs no C++
// name lookup): the head of the runtime list, and how suspended contexts are
// laid out: "inline" (arch/switch_inline_x86_64.hpp), "asm"
// (arch/context_x86_64.hpp, SavedFrame) or "fcontext" (Boost; on x86-64 the
// same frame as "asm").
extern "C" {
extern chronos::detail::RuntimeImpl* volatile chronos_debug_runtimes;
extern const char chronos_debug_switch[];
}
