// tests/sched_deque_test.cpp: the Chase-Lev deque on its own: order, bulk
// pushes, the race for the last item, concurrent stealing, and a randomized comparison
// against a plain std::deque model.
#include <gtest/gtest.h>

#include <atomic>
#include <deque>
#include <random>
#include <thread>
#include <vector>

#include "sched/deque.hpp"
#include "test_util.hpp"

namespace {

using chronos::detail::ChaseLevDeque;
using chronos::detail::Fiber;
using chronos::test::scaled;

// Distinct fake fibers: the deque never dereferences them.
Fiber* fake(std::size_t i) {
  return reinterpret_cast<Fiber*>((i + 1) * 64);
}
std::size_t index_of(Fiber* f) {
  return reinterpret_cast<std::uintptr_t>(f) / 64 - 1;
}

TEST(Deque, OwnerIsLifoThievesAreFifoAndTakeAtMostHalf) {
  ChaseLevDeque d(16);
  for (std::size_t i = 0; i < 10; ++i) ASSERT_TRUE(d.push(fake(i)));
  EXPECT_EQ(d.size(), 10u);
  EXPECT_EQ(d.peek(), fake(9));  // what pop() returns next, not taken
  EXPECT_EQ(d.pop(), fake(9));   // newest first
  EXPECT_EQ(d.peek(), fake(8));
  Fiber* got[16];
  EXPECT_EQ(d.steal(got, 16), 5u);                                 // half of 9, rounded up
  for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(got[i], fake(i));  // oldest first
  EXPECT_EQ(d.steal(got, 2), 2u);                                  // capped by max
  EXPECT_EQ(got[0], fake(5));
  EXPECT_EQ(d.pop(), fake(8));
  EXPECT_EQ(d.pop(), fake(7));
  EXPECT_EQ(d.pop(), nullptr);
  EXPECT_EQ(d.peek(), nullptr);
  EXPECT_EQ(d.steal(got, 16), 0u);
  EXPECT_TRUE(d.empty());
}

TEST(Deque, PushReportsAFullRingAndLosesNothing) {
  ChaseLevDeque d(8);
  for (std::size_t i = 0; i < 8; ++i) ASSERT_TRUE(d.push(fake(i)));
  EXPECT_FALSE(d.push(fake(99)));
  EXPECT_EQ(d.size(), 8u);
  Fiber* got[8];
  EXPECT_EQ(d.steal(got, 8), 4u);
  EXPECT_TRUE(d.push(fake(8)));  // room again; indices keep growing past the ring
  std::vector<std::size_t> rest;
  while (Fiber* f = d.pop()) rest.push_back(index_of(f));
  EXPECT_EQ(rest, (std::vector<std::size_t>{8, 7, 6, 5, 4}));
}

TEST(Deque, BulkPushFillsWhatFitsInOrderAndStealsSeeIt) {
  ChaseLevDeque d(8);
  Fiber* in[12];
  for (std::size_t i = 0; i < 12; ++i) in[i] = fake(i);
  EXPECT_EQ(d.push_some(in, 3), 3u);
  ASSERT_TRUE(d.push(fake(50)));
  EXPECT_EQ(d.push_some(in + 3, 9), 4u);  // room for 4 more: 3, 4, 5, 6
  EXPECT_EQ(d.push_some(in + 7, 5), 0u);  // full: nothing changes
  EXPECT_EQ(d.size(), 8u);
  Fiber* got[8];
  EXPECT_EQ(d.steal(got, 2), 2u);  // oldest first: the bulk push kept the order
  EXPECT_EQ(got[0], fake(0));
  EXPECT_EQ(got[1], fake(1));
  // Room again, past the end of the ring (the indices wrap).
  EXPECT_EQ(d.push_some(in + 7, 5), 2u);
  const std::size_t expect_lifo[] = {8, 7, 6, 5, 4, 3, 50, 2};
  for (std::size_t i : expect_lifo) EXPECT_EQ(d.pop(), fake(i));
  EXPECT_EQ(d.pop(), nullptr);
  EXPECT_EQ(d.push_some(in, 0), 0u);
  EXPECT_TRUE(d.empty());
}

TEST(Deque, TheLastItemGoesToExactlyOneSide) {
  ChaseLevDeque d(4);
  const std::size_t rounds = scaled(200000);
  std::atomic<std::size_t> round{0};
  std::atomic<int> thief_got{0};
  std::atomic<bool> stop{false};
  std::thread thief([&] {
    Fiber* out[1];
    std::size_t seen = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      std::size_t r = round.load(std::memory_order_acquire);
      if (r == seen) continue;
      seen = r;
      if (d.steal(out, 1) == 1) thief_got.fetch_add(1, std::memory_order_relaxed);
    }
  });
  int owner_got = 0;
  for (std::size_t r = 1; r <= rounds; ++r) {
    d.push(fake(r));
    round.store(r, std::memory_order_release);
    if (d.pop()) ++owner_got;
    while (d.size() != 0) std::this_thread::yield();  // a steal in flight settles
  }
  stop = true;
  thief.join();
  EXPECT_EQ(static_cast<std::size_t>(owner_got + thief_got.load()), rounds);
  EXPECT_TRUE(d.empty());
}

TEST(Deque, ConcurrentThievesSeeEveryItemExactlyOnce) {
  ChaseLevDeque d(256);
  const std::size_t n = scaled(2'000'000);
  std::vector<std::atomic<std::uint8_t>> seen(n);
  std::atomic<bool> done{false};
  auto thief = [&] {
    Fiber* out[32];
    while (!done.load(std::memory_order_acquire) || !d.empty()) {
      std::size_t k = d.steal(out, 32);
      for (std::size_t i = 0; i < k; ++i) seen[index_of(out[i])].fetch_add(1);
    }
  };
  std::thread t1(thief), t2(thief);
  std::mt19937 rng(7);
  for (std::size_t i = 0; i < n; ++i) {
    while (!d.push(fake(i))) {
      if (Fiber* f = d.pop()) seen[index_of(f)].fetch_add(1);
    }
    if (rng() % 3 == 0) {
      if (Fiber* f = d.pop()) seen[index_of(f)].fetch_add(1);
    }
  }
  while (Fiber* f = d.pop()) seen[index_of(f)].fetch_add(1);
  done.store(true, std::memory_order_release);
  t1.join();
  t2.join();
  std::size_t wrong = 0;
  for (auto& s : seen)
    if (s.load() != 1) ++wrong;
  EXPECT_EQ(wrong, 0u);
}

TEST(Deque, BatchStealsNeverOverlapTheOwnersPopBursts) {
  // The owner pushes a burst, then pops it all back without pausing, while
  // thieves steal batches. A thief that sized its batch from a stale bottom
  // would take fibers the owner popped meanwhile.
  ChaseLevDeque d(128);
  const std::size_t rounds = scaled(40000);
  std::vector<std::atomic<std::uint8_t>> seen(rounds * 64);
  std::atomic<bool> done{false};
  auto thief = [&] {
    Fiber* out[32];
    while (!done.load(std::memory_order_acquire)) {
      std::size_t k = d.steal(out, 32);
      for (std::size_t i = 0; i < k; ++i) seen[index_of(out[i])].fetch_add(1);
    }
  };
  std::thread t1(thief), t2(thief);
  for (std::size_t r = 0; r < rounds; ++r) {
    for (std::size_t i = 0; i < 64; ++i) ASSERT_TRUE(d.push(fake(r * 64 + i)));
    while (Fiber* f = d.pop()) seen[index_of(f)].fetch_add(1);
  }
  done.store(true, std::memory_order_release);
  t1.join();
  t2.join();
  std::size_t dup = 0, lost = 0;
  for (auto& s : seen) {
    if (s.load() > 1) ++dup;
    if (s.load() == 0) ++lost;
  }
  EXPECT_EQ(dup, 0u) << "fibers taken twice";
  EXPECT_EQ(lost, 0u) << "fibers lost";
}

TEST(Deque, RandomOperationsMatchASequentialModel) {
  // Single-threaded, the deque must behave exactly like a double-ended queue:
  // push/pop at the back, steal (a batch) from the front.
  std::mt19937 rng(12345);
  for (int trial = 0; trial < 50; ++trial) {
    ChaseLevDeque d(16);
    std::deque<Fiber*> model;
    std::size_t next = 0;
    for (int op = 0; op < 2000; ++op) {
      switch (rng() % 4) {
        case 3: {  // a bulk push takes what fits, in order
          Fiber* in[6];
          const std::size_t n = 1 + rng() % 6;
          for (std::size_t i = 0; i < n; ++i) in[i] = fake(next + i);
          const std::size_t k = d.push_some(in, n);
          ASSERT_EQ(k, std::min(n, 16 - model.size()));
          for (std::size_t i = 0; i < k; ++i) model.push_back(in[i]);
          next += n;
          break;
        }
        case 0: {
          bool ok = d.push(fake(next));
          ASSERT_EQ(ok, model.size() < 16);
          if (ok) model.push_back(fake(next));
          ++next;
          break;
        }
        case 1: {
          Fiber* f = d.pop();
          Fiber* want = model.empty() ? nullptr : model.back();
          ASSERT_EQ(f, want);
          if (!model.empty()) model.pop_back();
          break;
        }
        case 2: {
          Fiber* out[16];
          std::size_t max = 1 + rng() % 8;
          std::size_t k = d.steal(out, max);
          std::size_t want = std::min(max, (model.size() + 1) / 2);
          ASSERT_EQ(k, want);
          for (std::size_t i = 0; i < k; ++i) {
            ASSERT_EQ(out[i], model.front());
            model.pop_front();
          }
          break;
        }
      }
      ASSERT_EQ(d.size(), model.size());
      // peek() is a prefetch hint, exact when nothing races the owner.
      ASSERT_EQ(d.peek(), model.empty() ? nullptr : model.back());
    }
  }
}

}  // namespace
