// reactor/reactor.hpp: the epoll reactor, one per runtime, and the
// scheduler's Poller (sched/poller.hpp).
//
// Who polls
// ---------
// By default the runtime's workers do (Go's way): an idle worker blocks in
// poll(w, timeout) instead of sleeping on its futex, and a busy one calls
// poll(w, 0) now and then (sched/poller.hpp). poll() readies the fibers whose
// fds became ready with wake(w, f), so they run on the worker that found them,
// with no hop through another thread, and interrupt() writes an eventfd in the
// epoll set to get a blocked poller out when work arrives elsewhere.
// CHRONOS_REACTOR=thread selects the seed design instead: a dedicated thread
// blocks in epoll_wait and hands readied fibers to the injection queue
// (wake(nullptr, f)); workers calling poll() then only wait for interrupt().
//
// Invariants
// ----------
// * One epoll instance (EPOLL_CLOEXEC) and one eventfd (EFD_NONBLOCK |
//   EFD_CLOEXEC), both closed by the destructor, which runs after the
//   runtime has joined its workers.
// * Sockets are registered once, edge-triggered, for EPOLLIN | EPOLLOUT |
//   EPOLLRDHUP, by open(); close(2) takes them out of the set.
// * The event array is preallocated, and used by one poller at a time: the
//   polling_ flag is taken with an exchange, and a second concurrent poll()
//   returns at once.
// * Descriptors live in the pool until the Reactor dies (descriptor.hpp).
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "reactor/blocking_pool.hpp"
#include "reactor/descriptor.hpp"
#include "sched/poller.hpp"

namespace chronos::detail {

class RuntimeImpl;

class Reactor final : public Poller {
 public:
  static constexpr int kEvents = 256;

  Reactor();
  ~Reactor() override;
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // The calling fiber's runtime's reactor, created and installed on first use.
  // Throws std::logic_error outside a worker thread.
  static Reactor& current();

  // Poller.
  int poll(Worker* w, std::int64_t timeout_ns) noexcept override;
  void interrupt() noexcept override;
  std::size_t wakeups_owed() const noexcept override { return blocking_.in_flight(); }

  // Takes ownership of the non-blocking fd and registers it. On failure
  // closes fd and throws std::system_error. The owner gives it back with
  // Descriptor::release().
  Descriptor* open(int fd);
  // Registers a user's fd for one wait in one direction (wait_readable and
  // wait_writable), and unregisters it. The fd is not closed.
  Descriptor* attach(int fd, bool write);
  void detach(Descriptor* d) noexcept;

  BlockingPool& blocking() noexcept { return blocking_; }
  bool dedicated_thread() const noexcept { return thread_.joinable(); }

 private:
  int poll_events(Worker* w, int timeout_ms) noexcept;
  int wait_interrupt(std::int64_t timeout_ns) noexcept;

  int epfd_ = -1;
  int evfd_ = -1;
  DescriptorPool pool_;
  std::atomic<bool> polling_{false};
  std::atomic<bool> interrupt_pending_{false};
  std::atomic<std::uint32_t> interrupt_flag_{0};  // thread mode: an idle worker waits here
  std::atomic<bool> stop_{false};
  std::unique_ptr<epoll_event[]> events_;  // kEvents, owned by the polling_ holder
  BlockingPool blocking_;
  std::thread thread_;  // thread mode only
};

}  // namespace chronos::detail
