// sched/registry.cpp: the list of live runtimes (sched/registry.hpp).
#include "sched/registry.hpp"

#include "sched/runtime_impl.hpp"

extern "C" {
[[gnu::used]] chronos::detail::RuntimeImpl* volatile chronos_debug_runtimes = nullptr;
#if defined(CHRONOS_CONTEXT_BOOST)
[[gnu::used]] const char chronos_debug_switch[] = "fcontext";
#elif defined(CHRONOS_SWITCH_INLINE)
[[gnu::used]] const char chronos_debug_switch[] = "inline";
#else
[[gnu::used]] const char chronos_debug_switch[] = "asm";
#endif

// sched/gdb_autoload.S: its .debug_gdb_scripts entry asks gdb to load
// tools/gdb/chronos.py. A static library contributes that object only if
// something refers to it: this does, from a file every runtime links.
extern const char chronos_gdb_autoload;
[[gnu::used]] const char* const chronos_gdb_autoload_ref = &chronos_gdb_autoload;
}

namespace chronos::detail {

RuntimeList& runtime_list() noexcept {
  static RuntimeList list;
  return list;
}

void register_runtime(RuntimeImpl* rt) {
  RuntimeList& l = runtime_list();
  std::lock_guard lock(l.mu);
  rt->next_runtime_ = l.head;
  l.head = rt;
  chronos_debug_runtimes = l.head;
}

void unregister_runtime(RuntimeImpl* rt) noexcept {
  RuntimeList& l = runtime_list();
  std::lock_guard lock(l.mu);
  for (RuntimeImpl** p = &l.head; *p; p = &(*p)->next_runtime_) {
    if (*p == rt) {
      *p = rt->next_runtime_;
      break;
    }
  }
  chronos_debug_runtimes = l.head;
}

}  // namespace chronos::detail
