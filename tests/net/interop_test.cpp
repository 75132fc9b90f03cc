// tests/net/interop_test.cpp: UDP, spawn_blocking, and wait_readable /
// wait_writable on a user's own fds.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chronos/chronos.hpp>
#include <chronos/net.hpp>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "../test_util.hpp"
#include "net_util.hpp"

namespace {

using namespace std::chrono_literals;
using chronos::Config;
using chronos::Runtime;
using chronos::net::Endpoint;
using chronos::net::UdpSocket;

TEST(NetUdp, SendToRecvFrom) {
  Runtime rt{Config{.workers = 2}};
  rt.block_on([] {
    UdpSocket a = UdpSocket::bind("127.0.0.1", 0);
    UdpSocket b = UdpSocket::bind("127.0.0.1", 0);
    EXPECT_EQ(b.local_endpoint().address(), "127.0.0.1");
    const int n = 100;
    const chronos::test::UdpTally t = chronos::test::udp_round_trips(a, b, n, 512, 7);
    EXPECT_EQ(t.sent, n);
    EXPECT_EQ(t.delivered, n);
    EXPECT_EQ(t.acked, n);
    std::byte ack[1];
    a.set_read_timeout(20ms);
    Endpoint from;
    std::error_code ec;
    a.recv_from(ack, from, ec);
    EXPECT_EQ(ec, std::errc::timed_out);
  });
}

TEST(NetBlocking, SpawnBlockingReturnsValueFromAnotherThread) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    const auto me = std::this_thread::get_id();
    std::atomic<int> side{0};
    // Another fiber runs on the single worker while we wait.
    auto other = chronos::go([&] { side.store(1); });
    auto [v, tid] = chronos::spawn_blocking([] {
      std::this_thread::sleep_for(20ms);  // blocks a pool thread, not the worker
      return std::pair{42, std::this_thread::get_id()};
    });
    EXPECT_EQ(v, 42);
    EXPECT_NE(tid, me);
    other.join();
    EXPECT_EQ(side.load(), 1);
    chronos::spawn_blocking([&] { side.store(2); });  // void
    EXPECT_EQ(side.load(), 2);
  });
}

TEST(NetBlocking, SpawnBlockingRethrows) {
  Runtime rt{Config{.workers = 2}};
  rt.block_on([] {
    EXPECT_THROW(chronos::spawn_blocking([]() -> int { throw std::runtime_error("boom"); }),
                 std::runtime_error);
    // Many at once: more than the pool has threads.
    std::atomic<int> sum{0};
    chronos::WaitGroup wg(200);
    for (int i = 0; i < 200; ++i)
      chronos::go([&, i] {
        sum.fetch_add(chronos::spawn_blocking([i] { return i; }));
        wg.done();
      }).detach();
    wg.wait();
    EXPECT_EQ(sum.load(), 199 * 200 / 2);
  });
}

// A fiber parked in spawn_blocking is not parked forever: its job will wake
// it. So shutdown waits for the job, as it waits for a sleeping fiber's
// timer, and the fiber finishes normally with the job's result. There are
// more jobs than the pool has threads (64), so some wait in its queue.
TEST(NetBlocking, ShutdownWaitsForBlockingJobsInsteadOfUnwindingTheirFibers) {
  const int n = 80;
  std::atomic<int> sum{0}, started{0}, unwound{0};
  {
    Runtime rt{Config{.workers = 2}};
    for (int i = 0; i < n; ++i)
      rt.spawn([&, i] {
          struct Count {
            std::atomic<int>& unwound;
            bool done = false;
            ~Count() {
              if (!done) unwound.fetch_add(1);
            }
          } count{unwound};
          sum.fetch_add(chronos::spawn_blocking([&, i] {
            started.fetch_add(1);
            std::this_thread::sleep_for(30ms);
            return i + 1;
          }));
          count.done = true;
        }).detach();
    while (started.load() == 0) std::this_thread::yield();
  }  // shutdown begins while every job is queued or running
  EXPECT_EQ(unwound.load(), 0);
  EXPECT_EQ(started.load(), n);
  EXPECT_EQ(sum.load(), n * (n + 1) / 2);
}

TEST(NetWait, WaitReadableOnAPipe) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  Runtime rt{Config{.workers = 2}};
  rt.block_on([&] {
    auto reader = chronos::go([&] {
      chronos::wait_readable(p[0]);
      char c = 0;
      EXPECT_EQ(read(p[0], &c, 1), 1);
      return c;
    });
    chronos::sleep_for(20ms);
    ASSERT_EQ(write(p[1], "x", 1), 1);
    EXPECT_EQ(reader.join(), 'x');
    // Nothing to read: the deadline fires.
    std::error_code ec;
    chronos::wait_readable(p[0], chronos::Clock::now() + 20ms, ec);
    EXPECT_EQ(ec, std::errc::timed_out);
    EXPECT_THROW(chronos::wait_readable(p[0], chronos::Clock::now() + 1ms), std::system_error);
    // Already ready: returns at once.
    chronos::wait_writable(p[1]);
  });
  close(p[0]);
  close(p[1]);
}

// A worker that never runs dry polls I/O only from its tick, without
// blocking, and hands what it readies to the injection queue in batches of
// Worker::kInjectBuf (64): 300 fds ready at once fill several batches in one
// poll. Every reader runs exactly once and gets its own byte.
TEST(NetWait, ABusyWorkersPollHandsOnManyReadiedFibersEachExactlyOnce) {
  constexpr int kReaders = 300;
  std::vector<std::array<int, 2>> pipes(kReaders);
  for (auto& p : pipes) ASSERT_EQ(pipe2(p.data(), O_NONBLOCK | O_CLOEXEC), 0);
  Runtime rt{Config{.workers = 1}};
  std::vector<int> got(kReaders, -1);
  std::atomic<int> parked{0}, done{0};
  rt.block_on([&] {
    std::vector<chronos::JoinHandle<void>> readers;
    for (int i = 0; i < kReaders; ++i) {
      readers.push_back(chronos::go([&, i] {
        parked.fetch_add(1);
        chronos::wait_readable(pipes[i][0]);
        unsigned char c = 0;
        EXPECT_EQ(read(pipes[i][0], &c, 1), 1);
        EXPECT_EQ(got[i], -1) << "reader " << i << " ran twice";
        got[i] = c;
        done.fetch_add(1);
      }));
    }
    while (parked.load() < kReaders) chronos::yield();
    for (int k = 0; k < 10; ++k) chronos::yield();  // the last ones reach their wait
    // Keeps the only worker busy (it never sleeps, so it never blocks in the
    // poller) until every reader has run, or gives up.
    auto busy = chronos::go([&] {
      const auto give_up = std::chrono::steady_clock::now() + 10s;
      while (done.load() < kReaders && std::chrono::steady_clock::now() < give_up) chronos::yield();
    });
    for (int i = 0; i < kReaders; ++i) {
      const auto c = static_cast<unsigned char>(i % 251);
      ASSERT_EQ(write(pipes[i][1], &c, 1), 1);
    }
    for (auto& r : readers) r.join();
    busy.join();
  });
  EXPECT_EQ(done.load(), kReaders);
  for (int i = 0; i < kReaders; ++i) EXPECT_EQ(got[i], i % 251) << "reader " << i;
  for (auto& p : pipes) {
    close(p[0]);
    close(p[1]);
  }
}

}  // namespace
