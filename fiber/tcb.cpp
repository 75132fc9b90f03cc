// fiber/tcb.cpp: setting up a pooled TCB for a new fiber.
#include "fiber/tcb.hpp"

#include <algorithm>
#include <cstring>

#include "fiber/stack_pool.hpp"

#if CHRONOS_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace chronos::detail {

const char* to_string(FiberState s) noexcept {
  switch (s) {
    case FiberState::kReady:
      return "ready";
    case FiberState::kRunning:
      return "running";
    case FiberState::kWaiting:
      return "waiting";
    case FiberState::kDone:
      return "done";
  }
  return "?";
}

void init_fiber(Fiber* f, const SpawnOptions& opts, const PayloadOps* ops, void* src, FiberId id,
                arch::EntryFn entry) {
  // The payload goes right below the TCB, the stack below the payload.
  auto top = reinterpret_cast<std::uintptr_t>(f);
  auto payload = (top - ops->size) & ~(std::uintptr_t{ops->align} - 1);
  ops->construct(reinterpret_cast<void*>(payload), src);  // may throw: nothing changed yet

  f->ops = ops;
  f->payload = reinterpret_cast<void*>(payload);
  f->id = id;
  f->join.store(0, std::memory_order_relaxed);
  f->error = nullptr;
  f->wait_kind = WaitKind::kNone;
  f->unwinding = false;
  f->next = nullptr;
  std::size_t n = std::min(opts.name.size(), kNameCapacity - 1);
  if (n) std::memcpy(f->name, opts.name.data(), n);
  f->name[n] = '\0';
  f->state.store(state_word::pack(FiberState::kReady, nullptr, opts.priority, f->pool->small(),
                                  opts.preserve_fp_env),
                 std::memory_order_relaxed);
  if (opts.stop_token.stop_possible()) f->stop = opts.stop_token;  // (retire_fiber empties it)
  f->fp_mxcsr = 0x1F80;  // a fresh fiber starts from the psABI defaults
  f->fp_x87_cw = 0x037F;

  char* stack_top = reinterpret_cast<char*>(payload & ~std::uintptr_t{15});
  f->stack_size = static_cast<std::size_t>(stack_top - f->stack_lo);
  f->ctx = arch::make(stack_top, f->stack_size, entry);
  arch::sanitizer_init_fiber(f->san, f->stack_lo, f->stack_size);
}

void destroy_payload(Fiber* f) noexcept {
  if (f->ops) {
    f->ops->destroy(f->payload);
    f->ops = nullptr;
  }
  f->error = nullptr;
}

void retire_fiber(Fiber* f) noexcept {
  destroy_payload(f);
  arch::sanitizer_destroy_fiber(f->san);
  f->stop = {};
#if CHRONOS_ASAN
  // Frames that never returned (the entry's) leave poisoned redzones behind;
  // the next fiber on this stack must not trip over them.
  ASAN_UNPOISON_MEMORY_REGION(f->stack_lo, reinterpret_cast<char*>(f) - f->stack_lo);
#endif
}

}  // namespace chronos::detail
