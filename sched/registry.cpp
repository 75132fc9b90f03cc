// sched/registry.cpp: the list of live runtimes (sched/registry.hpp).
#include "sched/registry.hpp"

#include <pthread.h>

#include <atomic>

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

namespace {
// relaxed: it changes only in a child, before that child does anything else.
std::atomic<std::uint32_t> g_fork_generation{0};

void before_fork() noexcept {
  runtime_list().mu.lock();
}
void after_fork_in_parent() noexcept {
  runtime_list().mu.unlock();
}
void after_fork_in_child() noexcept {
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
  runtime_list().mu.unlock();  // taken by this thread in before_fork
}
}  // namespace

RuntimeList& runtime_list() noexcept {
  static RuntimeList list;
  return list;
}

std::uint32_t fork_generation() noexcept {
  return g_fork_generation.load(std::memory_order_relaxed);
}

void retire_forked(RuntimeImpl* rt) noexcept {
  unregister_runtime(rt);
  static RuntimeImpl* retired = nullptr;  // linked as the list is, so it stays reachable
  std::lock_guard lock(runtime_list().mu);
  rt->next_runtime_ = retired;
  retired = rt;
}

void watch_forks() {
  static std::once_flag once;
  std::call_once(once, [] {
    runtime_list();  // constructed before any fork handler can use it
    ::pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child);
  });
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
