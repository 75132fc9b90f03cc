// bench/peers/chronos/src/peer.hpp: what the chronos peer programs share, for
// ../shared/peers/run.sh (see its README, "Adding a peer" and "The RESULT line").
//
//  * Args: --threads N, --n N and, for spawn, --small / --normal and
//    --max-cached N, for idle --stack-kib N, as `--name value` or
//    `--name=value`, parsed by hand. Bad input exits 2.
//  * guarded(): runs the program; an exception (a failed stack mapping, say)
//    is reported on stderr and exits 1 without a RESULT line.
//  * result(): the one `RESULT workload=... peer=chronos threads=...` line on
//    stdout; everything else goes to stderr.
//  * print_stats(): with CHRONOS_PEER_STATS set in the environment, the
//    runtime's counters (chronos::to_prometheus) on stderr, for a diagnosis.
#pragma once

#include <chronos/debug.hpp>
#include <chronos/runtime.hpp>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace peer {

[[noreturn]] inline void usage_error(const char* prog, const std::string& msg) {
  std::fprintf(stderr, "%s: %s\n", prog, msg.c_str());
  std::exit(2);
}

struct Args {
  long threads;
  long n;
  bool small = true;    // spawn only: --small (default) or --normal
  long max_cached = 0;  // spawn only: Config::max_cached_stacks; 0: the library's default
  long stack_kib = 0;   // idle only: Config::small_stack_size in KiB
};

// spawn_flags: whether --small, --normal and --max-cached are accepted.
// def_stack_kib: nonzero for idle, which takes --stack-kib (this default).
inline Args parse(int argc, char** argv, const char* prog, long def_threads, long def_n,
                  bool spawn_flags, long def_stack_kib = 0) {
  Args a{def_threads, def_n};
  a.stack_kib = def_stack_kib;
  auto number = [&](const std::string& name, const std::string& v) {
    char* end = nullptr;
    errno = 0;
    long x = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || x < 1)
      usage_error(prog, "--" + name + " needs a positive integer, got '" + v + "'");
    return x;
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "-h" || arg == "--help") {
      std::printf("usage: %s [--threads N (default %ld)] [--n N (default %ld)]%s%s\n", prog,
                  def_threads, def_n,
                  spawn_flags ? " [--small (default) | --normal] [--max-cached N]" : "",
                  def_stack_kib ? " [--stack-kib N (small stack size)]" : "");
      std::exit(0);
    }
    if (spawn_flags && (arg == "--small" || arg == "--normal")) {
      a.small = arg == "--small";
      continue;
    }
    if (auto eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (arg == "--threads" || arg == "--n" || (spawn_flags && arg == "--max-cached") ||
               (def_stack_kib && arg == "--stack-kib")) {
      if (i + 1 >= argc) usage_error(prog, arg + " needs a value");
      value = argv[++i];
    }
    if (arg == "--threads") {
      a.threads = number("threads", value);
    } else if (arg == "--n") {
      a.n = number("n", value);
    } else if (spawn_flags && arg == "--max-cached") {
      a.max_cached = number("max-cached", value);
    } else if (def_stack_kib && arg == "--stack-kib") {
      a.stack_kib = number("stack-kib", value);
    } else {
      usage_error(prog, "unknown argument '" + std::string(argv[i]) + "'");
    }
  }
  return a;
}

using Clock = std::chrono::steady_clock;

inline double ns_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

// extra: " key=value ..." appended after the metric, or empty.
inline void result(const char* workload, long threads, long n, const char* metric, double value,
                   const std::string& extra = {}) {
  std::printf("RESULT workload=%s peer=chronos threads=%ld n=%ld %s=%.2f%s\n", workload, threads, n,
              metric, value, extra.c_str());
  std::fflush(stdout);
}

inline void print_stats(chronos::Runtime& rt) {
  if (std::getenv("CHRONOS_PEER_STATS") == nullptr) return;
  std::fputs(chronos::to_prometheus(rt.stats()).c_str(), stderr);
}

template <class F>
int guarded(const char* prog, F&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", prog, e.what());
    return 1;
  }
}

}  // namespace peer
