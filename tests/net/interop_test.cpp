// tests/net/interop_test.cpp: UDP, spawn_blocking, and wait_readable /
// wait_writable on a user's own fds.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chronos/chronos.hpp>
#include <chronos/net.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

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
    const Endpoint to_b = Endpoint::parse("127.0.0.1", b.local_endpoint().port());
    const int n = 100;
    auto receiver = chronos::go([&] {
      int good = 0;
      std::byte buf[2048], want[512];
      for (int i = 0; i < n; ++i) {
        Endpoint from;
        std::size_t len = b.recv_from(buf, from);  // parks until a datagram arrives
        chronos::test::fill_message(want, 7, static_cast<std::uint64_t>(i));
        if (len == sizeof want && std::memcmp(buf, want, len) == 0 &&
            from.port() == a.local_endpoint().port() && from.address() == "127.0.0.1")
          ++good;
        b.send_to({buf, 1}, from);  // ack: keeps the sender from overrunning the buffer
      }
      return good;
    });
    std::byte msg[512], ack[1];
    for (int i = 0; i < n; ++i) {
      chronos::test::fill_message(msg, 7, static_cast<std::uint64_t>(i));
      EXPECT_EQ(a.send_to(msg, to_b), sizeof msg);
      Endpoint from;
      EXPECT_EQ(a.recv_from(ack, from), 1u);
    }
    EXPECT_EQ(receiver.join(), n);
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

}  // namespace
