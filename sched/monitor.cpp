// sched/monitor.cpp: the monitor thread (sched/monitor.hpp).
#include "sched/monitor.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "sched/backtrace.hpp"
#include "sched/heavy_fence.hpp"
#include "sched/inspect.hpp"
#include "sched/runtime_impl.hpp"

namespace chronos::detail {
namespace {

// The watchdog's probe signal. Go uses SIGURG for preemption for the same
// reasons: nothing else uses it, and its default action is to ignore it.
constexpr int kProbeSignal = SIGURG;

// A deadlock report shows this many fibers one by one, with their stacks,
// and counts the others by what they wait on: a runtime of a million parked
// fibers once wrote 110 MB to stderr over eight seconds of stack walks.
constexpr std::size_t kReportedFibers = 100;

// Dump requests from Config::dump_signal, process-wide: one eventfd that
// every monitor polls (the first to read it writes the dump of every runtime).
std::atomic<int> g_dump_fd{-1};
struct sigaction g_old_probe;

void write_all(int fd, const std::string& s) {
  const char* p = s.data();
  std::size_t left = s.size();
  while (left) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

void on_dump_signal(int) {
  int saved = errno;
  std::uint64_t one = 1;
  // relaxed: the fd was published before the handler was installed.
  if (int fd = g_dump_fd.load(std::memory_order_relaxed); fd >= 0) [[maybe_unused]]
    auto r = ::write(fd, &one, sizeof one);
  errno = saved;
}

// Runs on a worker thread that the monitor suspects of running one fiber too
// long. Copies that fiber's identity and stack into the worker's probe.
void on_probe_signal(int sig, siginfo_t* info, void* uc) {
  int saved = errno;
  Worker* w = current_worker();
  WatchdogProbe* p = w ? &w->probe : nullptr;
  // acquire: pairs with the monitor's request, which it made before the kill.
  std::uint32_t expected = WatchdogProbe::kRequested;
  if (p &&
      p->state.compare_exchange_strong(expected, WatchdogProbe::kBusy, std::memory_order_acquire)) {
    Fiber* f = w->current;
    if (f != &w->main) {
      p->id = f->id;
      std::memcpy(p->name, f->name, sizeof p->name);
      p->runs = w->fibers_run.get();
      p->nframes = backtrace_signal(uc, p->frames, WatchdogProbe::kMaxFrames);
    } else {
      p->id = 0;  // the worker is in its scheduler loop after all
    }
    p->state.store(WatchdogProbe::kDone, std::memory_order_release);
  } else if ((g_old_probe.sa_flags & SA_SIGINFO) && g_old_probe.sa_sigaction) {
    g_old_probe.sa_sigaction(sig, info, uc);  // not ours: the handler we replaced
  } else if (g_old_probe.sa_handler != SIG_DFL && g_old_probe.sa_handler != SIG_IGN) {
    g_old_probe.sa_handler(sig);
  }
  errno = saved;
}

void install_probe_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    backtrace_init();  // load libunwind now: never from inside the handler
    struct sigaction sa {};
    sa.sa_sigaction = &on_probe_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(kProbeSignal, &sa, &g_old_probe);
  });
}

void install_dump_handler(int sig) {
  static std::mutex mu;
  static int installed = 0;
  std::lock_guard lock(mu);
  if (g_dump_fd.load(std::memory_order_relaxed) < 0) {
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return;
    // release: a monitor that loads the number (acquire) and reads from it
    // must see the eventfd created, in the memory model's terms too (TSan
    // tracks an fd's creation and reported a monitor's read of it).
    g_dump_fd.store(fd, std::memory_order_release);
  }
  if (installed == sig) return;
  struct sigaction sa {};
  sa.sa_handler = &on_dump_signal;
  sa.sa_flags = SA_RESTART | SA_ONSTACK;  // never on a fiber's stack (fiber/overflow.hpp)
  sigemptyset(&sa.sa_mask);
  ::sigaction(sig, &sa, nullptr);
  installed = sig;
}

int parse_signal(const char* v) {
  std::string s(v);
  if (s.empty()) return 0;
  if (std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int n = std::atoi(s.c_str());
    if (n > 0 && n < NSIG) return n;
  } else {
    if (s.rfind("SIG", 0) == 0) s = s.substr(3);
    static const struct {
      const char* name;
      int sig;
    } names[] = {{"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"HUP", SIGHUP},
                 {"INT", SIGINT},   {"TERM", SIGTERM}, {"PWR", SIGPWR},   {"WINCH", SIGWINCH}};
    for (auto& n : names)
      if (s == n.name) return n.sig;
  }
  throw std::invalid_argument(std::string("chronos: CHRONOS_DUMP_SIGNAL=") + v +
                              " names no signal (try QUIT or USR1)");
}

std::string ms(std::int64_t ns) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f ms", static_cast<double>(ns) / 1e6);
  return b;
}

}  // namespace

void apply_environment(Config& c) {
  if (const char* v = std::getenv("CHRONOS_DUMP_SIGNAL"); v && c.dump_signal == 0)
    c.dump_signal = parse_signal(v);
  if (const char* v = std::getenv("CHRONOS_TRACE"); v && *v && c.trace_path.empty())
    c.trace_path = v;
  if (const char* v = std::getenv("CHRONOS_DEADLOCK"); v && *v) {
    std::string s(v);
    if (s == "report") {
      c.deadlock_action = DeadlockAction::kReport;
    } else if (s == "abort") {
      c.deadlock_action = DeadlockAction::kAbort;
    } else if (s == "ignore") {
      c.deadlock_action = DeadlockAction::kIgnore;
    } else {
      throw std::invalid_argument("chronos: CHRONOS_DEADLOCK=" + s +
                                  " is not one of report, abort, ignore");
    }
  }
  if (const char* v = std::getenv("CHRONOS_SLOW_FIBER_MS"); v && *v) {
    char* end = nullptr;
    errno = 0;
    const double ms = std::strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !(ms >= 0) || ms > 3.6e6)
      throw std::invalid_argument(std::string("chronos: CHRONOS_SLOW_FIBER_MS=") + v +
                                  " is not a number of milliseconds from 0 (off) to 3600000");
    c.slow_fiber_threshold = std::chrono::nanoseconds(static_cast<std::int64_t>(ms * 1e6));
  }
  if (c.dump_signal < 0 || c.dump_signal >= NSIG)
    throw std::invalid_argument("chronos: Config::dump_signal is not a signal number");
  if (c.dump_signal == kProbeSignal || c.dump_signal == SIGSEGV || c.dump_signal == SIGBUS)
    throw std::invalid_argument(
        "chronos: Config::dump_signal cannot be SIGURG, SIGSEGV or SIGBUS "
        "(chronos uses them)");
  if (c.slow_fiber_threshold.count() < 0 || c.deadlock_grace.count() < 0)
    throw std::invalid_argument(
        "chronos: Config::slow_fiber_threshold and deadlock_grace must "
        "not be negative");
}

Monitor::Monitor(RuntimeImpl* rt)
    : rt_(rt),
      threshold_ns_(rt->config().slow_fiber_threshold.count()),
      retake_(rt->worker_count() > 1 && heavy_fence_available()) {
  const Config& c = rt->config();
  const bool needed = threshold_ns_ > 0 || retake_ ||
                      c.deadlock_action != DeadlockAction::kIgnore || c.dump_signal != 0;
  if (!needed) return;
  if (threshold_ns_ > 0) install_probe_handler();
  if (c.dump_signal) install_dump_handler(c.dump_signal);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "chronos: eventfd");
  watch_.resize(rt->worker_count());
  thread_ = std::thread([this] { run(); });
}

Monitor::~Monitor() {
  stop();
}

void Monitor::stop() noexcept {
  if (thread_.joinable()) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(wake_fd_, &one, sizeof one);
    thread_.join();
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
  wake_fd_ = -1;
}

void Monitor::run() {
  ::pthread_setname_np(::pthread_self(), "chronos-monitor");
  // Signals meant for the program are not this thread's business.
  sigset_t all;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
  std::int64_t busy_tick = threshold_ns_ > 0
                               ? std::clamp<std::int64_t>(threshold_ns_ / 2, 1'000'000, 100'000'000)
                               : 100'000'000;
  if (retake_) busy_tick = std::min(busy_tick, kRetakeTickNs);
  std::int64_t tick_ns = busy_tick;
  for (;;) {
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {g_dump_fd.load(std::memory_order_acquire), POLLIN, 0}};
    int r = ::poll(fds, fds[1].fd >= 0 ? 2 : 1, static_cast<int>(tick_ns / 1'000'000));
    if (r > 0 && (fds[0].revents & POLLIN)) return;  // stop()
    if (r > 0 && fds[1].fd >= 0 && (fds[1].revents & POLLIN)) {
      std::uint64_t n;
      if (::read(fds[1].fd, &n, sizeof n) == sizeof n) {  // we took the request
        std::string dump = "chronos: fiber dump on signal\n";
        write_dump(dump);
        write_all(2, dump);
      }
    }
    std::int64_t now = now_ns();
    rt_->set_coarse_now(now);
    const bool asleep = rt_->all_asleep();
    tick(now, asleep);
    tick_ns = asleep ? std::min<std::int64_t>(tick_ns * 2, 250'000'000) : busy_tick;
  }
}

void Monitor::tick(std::int64_t now, bool all_asleep) {
  if (threshold_ns_ > 0 || retake_) watch_workers(now);
  if (rt_->config().deadlock_action != DeadlockAction::kIgnore) {
    if (all_asleep) {
      check_deadlock(now);
    } else {
      suspect_activity_ = ~0ull;
    }
  }
}

void Monitor::watch_workers(std::int64_t now) {
  for (unsigned i = 0; i < watch_.size(); ++i) {
    Worker* w = rt_->worker(i);
    WorkerWatch& ww = watch_[i];
    std::uint64_t runs = w->fibers_run.get();
    if (runs != ww.runs || w->parks.get() != w->wakeups.get()) {  // switched, or asleep
      ww.runs = runs;
      ww.since = now;
      ww.runnext = retake_ ? w->runnext_snapshot() : nullptr;
      continue;
    }
    // The worker has not switched since the last tick.
    if (retake_) retake(w, ww);
    if (threshold_ns_ > 0 && now - ww.since >= threshold_ns_ && ww.reported != runs) {
      ww.reported = runs;
      report_slow(i, now - ww.since);
    }
  }
}

// w has run one fiber since the last tick: the fiber in its runnext then has
// waited all that time, and goes to the injection queue if it still waits.
void Monitor::retake(Worker* w, WorkerWatch& ww) {
  Fiber* seen = ww.runnext;
  ww.runnext = w->runnext_snapshot();
  if (seen == nullptr || ww.runnext != seen) return;
  if (Fiber* f = w->retake_runnext(seen)) {
    ww.runnext = nullptr;
    rt_->inject_batch(&f, 1);  // and wakes a sleeping worker
  }
}

bool request_probe(WatchdogProbe& p, pthread_t thread, std::chrono::microseconds wait,
                   std::chrono::microseconds poll) {
  p.state.store(WatchdogProbe::kRequested, std::memory_order_release);
  bool answered = false;
  if (::pthread_kill(thread, kProbeSignal) == 0) {
    // The handler runs as soon as the thread is scheduled (under TSan, at its
    // next call into the runtime): wait for it a while, not forever.
    const auto give_up = std::chrono::steady_clock::now() + wait;
    while (!(answered = p.state.load(std::memory_order_acquire) == WatchdogProbe::kDone) &&
           std::chrono::steady_clock::now() < give_up)
      std::this_thread::sleep_for(poll);
  }
  // Take the request back; a late handler then finds nothing to do. One that
  // has begun (kBusy) finishes in microseconds: wait for it.
  std::uint32_t expected = WatchdogProbe::kRequested;
  if (!answered &&
      !p.state.compare_exchange_strong(expected, WatchdogProbe::kIdle, std::memory_order_acq_rel)) {
    while (p.state.load(std::memory_order_acquire) != WatchdogProbe::kDone)
      std::this_thread::sleep_for(poll);
    answered = true;
  }
  return answered;
}

void Monitor::report_slow(unsigned i, std::int64_t ran_ns) {
  Worker* w = rt_->worker(i);
  WatchdogProbe& p = w->probe;
  const bool answered = request_probe(p, rt_->worker_thread(i), std::chrono::milliseconds(100),
                                      std::chrono::microseconds(500));
  if (answered) {
    p.state.store(WatchdogProbe::kIdle, std::memory_order_relaxed);
    if (p.id == 0) return;  // it was in the scheduler loop, not in a fiber
  }
  std::string text;
  char head[256];
  if (answered) {
    char name[kNameCapacity];
    std::memcpy(name, p.name, sizeof name);
    name[kNameCapacity - 1] = '\0';
    std::snprintf(head, sizeof head,
                  "chronos: slow fiber: fiber %" PRIu64
                  "%s%s%s has run for %s on worker %u "
                  "without yielding (Config::slow_fiber_threshold: %s)\n",
                  p.id, name[0] ? " \"" : "", name, name[0] ? "\"" : "", ms(ran_ns).c_str(), i,
                  ms(threshold_ns_).c_str());
    text = head;
    Symbolizer sym;
    for (std::size_t k = 0; k < p.nframes; ++k)
      text += "    #" + std::to_string(k) + " " + sym.name(p.frames[k], k > 0) + "\n";
    if (p.nframes == 0)
      text += "    (no backtrace: " + std::string(backtrace_unavailable_why()) + ")\n";
  } else {
    std::snprintf(head, sizeof head,
                  "chronos: slow fiber: worker %u has run one fiber for %s without yielding "
                  "(Config::slow_fiber_threshold: %s); its thread did not answer the backtrace "
                  "signal\n",
                  i, ms(ran_ns).c_str(), ms(threshold_ns_).c_str());
    text = head;
  }
  emit(rt_->config().on_slow_fiber, text);
}

void Monitor::check_deadlock(std::int64_t now) {
  if (!rt_->accepting() || rt_->timers_armed() != 0) {
    suspect_activity_ = ~0ull;
    return;
  }
  const std::uint64_t activity = rt_->activity();
  if (activity == settled_activity_) return;  // reported, or known to be no deadlock
  if (activity != suspect_activity_) {
    suspect_activity_ = activity;
    suspect_since_ = now;
  }
  if (now - suspect_since_ < rt_->config().deadlock_grace.count()) return;
  std::size_t stuck = 0;
  const StuckScan scan = scan_for_deadlock(rt_, stuck);
  deadlock_scans_.fetch_add(1, std::memory_order_relaxed);
  if (scan == StuckScan::kMoving) return;  // a fiber is on its way somewhere: next tick
  // Nothing moved while we looked, so the verdict holds until some worker
  // dispatches or wakes again, which changes the activity count: look no
  // more until then. (Before this, a runtime whose parked fibers included
  // one in I/O took a snapshot of every fiber on every tick: a million
  // parked fibers kept the monitor busy on a whole CPU.)
  if (rt_->activity() != activity || !rt_->all_asleep()) return;
  settled_activity_ = activity;
  if (scan != StuckScan::kAllStuck) return;
  std::string text = "chronos: all fibers are asleep: deadlock!\n";
  text += "  " + std::to_string(stuck) +
          " fibers wait on channels, locks, joins or futures, with no timer, I/O or "
          "spawn_blocking job to wake them (threads outside the runtime are not seen)\n\n";
  write_runtime_dump(rt_, text, kReportedFibers);
  const Config& c = rt_->config();
  emit(c.on_deadlock, text);
  if (c.deadlock_action == DeadlockAction::kAbort) std::abort();
}

void Monitor::emit(const std::function<void(std::string_view)>& sink, const std::string& text) {
  if (sink) {
    try {
      sink(text);
    } catch (...) {
      write_all(2, "chronos: a diagnostics callback threw; its report follows\n" + text);
    }
    return;
  }
  write_all(2, text);
}

}  // namespace chronos::detail
