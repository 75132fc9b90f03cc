// bench/scaling.cpp: how a CPU-bound fan-out scales with the number of workers.
//
// For each worker count w = 1..W (W: the CPUs this process may run on, from
// sched_getaffinity, unless --workers says otherwise), a fresh
// Runtime{Config{.workers = w}} runs this, inside one block_on fiber:
//
//   spawn F fibers with chronos::go() (default F = 10,000), each doing about
//   U µs of pure arithmetic (default 50: a chain of dependent 64-bit
//   multiply/xor-shift steps, seeded from the fiber's index, that the compiler
//   cannot fold or vectorise), then join them all and sum their results.
//
// All F fibers are spawned onto the spawning fiber's worker; the other
// workers get theirs by stealing from it and, once its deque (1024) is full,
// from the injection queue, where a full deque spills half of itself (with
// F = 10,000 most of them come that way: see the stolen column). So the table
// shows the load-balancing paths, not just arithmetic. One untimed warm-up
// round, then the best of R timed rounds (default 3) per worker count. The
// work per fiber is calibrated once, on the main thread, before any runtime
// exists.
//
//   workers     w
//   ms          best wall time of one fan-out (spawn + run + join)
//   speedup     ms(1) / ms(w)
//   efficiency  speedup / w
//   stolen      fibers taken by steals per round (mean over all rounds of w)
//
// Every round's checksum must be the same, else the program exits 1.
// Output: the table on stdout, with '#' lines before and after it.
// --csv PATH also writes the table as CSV (with '#' comment lines saying how
// it was made), which bench/plot_scaling.py turns into a PNG.
//
//   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCHRONOS_BUILD_TESTS=OFF
//   cmake --build build-bench -j2 --target scaling_bench
//   build-bench/bench/scaling_bench [--workers W] [--fibers 10000] [--work-us 50]
//                                   [--reps 3] [--csv PATH]
#include <sched.h>

#include <chronos/chronos.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// `iters` dependent steps of an LCG step followed by a xor-shift: about 4-5
// cycles each on x86-64, none of which the compiler can skip or hoist, since
// the seed is only known at run time and the result is used.
std::uint64_t work(std::uint64_t seed, std::uint64_t iters) {
  std::uint64_t x = seed | 1;
  for (std::uint64_t i = 0; i < iters; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    x ^= x >> 29;
  }
  return x;
}

// Steps that take about `us` microseconds on this thread: the best of several
// timings of a fixed count, scaled.
std::uint64_t calibrate(double us) {
  constexpr std::uint64_t kProbe = 1'000'000;
  double best_ms = 1e300;
  std::uint64_t sink = 0;
  for (int i = 0; i < 15; ++i) {
    const auto t0 = Clock::now();
    sink += work(static_cast<std::uint64_t>(i), kProbe);
    best_ms = std::min(best_ms, ms_since(t0));
  }
  if (sink == 42) std::puts("");  // keeps `sink`, and so the loop, alive
  return std::max<std::uint64_t>(1, static_cast<std::uint64_t>(us / (best_ms * 1e3) * kProbe));
}

unsigned cpus_available() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
}

// The 1, 5 and 15 minute load averages, from /proc/loadavg.
std::string loadavg() {
  double l[3] = {-1, -1, -1};
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf %lf %lf", &l[0], &l[1], &l[2]) != 3) l[0] = l[1] = l[2] = -1;
    std::fclose(f);
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f %.2f %.2f", l[0], l[1], l[2]);
  return buf;
}

struct Options {
  unsigned workers = 0;  // 0: cpus_available()
  long fibers = 10'000;
  double work_us = 50;
  int reps = 3;
  std::string csv;
};

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr,
               "scaling_bench: %s\nusage: scaling_bench [--workers W] [--fibers N] [--work-us U] "
               "[--reps R] [--csv PATH]\n",
               msg.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  // A positive number; a whole one if `whole`.
  auto number = [](const std::string& name, const std::string& v, bool whole) {
    char* end = nullptr;
    errno = 0;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || errno != 0 || !(x > 0) || !(x < 1e9) ||
        (whole && x != static_cast<double>(static_cast<long>(x))))
      usage("--" + name + " needs a positive " + (whole ? "integer" : "number") + ", got '" + v +
            "'");
    return x;
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "-h" || arg == "--help") usage("measures a CPU-bound fan-out at 1..W workers");
    if (auto eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else {
      if (i + 1 >= argc) usage(arg + " needs a value");
      value = argv[++i];
    }
    if (arg == "--workers") {
      o.workers = static_cast<unsigned>(number("workers", value, true));
    } else if (arg == "--fibers") {
      o.fibers = static_cast<long>(number("fibers", value, true));
    } else if (arg == "--work-us") {
      o.work_us = number("work-us", value, false);
    } else if (arg == "--reps") {
      o.reps = static_cast<int>(number("reps", value, true));
    } else if (arg == "--csv") {
      o.csv = value;
    } else {
      usage("unknown argument '" + std::string(argv[i]) + "'");
    }
  }
  return o;
}

struct Row {
  unsigned workers;
  double ms;
  double stolen_per_round;
};

// One fan-out of `fibers` fibers, each `iters` steps, from the calling fiber.
std::uint64_t fan_out(long fibers, std::uint64_t iters,
                      std::vector<chronos::JoinHandle<std::uint64_t>>& handles) {
  for (long i = 0; i < fibers; ++i)
    handles.push_back(
        chronos::go([i, iters] { return work(static_cast<std::uint64_t>(i), iters); }));
  std::uint64_t sum = 0;
  for (auto& h : handles) sum += h.join();
  handles.clear();
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse(argc, argv);
  const unsigned cpus = cpus_available();
  if (opt.workers == 0) opt.workers = cpus;
  const std::string load_before = loadavg();
  const std::uint64_t iters = calibrate(opt.work_us);

  std::printf(
      "# scaling_bench: fan-out of %ld fibers x ~%.0f us (%llu steps each), best of %d, "
      "%u CPUs available, load average %s\n",
      opt.fibers, opt.work_us, static_cast<unsigned long long>(iters), opt.reps, cpus,
      loadavg().c_str());
  std::printf("# ideal time at 1 worker: %.1f ms\n",
              static_cast<double>(opt.fibers) * opt.work_us / 1e3);
  std::fflush(stdout);

  std::vector<Row> rows;
  std::uint64_t checksum = 0;
  bool have_checksum = false;
  try {
    for (unsigned w = 1; w <= opt.workers; ++w) {
      // The watchdog stays off: the spawning fiber's first round touches every
      // fresh stack page without yielding, which it would rightly report.
      chronos::Runtime rt{chronos::Config{.workers = w, .slow_fiber_threshold = {}}};
      const double best = rt.block_on([&] {
        std::vector<chronos::JoinHandle<std::uint64_t>> handles;
        handles.reserve(static_cast<std::size_t>(opt.fibers));
        double best_ms = 1e300;
        for (int r = 0; r <= opt.reps; ++r) {  // round 0: warm-up
          const auto t0 = Clock::now();
          const std::uint64_t sum = fan_out(opt.fibers, iters, handles);
          const double ms = ms_since(t0);
          if (!have_checksum) {
            checksum = sum;
            have_checksum = true;
          } else if (sum != checksum) {
            throw std::runtime_error("checksum " + std::to_string(sum) + ", want " +
                                     std::to_string(checksum));
          }
          if (r > 0) best_ms = std::min(best_ms, ms);
        }
        return best_ms;
      });
      std::uint64_t stolen = 0;
      for (const auto& ws : rt.stats().workers) stolen += ws.stolen;
      rows.push_back({w, best, static_cast<double>(stolen) / (opt.reps + 1)});
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scaling_bench: %s\n", e.what());
    return 1;
  }

  const double base = rows.front().ms;
  std::printf("%7s %10s %8s %10s %10s\n", "workers", "ms", "speedup", "efficiency", "stolen");
  for (const Row& r : rows) {
    const double speedup = base / r.ms;
    std::printf("%7u %10.1f %8.2f %9.1f%% %10.0f\n", r.workers, r.ms, speedup,
                100.0 * speedup / r.workers, r.stolen_per_round);
  }
  std::printf("# checksum %llu\n", static_cast<unsigned long long>(checksum));

  if (!opt.csv.empty()) {
    FILE* f = std::fopen(opt.csv.c_str(), "w");
    if (!f) {
      std::perror(opt.csv.c_str());
      return 1;
    }
    std::fprintf(f,
                 "# scaling_bench: fan-out of %ld fibers x ~%.0f us, best of %d, %u CPUs, "
                 "load average before %s\n",
                 opt.fibers, opt.work_us, opt.reps, cpus, load_before.c_str());
    std::fprintf(f, "workers,ms,speedup,efficiency,stolen_per_round\n");
    for (const Row& r : rows) {
      const double speedup = base / r.ms;
      std::fprintf(f, "%u,%.3f,%.4f,%.4f,%.0f\n", r.workers, r.ms, speedup, speedup / r.workers,
                   r.stolen_per_round);
    }
    if (std::fclose(f) != 0) {
      std::perror(opt.csv.c_str());
      return 1;
    }
    std::printf("# wrote %s\n", opt.csv.c_str());
  }
  return 0;
}
