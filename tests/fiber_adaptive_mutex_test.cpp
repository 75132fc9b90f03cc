// The pools' lock (fiber/adaptive_mutex.hpp): mutual exclusion under heavy
// contention, a holder that outlasts the spin (the waiters sleep on the futex
// and are woken), and try_lock.
#include "fiber/adaptive_mutex.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace chronos::detail {
namespace {

TEST(AdaptiveMutex, ContendedIncrementsAreNeitherLostNorDoubled) {
  AdaptiveMutex mu;
  constexpr int kThreads = 4;
  const long kEach = static_cast<long>(test::scaled(200'000));
  long counter = 0;     // plain: only the lock orders the increments
  long in_section = 0;  // more than one holder at once would show here
  long overlaps = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      for (long i = 0; i < kEach; ++i) {
        std::lock_guard lock(mu);
        if (in_section++ != 0) ++overlaps;
        ++counter;
        --in_section;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(counter, kThreads * kEach);
  EXPECT_EQ(overlaps, 0);
}

// A holder that keeps the lock far longer than the spin: the waiters go to
// sleep on the futex, none of them gets in early, and the unlock wakes every
// one of them in turn (each unlock wakes one; a lost wake-up hangs the test).
TEST(AdaptiveMutex, WaitersThatOutlastTheSpinSleepAndAreWoken) {
  AdaptiveMutex mu;
  std::atomic<bool> released{false};
  std::atomic<int> early{0}, done{0};
  mu.lock();
  std::vector<std::thread> waiters;
  for (int t = 0; t < 3; ++t)
    waiters.emplace_back([&] {
      mu.lock();
      if (!released.load()) early.fetch_add(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // past the spin again
      done.fetch_add(1);
      mu.unlock();
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(done.load(), 0);
  released.store(true);
  mu.unlock();
  for (auto& th : waiters) th.join();
  EXPECT_EQ(early.load(), 0);
  EXPECT_EQ(done.load(), 3);
  EXPECT_TRUE(mu.try_lock());  // free again, whatever path each took
  mu.unlock();
}

TEST(AdaptiveMutex, TryLockFailsWhileHeldAndSucceedsAfter) {
  AdaptiveMutex mu;
  ASSERT_TRUE(mu.try_lock());
  bool other = true;
  std::thread([&] { other = mu.try_lock(); }).join();
  EXPECT_FALSE(other);
  mu.unlock();
  std::thread([&] {
    other = mu.try_lock();
    if (other) mu.unlock();
  }).join();
  EXPECT_TRUE(other);
}

}  // namespace
}  // namespace chronos::detail
