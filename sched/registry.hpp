// sched/registry.hpp: every live runtime, for what looks at fibers from
// outside the scheduler: fiber dumps (sched/dump.cpp), the monitor thread
// (sched/monitor.cpp) and the gdb extension (tools/gdb/chronos.py).
//
// The list is intrusive (RuntimeImpl::next_runtime_) and changes only when a
// runtime is created or destroyed, under a mutex; nothing on a hot path
// touches it. gdb reads it without that mutex, from a stopped process.
#pragma once

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
