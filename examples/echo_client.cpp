// examples/echo_client.cpp: a fiber-based load generator for an echo server.
//
//   ./chronos_echo_client --port 7000 [--host 127.0.0.1] [--connections 100]
//       [--messages 1000] [--size 64] [--duration 0] [--workers 2]
//
// Opens every connection first (one fiber each), then each sends a message of
// --size bytes, waits for all of it to come back, checks every byte, and
// sends the next: --messages times, or, with --duration S, until S seconds
// have passed (then --messages caps only if given). Every message has
// different content, so stale or misrouted bytes are caught. Prints
// requests/s and the p50/p99/p999 round-trip latency (exact, over every
// sample) and the errors, as one `RESULT` line on stdout; exits 1 if any
// connection failed or saw a wrong byte.
#include <chronos/chronos.hpp>
#include <chronos/net.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr,
               "echo_client: %s\nusage: echo_client --port P [--host H] [--connections C] "
               "[--messages M] [--size S] [--duration SECONDS] [--workers N]\n",
               msg.c_str());
  std::exit(2);
}

long number(const std::string& name, const std::string& v, long min) {
  char* end = nullptr;
  errno = 0;
  long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0 || x < min)
    usage("--" + name + " needs an integer >= " + std::to_string(min) + ", got '" + v + "'");
  return x;
}

void fill(std::vector<std::byte>& buf, std::uint64_t conn, std::uint64_t msg) {
  std::uint64_t x = (conn + 1) * 0x9E3779B97F4A7C15ull ^ (msg + 1) * 0xD1B54A32D192ED03ull;
  for (auto& b : buf) {
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    b = static_cast<std::byte>(x >> 56);
  }
}

struct Conn {
  std::vector<std::uint32_t> lat_ns;  // one per round trip (saturates at ~4 s)
  bool failed = false;
};

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  long port = -1, conns = 100, messages = -1, size = 64, duration = 0, workers = 2;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "-h" || arg == "--help") usage("help");
    if (auto eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      usage("missing value for " + arg);
    }
    if (arg == "--host") {
      host = value;
    } else if (arg == "--port") {
      port = number("port", value, 1);
    } else if (arg == "--connections" || arg == "--conns") {
      conns = number("connections", value, 1);
    } else if (arg == "--messages" || arg == "--msgs") {
      messages = number("messages", value, 1);
    } else if (arg == "--size") {
      size = number("size", value, 1);
    } else if (arg == "--duration") {
      duration = number("duration", value, 0);
    } else if (arg == "--workers" || arg == "--threads") {
      workers = number("workers", value, 1);
    } else {
      usage("unknown option " + arg);
    }
  }
  if (port < 0 || port > 65535) usage("--port is required");
  if (messages < 0) messages = duration > 0 ? -1 : 1000;  // -1: until the duration ends

  std::vector<Conn> cs(static_cast<std::size_t>(conns));
  std::atomic<int> errors{0};
  std::atomic<bool> reported{false};
  Clock::time_point start, end;
  chronos::Runtime rt{chronos::Config{.workers = static_cast<unsigned>(workers)}};
  rt.block_on([&] {
    chronos::WaitGroup up(static_cast<std::ptrdiff_t>(conns)),
        done(static_cast<std::ptrdiff_t>(conns));
    // When a --duration run ends (steady_clock ticks); set once all are up.
    std::atomic<Clock::rep> stop_at{Clock::time_point::max().time_since_epoch().count()};
    for (long id = 0; id < conns; ++id) {
      chronos::go(chronos::SpawnOptions{.small_stack = true}, [&, id] {
        Conn& me = cs[static_cast<std::size_t>(id)];
        auto fail = [&](const char* what) {
          me.failed = true;
          errors.fetch_add(1, std::memory_order_relaxed);
          if (!reported.exchange(true))
            std::fprintf(stderr, "echo_client: connection %ld: %s\n", id, what);
        };
        chronos::net::TcpStream s;
        try {
          s = chronos::net::TcpStream::connect(host, static_cast<std::uint16_t>(port));
          s.set_nodelay(true);
        } catch (const std::system_error& e) {
          fail(e.what());
        }
        up.done();
        up.wait();
        if (!me.failed) {
          if (messages > 0) me.lat_ns.reserve(static_cast<std::size_t>(messages));
          std::vector<std::byte> out(static_cast<std::size_t>(size)), in(out.size());
          try {
            for (long m = 0; messages < 0 || m < messages; ++m) {
              // relaxed: a stop flag; a round trip more or less does not matter.
              if (Clock::now().time_since_epoch().count() >=
                  stop_at.load(std::memory_order_relaxed))
                break;
              fill(out, static_cast<std::uint64_t>(id), static_cast<std::uint64_t>(m));
              auto t0 = Clock::now();
              s.write_all(out);
              s.read_exact(in);
              auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0);
              if (in != out) {
                fail("wrong bytes in the echo");
                break;
              }
              me.lat_ns.push_back(
                  static_cast<std::uint32_t>(std::min<long long>(ns.count(), UINT32_MAX)));
            }
          } catch (const std::system_error& e) {
            fail(e.what());
          }
        }
        done.done();
      }).detach();
    }
    up.wait();
    start = Clock::now();
    if (duration > 0)
      stop_at.store((start + std::chrono::seconds(duration)).time_since_epoch().count(),
                    std::memory_order_relaxed);
    done.wait();
    end = Clock::now();
  });

  std::vector<std::uint32_t> all;
  for (auto& c : cs) all.insert(all.end(), c.lat_ns.begin(), c.lat_ns.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) -> double {
    if (all.empty()) return 0;
    std::size_t rank = static_cast<std::size_t>(p * static_cast<double>(all.size()) + 0.999999);
    rank = std::clamp<std::size_t>(rank, 1, all.size());
    return all[rank - 1] / 1000.0;
  };
  const double secs = std::chrono::duration<double>(end - start).count();
  const double rps = secs > 0 ? static_cast<double>(all.size()) / secs : 0;
  std::fprintf(stderr, "echo_client: %ld connections, %zu round trips in %.3f s\n", conns,
               all.size(), secs);
  std::printf(
      "RESULT workload=echo peer=chronos conns=%ld size=%ld reqs=%zu rps=%.0f p50_us=%.1f "
      "p99_us=%.1f p999_us=%.1f errors=%d\n",
      conns, size, all.size(), rps, pct(0.50), pct(0.99), pct(0.999), errors.load());
  return errors.load() == 0 ? 0 : 1;
}
