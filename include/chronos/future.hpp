// chronos/future.hpp: a one-shot value or exception, handed from one fiber or
// thread to another.
//
//   chronos::Promise<int> p;
//   chronos::Future<int> f = p.get_future();
//   std::thread([p = std::move(p)]() mutable { p.set_value(42); }).detach();
//   int v = f.get();   // in a fiber: parks it; on a plain thread: blocks the thread
//
// This is the bridge between threads and fibers both ways. Errors are the
// standard ones (std::future_error): a second set_* is
// promise_already_satisfied, a promise destroyed unset makes get() throw
// broken_promise, a second get_future() is future_already_retrieved. get()
// and the waits honour the fiber's stop token (chronos/cancel.hpp); a
// cancelled get() leaves the future valid. The shared state comes from a
// per-thread pool: no allocation in steady state.
#pragma once

#include <chronos/cancel.hpp>
#include <chronos/detail/wait_list.hpp>
#include <chronos/export.hpp>
#include <chronos/time.hpp>

#include <atomic>
#include <cstddef>
#include <exception>
#include <future>
#include <new>
#include <type_traits>
#include <utility>

namespace chronos {

template <class T>
class Future;

namespace detail {

// A small-object pool: per-thread free lists by size class, refilled from
// and spilled to a shared list in batches. Sizes above 512 bytes go to
// operator new.
CHRONOS_API void* pool_allocate(std::size_t size);
CHRONOS_API void pool_deallocate(void* p, std::size_t size) noexcept;

struct FutureStateBase {
  enum Status : std::uint8_t { kPending, kValue, kError };

  WaitList waiters;                    // its lock guards status and the value
  std::atomic<std::uint32_t> refs{1};  // the promise, and the future once retrieved
  Status status = kPending;
  bool retrieved = false;  // get_future() was called
  std::exception_ptr error;

  // With the lock held and status just set: wakes the waiter, unlocks.
  CHRONOS_API void publish() noexcept;
  // Parks until the status is set (true), the deadline passes (false), or
  // the fiber's stop token is triggered (throws Cancelled).
  CHRONOS_API bool wait_until_ns(std::int64_t deadline);
};

template <class T>
struct FutureState : FutureStateBase {
  using Stored = std::conditional_t<std::is_void_v<T>, char, T>;
  alignas(Stored) std::byte storage[sizeof(Stored)];
  Stored* value() noexcept { return std::launder(reinterpret_cast<Stored*>(storage)); }

  static FutureState* make() { return ::new (pool_allocate(sizeof(FutureState))) FutureState(); }
  void release() noexcept {
    // acq_rel: the last owner sees everything the other did before letting go.
    if (refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if constexpr (!std::is_void_v<T>)
      if (status == kValue) value()->~Stored();
    this->~FutureState();
    pool_deallocate(this, sizeof(FutureState));
  }
};

[[noreturn]] inline void throw_future(std::future_errc e) {
  throw std::future_error(e);
}

}  // namespace detail

template <class T>
class Promise {
 public:
  Promise() : s_(detail::FutureState<T>::make()) {}
  Promise(Promise&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Promise& operator=(Promise&& o) noexcept {
    if (this != &o) {
      abandon();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  Promise(const Promise&) = delete;
  Promise& operator=(const Promise&) = delete;
  ~Promise() { abandon(); }

  Future<T> get_future() {
    check();
    detail::wait_list_lock(s_->waiters);
    bool again = std::exchange(s_->retrieved, true);
    detail::wait_list_unlock(s_->waiters);
    if (again) detail::throw_future(std::future_errc::future_already_retrieved);
    s_->refs.fetch_add(1, std::memory_order_relaxed);  // (we hold one: no race to zero)
    return Future<T>(s_);
  }

  template <class... Args>
  void set_value(Args&&... args) {
    check();
    detail::wait_list_lock(s_->waiters);
    if (s_->status != detail::FutureStateBase::kPending) {
      detail::wait_list_unlock(s_->waiters);
      detail::throw_future(std::future_errc::promise_already_satisfied);
    }
    if constexpr (!std::is_void_v<T>) {
      try {
        ::new (s_->storage) T(std::forward<Args>(args)...);
      } catch (...) {
        detail::wait_list_unlock(s_->waiters);
        throw;
      }
    }
    s_->status = detail::FutureStateBase::kValue;
    s_->publish();
  }

  void set_exception(std::exception_ptr e) {
    check();
    detail::wait_list_lock(s_->waiters);
    if (s_->status != detail::FutureStateBase::kPending) {
      detail::wait_list_unlock(s_->waiters);
      detail::throw_future(std::future_errc::promise_already_satisfied);
    }
    s_->error = std::move(e);
    s_->status = detail::FutureStateBase::kError;
    s_->publish();
  }

 private:
  void check() const {
    if (!s_) detail::throw_future(std::future_errc::no_state);
  }
  void abandon() noexcept {
    if (!s_) return;
    detail::wait_list_lock(s_->waiters);
    if (s_->status == detail::FutureStateBase::kPending) {
      s_->error = std::make_exception_ptr(std::future_error(std::future_errc::broken_promise));
      s_->status = detail::FutureStateBase::kError;
      s_->publish();
    } else {
      detail::wait_list_unlock(s_->waiters);
    }
    std::exchange(s_, nullptr)->release();
  }

  detail::FutureState<T>* s_;
};

template <class T>
class Future {
 public:
  Future() = default;
  Future(Future&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Future& operator=(Future&& o) noexcept {
    if (this != &o) {
      if (s_) s_->release();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  Future(const Future&) = delete;
  Future& operator=(const Future&) = delete;
  ~Future() {
    if (s_) s_->release();
  }

  bool valid() const noexcept { return s_ != nullptr; }
  // True once a value or an exception is set. Never blocks.
  bool ready() const {
    check();
    detail::wait_list_lock(s_->waiters);
    bool r = s_->status != detail::FutureStateBase::kPending;
    detail::wait_list_unlock(s_->waiters);
    return r;
  }

  void wait() const {
    check();
    s_->wait_until_ns(detail::kForever);
  }
  std::future_status wait_until(Deadline d) const {
    check();
    return s_->wait_until_ns(detail::to_ns(d)) ? std::future_status::ready
                                               : std::future_status::timeout;
  }
  template <class Rep, class Period>
  std::future_status wait_for(std::chrono::duration<Rep, Period> d) const {
    check();
    return s_->wait_until_ns(detail::after_ns(d)) ? std::future_status::ready
                                                  : std::future_status::timeout;
  }

  // Waits, then returns the value or rethrows the exception. The future is
  // invalid afterwards (unless the wait was cancelled).
  T get() {
    check();
    s_->wait_until_ns(detail::kForever);
    struct Release {
      detail::FutureState<T>* s;
      ~Release() { s->release(); }
    } release{std::exchange(s_, nullptr)};
    if (release.s->status == detail::FutureStateBase::kError)
      std::rethrow_exception(release.s->error);
    if constexpr (!std::is_void_v<T>) return std::move(*release.s->value());
  }

 private:
  friend class Promise<T>;
  explicit Future(detail::FutureState<T>* s) : s_(s) {}
  void check() const {
    if (!s_) detail::throw_future(std::future_errc::no_state);
  }
  detail::FutureState<T>* s_ = nullptr;
};

}  // namespace chronos
