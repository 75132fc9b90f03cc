// tests/net/net_util.hpp: helpers shared by the reactor's tests.
#pragma once

#include <dirent.h>
#include <sys/resource.h>

#include <chronos/chronos.hpp>
#include <chronos/net.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace chronos::test {

// Raises the soft RLIMIT_NOFILE to at least n (up to the hard limit).
// Returns the soft limit now in force.
inline rlim_t raise_nofile(rlim_t n) {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  if (r.rlim_cur < n) {
    r.rlim_cur = n < r.rlim_max ? n : r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
    getrlimit(RLIMIT_NOFILE, &r);
  }
  return r.rlim_cur;
}

// Entries of /proc/self/fd (the directory's own fd not counted). The first
// runtime with the slow-fiber watchdog loads libunwind, which keeps a pipe
// for the life of the process (README, "Seeing inside"): one runtime is made
// first, so that counts taken before and after a test compare like with like.
inline int open_fds() {
  static const bool warmed = [] {
    Runtime warm{Config{.workers = 1}};
    return true;
  }();
  (void)warmed;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n - 1;
}

// The bytes connection `conn` sends as message `msg`: different for every
// connection and message, so misrouted or stale bytes are caught.
inline void fill_message(std::span<std::byte> buf, std::uint64_t conn, std::uint64_t msg) {
  std::uint64_t x = (conn * 0x9E3779B97F4A7C15ull) ^ (msg + 1) * 0xBF58476D1CE4E5B9ull;
  for (auto& b : buf) {
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    b = static_cast<std::byte>(x >> 56);
  }
}

// What udp_round_trips counted: each should be the number of datagrams.
struct UdpTally {
  int sent = 0;       // send_to took the whole datagram
  int delivered = 0;  // b got it intact, from a's address and port
  int acked = 0;      // a got b's one-byte ack, from b's address and port
};

// n datagrams of `size` bytes (fill_message(stream, i)) from a to b; b acks
// each with one byte, which keeps a from overrunning b's buffer. Call from a
// fiber.
inline UdpTally udp_round_trips(net::UdpSocket& a, net::UdpSocket& b, int n, std::size_t size,
                                std::uint64_t stream) {
  const net::Endpoint to_b = b.local_endpoint(), from_a = a.local_endpoint();
  UdpTally t;
  auto receiver = go([&] {
    std::vector<std::byte> buf(size + 512), want(size);
    for (int i = 0; i < n; ++i) {
      net::Endpoint from;
      const std::size_t len = b.recv_from(buf, from);  // parks until a datagram arrives
      fill_message(want, stream, static_cast<std::uint64_t>(i));
      t.delivered += len == size && std::equal(want.begin(), want.end(), buf.begin()) &&
                     from.to_string() == from_a.to_string();
      b.send_to({buf.data(), 1}, from);
    }
  });
  std::vector<std::byte> msg(size);
  std::byte ack[1];
  for (int i = 0; i < n; ++i) {
    fill_message(msg, stream, static_cast<std::uint64_t>(i));
    t.sent += a.send_to(msg, to_b) == size;
    net::Endpoint from;
    t.acked += a.recv_from(ack, from) == 1 && from.to_string() == to_b.to_string();
  }
  receiver.join();
  return t;
}

// Echoes everything it reads until the peer closes.
inline void echo_connection(net::TcpStream c) {
  std::byte buf[4096];
  try {
    while (std::size_t n = c.read(buf)) c.write_all({buf, n});
  } catch (const std::system_error&) {
    // a reset peer ends the connection
  }
}

}  // namespace chronos::test
