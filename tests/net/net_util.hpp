// tests/net/net_util.hpp: helpers shared by the reactor's tests.
#pragma once

#include <dirent.h>
#include <sys/resource.h>

#include <chronos/chronos.hpp>
#include <chronos/net.hpp>

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
