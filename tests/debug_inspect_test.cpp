// Seeing inside: fiber dumps, the deadlock detector, the slow-fiber watchdog,
// the dump signal and the Prometheus rendering of the stats.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define DEBUG_TEST_ON_VALGRIND() RUNNING_ON_VALGRIND
#else
#define DEBUG_TEST_ON_VALGRIND() 0
#endif
#include <chronos/chronos.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sched/backtrace.hpp"
#include "sched/monitor.hpp"
#include "sched/runtime_impl.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

// Sets an environment variable for its lifetime, then puts back what was
// there (the valgrind step of .ci/run sets CHRONOS_SLOW_FIBER_MS for the
// whole process).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) {
      ::setenv(name_, old_.c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

// Each parks in a function of its own, so that the backtrace can be checked.
[[gnu::noinline]] int park_in_channel_recv(chronos::Channel<int>& ch) {
  auto v = ch.recv();
  asm volatile("" ::: "memory");  // keep the frame: no tail call
  return v.value_or(-1);
}

[[gnu::noinline]] void park_on_mutex(chronos::Mutex& m) {
  std::lock_guard lock(m);
  asm volatile("" ::: "memory");
}

// Waits (on a plain thread) until the dump shows `n` waiting fibers.
std::string dump_when_waiting(std::size_t n) {
  std::string d;
  for (int i = 0; i < 500; ++i) {
    d = chronos::dump_fibers();
    std::size_t waiting = 0;
    for (std::size_t p = d.find("[waiting: "); p != std::string::npos;
         p = d.find("[waiting: ", p + 1))
      ++waiting;
    if (waiting >= n) return d;
    std::this_thread::sleep_for(10ms);
  }
  ADD_FAILURE() << "the fibers never all parked; last dump:\n" << d;
  return d;
}

// The dump's block for the fiber named `name`: its header line and frames.
std::string block_of(const std::string& dump, const std::string& name) {
  std::size_t at = dump.find("\"" + name + "\"");
  if (at == std::string::npos) return {};
  std::size_t start = dump.rfind("\nfiber ", at);
  std::size_t end = dump.find("\nfiber ", at);
  return dump.substr(start + 1, end == std::string::npos ? std::string::npos : end - start - 1);
}

double waited_ms(const std::string& block) {
  std::smatch m;
  std::regex re(", ([0-9.]+) ms\\]");
  return std::regex_search(block, m, re) ? std::stod(m[1]) : -1.0;
}

// Whether frames can be walked here: chronos built with libunwind's header
// and libunwind8 installed. Without them, dumps and reports say why instead,
// and the tests check that.
bool have_backtraces() {
  return chronos::detail::backtrace_init();
}

chronos::Config quiet(unsigned workers) {
  chronos::Config c;
  c.workers = workers;
  c.deadlock_action = chronos::DeadlockAction::kIgnore;  // these tests park on purpose
  return c;
}

}  // namespace

TEST(FiberDump, ShowsEveryParkedFiberWithItsWaitAndBacktrace) {
  chronos::Runtime rt(quiet(2));
  chronos::Channel<int> ch;
  chronos::Mutex m;
  m.lock();  // held by this thread: the fiber below parks on it
  chronos::Promise<int> promise;
  chronos::Future<int> future = promise.get_future();
  std::stop_source stop_sleep;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);

  auto recv = rt.spawn(chronos::SpawnOptions{.priority = 12, .name = "chan-recv"},
                       [&] { return park_in_channel_recv(ch); });
  auto mutex = rt.spawn(chronos::SpawnOptions{.small_stack = true, .name = "mutex-wait"},
                        [&] { park_on_mutex(m); });
  auto sleeper =
      rt.spawn(chronos::SpawnOptions{.name = "sleeper", .stop_token = stop_sleep.get_token()}, [] {
        try {
          chronos::sleep_for(1h);
        } catch (const chronos::Cancelled&) {
        }
      });
  const chronos::FiberId sleeper_id = sleeper.id();
  auto joiner = rt.spawn(chronos::SpawnOptions{.name = "joiner"},
                         [h = std::move(sleeper)]() mutable { h.join(); });
  auto fut = rt.spawn(chronos::SpawnOptions{.name = "future-wait"}, [&] { return future.get(); });
  auto io = rt.spawn(chronos::SpawnOptions{.name = "io-read"},
                     [fd = sv[0]] { chronos::wait_readable(fd); });
  // A full socket buffer: the writer parks until the other end reads.
  int wv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, wv), 0);
  char chunk[4096] = {};
  std::size_t buffered = 0;
  for (ssize_t n; (n = ::write(wv[0], chunk, sizeof chunk)) > 0;) buffered += std::size_t(n);
  ASSERT_EQ(errno, EAGAIN);
  auto io_w = rt.spawn(chronos::SpawnOptions{.name = "io-write"},
                       [fd = wv[0]] { chronos::wait_writable(fd); });

  std::string d = dump_when_waiting(7);
  std::this_thread::sleep_for(300ms);
  d = chronos::dump_fibers();
  SCOPED_TRACE(d);

  EXPECT_NE(d.find("chronos: runtime "), std::string::npos);
  EXPECT_NE(d.find("2 workers"), std::string::npos);

  std::string b = block_of(d, "chan-recv");
  EXPECT_TRUE(std::regex_search(b, std::regex("^fiber [0-9]+ \"chan-recv\" \\[waiting: channel "
                                              "recv 0x[0-9a-f]+, [0-9.]+ ms\\] priority 12\n")))
      << b;
  EXPECT_GE(waited_ms(b), 290.0) << b;
  if (have_backtraces()) {
    EXPECT_NE(b.find("park_in_channel_recv"), std::string::npos) << "no backtrace through the park";
  } else {
    EXPECT_NE(d.find("(no backtraces: " +
                     std::string(chronos::detail::backtrace_unavailable_why()) + ")"),
              std::string::npos)
        << "no word of why";
  }
  std::ostringstream chan_addr;
  chan_addr << static_cast<const void*>(&ch);
  EXPECT_NE(b.find("channel recv " + chan_addr.str()), std::string::npos) << "not this channel";

  b = block_of(d, "mutex-wait");
  EXPECT_NE(b.find("[waiting: mutex 0x"), std::string::npos) << b;
  EXPECT_NE(b.find("small stack"), std::string::npos) << b;
  if (have_backtraces()) {
    EXPECT_NE(b.find("park_on_mutex"), std::string::npos) << b;
  }

  b = block_of(d, "sleeper");
  EXPECT_NE(b.find("[waiting: sleep, "), std::string::npos) << b;
  b = block_of(d, "joiner");
  EXPECT_NE(b.find("[waiting: join fiber " + std::to_string(sleeper_id) + ","), std::string::npos)
      << b;
  b = block_of(d, "future-wait");
  EXPECT_NE(b.find("[waiting: future 0x"), std::string::npos) << b;
  b = block_of(d, "io-read");
  EXPECT_NE(b.find("[waiting: fd " + std::to_string(sv[0]) + " (read)"), std::string::npos) << b;
  EXPECT_GE(waited_ms(b), 290.0) << b;
  b = block_of(d, "io-write");
  EXPECT_NE(b.find("[waiting: fd " + std::to_string(wv[0]) + " (write)"), std::string::npos) << b;

  // Everything wakes normally afterwards: the dump's holds were let go.
  ch.send(7);
  m.unlock();
  promise.set_value(9);
  stop_sleep.request_stop();
  ASSERT_EQ(::write(sv[1], "x", 1), 1);
  EXPECT_EQ(recv.join(), 7);
  mutex.join();
  joiner.join();
  EXPECT_EQ(fut.join(), 9);
  io.join();
  for (ssize_t n; buffered > 0 && (n = ::read(wv[1], chunk, sizeof chunk)) > 0;)
    buffered -= std::size_t(n);
  io_w.join();
  ::close(sv[0]);
  ::close(sv[1]);
  ::close(wv[0]);
  ::close(wv[1]);
}

TEST(FiberDump, ShowsTheRunningFiberAndRunnableOnes) {
  chronos::Runtime rt(quiet(1));
  std::string d = rt.block_on([] {
    // Spawned on this worker, which is busy with us: they stay runnable.
    auto a = chronos::go(chronos::SpawnOptions{.name = "queued"}, [] {});
    std::string s = chronos::dump_fibers();
    a.join();
    return s;
  });
  SCOPED_TRACE(d);
  EXPECT_NE(d.find("running on worker 0"), std::string::npos);
  EXPECT_NE(block_of(d, "queued").find("[runnable, queued on worker 0]"), std::string::npos);
}

TEST(FiberDump, WakersRaceTheDumpWithoutLosingAWakeUp) {
  // Ping-pong fibers park and wake thousands of times while another thread
  // dumps in a loop: every hold must be let go, and nothing may be lost.
  chronos::Runtime rt(quiet(2));
  chronos::Channel<int> a, b;
  constexpr int kRounds = 20000;
  auto ping = rt.spawn([&] {
    for (int i = 0; i < kRounds; ++i) {
      a.send(i);
      EXPECT_EQ(b.recv(), i);
    }
  });
  auto pong = rt.spawn([&] {
    for (int i = 0; i < kRounds; ++i) b.send(*a.recv());
  });
  std::atomic<bool> done{false};
  // A fiber seen Ready or Running names its worker; one that went back to
  // Waiting under the dump must not have its wait object read as a worker
  // (UBSan caught that once: a Waiter is not 64-byte aligned).
  std::thread dumper([&] {
    while (!done.load()) {
      std::string d = chronos::dump_fibers();
      EXPECT_NE(d.find("chronos: runtime"), std::string::npos);
      for (auto at = d.find("worker "); at != std::string::npos; at = d.find("worker ", at + 1)) {
        int w = std::atoi(d.c_str() + at + 7);
        EXPECT_TRUE(w == 0 || w == 1) << d;
      }
    }
  });
  ping.join();
  pong.join();
  done = true;
  dumper.join();
}

// In a child process (a death test, re-executed with only this test), since
// other tests of this binary may keep a runtime alive meanwhile (the shared one
// in sched_basic_test.cpp, when the whole suite runs in one process).
TEST(FiberDumpDeathTest, SaysWhenNoRuntimeRuns) {
  EXPECT_EXIT(
      {
        std::fputs(chronos::dump_fibers().c_str(), stderr);
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "^chronos: no runtime is running\n$");
}

namespace {

struct Reports {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> texts;
  std::function<void(std::string_view)> sink() {
    return [this](std::string_view r) {
      std::lock_guard lock(mu);
      texts.emplace_back(r);
      cv.notify_all();
    };
  }
  bool wait_for_one(std::chrono::milliseconds limit) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, limit, [&] { return !texts.empty(); });
  }
  std::size_t count() {
    std::lock_guard lock(mu);
    return texts.size();
  }
};

// Two workers whose deadlock reports go to `reports`.
chronos::Config reporting_to(Reports& reports, std::chrono::milliseconds grace) {
  chronos::Config c;
  c.workers = 2;
  c.deadlock_grace = grace;
  c.on_deadlock = reports.sink();
  return c;
}

}  // namespace

TEST(Deadlock, TwoFibersWaitingOnEachOtherAreReportedOnce) {
  Reports reports;
  const chronos::Config c = reporting_to(reports, 50ms);
  auto rt = std::make_unique<chronos::Runtime>(c);
  chronos::Channel<int> to_a, to_b;
  auto a = rt->spawn(chronos::SpawnOptions{.name = "waits-for-b"}, [&] {
    int v = *to_a.recv();  // b never sends: it waits for us first
    to_b.send(v);
  });
  auto b = rt->spawn(chronos::SpawnOptions{.name = "waits-for-a"}, [&] {
    int v = *to_b.recv();
    to_a.send(v);
  });
  ASSERT_TRUE(reports.wait_for_one(10s)) << "no deadlock report";
  std::this_thread::sleep_for(300ms);  // more ticks: still one report
  EXPECT_EQ(reports.count(), 1u);
  std::string r = reports.texts[0];
  SCOPED_TRACE(r);
  EXPECT_EQ(r.rfind("chronos: all fibers are asleep: deadlock!", 0), 0u);
  EXPECT_NE(block_of(r, "waits-for-b").find("[waiting: channel recv"), std::string::npos);
  EXPECT_NE(block_of(r, "waits-for-a").find("[waiting: channel recv"), std::string::npos);
  // Shutdown unwinds the two (README: fibers parked forever); their joins say so.
  rt->shutdown();
  EXPECT_THROW(a.join(), std::runtime_error);
  EXPECT_THROW(b.join(), std::runtime_error);
}

TEST(Deadlock, NotReportedWhileATimerOrIoCanStillWakeAFiber) {
  Reports reports;
  const chronos::Config c = reporting_to(reports, 20ms);
  chronos::Runtime rt(c);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  chronos::Channel<int> never;
  auto timed = rt.spawn([&] { EXPECT_FALSE(never.recv_for(400ms).has_value()); });
  auto io = rt.spawn([fd = sv[0]] { chronos::wait_readable(fd); });
  auto sleeper = rt.spawn([] { chronos::sleep_for(400ms); });
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(::write(sv[1], "x", 1), 1);
  timed.join();
  io.join();
  sleeper.join();
  // And an idle runtime with no fibers at all is not a deadlock either.
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(reports.count(), 0u) << reports.texts[0];
  ::close(sv[0]);
  ::close(sv[1]);
}

// A quiet runtime is looked at once, not on every tick: with 20,000 fibers
// (fewer under sanitizers) parked on a channel and one on a socket (which
// may wake it), the monitor scans every fiber when the grace runs out, finds
// the socket, and then leaves them alone until a fiber runs again. It used
// to take a snapshot of every fiber on every tick, four times a second: a
// million parked fibers and one in I/O kept the monitor busy on a whole CPU.
TEST(Deadlock, AQuietRuntimeIsScannedOnceNotOnEveryTick) {
  Reports reports;
  const chronos::Config c = reporting_to(reports, 20ms);
  chronos::Runtime rt(c);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  const std::size_t kParked =
      chronos::test::scaled(20'000);  // more than the report shows one by one
  chronos::Channel<int> gate;
  chronos::WaitGroup parked(static_cast<std::int64_t>(kParked));
  auto io = rt.spawn([fd = sv[0]] { chronos::wait_readable(fd); });
  rt.spawn([&] {
      for (std::size_t i = 0; i < kParked; ++i)
        chronos::go(chronos::SpawnOptions{.small_stack = true}, [&] {
          parked.done();
          EXPECT_FALSE(gate.recv().has_value());
        }).detach();
    }).detach();
  parked.wait();
  const chronos::detail::Monitor* monitor = rt.impl().monitor();
  ASSERT_NE(monitor, nullptr);
  for (int i = 0; i < 1000 && monitor->deadlock_scans() == 0; ++i)
    std::this_thread::sleep_for(10ms);
  // (A first scan may meet a fiber between done() and its park, and look
  // again at the next tick.)
  std::this_thread::sleep_for(500ms);
  const std::uint64_t scans = monitor->deadlock_scans();
  EXPECT_GE(scans, 1u);
  std::this_thread::sleep_for(1s);  // four ticks or more
  EXPECT_EQ(monitor->deadlock_scans(), scans) << "scanned again with no fiber run in between";
  EXPECT_EQ(reports.count(), 0u);
  // The socket's fiber finishes. What is left only another fiber could wake,
  // and the main thread is invisible to chronos: reported, once.
  ASSERT_EQ(::write(sv[1], "x", 1), 1);
  io.join();
  ASSERT_TRUE(reports.wait_for_one(10s)) << "no deadlock report";
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(reports.count(), 1u);
  const std::string& r = reports.texts[0];
  SCOPED_TRACE(r.substr(0, 400) + "\n[...]\n" +
               r.substr(r.size() - std::min<std::size_t>(r.size(), 400)));
  EXPECT_NE(r.find(std::to_string(kParked) + " fibers wait on channels"), std::string::npos);
  EXPECT_NE(r.find(", " + std::to_string(kParked) + " live fibers\n"), std::string::npos);
  // A hundred are shown one by one, with their stacks; the rest are counted
  // by what they wait on, so the report stays small.
  std::size_t blocks = 0;
  for (std::size_t p = r.find("\nfiber "); p != std::string::npos; p = r.find("\nfiber ", p + 1))
    ++blocks;
  EXPECT_EQ(blocks, 100u);
  EXPECT_NE(r.find("... and " + std::to_string(kParked - 100) + " more fibers"), std::string::npos);
  EXPECT_TRUE(std::regex_search(r, std::regex("\n  " + std::to_string(kParked - 100) +
                                              " waiting: channel recv 0x[0-9a-f]+\n")));
  EXPECT_LT(r.size(), 1024u * 1024);  // 20,000 blocks would be 20-55 MB
  gate.close();
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST(DeadlockDeathTest, AbortsWithTheReportWhenAsked) {
  EXPECT_DEATH(
      {
        chronos::Config c;
        c.workers = 1;
        c.deadlock_action = chronos::DeadlockAction::kAbort;
        c.deadlock_grace = 20ms;
        chronos::Runtime rt(c);
        chronos::Mutex m;
        rt.block_on([&] {
          m.lock();
          m.lock();  // a fiber locking a mutex it holds: nobody can unlock it
        });
      },
      "all fibers are asleep: deadlock!(.|\n)*\\[waiting: mutex");
}

namespace {
[[gnu::noinline]] void spin_without_yielding(std::chrono::milliseconds how_long) {
  auto end = std::chrono::steady_clock::now() + how_long;
  while (std::chrono::steady_clock::now() < end) {
  }
}

// Spins until `stop` is set, calling nothing: wherever the watchdog's signal
// lands, it lands in this frame. (A loop around steady_clock::now() spends
// nearly all its time inside clock_gettime, and under TSan the unwinder
// cannot get out of the vDSO through TSan's interceptor: seen in CI.)
[[gnu::noinline]] void spin_until(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) {
  }
}

// One worker whose slow-fiber reports go to `reports`; no deadlock reports.
chronos::Config watchdog_config(Reports& reports, std::chrono::nanoseconds threshold) {
  chronos::Config c;
  c.workers = 1;
  c.slow_fiber_threshold = threshold;
  c.deadlock_action = chronos::DeadlockAction::kIgnore;
  c.on_slow_fiber = reports.sink();
  return c;
}
}  // namespace

TEST(Watchdog, ReportsAFiberThatDoesNotYieldOnceWithItsBacktrace) {
  Reports reports;
  const chronos::Config c = watchdog_config(reports, 20ms);
  chronos::Runtime rt(c);
  std::atomic<bool> stop{false};
  auto h = rt.spawn(chronos::SpawnOptions{.name = "busy-loop"}, [&stop] { spin_until(stop); });
  const chronos::FiberId id = h.id();
  // It spins until the report is in (under valgrind, whose threads take
  // turns, a fixed time was not always enough for the monitor to look).
  reports.wait_for_one(30s);
  std::this_thread::sleep_for(50ms);  // long enough for a second report, if one came
  stop.store(true, std::memory_order_relaxed);
  h.join();
  ASSERT_EQ(reports.count(), 1u);
  std::string r = reports.texts[0];
  SCOPED_TRACE(r);
  EXPECT_TRUE(std::regex_search(
      r, std::regex("^chronos: slow fiber: fiber " + std::to_string(id) +
                    " \"busy-loop\" has run for [0-9.]+ ms on worker 0 without yielding")));
  if (!have_backtraces()) {
    EXPECT_NE(r.find("\n    (no backtrace: " +
                     std::string(chronos::detail::backtrace_unavailable_why()) + ")\n"),
              std::string::npos);
    return;
  }
  // The fiber's own frames, up to its body...
  EXPECT_NE(r.find("ReportsAFiberThatDoesNotYield"), std::string::npos) << "no fiber frames";
  // ...and the loop it spins in. Under valgrind the interrupted pc that the
  // handler gets comes out under a neighbouring symbol, so only there this
  // innermost frame is not checked.
  if (!DEBUG_TEST_ON_VALGRIND()) {
    EXPECT_NE(r.find("spin_until"), std::string::npos) << "no backtrace of the loop";
  }
}

TEST(Watchdog, TheEnvironmentTurnsItOff) {
  Reports reports;
  const chronos::Config c = watchdog_config(reports, 5ms);
  {
    ScopedEnv env("CHRONOS_SLOW_FIBER_MS", "0");
    chronos::Runtime rt(c);
    rt.block_on([] { spin_without_yielding(100ms); });
  }
  EXPECT_EQ(reports.count(), 0u) << reports.texts[0];
}

TEST(Watchdog, QuietForFibersThatYield) {
  Reports reports;
  const chronos::Config c = watchdog_config(reports, 20ms);
  chronos::Runtime rt(c);
  rt.block_on([] {
    auto end = std::chrono::steady_clock::now() + 300ms;
    while (std::chrono::steady_clock::now() < end) {
      spin_without_yielding(1ms);
      chronos::yield();
    }
  });
  EXPECT_EQ(reports.count(), 0u) << reports.texts[0];
}

// The watchdog's probe interrupts a worker wherever it is: in a fiber, in its
// scheduler loop, or halfway through a switch, where the stack pointer is
// already the next fiber's and the other registers are not yet (no unwind
// table describes those instructions: Boost's jump_fcontext has none). The
// walk from there must stay in memory it may read, and the worker must carry
// on as if nothing happened. Here probes come as fast as the workers answer
// them (through the monitor's own request_probe), while fibers on normal and
// packed stacks spawn, yield and exit.
TEST(Watchdog, ProbesLandingAnywhereInTheSchedulerDoNoHarm) {
  if (DEBUG_TEST_ON_VALGRIND())
    GTEST_SKIP() << "valgrind's step turns the watchdog off (.ci/run says why)";
  chronos::Config c = quiet(2);
  c.slow_fiber_threshold = std::chrono::hours(1);  // the handler, but no probe of the monitor's
  chronos::Runtime rt(c);
  chronos::detail::RuntimeImpl& impl = rt.impl();
  const std::uint64_t target = chronos::test::scaled(5000);
  std::atomic<bool> enough{false};
  std::uint64_t probes = 0, in_fiber = 0, frames = 0;
  std::thread prober([&] {
    using chronos::detail::WatchdogProbe;
    while (probes < target) {
      for (unsigned i = 0; i < impl.worker_count(); ++i) {
        // Answered within microseconds, unless the worker is descheduled, or
        // under TSan, which runs a handler at the thread's next intercepted
        // call (a fiber that only yields makes none): then taken back. The
        // prober sleeps between looks: on two cores a third busy thread
        // would take turns with the worker it waits for, a time slice each.
        WatchdogProbe& p = impl.worker(i)->probe;
        if (chronos::detail::request_probe(p, impl.worker_thread(i), 10ms, 20us)) {
          if (p.id != 0) {
            ++in_fiber;
            frames += p.nframes;
          }
          p.state.store(WatchdogProbe::kIdle, std::memory_order_relaxed);
        }
        ++probes;
      }
    }
    enough.store(true, std::memory_order_relaxed);
  });
  // Each spawner: 16 fibers (every other one on a packed stack) that yield
  // once and count, 16 yields of its own, join them all; until the probes
  // are done.
  const int spawners = 4, per_round = 16;
  std::atomic<long> spawned{0}, ran{0};
  rt.block_on([&] {
    chronos::WaitGroup wg(spawners);
    for (int s = 0; s < spawners; ++s)
      chronos::go([&] {
        std::vector<chronos::JoinHandle<void>> hs;
        while (!enough.load(std::memory_order_relaxed)) {
          for (int k = 0; k < per_round; ++k)
            hs.push_back(chronos::go(chronos::SpawnOptions{.small_stack = (k & 1) != 0}, [&] {
              chronos::yield();
              ran.fetch_add(1, std::memory_order_relaxed);
            }));
          spawned.fetch_add(per_round, std::memory_order_relaxed);
          for (int k = 0; k < per_round; ++k) chronos::yield();
          for (auto& h : hs) h.join();
          hs.clear();
        }
        wg.done();
      }).detach();
    wg.wait();
  });
  prober.join();
  EXPECT_EQ(ran.load(), spawned.load());
  EXPECT_GT(ran.load(), 0);
  EXPECT_GT(in_fiber, 0u) << probes << " probes, none landed in a fiber";
  if (have_backtraces()) {
    EXPECT_GT(frames, in_fiber) << "no probe in a fiber walked more than one frame";
  } else {
    EXPECT_EQ(frames, 0u) << "frames walked without libunwind";
  }
  std::printf("%llu probes, %llu in a fiber, %.1f frames each\n",
              static_cast<unsigned long long>(probes), static_cast<unsigned long long>(in_fiber),
              in_fiber ? static_cast<double>(frames) / static_cast<double>(in_fiber) : 0.0);
}

TEST(DumpSignal, WritesTheDumpToStderrAndCarriesOn) {
  chronos::Config c = quiet(1);
  c.dump_signal = SIGUSR2;
  chronos::Runtime rt(c);
  chronos::Channel<int> ch;
  auto h = rt.spawn(chronos::SpawnOptions{.name = "dumped-on-signal"}, [&] { return *ch.recv(); });
  dump_when_waiting(1);
  testing::internal::CaptureStderr();
  ASSERT_EQ(::kill(::getpid(), SIGUSR2), 0);
  std::this_thread::sleep_for(500ms);  // the monitor writes it within a tick
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("chronos: fiber dump on signal"), std::string::npos) << err;
  EXPECT_NE(block_of(err, "dumped-on-signal").find("[waiting: channel recv"), std::string::npos)
      << err;
  ch.send(5);
  EXPECT_EQ(h.join(), 5);
}

// The dump request is process-wide: one eventfd that every runtime's monitor
// polls. A runtime whose monitor started before that fd existed (and the
// runtime that created it gone) still serves the signal, for every runtime.
// (TSan checks that the fd's creation is published to the monitor that
// reads it.)
TEST(DumpSignal, AMonitorStartedBeforeTheRequestFdExistedServesIt) {
  chronos::Config ca = quiet(1);
  ca.deadlock_action = chronos::DeadlockAction::kReport;  // a monitor even with
  ca.deadlock_grace = std::chrono::hours(1);              // the slow-fiber watch off
  chronos::Runtime a(ca);
  chronos::Channel<int> ch;
  auto h = a.spawn(chronos::SpawnOptions{.name = "dumped-by-an-older-monitor"},
                   [&] { return *ch.recv(); });
  dump_when_waiting(1);
  {
    chronos::Config cb = quiet(1);
    cb.dump_signal = SIGUSR2;
    chronos::Runtime b(cb);  // creates the request fd and installs the handler
  }
  testing::internal::CaptureStderr();
  ASSERT_EQ(::kill(::getpid(), SIGUSR2), 0);
  std::this_thread::sleep_for(600ms);  // a's monitor ticks at most every 250 ms
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("chronos: fiber dump on signal"), std::string::npos) << err;
  EXPECT_NE(block_of(err, "dumped-by-an-older-monitor").find("[waiting: channel recv"),
            std::string::npos)
      << err;
  ch.send(7);
  EXPECT_EQ(h.join(), 7);
}

// The dump signal may land on a worker while it runs a fiber on a packed
// 2 KiB stack: its handler runs on the worker's alternate stack, so the
// fiber's slot and its neighbours come through (fiber/overflow.hpp).
TEST(DumpSignal, LandingOnAPackedFiberLeavesItsStackAlone) {
  // memcheck loses track of which stack is current across this handler (it
  // makes a system call on the alternate stack) and then flags the next
  // switch's pushes: README, "Sanitizers and valgrind".
  if (DEBUG_TEST_ON_VALGRIND()) GTEST_SKIP() << "memcheck misreads the switch after this handler";
  chronos::Config c = quiet(1);
  c.dump_signal = SIGUSR2;
  c.small_stack_size = 2048;
  chronos::Runtime rt(c);
  struct sigaction sa {};
  ASSERT_EQ(::sigaction(SIGUSR2, nullptr, &sa), 0);
  EXPECT_TRUE(sa.sa_flags & SA_ONSTACK);
  testing::internal::CaptureStderr();
  const int sum = rt.block_on([] {
    chronos::Channel<int> gate;
    std::vector<chronos::JoinHandle<int>> mates;
    for (int i = 0; i < 4; ++i)
      mates.push_back(chronos::go(chronos::SpawnOptions{.small_stack = true},
                                  [&gate] { return gate.recv().value_or(-100); }));
    auto h = chronos::go(chronos::SpawnOptions{.small_stack = true}, [] {
      for (int i = 0; i < 3; ++i) {
        ::pthread_kill(::pthread_self(), SIGUSR2);
        chronos::yield();  // checks this slot's canary and its neighbour's
      }
      return 1;
    });
    int total = h.join();
    for (int i = 0; i < 4; ++i) gate.send(i);
    for (auto& m : mates) total += m.join();
    return total;
  });
  std::this_thread::sleep_for(300ms);  // the monitor writes the dump within a tick
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(sum, 1 + 0 + 1 + 2 + 3);
  EXPECT_NE(err.find("chronos: fiber dump on signal"), std::string::npos) << err;
  EXPECT_EQ(err.find("stack overflow"), std::string::npos) << err;
}

TEST(DebugConfig, EnvironmentIsParsedAndBadValuesAreClearErrors) {
  ::setenv("CHRONOS_DUMP_SIGNAL", "NOT-A-SIGNAL", 1);
  try {
    chronos::Runtime rt(quiet(1));
    ADD_FAILURE() << "no error for a bad CHRONOS_DUMP_SIGNAL";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("CHRONOS_DUMP_SIGNAL=NOT-A-SIGNAL"), std::string::npos)
        << e.what();
  }
  ::unsetenv("CHRONOS_DUMP_SIGNAL");
  ::setenv("CHRONOS_DEADLOCK", "sometimes", 1);
  EXPECT_THROW(chronos::Runtime rt(quiet(1)), std::invalid_argument);
  ::unsetenv("CHRONOS_DEADLOCK");
  for (const char* bad : {"abc", "-5", "10ms", "1e300"}) {
    ScopedEnv env("CHRONOS_SLOW_FIBER_MS", bad);
    try {
      chronos::Runtime rt(quiet(1));
      ADD_FAILURE() << "no error for CHRONOS_SLOW_FIBER_MS=" << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("CHRONOS_SLOW_FIBER_MS=") + bad),
                std::string::npos)
          << e.what();
    }
  }
  chronos::Config c = quiet(1);
  c.dump_signal = SIGSEGV;
  EXPECT_THROW(chronos::Runtime rt(c), std::invalid_argument);
}

TEST(Metrics, StatsCountTimersIoAndQueuesAndRenderAsPrometheusText) {
  chronos::Runtime rt(quiet(2));
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  rt.block_on([&] {
    for (int i = 0; i < 3; ++i) chronos::sleep_for(2ms);
    auto reader = chronos::go([fd = sv[0]] { chronos::wait_readable(fd); });
    chronos::sleep_for(20ms);
    EXPECT_EQ(::write(sv[1], "x", 1), 1);
    reader.join();
  });
  chronos::RuntimeStats s = rt.stats();
  std::uint64_t fired = 0, io = 0, run = 0;
  for (auto& w : s.workers) {
    fired += w.timers_fired;
    io += w.io_waits;
    run += w.fibers_run;
    EXPECT_EQ(w.timers_armed, 0u);
    EXPECT_EQ(w.queued, 0u);
  }
  EXPECT_GE(fired, 4u);
  EXPECT_GT(run, 4u);
  EXPECT_EQ(io, 1u);
  EXPECT_EQ(s.inject_queued, 0u);

  std::string text = chronos::to_prometheus(s);
  SCOPED_TRACE(text);
  // Every line is a comment or `name{labels} value`, and every family is typed.
  std::istringstream in(text);
  std::string line;
  std::regex sample(R"(^([a-z_]+)(\{worker="[0-9]+"\})? ([0-9]+)$)");
  std::regex typed(R"(^# TYPE ([a-z_]+) (counter|gauge)$)");
  std::set<std::string> families;
  std::size_t samples = 0;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, typed)) {
      families.insert(m[1]);
    } else if (line.rfind("# HELP ", 0) == 0) {
    } else {
      ASSERT_TRUE(std::regex_match(line, m, sample)) << line;
      EXPECT_TRUE(families.count(m[1])) << "untyped sample " << line;
      ++samples;
    }
  }
  EXPECT_GE(families.size(), 15u);
  EXPECT_EQ(samples, 12 * s.workers.size() + 5);
  EXPECT_NE(text.find("chronos_io_waits_total{worker=\"0\"} " +
                      std::to_string(s.workers[0].io_waits) + "\n"),
            std::string::npos);
  EXPECT_NE(text.find("chronos_fibers_run_total{worker=\"1\"} " +
                      std::to_string(s.workers[1].fibers_run) + "\n"),
            std::string::npos);
  ::close(sv[0]);
  ::close(sv[1]);
}
