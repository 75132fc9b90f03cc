// reactor/wait_fd.cpp: wait_readable / wait_writable on users' own fds, and
// spawn_blocking's entry into the blocking pool.
//
// A user's fd is registered for the one wait only (EPOLL_CTL_ADD, edge-
// triggered, one direction), with a pooled descriptor, and unregistered after
// it: chronos cannot know when the user closes or reuses the number, so it
// keeps no registration across calls. ADD reports an fd that is already ready
// at once, so no readiness is missed. Cost: two epoll_ctl calls per wait, and
// no allocation.
#include <poll.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <system_error>

#include "chronos/blocking.hpp"
#include "chronos/cancel.hpp"
#include "chronos/net.hpp"
#include "reactor/io_wait.hpp"
#include "reactor/reactor.hpp"
#include "sched/timer.hpp"
#include "sched/worker.hpp"

namespace chronos {
namespace {

std::int64_t deadline_ns(Deadline d) {
  return d == Deadline::max() ? detail::kNoDeadline : detail::to_ns(d);
}

// A thread that runs no fiber blocks in poll(2).
void wait_thread(int fd, bool write, std::int64_t deadline, std::error_code& ec) {
  for (;;) {
    int ms = -1;
    if (deadline != detail::kNoDeadline) {
      std::int64_t left = deadline - detail::now_ns();
      if (left <= 0) {
        ec = std::error_code(ETIMEDOUT, std::system_category());
        return;
      }
      std::int64_t m = left / 1'000'000 + 1;
      ms = m > INT_MAX ? INT_MAX : static_cast<int>(m);
    }
    pollfd p{fd, static_cast<short>(write ? POLLOUT : POLLIN), 0};
    int r = ::poll(&p, 1, ms);
    if (r > 0) return;
    if (r < 0 && errno != EINTR) {
      ec = std::error_code(errno, std::system_category());
      return;
    }
  }
}

void wait_fd(int fd, bool write, Deadline deadline, std::error_code& ec) {
  ec.clear();
  const std::int64_t dl = deadline_ns(deadline);
  detail::Worker* w = detail::current_worker();
  if (!w || w->current == &w->main) {
    wait_thread(fd, write, dl, ec);
    return;
  }
  detail::Reactor& r = detail::Reactor::current();
  detail::Descriptor* d;
  try {
    d = r.attach(fd, write);
  } catch (const std::system_error& e) {
    ec = e.code();
    return;
  }
  struct Detach {  // also on the shutdown unwind
    detail::Reactor& r;
    detail::Descriptor* d;
    ~Detach() { r.detach(d); }
  } detach{r, d};
  switch (detail::wait_io(d, write ? detail::kWrite : detail::kRead, dl)) {
    case detail::WaitResult::kReady:
      return;
    case detail::WaitResult::kTimedOut:
      ec = std::error_code(ETIMEDOUT, std::system_category());
      return;
    case detail::WaitResult::kClosed:
      ec = std::error_code(EBADF, std::system_category());
      return;
    case detail::WaitResult::kBusy:
      ec = std::error_code(EBUSY, std::system_category());
      return;
    case detail::WaitResult::kCancelled:
      ec = std::error_code(ECANCELED, std::system_category());
      return;
  }
}

}  // namespace

void wait_readable(int fd, Deadline deadline, std::error_code& ec) {
  wait_fd(fd, false, deadline, ec);
}

void wait_writable(int fd, Deadline deadline, std::error_code& ec) {
  wait_fd(fd, true, deadline, ec);
}

void wait_readable(int fd, Deadline deadline) {
  std::error_code ec;
  wait_fd(fd, false, deadline, ec);
  if (ec == std::errc::operation_canceled) throw Cancelled();
  if (ec) throw std::system_error(ec, "chronos::wait_readable");
}

void wait_writable(int fd, Deadline deadline) {
  std::error_code ec;
  wait_fd(fd, true, deadline, ec);
  if (ec == std::errc::operation_canceled) throw Cancelled();
  if (ec) throw std::system_error(ec, "chronos::wait_writable");
}

namespace detail {

void run_blocking(void (*fn)(void*), void* arg) {
  Worker* w = current_worker();
  if (!w || w->current == &w->main) {
    fn(arg);
    return;
  }
  BlockingPool::Job job;
  job.fn = fn;
  job.arg = arg;
  Reactor::current().blocking().run(job);
}

}  // namespace detail
}  // namespace chronos
