// tests/net/tcp_error_test.cpp: resets, half-closes, closing an fd under a
// parked fiber, read deadlines, and runtime shutdown with sockets open.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define NET_TEST_HAVE_VALGRIND 1
#endif

#include <chronos/chronos.hpp>
#include <chronos/net.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <stop_token>
#include <thread>
#include <vector>

#include "../test_util.hpp"
#include "net_util.hpp"

namespace {

using namespace std::chrono_literals;
using chronos::Config;
using chronos::Runtime;
using chronos::WaitGroup;
using chronos::net::TcpListener;
using chronos::net::TcpStream;

// A connected pair inside the calling fiber's runtime.
struct Pair {
  TcpStream client, server;
};

Pair connect_pair() {
  TcpListener l = TcpListener::bind("127.0.0.1", 0);
  Pair p;
  p.client = TcpStream::connect("127.0.0.1", l.local_endpoint().port());
  p.server = l.accept();
  return p;
}

int error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::system_error& e) {
    return e.code().value();
  }
  return 0;
}

TEST(NetTcp, PeerResetMidReadIsAnError) {
  Runtime rt{Config{.workers = 2}};
  rt.block_on([] {
    Pair p = connect_pair();
    std::byte msg[10], got[10], ack{0x5A};
    chronos::test::fill_message(msg, 1, 1);
    p.client.write_all(msg);
    p.server.read_exact(got);
    ASSERT_EQ(std::memcmp(got, msg, sizeof msg), 0);
    auto reader = chronos::go([&] {
      p.server.write_all({&ack, 1});
      std::byte buf[16];
      return error_of([&] { p.server.read(buf); });  // parks, then the reset arrives
    });
    std::byte a{};
    p.client.read_exact({&a, 1});
    EXPECT_EQ(a, ack);
    linger lg{1, 0};  // close() sends RST
    ASSERT_EQ(setsockopt(p.client.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    p.client.close();
    EXPECT_EQ(reader.join(), ECONNRESET);
    // Writing to the reset socket is an error too, never SIGPIPE.
    std::byte b[1]{};
    EXPECT_NE(error_of([&] {
                for (int i = 0; i < 4; ++i) p.server.write_all(b);
              }),
              0);
  });
}

TEST(NetTcp, HalfCloseDeliversEverythingBothWays) {
  Runtime rt{Config{.workers = 2}};
  rt.block_on([] {
    Pair p = connect_pair();
    std::vector<std::byte> req(100000), resp(3000);
    chronos::test::fill_message(req, 2, 0);
    chronos::test::fill_message(resp, 2, 1);
    auto server = chronos::go([&] {
      std::vector<std::byte> got;
      std::byte buf[4096];
      while (std::size_t n = p.server.read(buf)) got.insert(got.end(), buf, buf + n);
      p.server.write_all(resp);  // our side is still open for writing
      p.server.close();
      return got;
    });
    p.client.write_all(req);
    p.client.shutdown(chronos::net::Shutdown::kWrite);
    std::vector<std::byte> back;
    std::byte buf[1024];
    while (std::size_t n = p.client.read(buf)) back.insert(back.end(), buf, buf + n);
    EXPECT_TRUE(server.join() == req);
    EXPECT_TRUE(back == resp);
  });
}

// After a short read, read() waits without trying recv first (reactor/
// descriptor.hpp, "Short reads"). Here the data and the FIN arrive while the
// only worker is busy, so one epoll event carries both, and the reader
// consumes it before its short read: no later event will come. The hang-up
// mark must make the next read call recv and see the end, not wait for ever
// (the read timeout turns that into ETIMEDOUT).
TEST(NetTcp, ShortReadThenFinInOneEventReadsTheEnd) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    Pair p = connect_pair();
    p.server.set_read_timeout(5s);
    std::byte msg[10];
    chronos::test::fill_message(msg, 3, 0);
    auto reader = chronos::go([&] {
      std::byte buf[64];
      std::size_t first = p.server.read(buf);  // parks: nothing has arrived yet
      EXPECT_EQ(first, sizeof msg);
      EXPECT_EQ(std::memcmp(buf, msg, sizeof msg), 0);
      std::error_code ec;
      std::size_t second = p.server.read(buf, ec);
      EXPECT_FALSE(ec) << ec.message();
      return second;
    });
    chronos::yield();  // the reader runs and parks
    // Plain system calls, no switch in between: the worker polls only after.
    const int fd = p.client.native_handle();
    ASSERT_EQ(::send(fd, msg, sizeof msg, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof msg));
    ASSERT_EQ(::shutdown(fd, SHUT_WR), 0);
    EXPECT_EQ(reader.join(), 0u);
  });
}

TEST(NetTcp, ClosingAnFdWakesTheFiberParkedOnIt) {
  const int fds_before = chronos::test::open_fds();
  {
    Runtime rt{Config{.workers = 2}};
    rt.block_on([] {
      Pair p = connect_pair();
      std::atomic<bool> parked{false};
      auto reader = chronos::go([&] {
        std::byte buf[16];
        parked.store(true);
        return error_of([&] { p.client.read(buf); });
      });
      while (!parked.load()) chronos::yield();
      chronos::sleep_for(20ms);  // let it park
      p.client.close();
      EXPECT_EQ(reader.join(), EBADF);
      EXPECT_FALSE(p.client.is_open());
      // Every later operation fails the same way.
      std::byte b[1]{};
      EXPECT_EQ(error_of([&] { p.client.write(b); }), EBADF);
      // The peer sees the close.
      EXPECT_EQ(p.server.read(b), 0u);
    });
  }
  EXPECT_EQ(chronos::test::open_fds(), fds_before);
}

TEST(NetTcp, ReadDeadlineFires) {
  Runtime rt{Config{.workers = 2}};
  rt.block_on([] {
    Pair p = connect_pair();
    p.client.set_read_timeout(50ms);
    std::byte buf[8];
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(error_of([&] { p.client.read(buf); }), ETIMEDOUT);
    auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(waited, 50ms);  // never early
    EXPECT_LT(waited, 30s);   // and it did fire
    // The stream still works after a timeout, and data beats the deadline.
    std::byte msg[8];
    chronos::test::fill_message(msg, 3, 0);
    p.server.write_all(msg);
    p.client.read_exact(buf);
    EXPECT_EQ(std::memcmp(buf, msg, sizeof msg), 0);
    // The error_code overload reports the timeout without throwing.
    std::error_code ec;
    EXPECT_EQ(p.client.read(buf, ec), 0u);
    EXPECT_EQ(ec, std::errc::timed_out);
  });
}

TEST(NetTcp, StopTokenCancelsAParkedRead) {
  Runtime rt{Config{.workers = 2}};
  rt.block_on([] {
    Pair p = connect_pair();
    std::stop_source stop;
    std::atomic<bool> started{false};
    auto reader = chronos::go(chronos::SpawnOptions{.stop_token = stop.get_token()}, [&] {
      std::byte buf[8];
      started.store(true);
      try {
        p.client.read(buf);
      } catch (const chronos::Cancelled& e) {
        return e.code() == std::errc::operation_canceled;
      }
      return false;
    });
    while (!started.load()) chronos::yield();
    chronos::sleep_for(10ms);
    stop.request_stop();
    EXPECT_TRUE(reader.join());
    // The stream is intact: a later read gets the data.
    std::byte msg[4]{std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}}, got[4];
    p.server.write_all(msg);
    p.client.read_exact(got);
    EXPECT_EQ(std::memcmp(got, msg, sizeof msg), 0);
  });
}

TEST(NetTcp, ConnectToAClosedPortIsRefused) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    std::uint16_t port;
    {
      TcpListener l = TcpListener::bind("127.0.0.1", 0);
      port = l.local_endpoint().port();
    }
    EXPECT_EQ(error_of([&] { TcpStream::connect("127.0.0.1", port); }), ECONNREFUSED);
    // A name goes through getaddrinfo on the blocking pool.
    TcpListener l = TcpListener::bind("localhost", 0);
    TcpStream s = TcpStream::connect("localhost", l.local_endpoint().port());
    EXPECT_TRUE(s.is_open());
  });
}

TEST(NetTcp, AcceptBacksOffOnEmfileAndRecovers) {
#if NET_TEST_HAVE_VALGRIND
  // valgrind keeps fds of its own near the limit and emulates RLIMIT_NOFILE.
  if (RUNNING_ON_VALGRIND) GTEST_SKIP() << "fd limits are emulated under valgrind";
#endif
  // No slow-fiber watchdog: with every fd taken, its probe's backtrace (whose
  // libunwind may open and close fds of its own on another thread) could free
  // an fd behind the test's back, and the accept would then succeed at once.
  // Seen under TSan, where the filling loop is slow enough to trip it.
  Config cfg{.workers = 2};
  cfg.slow_fiber_threshold = {};
  Runtime rt{cfg};
  rt.block_on([] {
    TcpListener l = TcpListener::bind("127.0.0.1", 0);
    TcpStream c = TcpStream::connect("127.0.0.1", l.local_endpoint().port());  // in the backlog
    rlimit old{};
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    rlimit low = old;
    low.rlim_cur = static_cast<rlim_t>(chronos::test::open_fds() + 8);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    std::vector<int> filler;  // every fd below the lowered limit
    for (int fd; (fd = dup(0)) >= 0;) filler.push_back(fd);
    const int dup_errno = errno;
    auto acceptor = chronos::go([&] { return l.accept().is_open(); });
    chronos::sleep_for(50ms);  // accept meets EMFILE and backs off, without spinning
    const bool waited = !acceptor.done();
    for (int fd : filler) close(fd);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
    EXPECT_EQ(dup_errno, EMFILE);
    EXPECT_TRUE(waited);
    EXPECT_TRUE(acceptor.join());  // and takes the connection once an fd is free
  });
}

// One fiber closes and destroys a listener while another is inside its
// accept(), sleeping off EMFILE: the accept ends with EBADF, having touched
// only the descriptor it holds, never the destroyed object (whose d_ the
// destructor nulled: reading it again would crash here), and the fd is
// closed once the accept has let go of it.
TEST(NetTcp, DestroyingAListenerDuringItsAcceptEndsTheAcceptWithEbadf) {
#if NET_TEST_HAVE_VALGRIND
  if (RUNNING_ON_VALGRIND) GTEST_SKIP() << "fd limits are emulated under valgrind";
#endif
  const int fds_before = chronos::test::open_fds();
  Config cfg{.workers = 1};       // the two fibers take turns in a known order
  cfg.slow_fiber_threshold = {};  // as in the test above
  {
    Runtime rt{cfg};
    rt.block_on([] {
      std::optional<TcpListener> l = TcpListener::bind("127.0.0.1", 0);
      TcpStream c = TcpStream::connect("127.0.0.1", l->local_endpoint().port());  // in the backlog
      rlimit old{};
      ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
      rlimit low = old;
      low.rlim_cur = static_cast<rlim_t>(chronos::test::open_fds() + 8);
      ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
      std::vector<int> filler;
      for (int fd; (fd = dup(0)) >= 0;) filler.push_back(fd);
      auto acceptor = chronos::go([listener = &*l] {
        std::error_code ec;
        TcpStream s = listener->accept(ec);
        return ec.value();
      });
      chronos::sleep_for(30ms);  // it meets EMFILE and sleeps in its backoff
      const bool inside = !acceptor.done();
      l.reset();  // closes and destroys it under the sleeping accept
      for (int fd : filler) close(fd);
      ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
      EXPECT_TRUE(inside);
      EXPECT_EQ(acceptor.join(), EBADF);
    });
  }
  EXPECT_EQ(chronos::test::open_fds(), fds_before);
}

// Counts a fiber's end however it comes: returning, or unwound at shutdown.
struct CountOnExit {
  std::atomic<int>& n;
  ~CountOnExit() { n.fetch_add(1); }
};

// Half the server's fibers can be cancelled (a stop token), half cannot: the
// two kinds of I/O wait (reactor/io_wait.cpp) each withdraw as shutdown
// unwinds them. (A wait with a deadline is not parked forever: shutdown
// waits for its timer instead.)
TEST(NetTcp, ShutdownWithOpenConnectionsReleasesEveryFd) {
  const int fds_before = chronos::test::open_fds();
  const int conns = 50;
  std::stop_source never;  // outlives the runtime; nobody requests a stop
  std::atomic<int> unwound{0};
  {
    Runtime rt{Config{.workers = 2}};
    rt.block_on([&] {
      TcpListener l = TcpListener::bind("127.0.0.1", 0);
      const std::uint16_t port = l.local_endpoint().port();
      WaitGroup up(conns);
      for (int i = 0; i < conns; ++i) {
        chronos::go([port, &up] {
          TcpStream s = TcpStream::connect("127.0.0.1", port);
          up.done();
          std::byte buf[16];
          s.read(buf);  // parked until the runtime shuts down
        }).detach();
        TcpStream c = l.accept();
        chronos::SpawnOptions opts;
        if (i % 2 == 0) opts.stop_token = never.get_token();
        chronos::go(opts, [c = std::move(c), &unwound]() mutable {
          CountOnExit count{unwound};
          std::byte buf[16];
          c.read(buf);  // parked too
        }).detach();
      }
      up.wait();
      chronos::go([l = std::move(l)]() mutable { l.accept(); }).detach();  // and the listener
    });
    EXPECT_GT(chronos::test::open_fds(), fds_before + 2 * conns);
  }  // shutdown unwinds every parked fiber; their sockets close
  EXPECT_EQ(unwound.load(), conns);
  EXPECT_EQ(chronos::test::open_fds(), fds_before);
}

// Peers that close while the runtime shuts down: each server fiber is parked
// on a read that the kernel makes ready at some moment during shutdown, so
// shutdown's sweep of parked fibers races the reactor waking the same
// fibers. Exactly one of the two may resume each fiber (the claim CAS), and
// the loser must not touch it. Every fiber ends exactly once, by EOF or by
// being unwound, and every fd is released. (TSan checks that the sweep reads
// nothing a running fiber writes; the window is microseconds wide, so the
// close moves across it round by round.)
TEST(NetTcp, ShutdownRacingPeersThatCloseEndsEveryFiberOnce) {
  const int fds_before = chronos::test::open_fds();
  const int rounds = static_cast<int>(std::max<std::size_t>(chronos::test::scaled(400), 100));
  const int conns = 16;
  int eofs = 0;
  for (int r = 0; r < rounds; ++r) {
    std::atomic<int> ended{0}, saw_eof{0};
    std::vector<int> peers;  // plain blocking sockets, closed by a plain thread
    std::atomic<bool> go_close{false};
    std::thread closer;
    {
      Runtime rt{Config{.workers = 2}};
      closer = std::thread([&, delay = std::chrono::microseconds((r * 7) % 150)] {
        go_close.wait(false);
        const auto at = std::chrono::steady_clock::now() + delay;  // spun, not slept: finer
        while (std::chrono::steady_clock::now() < at) {
        }
        for (int fd : peers) ::close(fd);
      });
      rt.block_on([&] {
        struct Release {  // starts the closer as this fiber ends (a failed ASSERT too)
          std::atomic<bool>& flag;
          ~Release() {
            flag.store(true);
            flag.notify_one();
          }
        } release{go_close};
        TcpListener l = TcpListener::bind("127.0.0.1", 0);
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_port = htons(l.local_endpoint().port());
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        for (int i = 0; i < conns; ++i) {
          const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
          ASSERT_GE(fd, 0);
          peers.push_back(fd);
          ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to), 0);
          chronos::go([c = l.accept(), &ended, &saw_eof]() mutable {
            CountOnExit count{ended};
            std::byte buf[16];
            if (c.read(buf) == 0) saw_eof.fetch_add(1);
          }).detach();
        }
      });
    }  // shuts down while the peers close
    closer.join();
    ASSERT_EQ(ended.load(), conns) << "round " << r;
    eofs += saw_eof.load();
  }
  EXPECT_EQ(chronos::test::open_fds(), fds_before);
  std::printf("%d of %d fibers read EOF before shutdown unwound them\n", eofs, rounds * conns);
}

}  // namespace
