// tests/sync_wait_group_test.cpp: WaitGroup parks fibers and blocks threads
// until its counter reaches zero, across workers and threads.
#include <gtest/gtest.h>

#include <chronos/chronos.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using chronos::Config;
using chronos::JoinHandle;
using chronos::Runtime;
using chronos::WaitGroup;
using namespace std::chrono_literals;

// A wait group fills a cache line of its own, so that the done() calls of
// other workers do not fight over the line with the waiter's frame.
static_assert(alignof(WaitGroup) == 64 && sizeof(WaitGroup) == 64);

TEST(WaitGroup, TwoOnOneFrameSitOnSeparateCacheLines) {
  WaitGroup a, b;
  const auto pa = reinterpret_cast<std::uintptr_t>(&a);
  const auto pb = reinterpret_cast<std::uintptr_t>(&b);
  EXPECT_EQ(pa % 64, 0u);
  EXPECT_EQ(pb % 64, 0u);
  EXPECT_NE(pa / 64, pb / 64);
}

// The last done() from a plain thread wakes the waiters of two runtimes,
// interleaved, more of each than one hand-over batch holds
// (detail::WakeBatch): every one of them wakes, once.
TEST(WaitGroup, APlainThreadWakesTheWaitersOfTwoRuntimesInBatches) {
  constexpr int kEach = 100;
  WaitGroup gate(1), waiting(2 * kEach);
  std::atomic<int> woke{0};
  {
    Runtime a{Config{.workers = 2}}, b{Config{.workers = 1}};
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < kEach; ++i)
      for (Runtime* rt : {&a, &b})
        hs.push_back(rt->spawn([&] {
          waiting.done();
          gate.wait();
          woke.fetch_add(1);
        }));
    waiting.wait();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let the last ones park
    gate.done();
    for (auto& h : hs) h.join();
  }
  EXPECT_EQ(woke.load(), 2 * kEach);
}

TEST(WaitGroup, WaitReturnsAfterEveryDone) {
  Runtime rt{Config{.workers = 2}};
  std::atomic<int> finished{0};
  int seen = rt.block_on([&] {
    WaitGroup wg;
    const int n = 1000;
    wg.add(n);
    for (int i = 0; i < n; ++i)
      chronos::go([&] {
        chronos::yield();
        finished.fetch_add(1, std::memory_order_relaxed);
        wg.done();
      }).detach();
    wg.wait();
    return finished.load(std::memory_order_relaxed);  // done() released each increment
  });
  EXPECT_EQ(seen, 1000);
}

TEST(WaitGroup, WaitAtZeroReturnsAtOnce) {
  WaitGroup wg;
  wg.wait();  // a plain thread, nothing to wait for
  Runtime rt{Config{.workers = 1}};
  rt.block_on([&] { wg.wait(); });
  EXPECT_EQ(wg.count(), 0);
}

TEST(WaitGroup, ReleasesManyFiberAndThreadWaitersAtOnce) {
  Runtime rt{Config{.workers = 2}};
  WaitGroup gate(1), parked(0), released(0);
  const int fibers = static_cast<int>(chronos::test::scaled(10000));
  parked.add(fibers);
  released.add(fibers + 2);
  for (int i = 0; i < fibers; ++i) {
    rt.spawn(chronos::SpawnOptions{.small_stack = true}, [&] {
        parked.done();
        gate.wait();
        released.done();
      }).detach();
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&] {
      gate.wait();  // plain threads wait on the same group
      released.done();
    });
  parked.wait();  // this thread blocks until every fiber is about to park
  EXPECT_EQ(released.count(), fibers + 2);
  gate.done();  // from a plain thread: wakes fibers on the workers
  released.wait();
  for (auto& t : threads) t.join();
  EXPECT_EQ(released.count(), 0);
}

TEST(WaitGroup, GoingNegativeIsALogicErrorAndChangesNothing) {
  WaitGroup wg;
  wg.add(2);
  EXPECT_THROW(wg.add(-3), std::logic_error);
  EXPECT_EQ(wg.count(), 2);
  wg.done();
  wg.done();
  EXPECT_THROW(wg.done(), std::logic_error);
  EXPECT_EQ(wg.count(), 0);
}

TEST(WaitGroup, IsReusableOnceAtZero) {
  Runtime rt{Config{.workers = 2}};
  rt.block_on([] {
    WaitGroup wg;
    for (int round = 0; round < 100; ++round) {
      std::atomic<int> n{0};
      wg.add(10);
      for (int i = 0; i < 10; ++i)
        chronos::go([&] {
          n.fetch_add(1);
          wg.done();
        }).detach();
      wg.wait();
      ASSERT_EQ(n.load(), 10) << "round " << round;
    }
  });
}

TEST(WaitGroup, AParkedWaiterIsUnwoundAtShutdownAndLeavesTheListClean) {
  WaitGroup never(1);
  std::atomic<int> destructors{0};
  {
    Runtime rt{Config{.workers = 1}};
    for (int i = 0; i < 3; ++i) {
      rt.spawn([&] {
          struct Guard {
            std::atomic<int>& d;
            ~Guard() { d++; }
          } g{destructors};
          never.wait();  // nobody will ever call done()
        }).detach();
    }
    rt.block_on([] {});  // they have parked by now (one worker, FIFO injection)
  }
  EXPECT_EQ(destructors.load(), 3);
  never.done();  // would touch the unwound fibers' nodes if they were still queued
  EXPECT_EQ(never.count(), 0);
  // The unwound waiters counted themselves out: a wait now sees a drained
  // word and returns (it would back off forever on a stale waiter count).
  std::atomic<bool> returned{false};
  std::thread([&] {
    never.wait();
    returned = true;
  }).detach();
  for (int i = 0; i < 10'000 && !returned; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(returned.load());
}

// The usual shape: the waiter destroys the wait group as soon as wait()
// returns, while the done() that zeroed it may still be returning on another
// thread. Every round frees it on the heap, so that ASan and TSan (CI) see
// any touch after the free; the waiter spins on count() first, to meet the
// done() as close to its zeroing add as it can.
TEST(WaitGroup, TheWaiterMayDestroyItTheMomentWaitReturns) {
  // 20,000 rounds; 5,000 under the sanitizers, 2,000 under valgrind.
  const int kRounds =
      static_cast<int>(std::min<std::size_t>(20'000, chronos::test::scaled(100'000)));
  std::atomic<WaitGroup*> handoff{nullptr};
  std::thread helper([&] {
    for (int i = 0; i < kRounds; ++i) {
      WaitGroup* wg;
      while (!(wg = handoff.exchange(nullptr, std::memory_order_acquire)))
        std::this_thread::yield();
      wg->done();
    }
  });
  for (int i = 0; i < kRounds; ++i) {
    auto* wg = new WaitGroup(1);
    handoff.store(wg, std::memory_order_release);
    while (wg->count() != 0) std::this_thread::yield();  // (valgrind runs one thread at a time)
    wg->wait();
    delete wg;
  }
  helper.join();
}

TEST(WaitGroup, TheCounterStaysWithinThirtyOneBits) {
  EXPECT_THROW(WaitGroup(-1), std::logic_error);
  EXPECT_THROW(WaitGroup(std::int64_t{1} << 31), std::logic_error);
  WaitGroup wg(INT32_MAX);
  EXPECT_THROW(wg.add(1), std::logic_error);
  EXPECT_THROW(wg.add(std::int64_t{1} << 40), std::logic_error);
  EXPECT_THROW(wg.add(INT64_MAX), std::logic_error);
  EXPECT_THROW(wg.add(INT64_MIN), std::logic_error);
  EXPECT_THROW(wg.add(INT32_MIN), std::logic_error);
  EXPECT_EQ(wg.count(), INT32_MAX);
  wg.add(-INT32_MAX);
  EXPECT_EQ(wg.count(), 0);
  EXPECT_TRUE(wg.wait_for(0ms));
}

}  // namespace
