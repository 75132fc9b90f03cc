// fiber/tcb.cpp: setting up a pooled TCB for a new fiber.
#include "fiber/tcb.hpp"

#include <algorithm>
#include <cstring>

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
                Stack* eager, arch::EntryFn entry, const void* queue) {
  // Eager: the payload goes right below the stack's header, the stack below
  // the payload. Lazy: the payload goes in the TCB.
  void* payload = f->inline_payload;
  if (eager) {
    auto top = reinterpret_cast<std::uintptr_t>(eager->top());
    payload = reinterpret_cast<void*>((top - ops->size) & ~(std::uintptr_t{ops->align} - 1));
  }
  ops->construct(payload, src);  // may throw: nothing changed yet

  f->ops = ops;
  f->payload = payload;
  f->id = id;
  // (Published with the fiber: nobody can see it before it is queued.)
  f->join.store(opts.detached ? join_word::kDetached : 0, std::memory_order_relaxed);
  f->wait_kind = WaitKind::kNone;
  f->unwinding = false;
  f->eager = eager != nullptr;
  f->next = nullptr;
  f->ctx = nullptr;
  // The name: copied only when there is one, cleared only when a previous
  // fiber left one, so that an unnamed spawn does not touch the cold line.
  if (std::size_t n = std::min(opts.name.size(), kNameCapacity - 1);
      n || (f->cold & Fiber::kColdName)) {
    if (n) std::memcpy(f->name, opts.name.data(), n);  // data() may be null when empty
    f->name[n] = '\0';
    f->cold =
        static_cast<std::uint8_t>(n ? f->cold | Fiber::kColdName : f->cold & ~Fiber::kColdName);
  }
  f->state.store(state_word::pack(FiberState::kReady, queue, opts.priority, opts.small_stack,
                                  opts.preserve_fp_env),
                 std::memory_order_relaxed);
  if (opts.stop_token.stop_possible()) {
    f->stop = opts.stop_token;  // (retire_fiber empties it)
    f->cold |= Fiber::kColdStop;
  }
  if (opts.preserve_fp_env) {
    f->fp_mxcsr = 0x1F80;  // a fresh fiber starts from the psABI defaults
    f->fp_x87_cw = 0x037F;
  }
  arch::sanitizer_init_fiber(f->san);
  if (eager) bind_stack(f, eager, entry);
}

void bind_stack(Fiber* f, Stack* s, arch::EntryFn entry) noexcept {
  char* top = stack_top(f, s);
  const auto size = static_cast<std::size_t>(top - s->lo);
  f->stack = s;
  f->stack_lo = s->lo;
  f->ctx = arch::make(top, size, entry);
  arch::sanitizer_set_stack(f->san, s->lo, size);
}

Stack* unbind_stack(Fiber* f) noexcept {
  Stack* s = f->stack;
  f->stack = nullptr;
#if CHRONOS_ASAN
  // Frames that never returned (the entry's) leave poisoned redzones behind;
  // the next fiber on this stack must not trip over them.
  ASAN_UNPOISON_MEMORY_REGION(s->lo, s->size());
#endif
  return s;
}

void destroy_payload(Fiber* f) noexcept {
  if (f->ops) {
    f->ops->destroy(f->payload);
    f->ops = nullptr;
  }
  if (f->error) f->error = nullptr;  // read, not written, on the common path (warm line)
}

Stack* retire_fiber(Fiber* f) noexcept {
  destroy_payload(f);
  arch::sanitizer_destroy_fiber(f->san);
  if (f->cold & Fiber::kColdStop) {
    f->stop = {};
    f->cold &= ~Fiber::kColdStop;
  }
  return f->eager && f->stack ? unbind_stack(f) : nullptr;
}

}  // namespace chronos::detail
