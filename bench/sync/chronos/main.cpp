// bench/sync/chronos/main.cpp: chronos's side of the sync comparison (see
// ../README.md): channel ping-pong, buffered-channel throughput, and a
// chronos::Mutex uncontended and contended.
//
//   sync_compare --workload pingpong|buffered|mutex_uncontended|mutex_contended
//                [--threads N] [--n N] [--count-allocs]
//
// Each workload runs once untimed with n/10, then once timed with n, both in
// one Runtime{Config{.workers = threads}}. The time is taken with
// steady_clock around the timed phase only. A wrong value exits 1.
//
// --count-allocs: the RESULT line carries allocs=K, the global operator new
// calls made by any thread while the timed phase ran (bench/counting_new.hpp
// replaces operator new in this program; it counts with one relaxed
// fetch_add per call, whether or not the flag is given).
//
// Prints one line on stdout:
//   RESULT workload=W peer=chronos threads=N n=N ns_per_op=X [allocs=K]
// and, on stderr, each worker's scheduler counters over the timed round
// (Runtime::stats(), read outside the timed phase).
#include <chronos/chronos.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "../../counting_new.hpp"

// ---------------------------------------------------------------- allocation counting

namespace {
bool g_count_allocs = false;       // --count-allocs
std::uint64_t g_timed_allocs = 0;  // operator new calls during the last timed phase
}  // namespace

// ---------------------------------------------------------------- the workloads

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& msg) {
  std::fprintf(stderr, "sync_compare (chronos): %s\n", msg.c_str());
  std::fflush(stderr);
  std::_Exit(1);  // no unwinding: a runtime with parked fibers would wait for them
}

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr,
               "sync_compare (chronos): %s\n"
               "usage: sync_compare --workload pingpong|buffered|mutex_uncontended|"
               "mutex_contended [--threads N] [--n N] [--count-allocs]\n",
               msg.c_str());
  std::exit(2);
}

// Runs the timed phase fn() and returns its wall time in ns. The allocation
// counter covers exactly this window.
template <class F>
double timed(F&& fn) {
  const std::uint64_t before = counting_new::calls();
  const auto t0 = Clock::now();
  fn();
  const auto t1 = Clock::now();
  g_timed_allocs = counting_new::calls() - before;
  return std::chrono::duration<double, std::nano>(t1 - t0).count();
}

// Two fibers, two unbuffered channels: this fiber sends i on ping, the
// other replies i+1 on pong. The echo fiber is spawned (and parks on ping)
// before the clock starts. ns / round trip.
double pingpong(long n) {
  chronos::Channel<long> ping, pong;
  auto echo = chronos::go([&] {
    for (long v : ping) pong.send(v + 1);
    pong.close();
  });
  const double ns = timed([&] {
    for (long i = 0; i < n; ++i) {
      ping.send(i);
      const std::optional<long> got = pong.recv();
      if (!got || *got != i + 1)
        fail("pingpong: round trip " + std::to_string(i) + ": got " +
             (got ? std::to_string(*got) : std::string("closed")) + ", want " +
             std::to_string(i + 1));
    }
  });
  ping.close();
  if (pong.recv()) fail("pingpong: pong not closed after ping was");
  echo.join();
  return ns;
}

// One producer (this fiber) sends 0..n-1 into a channel of capacity 1024;
// one consumer (spawned, parked on recv before the clock starts) sums them
// until the channel is closed. The timed phase ends when the consumer has
// received everything. ns / value.
double buffered(long n) {
  chronos::Channel<long> ch(1024);
  long sum = 0;
  auto consumer = chronos::go([&] {
    long s = 0;
    for (long v : ch) s += v;
    sum = s;
  });
  const double ns = timed([&] {
    for (long i = 0; i < n; ++i) ch.send(i);
    ch.close();
    consumer.join();
  });
  const long want = n * (n - 1) / 2;
  if (sum != want) fail("buffered: sum " + std::to_string(sum) + ", want " + std::to_string(want));
  return ns;
}

// One fiber: n x (lock; ++counter; unlock). ns / pair.
double mutex_uncontended(long n) {
  chronos::Mutex mu;
  long counter = 0;
  const double ns = timed([&] {
    for (long i = 0; i < n; ++i) {
      mu.lock();
      ++counter;
      mu.unlock();
    }
  });
  if (counter != n)
    fail("mutex_uncontended: counter " + std::to_string(counter) + ", want " + std::to_string(n));
  return ns;
}

// Four fibers each do n/4 x (lock; ++counter; unlock), no yields. The timed
// phase includes spawning and joining the four. ns / pair (n/4*4 pairs).
double mutex_contended(long n) {
  constexpr int kTasks = 4;
  const long per = n / kTasks;
  chronos::Mutex mu;
  long counter = 0;
  std::vector<chronos::JoinHandle<void>> hs;
  hs.reserve(kTasks);  // before the clock: this allocation is the benchmark's, not chronos's
  const double ns = timed([&] {
    for (int t = 0; t < kTasks; ++t)
      hs.push_back(chronos::go([&] {
        for (long i = 0; i < per; ++i) {
          mu.lock();
          ++counter;
          mu.unlock();
        }
      }));
    for (auto& h : hs) h.join();
  });
  if (counter != per * kTasks)
    fail("mutex_contended: counter " + std::to_string(counter) + ", want " +
         std::to_string(per * kTasks));
  return ns;
}

long parse_long(const std::string& name, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0 || x < 1)
    usage("--" + name + " needs a positive integer, got '" + v + "'");
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  std::string workload;
  long threads = 1, n = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "--count-allocs") {
      g_count_allocs = true;
      continue;
    }
    if (auto eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      usage(arg + " needs a value");
    }
    if (arg == "--workload")
      workload = value;
    else if (arg == "--threads")
      threads = parse_long("threads", value);
    else if (arg == "--n")
      n = parse_long("n", value);
    else
      usage("unknown flag " + arg);
  }

  double (*run)(long) = nullptr;
  long def_n = 0;
  if (workload == "pingpong") {
    run = pingpong, def_n = 1'000'000;
  } else if (workload == "buffered") {
    run = buffered, def_n = 5'000'000;
  } else if (workload == "mutex_uncontended") {
    run = mutex_uncontended, def_n = 20'000'000;
  } else if (workload == "mutex_contended") {
    run = mutex_contended, def_n = 4'000'000;
  } else {
    usage("--workload must be pingpong, buffered, mutex_uncontended or mutex_contended");
  }
  if (n == 0) n = def_n;

  double ns = 0;
  unsigned workers = 0;
  try {
    chronos::Runtime rt{chronos::Config{.workers = static_cast<unsigned>(threads)}};
    workers = rt.workers();
    rt.block_on([&] { run(n / 10 + 1); });  // warm-up: stacks, free lists, the heap
    const chronos::RuntimeStats before = rt.stats();
    ns = rt.block_on([&] { return run(n); });
    const chronos::RuntimeStats after = rt.stats();
    // Where the timed round ran (stderr): dispatches, steals and sleeps per worker.
    for (std::size_t i = 0; i < after.workers.size() && i < before.workers.size(); ++i) {
      const chronos::WorkerStats &a = after.workers[i], &b = before.workers[i];
      std::fprintf(stderr,
                   "chronos worker %zu: fibers_run +%llu, steals +%llu (fibers +%llu), "
                   "parks +%llu, wakeups +%llu\n",
                   i, static_cast<unsigned long long>(a.fibers_run - b.fibers_run),
                   static_cast<unsigned long long>(a.steals - b.steals),
                   static_cast<unsigned long long>(a.stolen - b.stolen),
                   static_cast<unsigned long long>(a.parks - b.parks),
                   static_cast<unsigned long long>(a.wakeups - b.wakeups));
    }
  } catch (const std::exception& e) {
    fail(std::string("exception: ") + e.what());
  }
  const unsigned long long allocs = g_timed_allocs;
  std::printf("RESULT workload=%s peer=chronos threads=%u n=%ld ns_per_op=%.2f", workload.c_str(),
              workers, n, ns / static_cast<double>(n));
  if (g_count_allocs) std::printf(" allocs=%llu", allocs);
  std::printf("\n");
  return 0;
}
