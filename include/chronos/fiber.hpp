// chronos/fiber.hpp: spawning, yielding and joining fibers.
//
//   chronos::JoinHandle<int> h = chronos::go([] { chronos::yield(); return 21; });
//   int v = h.join();   // parks this fiber until h's fiber returns; rethrows its exception
//
// go() and yield() must be called from inside a fiber (Runtime::block_on or
// Runtime::spawn start the first one); elsewhere they throw std::logic_error.
#pragma once

#include <chronos/cancel.hpp>
#include <chronos/config.hpp>
#include <chronos/detail/spawn.hpp>
#include <chronos/export.hpp>

#include <stdexcept>
#include <utility>

namespace chronos {

// Owns the right to join one fiber. Move-only. Destroying a handle that was
// not joined detaches the fiber, as in Go: it runs on, and its result is
// dropped. If it threw, Config::on_uncaught sees the exception.
template <class T>
class JoinHandle {
 public:
  JoinHandle() = default;
  // Used by go() and Runtime::spawn: `take` moves the result out of the payload.
  JoinHandle(detail::Fiber* f, T (*take)(void*)) noexcept : f_(f), take_(take) {}
  JoinHandle(JoinHandle&& o) noexcept : f_(std::exchange(o.f_, nullptr)), take_(o.take_) {}
  JoinHandle& operator=(JoinHandle&& o) noexcept {
    if (this != &o) {
      detach();
      f_ = std::exchange(o.f_, nullptr);
      take_ = o.take_;
    }
    return *this;
  }
  JoinHandle(const JoinHandle&) = delete;
  JoinHandle& operator=(const JoinHandle&) = delete;
  ~JoinHandle() { detach(); }

  // Waits for the fiber to finish and returns its result, or rethrows the
  // exception that escaped it. Inside a fiber this parks the calling fiber;
  // on a plain thread it blocks the thread. The handle is empty afterwards,
  // unless the join itself was cancelled (chronos::Cancelled: the calling
  // fiber's stop token), which leaves it joinable.
  T join() {
    if (!f_) throw std::logic_error("chronos: join() on an empty JoinHandle");
    detail::Fiber* f = std::exchange(f_, nullptr);
    void* payload;
    try {
      payload = detail::fiber_wait(f);
    } catch (const Cancelled&) {  // our stop token: the handle stays joinable
      f_ = f;
      throw;
    } catch (...) {  // the joiner is being unwound at runtime shutdown
      detail::fiber_detach(f);
      throw;
    }
    struct Release {  // runs after the result has been moved out
      detail::Fiber* f;
      ~Release() { detail::fiber_release(f); }
    } release{f};
    detail::fiber_rethrow(f);
    return take_(payload);
  }

  // True once the fiber has finished (returned or thrown). Never blocks.
  bool done() const noexcept { return f_ && detail::fiber_done(f_); }

  // Lets the fiber run on unobserved. The handle is empty afterwards.
  void detach() noexcept {
    if (f_) detail::fiber_detach(std::exchange(f_, nullptr));
  }

  bool joinable() const noexcept { return f_ != nullptr; }
  explicit operator bool() const noexcept { return f_ != nullptr; }
  FiberId id() const noexcept { return f_ ? detail::fiber_id(f_) : 0; }

 private:
  detail::Fiber* f_ = nullptr;
  T (*take_)(void*) = nullptr;
};

namespace detail {

template <class P>
auto take_result(void* payload) {
  return static_cast<P*>(payload)->take();
}

template <class F>
auto spawn_handle(const SpawnOptions& opts, F&& fn, Runtime* rt) {
  using P = typename PayloadFor<F>::type;
  using R = ResultOf<F>;
  const PayloadOps* ops = &OpsFor<P, F&&>::ops;
  void* src = const_cast<void*>(static_cast<const void*>(std::addressof(fn)));
  Fiber* f = rt ? spawn_into(*rt, opts, ops, src) : spawn_here(opts, ops, src);
  // A detached fiber may have run and been freed already: no handle to it.
  return JoinHandle<R>(opts.detached ? nullptr : f, &take_result<P>);
}

}  // namespace detail

// Spawns a fiber on the current worker. Must be called from a fiber.
template <class F>
auto go(F&& fn) {
  return detail::spawn_handle(SpawnOptions{}, std::forward<F>(fn), nullptr);
}

template <class F>
auto go(const SpawnOptions& opts, F&& fn) {
  return detail::spawn_handle(opts, std::forward<F>(fn), nullptr);
}

// Lets every other runnable fiber on this worker run once, then resumes.
// Returns at once if nothing else is runnable. Must be called from a fiber.
CHRONOS_API void yield();

namespace this_fiber {
// The running fiber's id; 0 on a thread that is not running a fiber.
CHRONOS_API FiberId id() noexcept;
// The running fiber's name (empty if none or outside a fiber).
CHRONOS_API std::string_view name() noexcept;
}  // namespace this_fiber

}  // namespace chronos
