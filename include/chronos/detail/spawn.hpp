// chronos/detail/spawn.hpp: the type-erased glue between the templates in the
// public headers and the library. Not part of the API.
//
// A fiber's callable and its result live together in a Payload, which the
// library places in the TCB when it fits (32 bytes, small-stack fibers) and
// otherwise on the fiber's stack, just below the stack's header (fiber/tcb.hpp,
// "Binding"): a spawn allocates nothing, whatever the callable's size, up to
// kMaxInlinePayload. A larger payload is boxed on the heap once.
#pragma once

#include <chronos/config.hpp>
#include <chronos/export.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace chronos {
class Runtime;
}

namespace chronos::detail {

struct Fiber;  // the TCB, fiber/tcb.hpp

inline constexpr std::size_t kMaxInlinePayload = 1024;

struct PayloadOps {
  void (*construct)(void* dst, void* src);  // move/copy the callable in; may throw
  void (*run)(void* payload);               // call it, store the result; may throw
  void (*destroy)(void* payload);           // destroy what is left; null if trivial
  std::size_t size;
  std::size_t align;
};

// The callable, then its result. `fn` is destroyed on the fiber itself, as
// soon as it returns or throws, so that what it captured is released in fiber
// context; the result stays until the JoinHandle takes it or is dropped.
template <class F, class R>
struct Payload {
  enum State : unsigned char { kFnAlive, kEmpty, kValue };
  union {
    F fn;
  };
  union {
    R value;
  };
  State state = kFnAlive;
  // Whether ~Payload does nothing, whatever the state.
  static constexpr bool kTrivial =
      std::is_trivially_destructible_v<F> && std::is_trivially_destructible_v<R>;

  explicit Payload(F&& f) : fn(std::move(f)) {}
  explicit Payload(const F& f) : fn(f) {}
  Payload(const Payload&) = delete;
  ~Payload() {
    if (state == kFnAlive) fn.~F();
    if (state == kValue) value.~R();
  }

  void run() {
    bool ok = false;
    struct Guard {  // the callable dies on the fiber, whether it returned or threw
      Payload& p;
      bool& ok;
      ~Guard() {
        p.fn.~F();
        p.state = ok ? kValue : kEmpty;
      }
    } guard{*this, ok};
    ::new (static_cast<void*>(std::addressof(value))) R(std::invoke(std::move(fn)));
    ok = true;
  }
  R take() { return std::move(value); }
};

template <class F>
struct Payload<F, void> {
  enum State : unsigned char { kFnAlive, kEmpty };
  union {
    F fn;
  };
  State state = kFnAlive;
  static constexpr bool kTrivial = std::is_trivially_destructible_v<F>;

  explicit Payload(F&& f) : fn(std::move(f)) {}
  explicit Payload(const F& f) : fn(f) {}
  Payload(const Payload&) = delete;
  ~Payload() {
    if (state == kFnAlive) fn.~F();
  }
  void run() {
    struct Guard {
      Payload& p;
      ~Guard() {
        p.fn.~F();
        p.state = kEmpty;
      }
    } guard{*this};
    std::invoke(std::move(fn));
  }
  void take() {}
};

// A payload too large to place on the stack: one heap allocation.
template <class P>
struct Boxed {
  static constexpr bool kTrivial = false;
  std::unique_ptr<P> p;
  template <class Src>
  explicit Boxed(Src&& src) : p(std::make_unique<P>(std::forward<Src>(src))) {}
  void run() { p->run(); }
  auto take() { return p->take(); }
};

template <class F>
using ResultOf = std::invoke_result_t<std::decay_t<F>&&>;

template <class F>
struct PayloadFor {
  using Fn = std::decay_t<F>;
  using R = ResultOf<F>;
  static_assert(!std::is_reference_v<R>,
                "chronos: a fiber cannot return a reference; return a value or a pointer");
  using Inline = Payload<Fn, R>;
  using type = std::conditional_t<(sizeof(Inline) <= kMaxInlinePayload &&
                                   alignof(Inline) <= alignof(std::max_align_t)),
                                  Inline, Boxed<Inline>>;
};

template <class P, class Src>
struct OpsFor {
  static void construct(void* dst, void* src) {
    ::new (dst) P(std::forward<Src>(*static_cast<std::remove_reference_t<Src>*>(src)));
  }
  static void run(void* p) { static_cast<P*>(p)->run(); }
  static void destroy(void* p) { static_cast<P*>(p)->~P(); }
  // destroy is null when there is nothing to destroy: the exit path then
  // skips an indirect call.
  static constexpr PayloadOps ops{&construct, &run, P::kTrivial ? nullptr : &destroy, sizeof(P),
                                  alignof(P)};
};

// Spawns from inside a fiber, onto the current worker. Throws std::logic_error
// outside a fiber.
CHRONOS_API Fiber* spawn_here(const SpawnOptions& opts, const PayloadOps* ops, void* src);
// Spawns from any thread through the runtime's injection queue.
CHRONOS_API Fiber* spawn_into(Runtime& rt, const SpawnOptions& opts, const PayloadOps* ops,
                              void* src);

// Waits until the fiber has finished: parks a fiber, blocks a plain thread.
// Returns its payload.
CHRONOS_API void* fiber_wait(Fiber* f);
// Rethrows the exception that escaped the fiber, if any (after fiber_wait).
CHRONOS_API void fiber_rethrow(Fiber* f);
// Drops the JoinHandle's reference after a join.
CHRONOS_API void fiber_release(Fiber* f);
// Drops the JoinHandle's reference without a join.
CHRONOS_API void fiber_detach(Fiber* f) noexcept;
CHRONOS_API bool fiber_done(const Fiber* f) noexcept;
CHRONOS_API std::uint64_t fiber_id(const Fiber* f) noexcept;

}  // namespace chronos::detail
