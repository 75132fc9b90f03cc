// examples/echo_server.cpp: a TCP echo server, one fiber per connection.
//
//   ./chronos_echo_server --port 7000 [--threads N | --workers N] [--host 127.0.0.1]
//                         [--pin] [--small-stacks]
//
// Listens on host:port (127.0.0.1 by default), accepts in a loop, and serves
// each connection in its own fiber: read up to 4 KiB, write all of it back,
// until the peer closes or the connection fails. TCP_NODELAY is set on every
// connection. Runs until SIGINT or SIGTERM, then prints one
// `RESULT workload=echo-server ...` line and shuts the runtime down. It is
// also the `echo-server` program of the peer harness
// (bench/peers/chronos/build.sh).
#include <signal.h>

#include <chronos/chronos.hpp>
#include <chronos/net.hpp>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "echo_server: %s\nusage: echo_server --port P [--threads N | --workers N] "
               "[--host ADDR] [--pin] [--small-stacks]\n",
               msg);
  std::exit(2);
}

long number(const std::string& name, const std::string& v, long min, long max) {
  char* end = nullptr;
  errno = 0;
  long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0 || x < min || x > max)
    usage(("--" + name + " out of range or not a number: '" + v + "'").c_str());
  return x;
}

std::atomic<std::uint64_t> g_accepted{0};

// --small-stacks: 16 KiB stacks (for very many connections); the default is
// the runtime's normal stack, which a switch checks less.
void serve(chronos::net::TcpStream c) {
  std::array<std::byte, 4096> buf;
  std::error_code ec;
  c.set_nodelay(true);
  while (std::size_t n = c.read(buf, ec)) {
    c.write_all({buf.data(), n}, ec);
    if (ec) break;
  }
}  // closes c

}  // namespace

int main(int argc, char** argv) {
  long port = -1, threads = 2;
  bool pin = false, small = false;
  std::string host = "127.0.0.1";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "-h" || arg == "--help") usage("help");
    if (arg == "--pin" || arg == "--small-stacks") {
      (arg == "--pin" ? pin : small) = true;
      continue;
    }
    if (auto eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      usage(("missing value for " + arg).c_str());
    }
    if (arg == "--port") {
      port = number("port", value, 0, 65535);
    } else if (arg == "--threads" || arg == "--workers") {
      threads = number("threads", value, 1, 1024);
    } else if (arg == "--host") {
      host = value;
    } else {
      usage(("unknown option " + arg).c_str());
    }
  }
  if (port < 0) usage("--port is required");

  // Every thread the runtime starts inherits this mask, so SIGINT and SIGTERM
  // reach only sigwait() below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // Workers float by default: the load generator usually shares these CPUs,
  // and pinned workers cannot move away from it (measured on 2 CPUs: about
  // half the requests/s pinned). --pin pins them.
  chronos::Runtime rt{
      chronos::Config{.workers = static_cast<unsigned>(threads), .pin_workers = pin}};
  chronos::net::TcpListener listener;
  try {
    listener = rt.block_on(
        [&] { return chronos::net::TcpListener::bind(host, static_cast<std::uint16_t>(port)); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "echo_server: listening on %s with %ld workers\n",
               rt.block_on([&] { return listener.local_endpoint().to_string(); }).c_str(), threads);
  rt.spawn([&listener, small] {
      for (;;) {
        std::error_code ec;
        chronos::net::TcpStream c = listener.accept(ec);   // backs off by itself on EMFILE
        if (ec == std::errc::bad_file_descriptor) return;  // closed: shutting down
        if (ec) continue;
        g_accepted.fetch_add(1, std::memory_order_relaxed);
        chronos::go(chronos::SpawnOptions{.small_stack = small}, [c = std::move(c)]() mutable {
          serve(std::move(c));
        }).detach();
      }
    }).detach();

  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::fprintf(stderr, "echo_server: %s, shutting down\n", strsignal(sig));
  std::printf("RESULT workload=echo-server peer=chronos threads=%ld conns=%llu\n", threads,
              static_cast<unsigned long long>(g_accepted.load()));
  std::fflush(stdout);
  // Exit promptly even if clients keep their connections busy: shutdown()
  // waits for the runtime to go quiet, then unwinds every parked fiber.
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    std::fputs("echo_server: connections still busy after 3 s; exiting\n", stderr);
    std::_Exit(0);
  }).detach();
  rt.block_on([&] { listener.close(); });
  rt.shutdown();
  listener = chronos::net::TcpListener();  // its descriptor belongs to rt's reactor
  return 0;
}
