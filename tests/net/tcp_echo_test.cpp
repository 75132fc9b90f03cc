// tests/net/tcp_echo_test.cpp: echo over loopback TCP with many concurrent
// connections, and connect/disconnect churn. Every byte is checked.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define NET_TEST_HAVE_VALGRIND 1
#endif

#include <chronos/chronos.hpp>
#include <chronos/net.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../test_util.hpp"
#include "net_util.hpp"

namespace {

using chronos::Config;
using chronos::Runtime;
using chronos::SpawnOptions;
using chronos::WaitGroup;
using chronos::net::TcpListener;
using chronos::net::TcpStream;

const SpawnOptions kSmall{.small_stack = true};

struct Tally {
  std::atomic<std::uint64_t> verified{0};  // bytes echoed back intact
  std::atomic<int> errors{0};
  std::atomic<bool> reported{false};
  void error(const char* what) {
    errors.fetch_add(1, std::memory_order_relaxed);
    if (!reported.exchange(true)) std::fprintf(stderr, "first error: %s\n", what);
  }
};

// One client connection: connects, waits until every client has (so that
// all connections are open at once), then msgs messages of size bytes, each
// checked, then a half-close, after which the server must close with no
// extra bytes.
void client(std::uint16_t port, int id, int msgs, std::size_t size, Tally& t, WaitGroup& all_up) {
  try {
    TcpStream s;
    try {
      s = TcpStream::connect("127.0.0.1", port);
    } catch (...) {
      all_up.done();
      throw;
    }
    all_up.done();
    all_up.wait();
    s.set_nodelay(true);
    std::vector<std::byte> out(size), in(size);
    for (int m = 0; m < msgs; ++m) {
      chronos::test::fill_message(out, static_cast<std::uint64_t>(id),
                                  static_cast<std::uint64_t>(m));
      s.write_all(out);
      s.read_exact(in);
      if (in != out) {
        t.error("wrong bytes");
        return;
      }
      t.verified.fetch_add(size, std::memory_order_relaxed);
    }
    s.shutdown(chronos::net::Shutdown::kWrite);
    if (s.read(in) != 0) t.error("extra bytes after the half-close");
  } catch (const std::system_error& e) {
    t.error(e.what());
  }
}

// Spawns an accept loop serving echo_connection per connection, until the
// listener is closed. Join the loop after the close and before the listener
// goes: it calls l.accept() again after each connection.
chronos::JoinHandle<void> serve(TcpListener& l) {
  return chronos::go([&l] {
    for (;;) {
      std::error_code ec;
      TcpStream c = l.accept(ec);
      if (ec) return;
      chronos::go(kSmall, [c = std::move(c)]() mutable {
        chronos::test::echo_connection(std::move(c));
      }).detach();
    }
  });
}

void run_echo_in_process(int conns, int msgs, std::size_t size) {
  chronos::test::raise_nofile(static_cast<rlim_t>(2 * conns + 256));
  Runtime rt{Config{.workers = 2}};
  Tally t;
  rt.block_on([&] {
    TcpListener l = TcpListener::bind("127.0.0.1", 0, 4096);
    const std::uint16_t port = l.local_endpoint().port();
    ASSERT_NE(port, 0);
    auto acceptor = serve(l);
    WaitGroup wg(conns), all_up(conns);
    for (int i = 0; i < conns; ++i)
      chronos::go(kSmall, [&, i] {
        client(port, i, msgs, size, t, all_up);
        wg.done();
      }).detach();
    wg.wait();
    l.close();  // ends the accept loop (EBADF)
    acceptor.join();
  });
  EXPECT_EQ(t.errors.load(), 0);
  EXPECT_EQ(t.verified.load(), static_cast<std::uint64_t>(conns) * msgs * size);
}

TEST(NetTcp, Echo1000Connections) {
  run_echo_in_process(static_cast<int>(chronos::test::scaled(1000)), 5, 64);
}

TEST(NetTcp, EchoLargeMessagesExceedSocketBuffers) {
  // 4 MiB each way: writes park for room while the peer reads.
  run_echo_in_process(4, 2, std::size_t{4} << 20);
}

// A server on packed 2 KiB stacks (Config::small_stack_size, 1,920 bytes of
// stack): the accept loop and every connection's handler, with its own
// 256-byte buffer, park in the reactor and wake again within them. (The
// clients, whose connect() goes deeper, run on normal stacks.) An overflow
// would die at a switch.
TEST(NetTcp, EchoOnPackedTwoKiBStacks) {
  const int conns = static_cast<int>(chronos::test::scaled(500));
  const int msgs = 5;
  const std::size_t size = 64;
  chronos::test::raise_nofile(static_cast<rlim_t>(2 * conns + 256));
  Runtime rt{Config{.workers = 2, .small_stack_size = 2048}};
  Tally t;
  rt.block_on([&] {
    TcpListener l = TcpListener::bind("127.0.0.1", 0, 4096);
    const std::uint16_t port = l.local_endpoint().port();
    auto acceptor = chronos::go(kSmall, [&l] {
      for (;;) {
        std::error_code ec;
        TcpStream c = l.accept(ec);
        if (ec) return;
        chronos::go(kSmall, [c = std::move(c)]() mutable {
          std::byte buf[256];
          while (std::size_t n = c.read(buf)) c.write_all({buf, n});
        }).detach();
      }
    });
    WaitGroup wg(conns), all_up(conns);
    for (int i = 0; i < conns; ++i)
      chronos::go([&, i] {
        client(port, i, msgs, size, t, all_up);
        wg.done();
      }).detach();
    wg.wait();
    l.close();
    acceptor.join();
  });
  EXPECT_EQ(t.errors.load(), 0);
  EXPECT_EQ(t.verified.load(), static_cast<std::uint64_t>(conns) * msgs * size);
}

// 10,000 connections need 20,000 fds, the hard limit here: the clients run in
// a child process with its own runtime.
TEST(NetTcp, Echo10000ConnectionsAcrossProcesses) {
#if NET_TEST_HAVE_VALGRIND
  // valgrind leak-checks the forked client when it exits, against memory
  // that the parent's threads (which do not exist in the child) still hold,
  // and turns that into a failing exit status; it also emulates the fd limit.
  if (RUNNING_ON_VALGRIND) GTEST_SKIP() << "a forked client is not meaningful under valgrind";
#endif
  const int conns = static_cast<int>(chronos::test::scaled(10000));
  const int msgs = 3;
  const std::size_t size = 64;
  int port_pipe[2];
  ASSERT_EQ(pipe(port_pipe), 0);
  std::fflush(nullptr);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // the clients; no assertions here, only the exit status
    close(port_pipe[1]);
    alarm(280);
    std::uint16_t port = 0;
    if (read(port_pipe[0], &port, sizeof port) != sizeof port) _exit(3);
    chronos::test::raise_nofile(static_cast<rlim_t>(conns + 256));
    Tally t;
    {
      Runtime rt{Config{.workers = 2}};
      rt.block_on([&] {
        WaitGroup wg(conns), all_up(conns);
        for (int i = 0; i < conns; ++i)
          chronos::go(kSmall, [&, i] {
            client(port, i, msgs, size, t, all_up);
            wg.done();
          }).detach();
        wg.wait();
      });
    }
    const bool ok = t.errors.load() == 0 &&
                    t.verified.load() == static_cast<std::uint64_t>(conns) * msgs * size;
    _exit(ok ? 0 : 1);
  }
  close(port_pipe[0]);
  chronos::test::raise_nofile(static_cast<rlim_t>(conns + 256));
  int status = -1;
  {
    Runtime rt{Config{.workers = 2}};
    TcpListener l = rt.block_on([] { return TcpListener::bind("127.0.0.1", 0, 4096); });
    const std::uint16_t port = rt.block_on([&] { return l.local_endpoint().port(); });
    chronos::JoinHandle<void> acceptor = rt.spawn([&] { return serve(l); }).join();
    ASSERT_EQ(write(port_pipe[1], &port, sizeof port), static_cast<ssize_t>(sizeof port));
    close(port_pipe[1]);
    // Wait for the child (at most 300 s) on this plain thread.
    for (int i = 0; i < 3000; ++i) {
      if (waitpid(child, &status, WNOHANG) == child) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (waitpid(child, &status, WNOHANG) == 0) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      ADD_FAILURE() << "the client process did not finish";
    }
    rt.block_on([&] {
      l.close();
      acceptor.join();
    });
  }
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the client process saw errors (stderr above)";
}

// Connect, one echo, close: 50,000 times, 8 cycles in flight.
TEST(NetTcp, ConnectDisconnectChurn) {
  const int cycles = static_cast<int>(chronos::test::scaled(50000));
  const int lanes = 8;
  chronos::test::raise_nofile(1024);
  const int fds_before = chronos::test::open_fds();
  Tally t;
  {
    Runtime rt{Config{.workers = 2}};
    rt.block_on([&] {
      TcpListener l = TcpListener::bind("127.0.0.1", 0, 4096);
      const std::uint16_t port = l.local_endpoint().port();
      auto acceptor = serve(l);
      WaitGroup wg(lanes);
      std::atomic<int> next{0};
      for (int lane = 0; lane < lanes; ++lane)
        chronos::go([&] {
          std::byte out[64], in[64];
          for (int i; (i = next.fetch_add(1, std::memory_order_relaxed)) < cycles;) {
            try {
              TcpStream s = TcpStream::connect("127.0.0.1", port);
              chronos::test::fill_message(out, static_cast<std::uint64_t>(i), 0);
              s.write_all(out);
              s.read_exact(in);
              if (std::memcmp(in, out, sizeof in) != 0) {
                t.error("wrong bytes");
              } else {
                t.verified.fetch_add(sizeof in, std::memory_order_relaxed);
              }
            } catch (const std::system_error& e) {
              t.error(e.what());
            }
          }
          wg.done();
        }).detach();
      wg.wait();
      l.close();
      acceptor.join();
    });
  }
  EXPECT_EQ(t.errors.load(), 0);
  EXPECT_EQ(t.verified.load(), static_cast<std::uint64_t>(cycles) * 64);
  EXPECT_EQ(chronos::test::open_fds(), fds_before);
}

// The seed design (a dedicated reactor thread) still echoes correctly.
TEST(NetTcp, EchoWithDedicatedReactorThread) {
  setenv("CHRONOS_REACTOR", "thread", 1);
  run_echo_in_process(static_cast<int>(chronos::test::scaled(200)), 10, 100);
  unsetenv("CHRONOS_REACTOR");
}

}  // namespace
