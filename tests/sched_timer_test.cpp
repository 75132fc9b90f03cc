// tests/sched_timer_test.cpp: the timing wheel on its own, and sleeping
// fibers: never early, in deadline order, and memory that does not grow.
#include <gtest/gtest.h>

#include <chronos/chronos.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "sched/timer_wheel.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using chronos::Config;
using chronos::Runtime;
using chronos::detail::Timer;
using chronos::detail::TimerWheel;
using chronos::test::scaled;

constexpr std::int64_t kMs = 1'000'000;

struct Fired {
  std::vector<int> order;
};

void record(Timer* t) {
  auto* f = static_cast<Fired*>(t->arg);
  f->order.push_back(static_cast<int>(t->deadline / kMs));
  chronos::detail::timer_fired(*t);
}

// A wheel driven by hand: every timer fires at the first poll at or after
// its deadline (rounded up to the tick), never before, in deadline order,
// across every level of the wheel.
TEST(TimerWheel, FiresEachTimerOnceAtItsTickInDeadlineOrder) {
  TimerWheel wheel(0);
  Fired fired;
  std::mt19937_64 rng(7);
  // Deadlines spread over every level: 1 ms .. ~3 days.
  std::vector<std::int64_t> ms;
  for (int i = 0; i < 2000; ++i) ms.push_back(1 + static_cast<std::int64_t>(rng() % 64));
  for (int i = 0; i < 2000; ++i) ms.push_back(1 + static_cast<std::int64_t>(rng() % 300'000'000));
  std::vector<Timer> timers(ms.size());
  for (std::size_t i = 0; i < ms.size(); ++i) {
    timers[i].deadline = ms[i] * kMs;
    timers[i].fire = &record;
    timers[i].arg = &fired;
    wheel.arm(&timers[i]);
  }
  EXPECT_EQ(wheel.armed(), ms.size());
  std::vector<std::int64_t> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  // Poll at each distinct deadline, and just before it: nothing early.
  std::size_t next = 0;
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    if (i && sorted[i] == sorted[i - 1]) continue;
    wheel.poll(sorted[i] * kMs - 1);
    ASSERT_EQ(fired.order.size(), next) << "a timer fired before " << sorted[i] << " ms";
    wheel.poll(sorted[i] * kMs);
    while (next < sorted.size() && sorted[next] == sorted[i]) ++next;
    ASSERT_EQ(fired.order.size(), next) << "at " << sorted[i] << " ms";
  }
  EXPECT_TRUE(std::is_sorted(fired.order.begin(), fired.order.end()));
  EXPECT_EQ(wheel.armed(), 0u);
  EXPECT_EQ(wheel.next_due(), chronos::detail::kNoDeadline);
}

// Everything due at one poll fires in one batch, sorted by exact deadline
// (not only by tick), whatever the batch's size: the sort is iterative, so a
// batch of thousands costs no more stack than one of two.
TEST(TimerWheel, ABigBatchFiresInExactDeadlineOrder) {
  for (std::size_t n :
       {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{1000}, std::size_t{4097}}) {
    TimerWheel wheel(0);
    std::vector<std::int64_t> order;
    std::mt19937_64 rng(n);
    std::vector<Timer> timers(n);
    for (auto& t : timers) {
      t.deadline = 1 + static_cast<std::int64_t>(rng() % (50 * kMs));  // ns apart, many per tick
      t.fire = [](Timer* self) {
        static_cast<std::vector<std::int64_t>*>(self->arg)->push_back(self->deadline);
        chronos::detail::timer_fired(*self);
      };
      t.arg = &order;
      wheel.arm(&t);
    }
    EXPECT_EQ(wheel.poll(100 * kMs), n);
    ASSERT_EQ(order.size(), n);
    EXPECT_TRUE(std::is_sorted(order.begin(), order.end())) << n;
  }
}

TEST(TimerWheel, CancelledTimersNeverFire) {
  TimerWheel wheel(0);
  Fired fired;
  std::vector<Timer> timers(1000);
  for (std::size_t i = 0; i < timers.size(); ++i) {
    timers[i].deadline = static_cast<std::int64_t>(1 + i * 37 % 5000) * kMs;
    timers[i].fire = &record;
    timers[i].arg = &fired;
    wheel.arm(&timers[i]);
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < timers.size(); ++i) {
    if (i % 3 == 0) {
      EXPECT_TRUE(chronos::detail::timer_cancel(timers[i]));
      EXPECT_FALSE(chronos::detail::timer_cancel(timers[i]));  // once only
    } else {
      ++kept;
    }
  }
  wheel.poll(6000 * kMs);
  EXPECT_EQ(fired.order.size(), kept);
  for (std::size_t i = 0; i < timers.size(); i += 3)
    EXPECT_EQ(timers[i].state.load(), Timer::kIdle);
}

TEST(TimerWheel, DeadlineBeyondTheTopLevelStillFiresOnTime) {
  TimerWheel wheel(0);
  Fired fired;
  Timer t;
  const std::int64_t far = (std::int64_t{1} << 38) * kMs;  // ~8.7 years
  t.deadline = far;
  t.fire = &record;
  t.arg = &fired;
  wheel.arm(&t);
  for (std::int64_t now = 0; now < far; now += far / 7) wheel.poll(now);
  EXPECT_TRUE(fired.order.empty());
  wheel.poll(far);
  EXPECT_EQ(fired.order.size(), 1u);
}

TEST(Sleep, NeverWakesEarly) {
  Runtime rt{Config{.workers = 2}};
  std::atomic<int> early{0};
  std::vector<chronos::JoinHandle<void>> hs;
  for (int i = 0; i < 50; ++i)
    hs.push_back(rt.spawn([&, i] {
      auto d = std::chrono::milliseconds(1 + i % 7);
      auto start = chronos::Clock::now();
      chronos::sleep_for(d);
      if (chronos::Clock::now() - start < d) early.fetch_add(1);
    }));
  for (auto& h : hs) h.join();
  EXPECT_EQ(early.load(), 0);
}

// 10k sleepers, spawned in a shuffled order, wake in the order of their
// deadlines (one worker, so "order" is well defined). The deadlines are fixed
// only once every sleeper has started and waits at a gate: a first run costs
// a fresh stack page (10 us on some days here, more with a neighbour on the
// CPU), and a sleeper that started after its own deadline would return at
// once, out of order, without the timers having done anything wrong.
TEST(Sleep, TenThousandSleepersWakeInDeadlineOrder) {
  Runtime rt{Config{.workers = 1}};
  const int n = static_cast<int>(scaled(10000));
  std::vector<int> woke;
  int started_after_deadline = 0;
  rt.block_on([&] {
    std::vector<int> ids(n);
    for (int i = 0; i < n; ++i) ids[i] = i;
    std::shuffle(ids.begin(), ids.end(), std::mt19937(42));
    chronos::WaitGroup at_gate(n);
    chronos::Channel<int> gate;  // closed to let every sleeper go at once
    chronos::Clock::time_point base;
    std::vector<chronos::JoinHandle<void>> hs;
    for (int id : ids)
      hs.push_back(chronos::go({.small_stack = true}, [&, id] {
        at_gate.done();
        EXPECT_FALSE(gate.recv().has_value());
        auto deadline = base + std::chrono::microseconds(id * 20);  // 20 us apart
        if (chronos::Clock::now() >= deadline) ++started_after_deadline;
        chronos::sleep_until(deadline);
        woke.push_back(id);
      }));
    at_gate.wait();
    base = chronos::Clock::now() + 200ms;  // passing the gate is 10k warm switches
    gate.close();
    for (auto& h : hs) h.join();
  });
  ASSERT_EQ(woke.size(), static_cast<std::size_t>(n));
  ASSERT_EQ(started_after_deadline, 0) << "the machine stalled for 200 ms; the order says nothing";
  EXPECT_TRUE(std::is_sorted(woke.begin(), woke.end()));
}

// A busy worker still fires timers: sleepers wake while other fibers keep
// yielding (no idle time at all on that worker).
TEST(Sleep, TimersFireUnderLoad) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([&] {
    std::atomic<bool> stop{false};
    auto spinner = chronos::go([&] {
      while (!stop.load(std::memory_order_relaxed)) chronos::yield();
    });
    auto start = chronos::Clock::now();
    chronos::sleep_for(5ms);
    auto slept = chronos::Clock::now() - start;
    stop = true;
    spinner.join();
    EXPECT_GE(slept, 5ms);
    // Generous: this machine is shared and noisy (and valgrind is slower still).
    EXPECT_LT(slept, 2s * static_cast<long>(chronos::test::scale()));
  });
}

long rss_kib() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "VmRSS: %ld", &kib) == 1) break;
  if (f) std::fclose(f);
  return kib;
}

// Timers created and cancelled by the 100k (sleeps cut short by a stop
// request) do not grow memory: each Timer lives on its fiber's stack, and
// the wheel's lists are intrusive.
TEST(Sleep, CreatingAndCancellingTimersDoesNotGrowMemory) {
  Runtime rt{Config{.workers = 1}};
  auto round = [&](std::size_t n) {
    rt.block_on([&] {
      int cancelled = 0;
      for (std::size_t i = 0; i < n; ++i) {
        std::stop_source stop;
        auto h = chronos::go({.stop_token = stop.get_token()}, [&] {
          try {
            chronos::sleep_for(1h);
          } catch (const chronos::Cancelled&) {
            ++cancelled;
          }
        });
        chronos::yield();  // it parks with its timer armed
        stop.request_stop();
        h.join();
      }
      EXPECT_EQ(cancelled, static_cast<int>(n));
    });
  };
  round(scaled(50000));
  long before = rss_kib();
  round(scaled(100000));
  long after = rss_kib();
  // Only in plain runs: a sanitizer's shadow memory and valgrind's own
  // bookkeeping grow on their own (they run scaled down, scale() > 1).
  if (chronos::test::scale() == 1) {
    EXPECT_LT(after - before, 1024) << "RSS grew from " << before << " to " << after << " KiB";
  }
  EXPECT_EQ(rt.stats().live_fibers, 0u);
}

TEST(Sleep, OutsideAFiberIsAClearError) {
  try {
    chronos::sleep_for(1ms);
    FAIL() << "no exception";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("outside a fiber"), std::string::npos) << e.what();
  }
}

TEST(Sleep, ShutdownWaitsForSleepers) {
  std::atomic<bool> done{false};
  {
    Runtime rt{Config{.workers = 2}};
    rt.spawn([&] {
        chronos::sleep_for(30ms);
        done = true;
      }).detach();
  }  // ~Runtime: a sleeping fiber is not parked forever, so it completes
  EXPECT_TRUE(done.load());
}

}  // namespace
