// tests/sched_mn_test.cpp: M:N scheduling: stealing, priorities and their
// starvation bound, pinning, sleeping when idle, shutdown under load.
#include <gtest/gtest.h>
#include <sched.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define MN_TEST_ON_VALGRIND() RUNNING_ON_VALGRIND
#else
#define MN_TEST_ON_VALGRIND() 0
#endif

#include <chronos/chronos.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sched/heavy_fence.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"
#include "test_util.hpp"

namespace {

using chronos::Config;
using chronos::JoinHandle;
using chronos::Runtime;
using chronos::SpawnOptions;
using chronos::test::scaled;

// A CPU-bound leaf that the compiler cannot fold away.
[[gnu::noinline]] std::uint64_t burn(std::uint64_t n) {
  std::uint64_t x = n;
  for (std::uint64_t i = 0; i < 20000; ++i) x = x * 6364136223846793005ull + 1442695040888963407ull;
  return x;
}

TEST(MN, IdleWorkersStealFromABusyOne) {
  Runtime rt{Config{.workers = 2}};
  std::atomic<int> ran{0};
  auto steals = [&] {
    auto s = rt.stats();
    return s.workers[0].steals + s.workers[1].steals;
  };
  // One fiber spawns a fan-out onto its own worker's deque; the other worker
  // can only get work by stealing. Repeat until it has (a slow or serialised
  // machine, valgrind say, may need a few rounds), but not forever.
  int rounds = 0;
  for (; rounds < 50 && (rounds == 0 || steals() == 0); ++rounds) {
    rt.block_on([&] {
      std::vector<JoinHandle<std::uint64_t>> hs;
      for (int i = 0; i < 2000; ++i)
        hs.push_back(chronos::go([&, i] {
          ++ran;
          return burn(static_cast<std::uint64_t>(i));
        }));
      for (auto& h : hs) h.join();
    });
  }
  EXPECT_EQ(ran.load(), 2000 * rounds);
  auto s = rt.stats();
  ASSERT_EQ(s.workers.size(), 2u);
  std::uint64_t stolen = s.workers[0].stolen + s.workers[1].stolen;
  EXPECT_GT(steals(), 0u) << "no worker stole in " << rounds << " rounds";
  EXPECT_GE(stolen, steals());  // batches: each steal takes one or more
  EXPECT_GT(s.workers[0].fibers_run, 0u);
  EXPECT_GT(s.workers[1].fibers_run, 0u);
}

// The wake-up chain: a fan-out from one fiber wakes one sleeping worker, which
// wakes the next once it has found work, and so on, so that every worker
// joins in. (A woken worker that kept the spinning slot after finding work by
// a plain steal stopped the chain: on 16 CPUs, 11 workers slept through
// skynet.) Each fiber computes for 10 ms without yielding, so one worker
// cannot finish the fan-out alone before the others could have been woken.
TEST(MN, AFanOutWakesEveryWorker) {
  // valgrind runs one thread at a time and picks which: whether a woken
  // worker gets a turn before the others finish is its choice, not ours.
  if (MN_TEST_ON_VALGRIND()) GTEST_SKIP() << "valgrind serialises the workers";
  constexpr unsigned kWorkers = 4;
  Config c{.workers = kWorkers, .pin_workers = false};
  c.slow_fiber_threshold = {};  // the fibers are slow on purpose
  Runtime rt{c};
  // Every worker asleep first, so that each one that joins in was woken.
  for (int i = 0; i < 5000 && rt.stats().sleeping_workers < kWorkers; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(rt.stats().sleeping_workers, kWorkers);
  rt.block_on([] {
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < 64; ++i)
      hs.push_back(chronos::go([] {
        const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(10);
        while (std::chrono::steady_clock::now() < end) {
        }
      }));
    for (auto& h : hs) h.join();
  });
  auto s = rt.stats();
  ASSERT_EQ(s.workers.size(), kWorkers);
  for (unsigned i = 0; i < kWorkers; ++i)
    EXPECT_GT(s.workers[i].fibers_run, 0u) << "worker " << i << " slept through the fan-out";
}

TEST(MN, StressNWorkersEveryFiberRunsExactlyOnce) {
  // 10M fibers on two workers, 2M on three and four, and 2M on one worker
  // per CPU where the machine has more than four.
  std::vector<unsigned> counts{2u, 3u, 4u};
  if (const unsigned cpus = std::thread::hardware_concurrency(); cpus > 4) counts.push_back(cpus);
  for (unsigned workers : counts) {
    const std::size_t n = scaled(workers == 2 ? 10'000'000 : 2'000'000);
    std::vector<std::atomic<std::uint8_t>> runs(n);
    {
      Runtime rt{Config{.workers = workers, .pin_workers = false}};
      // A tree of spawners, so every worker spawns, steals and is stolen from.
      struct Tree {
        static void node(std::vector<std::atomic<std::uint8_t>>& runs, std::size_t lo,
                         std::size_t hi) {
          if (hi - lo <= 64) {
            std::vector<JoinHandle<void>> leaves;
            leaves.reserve(hi - lo);
            for (std::size_t i = lo; i < hi; ++i)
              leaves.push_back(chronos::go(SpawnOptions{.small_stack = true}, [&runs, i] {
                runs[i].fetch_add(1, std::memory_order_relaxed);
              }));
            for (auto& l : leaves) l.join();
            return;
          }
          std::size_t mid = lo + (hi - lo) / 2;
          auto left = chronos::go(SpawnOptions{.small_stack = true},
                                  [&runs, lo, mid] { node(runs, lo, mid); });
          node(runs, mid, hi);
          left.join();
        }
      };
      rt.block_on([&] { Tree::node(runs, 0, n); });
    }
    std::size_t bad = 0;
    for (auto& r : runs)
      if (r.load() != 1) ++bad;
    EXPECT_EQ(bad, 0u) << workers << " workers";
  }
}

// A fiber woken into its waker's runnext slot, while the waker then computes
// without yielding, does not wait for the computation: the monitor moves it
// to the injection queue after a tick or two (sched/worker.cpp, "Retaking
// runnext") and the idle worker runs it. Before, it waited the whole 10 s
// here. With the watchdog on (the default) and off: the monitor runs for the
// retakes alone then.
TEST(MN, AFiberWokenIntoABusyWorkersRunnextRunsOnAnIdleOne) {
  if (!chronos::detail::heavy_fence_available()) GTEST_SKIP() << "no membarrier(2) here";
  // valgrind runs one thread at a time, and its default lock is not fair: the
  // computing thread takes it back at once and the monitor never gets a turn
  // (with --fair-sched=yes the test passes under valgrind in half a second).
  if (MN_TEST_ON_VALGRIND()) GTEST_SKIP() << "valgrind's unfair thread lock starves the monitor";
  for (bool watchdog : {true, false}) {
    Config cfg{.workers = 2};
    if (watchdog) {
      cfg.on_slow_fiber = [](std::string_view) {};  // the waker is slow on purpose
    } else {
      cfg.slow_fiber_threshold = std::chrono::nanoseconds(0);
      cfg.deadlock_action = chronos::DeadlockAction::kIgnore;
    }
    Runtime rt{cfg};
    std::atomic<bool> about_to_wait{false}, woken_ran{false};
    const bool seen_in_time = rt.block_on([&] {
      chronos::Promise<void> p;
      auto fut = p.get_future();
      auto woken = chronos::go([&] {
        about_to_wait = true;
        fut.get();
        woken_ran = true;
      });
      while (!about_to_wait) chronos::sleep_for(std::chrono::milliseconds(1));
      chronos::sleep_for(std::chrono::milliseconds(20));  // it parks in get()
      p.set_value();                                      // wakes it into this worker's runnext...
      // ...behind a computation that waits for it without ever switching.
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      std::uint64_t x = 0;
      while (!woken_ran.load() && std::chrono::steady_clock::now() < give_up) x += burn(x);
      const bool ran = woken_ran.load();
      woken.join();
      return ran;
    });
    EXPECT_TRUE(seen_in_time) << "watchdog " << watchdog
                              << ": the woken fiber waited for the whole computation";
    auto st = rt.stats();
    // One retake, or more where a slow machine (valgrind) leaves a worker
    // unscheduled for a whole tick with a fiber in its runnext elsewhere.
    EXPECT_GE(st.workers[0].retaken + st.workers[1].retaken, 1u) << "watchdog " << watchdog;
  }
}

// The retake protocol against the owner's fills and takes, far more often
// than the monitor would: a thread retakes from worker 0's runnext as fast as
// it can (what the monitor does once a tick at most), while pairs of fibers
// play ping-pong over unbuffered channels, each send filling a runnext slot
// and each receive's park taking from one, with a little work between them
// in some rounds, so that a retake meets the slot at every stage. Every
// message arrives exactly once, in order, and every retaken fiber runs once.
TEST(MN, RetakesRacingTheOwnersRunnextLoseNoFiberAndRunNoneTwice) {
  if (!chronos::detail::heavy_fence_available()) GTEST_SKIP() << "no membarrier(2) here";
  using chronos::detail::Fiber;
  constexpr int kPairs = 8;
  const int rounds = static_cast<int>(scaled(20000));
  Runtime rt{Config{.workers = 2, .pin_workers = false}};
  chronos::detail::RuntimeImpl& impl = rt.impl();
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> taken{0};
  std::thread retaker([&] {
    chronos::detail::Worker* w = impl.worker(0);
    while (!done.load(std::memory_order_relaxed)) {
      if (Fiber* seen = w->runnext_snapshot())
        if (Fiber* f = w->retake_runnext(seen)) {
          taken.fetch_add(1, std::memory_order_relaxed);
          impl.inject_batch(&f, 1);
        }
    }
  });
  std::atomic<long> bad{0}, received{0};
  // 0 to about 3 us of work after a send: the woken fiber waits in runnext.
  auto spin = [](int i) {
    volatile int sink = 0;
    for (int k = 0; k < (i & 3) * 300; ++k) sink = sink + k;
  };
  // Until the retaker has taken some (at least one round; a slow or
  // serialised machine, valgrind say, may need more), but not forever.
  int round = 0;
  for (; round < 50 && (round == 0 || taken.load() == 0); ++round)
    rt.block_on([&] {
      std::vector<JoinHandle<void>> hs;
      for (int p = 0; p < kPairs; ++p) {
        auto ping = std::make_shared<chronos::Channel<int>>(0);
        auto pong = std::make_shared<chronos::Channel<int>>(0);
        hs.push_back(chronos::go([&, ping, pong] {
          for (int i = 0; i < rounds; ++i) {
            ping->send(i);
            spin(i);
            if (pong->recv() != std::optional<int>(i)) ++bad;
            ++received;
          }
        }));
        hs.push_back(chronos::go([&, ping, pong] {
          for (int i = 0; i < rounds; ++i) {
            if (ping->recv() != std::optional<int>(i)) ++bad;
            ++received;
            pong->send(i);
            spin(i + 1);
          }
        }));
      }
      for (auto& h : hs) h.join();
    });
  done = true;
  retaker.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(received.load(), 2L * kPairs * rounds * round);
  EXPECT_GE(rt.stats().workers[0].retaken, taken.load());  // (the monitor may retake too)
  EXPECT_GT(taken.load(), 0u) << "the retaker never got a fiber: the test tested nothing";
}

TEST(MN, HighPriorityRunsFirstAndLowIsNeverStarved) {
  // One worker kept busy with an endless supply of high-priority fibers: each
  // spawns its successor before finishing. Without the fairness tick the low
  // fiber would never run.
  Runtime rt{Config{.workers = 1}};
  std::atomic<bool> low_ran{false};
  std::atomic<int> highs_before_low{0};
  rt.block_on([&] {
    auto low = chronos::go(SpawnOptions{.priority = 0}, [&] { low_ran = true; });
    struct Chain {
      static void link(std::atomic<bool>& stop, std::atomic<int>& count) {
        if (stop) return;
        ++count;
        chronos::go(SpawnOptions{.priority = 15}, [&] { link(stop, count); }).detach();
      }
    };
    chronos::go(SpawnOptions{.priority = 15}, [&] {
      Chain::link(low_ran, highs_before_low);
    }).detach();
    low.join();
  });
  EXPECT_TRUE(low_ran.load());
  // The fairness tick takes the oldest fiber every 16th round.
  EXPECT_LE(highs_before_low.load(), 2 * 16) << "low priority waited too long";
}

TEST(MN, WorkersArePinnedToOneAllowedCpuEach) {
  cpu_set_t all;
  CPU_ZERO(&all);
  ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
  unsigned cpus = static_cast<unsigned>(CPU_COUNT(&all));
  Runtime rt{Config{.workers = cpus, .pin_workers = true}};
  std::vector<JoinHandle<int>> hs;
  std::vector<JoinHandle<bool>> allowed;
  // Foreign spawns land on whichever worker is free; each reports its affinity.
  for (int i = 0; i < 200; ++i) {
    hs.push_back(rt.spawn([] {
      cpu_set_t mine;
      CPU_ZERO(&mine);
      sched_getaffinity(0, sizeof mine, &mine);
      return CPU_COUNT(&mine);
    }));
    allowed.push_back(rt.spawn([all] {  // ...and that CPU is one the process may use
      cpu_set_t mine;
      CPU_ZERO(&mine);
      sched_getaffinity(0, sizeof mine, &mine);
      for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &mine) && !CPU_ISSET(c, &all)) return false;
      return true;
    }));
  }
  for (auto& h : hs) EXPECT_EQ(h.join(), 1);  // each worker runs on exactly one CPU
  for (auto& a : allowed) EXPECT_TRUE(a.join());
  Runtime unpinned{Config{.workers = 1, .pin_workers = false}};
  EXPECT_EQ(unpinned.block_on([] {
    cpu_set_t mine;
    CPU_ZERO(&mine);
    sched_getaffinity(0, sizeof mine, &mine);
    return CPU_COUNT(&mine);
  }),
            static_cast<int>(cpus));
}

// This process's CPU time (user + system) in clock ticks, from /proc/self/stat.
long cpu_ticks() {
  std::ifstream in("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the ")" that ends the command name: state is field 3; utime
  // and stime are fields 14 and 15.
  std::size_t p = stat.rfind(')');
  std::istringstream rest(stat.substr(p + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

TEST(MN, SpinnersAreCappedAtHalfTheWorkersAwake) {
  using chronos::detail::RuntimeImpl;
  // (workers, sleepers) -> how many may spin at once.
  EXPECT_EQ(RuntimeImpl::max_spinners(2, 0), 1u);  // two workers: one spinner, not two
  EXPECT_EQ(RuntimeImpl::max_spinners(2, 1), 1u);  // always at least one
  EXPECT_EQ(RuntimeImpl::max_spinners(2, 2), 1u);
  EXPECT_EQ(RuntimeImpl::max_spinners(4, 0), 2u);
  EXPECT_EQ(RuntimeImpl::max_spinners(4, 2), 1u);
  EXPECT_EQ(RuntimeImpl::max_spinners(16, 0), RuntimeImpl::kMaxSpinners);  // never more
  EXPECT_EQ(RuntimeImpl::max_spinners(16, 13), 1u);
  EXPECT_EQ(RuntimeImpl::max_spinners(3, 7), 1u);  // a stale sleeper count cannot underflow
}

TEST(MN, AnIdleRuntimeUsesNoCpu) {
  Runtime rt{Config{.workers = 2}};
  rt.block_on([] {
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < 100; ++i) hs.push_back(chronos::go([] { chronos::yield(); }));
    for (auto& h : hs) h.join();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the spinners give up
  long before = cpu_ticks();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  long used = cpu_ticks() - before;
  long hz = sysconf(_SC_CLK_TCK);
  // Two spinning workers would burn 2 * hz ticks. Allow scheduler noise.
  EXPECT_LE(used, hz / 20) << used << " ticks of CPU in an idle second";
}

// A plain thread that closes a channel wakes every fiber parked on it, one
// injection each. A worker that is awake (or spinning) takes them, so the
// waker wakes a sleeping worker only when none is: a handful of wake-ups for
// the whole batch, not one per fiber. It used to wake a sleeper for nearly
// every fiber, since the workers drained the queue faster than it filled:
// with a million fibers, a futex call each, and a join of 2-4 s.
TEST(MN, WakingManyFromAPlainThreadWakesFewWorkers) {
  Runtime rt{Config{.workers = 2, .deadlock_action = chronos::DeadlockAction::kIgnore}};
  const std::size_t n = scaled(100'000);
  chronos::WaitGroup parked(static_cast<std::int64_t>(n)), finished(static_cast<std::int64_t>(n));
  chronos::Channel<int> gate;
  rt.spawn([&] {
      for (std::size_t i = 0; i < n; ++i)
        chronos::go(SpawnOptions{.small_stack = true}, [&] {
          parked.done();
          EXPECT_FALSE(gate.recv().has_value());
          finished.done();
        }).detach();
    }).detach();
  parked.wait();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // every worker asleep
  auto wakeups = [&] {
    std::uint64_t w = 0;
    for (const auto& ws : rt.stats().workers) w += ws.wakeups;
    return w;
  };
  const std::uint64_t before = wakeups();
  gate.close();
  finished.wait();
  const std::uint64_t woken = wakeups() - before;
  EXPECT_LT(woken, n / 100) << woken << " worker wake-ups for " << n << " fibers";
}

TEST(MN, AnIdleRuntimeReturnsABurstsStacksAfterASecond) {
  Runtime rt{Config{.workers = 1, .max_cached_stacks = 16}};
  auto burst = [&] {
    rt.block_on([] {
      std::vector<JoinHandle<void>> hs;
      for (int i = 0; i < 1000; ++i) hs.push_back(chronos::go([] { chronos::yield(); }));
      for (auto& h : hs) h.join();
    });
  };
  burst();
  std::uint64_t after_burst = rt.stats().stacks_mapped;
  EXPECT_GE(after_burst, 1000u);  // kept warm while busy
  burst();                        // a second burst right away reuses them all
  EXPECT_EQ(rt.stats().stacks_mapped, after_burst);
  // Not within the first second of idleness: a lull between bursts keeps them.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(rt.stats().stacks_mapped, after_burst);
  // Then normal stacks past the limit are unmapped; the worker's own cache
  // (up to 128) stays. Unmapping a thousand stacks takes a while under TSan
  // with a neighbour on the CPU, so this waits for it (up to 10 s) instead
  // of expecting it by a fixed time.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (rt.stats().stacks_mapped > 16u + 128u + 64u && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_LE(rt.stats().stacks_mapped, 16u + 128u + 64u);
}

TEST(MN, ShutdownUnderLoadFinishesEveryFiber) {
  std::atomic<int> finished{0};
  const int n = static_cast<int>(scaled(20000));
  {
    Runtime rt{Config{.workers = 2}};
    std::vector<std::thread> spawners;
    for (int t = 0; t < 2; ++t) {
      spawners.emplace_back([&] {
        for (int i = 0; i < n / 2; ++i) {
          rt.spawn(SpawnOptions{.small_stack = true}, [&] {
              for (int k = 0; k < 3; ++k) chronos::yield();
              chronos::go(SpawnOptions{.small_stack = true}, [&] { finished++; });
              finished++;
            }).detach();
        }
      });
    }
    for (auto& t : spawners) t.join();
  }                                             // ~Runtime while the fibers are still running
  EXPECT_EQ(finished.load(), 2 * (n / 2) * 2);  // each spawn finishes itself and one child
}

}  // namespace
