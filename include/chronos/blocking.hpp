// chronos/blocking.hpp: running blocking code without blocking a worker.
//
//   std::string text = chronos::spawn_blocking([&] { return read_whole_file(path); });
//
// spawn_blocking(fn) runs fn on the runtime's blocking pool, a separate,
// bounded set of threads (64 at most, started on demand), and parks the
// calling fiber until fn returns; it returns fn's result or rethrows its
// exception. Use it for file I/O, DNS, and libraries that block. Outside a
// fiber it simply calls fn.
#pragma once

#include <chronos/export.hpp>

#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

namespace chronos {

namespace detail {
// Runs fn(arg) on the calling fiber's runtime's blocking pool and parks until
// it has returned. fn must not throw.
CHRONOS_API void run_blocking(void (*fn)(void*), void* arg);
}  // namespace detail

template <class F>
auto spawn_blocking(F&& fn) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  static_assert(!std::is_reference_v<R>, "spawn_blocking: return a value, not a reference");
  struct Ctx {
    F* fn;
    std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> result{};
    std::exception_ptr error;
  } ctx{&fn, {}, nullptr};
  detail::run_blocking(
      [](void* p) {
        auto* c = static_cast<Ctx*>(p);
        try {
          if constexpr (std::is_void_v<R>) {
            std::invoke(*c->fn);
            c->result = true;
          } else {
            c->result.emplace(std::invoke(*c->fn));
          }
        } catch (...) {
          c->error = std::current_exception();
        }
      },
      &ctx);
  if (ctx.error) std::rethrow_exception(ctx.error);
  if constexpr (!std::is_void_v<R>) return std::move(*ctx.result);
}

}  // namespace chronos
