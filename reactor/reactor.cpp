// reactor/reactor.cpp: epoll, the eventfd, and the Poller (reactor/reactor.hpp).
#include "reactor/reactor.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "fiber/futex.hpp"
#include "reactor/io_wait.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/scheduler.hpp"

namespace chronos::detail {
namespace {

constexpr std::uint64_t kInterruptToken = ~std::uint64_t{0};  // index 2^32-1: never a descriptor

[[noreturn]] void throw_errno(int err, const char* what) {
  throw std::system_error(err, std::system_category(), what);
}

bool thread_mode_requested() {
  const char* e = std::getenv("CHRONOS_REACTOR");
  return e && std::strcmp(e, "thread") == 0;
}

}  // namespace

Reactor::Reactor() : pool_(this), events_(new epoll_event[kEvents]) {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw_errno(errno, "chronos: epoll_create1");
  evfd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (evfd_ < 0) {
    int err = errno;
    ::close(epfd_);
    throw_errno(err, "chronos: eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = kInterruptToken;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, evfd_, &ev) != 0) {
    int err = errno;
    ::close(evfd_);
    ::close(epfd_);
    throw_errno(err, "chronos: epoll_ctl(eventfd)");
  }
  if (thread_mode_requested()) {
    thread_ = std::thread([this] {
      // relaxed: stop_ is only a request; interrupt() gets us out of epoll_wait.
      while (!stop_.load(std::memory_order_relaxed)) poll_events(nullptr, -1);
    });
  }
}

Reactor::~Reactor() {
  if (thread_.joinable()) {
    stop_.store(true, std::memory_order_relaxed);
    interrupt_pending_.store(false, std::memory_order_relaxed);
    interrupt();
    thread_.join();
  }
  ::close(evfd_);
  ::close(epfd_);
}

Reactor& Reactor::current() {
  Worker* w = current_worker();
  if (!w) throw std::logic_error("chronos: sockets and spawn_blocking need a runtime's fiber");
  RuntimeImpl* rt = w->rt;
  Poller* p = rt->poller();
  if (!p) p = rt->install_poller(std::make_unique<Reactor>());
  // The reactor is the only Poller chronos installs.
  return *static_cast<Reactor*>(p);
}

int Reactor::poll(Worker* w, std::int64_t timeout_ns) noexcept {
  if (thread_.joinable()) return wait_interrupt(timeout_ns);
  int ms;
  if (timeout_ns < 0) {
    ms = -1;
  } else {
    // Round up: waking before the next timer is due would only poll again.
    std::int64_t m = (timeout_ns + 999'999) / 1'000'000;
    ms = m > INT_MAX ? INT_MAX : static_cast<int>(m);
  }
  return poll_events(w, ms);
}

namespace {
// The events that end a parked reader's wait, and a parked writer's.
constexpr std::uint32_t kReaderEvents = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
constexpr std::uint32_t kWriterEvents = EPOLLOUT | EPOLLHUP | EPOLLERR;
}  // namespace

int Reactor::poll_events(Worker* w, int timeout_ms) noexcept {
  // acquire: the previous poller's use of events_ happens before ours.
  if (polling_.exchange(true, std::memory_order_acquire)) return 0;
  const int n = ::epoll_wait(epfd_, events_.get(), kEvents, timeout_ms);
  // Where the readied fibers go (README, "Who polls"):
  //  * A blocking poll comes from an idle worker, whose queues are empty: the
  //    fibers go to it (wake(w, f)), no hop to another thread. Its deque pops
  //    LIFO and runnext takes the last one woken, so the events are walked
  //    last to first, and the fibers run in the order their events arrived.
  //  * A non-blocking poll comes from a busy worker's tick: queued locally,
  //    the fibers would land on top of that worker's LIFO deque, ahead of
  //    work that has waited longer, and under sustained load the oldest
  //    would starve (measured: p99 ×4). They go to the injection queue, FIFO,
  //    where an idle worker or the fairness tick takes them, collected and
  //    handed over once per poll: one critical section on the queue and one
  //    wake-up of a sleeping worker, not one of each per fiber.
  // Ask for the parked readers' TCBs before waking any: each wake below
  // reads and writes its fiber's TCB, which went cold while it waited, and
  // this way the misses overlap instead of following one another. (In the
  // echo server at 1,000 connections, the wake's first read of the TCB was
  // the largest single stall in the poller's own code.)
  for (int i = 0; i < n; ++i)
    if (events_[i].data.u64 != kInterruptToken && (events_[i].events & kReaderEvents))
      if (const Descriptor* d = pool_.lookup(events_[i].data.u64)) prefetch_waiter(d, kRead);
  const bool batch = w && timeout_ms == 0;
  if (batch) w->begin_injection_batch();
  int woken = 0;
  for (int i = n - 1; i >= 0; --i) {  // n < 0 (EINTR): nothing to do, the caller polls again
    const std::uint64_t token = events_[i].data.u64;
    const std::uint32_t ev = events_[i].events;
    if (token == kInterruptToken) {
      // Drain first, then clear the flag. The other order loses wake-ups: an
      // interrupt() between the clear and the drain would write, have its
      // count drained here, and leave its queued edge to be dropped by the
      // next epoll_wait (the eventfd is no longer readable), while the flag
      // stays set and every later interrupt() skips its write.
      std::uint64_t drain;
      while (::read(evfd_, &drain, sizeof drain) < 0 && errno == EINTR) {
      }
      // relaxed: the flag only saves redundant writes; what orders it with
      // the eventfd is the read above and the writer's write (system calls).
      interrupt_pending_.store(false, std::memory_order_relaxed);
      continue;
    }
    Descriptor* d = pool_.lookup(token);
    if (!d) continue;  // a socket closed since; its slot may be someone else's now
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) d->mark_hung_up();  // before the slots
    if (ev & kReaderEvents) woken += notify_ready(w, d, kRead);
    if (ev & kWriterEvents) woken += notify_ready(w, d, kWrite);
  }
  if (batch) w->end_injection_batch();
  polling_.store(false, std::memory_order_release);  // see the exchange above
  return woken;
}

int Reactor::wait_interrupt(std::int64_t timeout_ns) noexcept {
  if (timeout_ns == 0) return 0;
  // The flag is a sticky "interrupted", consumed here: an interrupt() that
  // came after the caller's last look at the queues but before this wait
  // (sched/runtime.cpp, idle_wait) makes it return at once instead of being
  // lost. (Reading an epoch here instead would miss exactly that one.)
  // acquire: pairs with interrupt()'s release.
  if (interrupt_flag_.exchange(0, std::memory_order_acquire) != 0) return 0;
  if (timeout_ns < 0) {
    futex_wait(&interrupt_flag_, 0);
  } else {
    futex_wait_for(&interrupt_flag_, 0,
                   timespec{static_cast<time_t>(timeout_ns / 1'000'000'000),
                            static_cast<long>(timeout_ns % 1'000'000'000)});
  }
  interrupt_flag_.store(0, std::memory_order_relaxed);  // consumed (a stale one costs a look)
  return 0;
}

void Reactor::interrupt() noexcept {
  if (thread_.joinable() && !stop_.load(std::memory_order_relaxed)) {
    // Thread mode: an idle worker waits on the flag, not in epoll_wait.
    interrupt_flag_.store(1, std::memory_order_release);
    futex_wake(&interrupt_flag_, INT_MAX);
    return;
  }
  // relaxed: if the flag is already set, a write of ours is still undrained:
  // the poller has not taken its event yet, or is about to return from the
  // poll that took it (and its caller re-checks the queues). The poller
  // clears the flag only after draining, so a write made after the clear
  // finds the count drained and makes a fresh, readable edge.
  if (interrupt_pending_.exchange(true, std::memory_order_relaxed)) return;
  std::uint64_t one = 1;
  while (::write(evfd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

Descriptor* Reactor::open(int fd) {
  Descriptor* d;
  try {
    d = pool_.acquire(fd);
  } catch (...) {
    ::close(fd);
    throw;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = d->token();
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int err = errno;
    ::close(fd);
    pool_.recycle(d);
    throw_errno(err, "chronos: epoll_ctl(ADD)");
  }
  return d;
}

Descriptor* Reactor::attach(int fd, bool write) {
  Descriptor* d = pool_.acquire(fd);
  epoll_event ev{};
  ev.events = (write ? EPOLLOUT : EPOLLIN | EPOLLRDHUP) | EPOLLET;
  ev.data.u64 = d->token();
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int err = errno;
    pool_.recycle(d);
    throw_errno(err, "chronos: epoll_ctl(ADD) on a user fd");
  }
  return d;
}

void Reactor::detach(Descriptor* d) noexcept {
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, d->fileno(), nullptr);
  pool_.recycle(d);
}

}  // namespace chronos::detail
