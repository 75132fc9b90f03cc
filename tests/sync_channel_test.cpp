// tests/sync_channel_test.cpp: Channel<T>: values in order and exactly once,
// rendezvous, buffering, close, deadlines, and an MPMC stress across workers
// and threads.
#include <gtest/gtest.h>

#include <chronos/chronos.hpp>

#include <atomic>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using chronos::Channel;
using chronos::Config;
using chronos::JoinHandle;
using chronos::Runtime;
using chronos::test::scaled;

TEST(Channel, BufferedKeepsFifoOrder) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    Channel<int> ch(8);
    for (int i = 0; i < 8; ++i) ch.send(i);
    EXPECT_EQ(ch.size(), 8u);
    EXPECT_FALSE(ch.try_send(99));  // full
    std::string unused = "kept";
    Channel<std::string> strings(1);
    EXPECT_TRUE(strings.try_send(std::string("a")));
    EXPECT_FALSE(strings.try_send(unused));  // full: an lvalue is not moved from
    EXPECT_EQ(unused, "kept");
    const std::string constant = "c";
    EXPECT_EQ(strings.recv(), "a");
    EXPECT_TRUE(strings.try_send(constant));
    EXPECT_EQ(strings.recv(), "c");
    for (int i = 0; i < 8; ++i) EXPECT_EQ(ch.recv(), i);
    EXPECT_EQ(ch.try_recv(), std::nullopt);  // empty
  });
}

TEST(Channel, UnbufferedSendWaitsForAReceiver) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    Channel<std::string> ch;
    bool sent = false;
    auto h = chronos::go([&] {
      ch.send("hello");
      sent = true;
    });
    chronos::yield();
    chronos::yield();
    EXPECT_FALSE(sent) << "an unbuffered send completed with nobody receiving";
    EXPECT_EQ(ch.recv(), "hello");
    h.join();
    EXPECT_TRUE(sent);
    EXPECT_FALSE(ch.try_send(std::string("x")));  // nobody waits to receive
  });
}

TEST(Channel, MoveOnlyValues) {
  Runtime rt{Config{.workers = 2}};
  rt.block_on([] {
    Channel<std::unique_ptr<int>> ch(1);
    auto h = chronos::go([&] {
      for (int i = 0; i < 100; ++i) ch.send(std::make_unique<int>(i));
      ch.close();
    });
    int expect = 0;
    for (auto& p : ch) EXPECT_EQ(*p, expect++);  // range-for until closed
    EXPECT_EQ(expect, 100);
    h.join();
  });
}

TEST(Channel, CloseDrainsThenReturnsNullopt) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    Channel<int> ch(4);
    ch.send(1);
    ch.send(2);
    ch.close();
    EXPECT_TRUE(ch.is_closed());
    EXPECT_EQ(ch.recv(), 1);
    EXPECT_EQ(ch.recv(), 2);
    EXPECT_EQ(ch.recv(), std::nullopt);
    EXPECT_EQ(ch.recv(), std::nullopt);
  });
}

TEST(Channel, SendOnClosedIsAClearError) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    Channel<int> ch(1);
    ch.close();
    try {
      ch.send(1);
      FAIL() << "no exception";
    } catch (const chronos::ChannelClosed& e) {
      EXPECT_NE(std::string(e.what()).find("closed channel"), std::string::npos) << e.what();
    }
    EXPECT_THROW(ch.try_send(1), chronos::ChannelClosed);
    EXPECT_THROW(ch.close(), chronos::ChannelClosed);
  });
}

TEST(Channel, CloseWakesParkedReceiversAndSenders) {
  Runtime rt{Config{.workers = 2}};
  rt.block_on([] {
    Channel<int> in;      // nobody sends: receivers park
    Channel<int> out(0);  // nobody receives: senders park
    std::atomic<int> got_nullopt{0}, got_closed{0};
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < 10; ++i) {
      hs.push_back(chronos::go([&] {
        if (!in.recv()) got_nullopt++;
      }));
      hs.push_back(chronos::go([&, i] {
        try {
          out.send(i);
        } catch (const chronos::ChannelClosed&) {
          got_closed++;
        }
      }));
    }
    chronos::sleep_for(10ms);  // let them all park
    in.close();
    out.close();
    for (auto& h : hs) h.join();
    EXPECT_EQ(got_nullopt.load(), 10);
    EXPECT_EQ(got_closed.load(), 10);
  });
}

TEST(Channel, Deadlines) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    Channel<int> ch;
    auto start = chronos::Clock::now();
    EXPECT_EQ(ch.recv_for(20ms), std::nullopt);
    EXPECT_GE(chronos::Clock::now() - start, 20ms);
    EXPECT_FALSE(ch.is_closed());
    EXPECT_FALSE(ch.send_for(1, 5ms));
    // The channel still works after timed-out waiters left.
    auto h = chronos::go([&] { ch.send(7); });
    EXPECT_EQ(ch.recv_until(chronos::Clock::now() + 10s), 7);
    h.join();
  });
}

// Closing races senders and receivers: every value a send reports as sent is
// received exactly once, every other send throws ChannelClosed.
TEST(Channel, CloseRacingSendAndRecv) {
  Runtime rt{Config{.workers = 2}};
  for (int round = 0; round < static_cast<int>(scaled(200)); ++round) {
    Channel<int> ch(round % 3);  // unbuffered and small buffers
    std::atomic<long> sent_sum{0}, recv_sum{0};
    std::vector<JoinHandle<void>> hs;
    for (int s = 0; s < 3; ++s)
      hs.push_back(rt.spawn([&, s] {
        for (int i = 1;; ++i) {
          int v = s * 100000 + i;
          try {
            ch.send(v);
          } catch (const chronos::ChannelClosed&) {
            return;
          }
          sent_sum += v;
        }
      }));
    for (int r = 0; r < 2; ++r)
      hs.push_back(rt.spawn([&] {
        while (auto v = ch.recv()) recv_sum += *v;
      }));
    hs.push_back(rt.spawn([&] {
      for (int i = 0; i < round % 7; ++i) chronos::yield();
      ch.close();
    }));
    for (auto& h : hs) h.join();
    ASSERT_EQ(sent_sum.load(), recv_sum.load()) << "round " << round;
  }
}

// MPMC across workers and plain threads: every value received exactly once.
TEST(Channel, MpmcStressEveryValueExactlyOnce) {
  Runtime rt{Config{.workers = 2}};
  const int producers = 4, consumers = 4;
  const int per = static_cast<int>(scaled(50000));
  for (std::size_t cap : {std::size_t{0}, std::size_t{1}, std::size_t{64}}) {
    Channel<int> ch(cap);
    std::vector<std::atomic<std::uint8_t>> seen(static_cast<std::size_t>(producers * per));
    std::vector<JoinHandle<void>> hs;
    chronos::WaitGroup producing(producers);
    for (int p = 0; p < producers; ++p)
      hs.push_back(rt.spawn([&, p] {
        for (int i = 0; i < per; ++i) ch.send(p * per + i);
        producing.done();
      }));
    for (int c = 0; c < consumers; ++c)
      hs.push_back(rt.spawn([&] {
        for (int v : ch) seen[static_cast<std::size_t>(v)].fetch_add(1, std::memory_order_relaxed);
      }));
    std::thread thread_consumer([&] {  // a plain thread receives too (it blocks)
      for (int v : ch) seen[static_cast<std::size_t>(v)].fetch_add(1, std::memory_order_relaxed);
    });
    producing.wait();
    ch.close();
    for (auto& h : hs) h.join();
    thread_consumer.join();
    for (std::size_t i = 0; i < seen.size(); ++i)
      ASSERT_EQ(seen[i].load(), 1) << "value " << i << " with capacity " << cap;
  }
}

TEST(Channel, FiberAndThreadHandOffBothWays) {
  Runtime rt{Config{.workers = 1}};
  Channel<int> to_thread, to_fiber;
  std::thread t([&] {
    for (int i = 0; i < 1000; ++i) to_fiber.send(*to_thread.recv() + 1);
  });
  rt.block_on([&] {
    for (int i = 0; i < 1000; ++i) {
      to_thread.send(i);
      EXPECT_EQ(to_fiber.recv(), i + 1);
    }
  });
  t.join();
}

}  // namespace
