// tests/sync_mutex_test.cpp: Mutex, Semaphore and CondVar park fibers, keep
// mutual exclusion across workers and threads, and serve waiters in order.
#include <gtest/gtest.h>

#include <chronos/chronos.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using chronos::Config;
using chronos::JoinHandle;
using chronos::Runtime;
using chronos::test::scaled;

TEST(Mutex, ExcludesAcrossWorkersAndThreads) {
  Runtime rt{Config{.workers = 2}};
  chronos::Mutex mu;
  long counter = 0;  // plain: only ever touched under mu (TSan checks it)
  const int fibers = 8, per = static_cast<int>(scaled(20000));
  std::vector<JoinHandle<void>> hs;
  for (int f = 0; f < fibers; ++f)
    hs.push_back(rt.spawn([&] {
      for (int i = 0; i < per; ++i) {
        std::lock_guard g(mu);
        ++counter;
        if (i % 64 == 0) chronos::yield();  // hold it across a switch now and then
      }
    }));
  std::thread plain([&] {  // a plain thread contends too, and blocks
    for (int i = 0; i < per; ++i) {
      std::lock_guard g(mu);
      ++counter;
    }
  });
  for (auto& h : hs) h.join();
  plain.join();
  std::lock_guard g(mu);
  EXPECT_EQ(counter, static_cast<long>(fibers + 1) * per);
}

TEST(Mutex, ContendedWaitersGetItInArrivalOrder) {
  Runtime rt{Config{.workers = 1}};
  std::vector<int> order;
  rt.block_on([&] {
    chronos::Mutex mu;
    mu.lock();
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < 10; ++i) {
      hs.push_back(chronos::go([&, i] {
        std::lock_guard g(mu);
        order.push_back(i);
      }));
      chronos::yield();  // let it run and queue on the mutex before the next
    }
    mu.unlock();  // wakes the oldest waiter; each unlock wakes the next in order
    for (auto& h : hs) h.join();
  });
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

// Two fibers take and release the mutex in a tight loop on two workers
// (barging, in normal mode); a third that needs it once still gets it soon:
// after 1 ms in the queue the mutex switches to FIFO hand-off.
TEST(Mutex, AWaiterIsNotStarvedByBargers) {
  Runtime rt{Config{.workers = 2}};
  chronos::Mutex mu;
  std::atomic<bool> stop{false};
  std::atomic<long> rounds{0};
  auto hog = [&] {
    for (long i = 1; !stop.load(std::memory_order_relaxed); ++i) {
      {
        std::lock_guard g(mu);
        rounds.fetch_add(1, std::memory_order_relaxed);
      }
      if (i % 64 == 0) chronos::yield();  // cooperative: let the worker's other fibers run
    }
  };
  auto h1 = rt.spawn(hog), h2 = rt.spawn(hog);
  std::chrono::nanoseconds worst{0};
  for (int k = 0; k < 20; ++k) {
    worst = std::max(worst, rt.spawn([&] {
                                auto t0 = std::chrono::steady_clock::now();
                                std::lock_guard g(mu);
                                return std::chrono::steady_clock::now() - t0;
                              }).join());
  }
  stop = true;
  h1.join();
  h2.join();
  EXPECT_GT(rounds.load(), 0);
  // Generous: a noisy 2-core machine, and slower still under a sanitizer or valgrind.
  EXPECT_LT(worst, std::chrono::milliseconds(500) * static_cast<long>(chronos::test::scale()));
}

TEST(Mutex, TryLockFailsWhileHeld) {
  chronos::Mutex mu;
  EXPECT_TRUE(mu.try_lock());
  EXPECT_FALSE(mu.try_lock());
  mu.unlock();
  std::unique_lock lk(mu, std::try_to_lock);
  EXPECT_TRUE(lk.owns_lock());
}

TEST(Semaphore, BoundsConcurrency) {
  Runtime rt{Config{.workers = 2}};
  chronos::Semaphore sem(3);
  std::atomic<int> inside{0}, most{0};
  std::vector<JoinHandle<void>> hs;
  for (int i = 0; i < 50; ++i)
    hs.push_back(rt.spawn([&] {
      sem.acquire();
      int now = ++inside;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      chronos::yield();
      --inside;
      sem.release();
    }));
  for (auto& h : hs) h.join();
  EXPECT_LE(most.load(), 3);
  EXPECT_GE(most.load(), 1);
  EXPECT_EQ(sem.available(), 3);
  EXPECT_TRUE(sem.try_acquire());
  EXPECT_EQ(sem.available(), 2);
}

TEST(CondVar, WaitWithAPredicateSeesTheNotifiedState) {
  Runtime rt{Config{.workers = 2}};
  chronos::Mutex mu;
  chronos::CondVar cv;
  int stage = 0;
  auto waiter = rt.spawn([&] {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return stage == 1; });
    stage = 2;
    cv.notify_all();
  });
  {
    std::unique_lock lk(mu);  // this plain thread takes part too
    stage = 1;
  }
  cv.notify_one();
  {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return stage == 2; });  // blocks this thread
    EXPECT_EQ(stage, 2);
  }
  waiter.join();
}

TEST(CondVar, NotifyAllWakesEveryWaiter) {
  Runtime rt{Config{.workers = 2}};
  chronos::Mutex mu;
  chronos::CondVar cv;
  bool go = false;
  std::atomic<int> woke{0};
  chronos::WaitGroup waiting(100);
  std::vector<JoinHandle<void>> hs;
  for (int i = 0; i < 100; ++i)
    hs.push_back(rt.spawn([&] {
      std::unique_lock lk(mu);
      waiting.done();
      cv.wait(lk, [&] { return go; });
      ++woke;
    }));
  waiting.wait();
  {
    std::lock_guard g(mu);
    go = true;
  }
  cv.notify_all();
  for (auto& h : hs) h.join();
  EXPECT_EQ(woke.load(), 100);
}

TEST(CallOnce, RunsOnceAcrossFibersAndThreadsAndRetriesAfterAThrow) {
  Runtime rt{Config{.workers = 2}};
  chronos::OnceFlag flag;
  std::atomic<int> calls{0};
  int value = 0;  // written once, read by all after call_once returns
  auto init = [&] {
    ++calls;
    if (chronos::this_fiber::id() != 0) chronos::yield();  // the others arrive meanwhile, and park
    value = 42;
  };
  std::vector<JoinHandle<int>> hs;
  for (int i = 0; i < 100; ++i)
    hs.push_back(rt.spawn([&] {
      chronos::call_once(flag, init);
      return value;
    }));
  chronos::call_once(flag, init);  // a plain thread races them, and blocks if it loses
  EXPECT_EQ(value, 42);
  for (auto& h : hs) EXPECT_EQ(h.join(), 42);
  EXPECT_EQ(calls.load(), 1);

  chronos::OnceFlag retry;
  EXPECT_THROW(chronos::call_once(retry, [] { throw std::runtime_error("first try fails"); }),
               std::runtime_error);
  int ran = 0;
  chronos::call_once(retry, [&] { ++ran; });
  chronos::call_once(retry, [&] { ++ran; });
  EXPECT_EQ(ran, 1);
}

// A caller that finds the callable run may destroy the flag as soon as its
// call_once returns, while the caller that ran it is still returning (as
// std::call_once allows: that return synchronizes with every other one).
// The flag is on the heap, so that ASan and TSan (CI) see any late touch.
TEST(CallOnce, AFlagMayBeDestroyedOnceEveryCallHasReturned) {
  // 20,000 rounds; 5,000 under the sanitizers, 2,000 under valgrind.
  const int kRounds =
      static_cast<int>(std::min<std::size_t>(20'000, chronos::test::scaled(100'000)));
  std::atomic<chronos::OnceFlag*> handoff{nullptr};
  std::atomic<int> ran{0};
  std::thread runner([&] {
    for (int i = 0; i < kRounds; ++i) {
      chronos::OnceFlag* flag;
      while (!(flag = handoff.exchange(nullptr, std::memory_order_acquire)))
        std::this_thread::yield();
      chronos::call_once(*flag, [&] { ran.fetch_add(1, std::memory_order_release); });
    }
  });
  for (int i = 0; i < kRounds; ++i) {
    auto* flag = new chronos::OnceFlag;
    handoff.store(flag, std::memory_order_release);
    while (ran.load(std::memory_order_acquire) != i + 1)
      std::this_thread::yield();  // (valgrind runs one thread at a time)
    int again = 0;
    chronos::call_once(*flag, [&] { ++again; });  // finds it run: never calls
    ASSERT_EQ(again, 0);
    delete flag;
  }
  runner.join();
}

}  // namespace
