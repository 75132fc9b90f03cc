// tests/sync_select_test.cpp: select over channels: readiness, fairness,
// default and timeout cases, sends, and closed channels.
#include <gtest/gtest.h>

#include <chronos/chronos.hpp>

#include <atomic>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using chronos::Channel;
using chronos::Config;
using chronos::Runtime;
using chronos::test::scaled;

TEST(Select, TakesTheReadyCase) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    Channel<int> a(1), b(1);
    b.send(5);
    int got = 0;
    auto k = chronos::select(chronos::recv_case(a, [&](std::optional<int> v) { got = 100 + *v; }),
                             chronos::recv_case(b, [&](std::optional<int> v) { got = *v; }));
    EXPECT_EQ(k, 1u);
    EXPECT_EQ(got, 5);
  });
}

// With both cases always ready, each is taken about half the time.
TEST(Select, PicksAmongReadyCasesAtRandom) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    Channel<int> a(1), b(1);
    int counts[2] = {0, 0};
    const int n = 4000;
    for (int i = 0; i < n; ++i) {
      if (a.size() == 0) a.send(1);
      if (b.size() == 0) b.send(2);
      auto k = chronos::select(chronos::recv_case(a, [] {}), chronos::recv_case(b, [] {}));
      ++counts[k];
    }
    EXPECT_GT(counts[0], n / 3) << counts[0] << " vs " << counts[1];
    EXPECT_GT(counts[1], n / 3) << counts[0] << " vs " << counts[1];
  });
}

TEST(Select, DefaultCaseWhenNothingIsReady) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    Channel<int> a;
    bool defaulted = false;
    auto k = chronos::select(chronos::recv_case(a, [](std::optional<int>) { FAIL(); }),
                             chronos::default_case([&] { defaulted = true; }));
    EXPECT_EQ(k, 1u);
    EXPECT_TRUE(defaulted);
  });
}

TEST(Select, TimeoutCase) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    Channel<int> a, b;
    bool timed_out = false;
    auto start = chronos::Clock::now();
    auto k = chronos::select(chronos::recv_case(a, [] {}), chronos::send_case(b, 1, [] {}),
                             chronos::timeout_case(15ms, [&] { timed_out = true; }));
    EXPECT_EQ(k, 2u);
    EXPECT_TRUE(timed_out);
    EXPECT_GE(chronos::Clock::now() - start, 15ms);
    // Nothing of the select stays queued: both channels still work.
    auto h = chronos::go([&] { b.send(*a.recv() * 2); });
    a.send(21);
    EXPECT_EQ(b.recv(), 42);
    h.join();
  });
}

TEST(Select, ParkedSelectIsCompletedBySenderOrReceiver) {
  Runtime rt{Config{.workers = 2}};
  rt.block_on([] {
    Channel<int> in, out;
    for (int i = 0; i < 200; ++i) {
      int got = -1;
      bool sent = false;
      auto h = chronos::go([&, i] {
        if (i % 2) {
          in.send(i);
        } else {
          EXPECT_EQ(out.recv(), 77);
        }
      });
      auto k = chronos::select(chronos::recv_case(in, [&](std::optional<int> v) { got = *v; }),
                               chronos::send_case(out, 77, [&] { sent = true; }));
      h.join();
      if (i % 2) {
        EXPECT_EQ(k, 0u);
        EXPECT_EQ(got, i);
      } else {
        EXPECT_EQ(k, 1u);
        EXPECT_TRUE(sent);
      }
    }
  });
}

TEST(Select, ClosedChannels) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    Channel<int> a;
    a.close();
    bool closed = false;
    chronos::select(chronos::recv_case(a, [&](std::optional<int> v) { closed = !v; }));
    EXPECT_TRUE(closed);
    Channel<int> b;
    b.close();
    EXPECT_THROW(chronos::select(chronos::send_case(b, 1, [] {})), chronos::ChannelClosed);
    // Closed while the select waits on a send.
    Channel<int> c;
    auto h = chronos::go([&] {
      chronos::sleep_for(5ms);
      c.close();
    });
    EXPECT_THROW(chronos::select(chronos::send_case(c, 1, [] {})), chronos::ChannelClosed);
    h.join();
  });
}

// Many selecting fibers compete for values from several producers on two
// workers: every value is received exactly once.
TEST(Select, StressEveryValueOnce) {
  Runtime rt{Config{.workers = 2}};
  const int per = static_cast<int>(scaled(20000));
  Channel<int> a(4), b;
  std::vector<std::atomic<int>> seen(static_cast<std::size_t>(2 * per));
  std::atomic<int> received{0};
  std::vector<chronos::JoinHandle<void>> hs;
  hs.push_back(rt.spawn([&] {
    for (int i = 0; i < per; ++i) a.send(i);
  }));
  hs.push_back(rt.spawn([&] {
    for (int i = 0; i < per; ++i) b.send(per + i);
  }));
  for (int c = 0; c < 4; ++c)
    hs.push_back(rt.spawn([&] {
      while (received.load() < 2 * per) {
        auto take = [&](std::optional<int> v) {
          seen[static_cast<std::size_t>(*v)]++;
          received++;
        };
        chronos::select(chronos::recv_case(a, take), chronos::recv_case(b, take),
                        chronos::timeout_case(5ms, [] {}));
      }
    }));
  for (auto& h : hs) h.join();
  for (std::size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i].load(), 1) << i;
}

}  // namespace
