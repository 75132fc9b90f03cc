// tests/sched_inject_test.cpp: the injection queue (sched/inject_queue.hpp):
// its lock-free ring and its spill of worker batches.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "sched/inject_queue.hpp"

namespace {

using chronos::detail::Fiber;
using chronos::detail::InjectQueue;

std::unique_ptr<Fiber[]> make_fibers(std::size_t n) {
  return std::unique_ptr<Fiber[]>(new Fiber[n]);
}

TEST(InjectQueue, RingIsFifoAndSaysWhenFull) {
  InjectQueue q(8);
  auto f = make_fibers(9);
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(q.push(&f[i]));
  EXPECT_FALSE(q.push(&f[8]));  // full: the caller decides
  Fiber* out[4];
  for (int i = 0; i < 8; ++i) {
    ASSERT_EQ(q.pop_batch(out, 4), 1u);  // the ring hands out one at a time
    EXPECT_EQ(out[0], &f[i]);
  }
  EXPECT_EQ(q.pop_batch(out, 4), 0u);
  EXPECT_TRUE(q.empty());
}

// Batches spill past any initial size, wrap around, and come back in order.
TEST(InjectQueue, SpillGrowsWrapsAndKeepsOrder) {
  InjectQueue q(8);
  constexpr std::size_t kN = 10000;
  auto f = make_fibers(kN);
  std::size_t pushed = 0, popped = 0;
  Fiber* out[32];
  // Push 256 and pop 100 at a time, so the spill's head moves while it grows.
  while (popped < kN) {
    if (pushed < kN) {
      Fiber* batch[256];
      std::size_t n = std::min<std::size_t>(256, kN - pushed);
      for (std::size_t i = 0; i < n; ++i) batch[i] = &f[pushed + i];
      q.push_batch(batch, n);
      pushed += n;
      EXPECT_EQ(q.size(), pushed - popped);
    }
    for (int k = 0; k < 4 && popped < pushed; ++k) {
      std::size_t got = q.pop_batch(out, 25);
      ASSERT_GT(got, 0u);
      for (std::size_t i = 0; i < got; ++i) ASSERT_EQ(out[i], &f[popped + i]);
      popped += got;
    }
  }
  EXPECT_EQ(q.pop_batch(out, 32), 0u);
  EXPECT_TRUE(q.empty());
}

// Two workers spill batches while two others take them: every fiber comes
// out exactly once.
TEST(InjectQueue, ConcurrentBatchesComeOutExactlyOnce) {
  InjectQueue q(64);
  constexpr std::size_t kPerProducer = 1600 * 128, kBatch = 128;
  auto f = make_fibers(2 * kPerProducer);
  std::unique_ptr<std::atomic<int>[]> seen(new std::atomic<int>[2 * kPerProducer]);
  for (std::size_t i = 0; i < 2 * kPerProducer; ++i) seen[i].store(0);
  std::atomic<std::size_t> taken{0};
  auto produce = [&](std::size_t base) {
    Fiber* batch[kBatch];
    for (std::size_t i = 0; i < kPerProducer; i += kBatch) {
      for (std::size_t k = 0; k < kBatch; ++k) batch[k] = &f[base + i + k];
      q.push_batch(batch, kBatch);
    }
  };
  auto consume = [&] {
    Fiber* out[32];
    while (taken.load() < 2 * kPerProducer) {
      std::size_t n = q.pop_batch(out, 32);
      for (std::size_t i = 0; i < n; ++i) seen[out[i] - f.get()].fetch_add(1);
      taken.fetch_add(n);
      if (n == 0) std::this_thread::yield();
    }
  };
  std::thread p1(produce, 0), p2(produce, kPerProducer), c1(consume), c2(consume);
  p1.join();
  p2.join();
  c1.join();
  c2.join();
  for (std::size_t i = 0; i < 2 * kPerProducer; ++i) ASSERT_EQ(seen[i].load(), 1) << i;
  EXPECT_TRUE(q.empty());
}

}  // namespace
