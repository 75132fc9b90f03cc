// bench/sync/boostfiber/main.cpp: Boost.Fiber's side of the sync comparison
// (see ../README.md), written against Debian's Boost 1.74.
//
//   boostfiber_sync --workload pingpong|buffered|mutex_uncontended|mutex_contended
//                   [--threads N] [--n N]
//
// --threads 1: every fiber runs on the main thread under Boost's default
// round_robin scheduler. --threads N > 1: N threads (the main one included)
// each install algo::work_stealing(N), as /work/shared/peers/boostfiber
// does; the extra threads park their main fiber on a fiber condition
// variable so that their dispatchers run and steal fibers. The benchmark's
// fibers are ordinary fibers launched from the main thread, so the
// scheduler decides where they run. work_stealing's idle dispatcher spins.
//
// Each workload runs once untimed with n/10, then once timed with n. The time
// is taken with steady_clock around the timed phase only. A wrong value exits 1.
//
// Prints one line on stdout:
//   RESULT workload=W peer=boostfiber threads=N n=N ns_per_op=X
//
// Built by ../run.sh: g++ -O2 -std=c++20 -pthread main.cpp -lboost_fiber -lboost_context
#include <boost/fiber/all.hpp>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using boost::fibers::channel_op_status;

[[noreturn]] void fail(const std::string& msg) {
  std::fprintf(stderr, "sync (boostfiber): %s\n", msg.c_str());
  std::fflush(stderr);
  std::_Exit(1);  // no unwinding: a scheduler with blocked fibers would wait for them
}

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr,
               "sync (boostfiber): %s\n"
               "usage: boostfiber_sync --workload pingpong|buffered|mutex_uncontended|"
               "mutex_contended [--threads N] [--n N]\n",
               msg.c_str());
  std::exit(2);
}

double ns_between(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::nano>(t1 - t0).count();
}

// The threads that run fibers: nothing to do for one (round_robin), else
// work_stealing on every thread. Must be created on the main thread before
// any fiber, and destroyed after the last one has been joined.
class Pool {
 public:
  explicit Pool(long threads) {
    if (threads <= 1) return;
    const auto count = static_cast<std::uint32_t>(threads);
    for (long i = 1; i < threads; ++i) {
      extra_.emplace_back([this, count] {
        boost::fibers::use_scheduling_algorithm<boost::fibers::algo::work_stealing>(count);
        std::unique_lock<std::mutex> lk(mtx_);
        cv_.wait(lk, [this] { return done_; });
      });
    }
    // Boost 1.74's work_stealing constructor waits until all `count` threads
    // have registered.
    boost::fibers::use_scheduling_algorithm<boost::fibers::algo::work_stealing>(count);
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mtx_);
      done_ = true;
    }
    cv_.notify_all();
    for (auto& t : extra_) t.join();
  }

 private:
  std::vector<std::thread> extra_;
  std::mutex mtx_;
  boost::fibers::condition_variable_any cv_;
  bool done_ = false;
};

// Two fibers, two unbuffered channels: the main fiber pushes i on ping, the
// other pops it and pushes i+1 on pong. The echo fiber is launched before the
// clock starts. ns / round trip.
double pingpong(long n) {
  boost::fibers::unbuffered_channel<long> ping, pong;
  boost::fibers::fiber echo([&] {
    long v = 0;
    while (ping.pop(v) == channel_op_status::success) pong.push(v + 1);
    pong.close();
  });
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    ping.push(i);
    long got = -1;
    if (pong.pop(got) != channel_op_status::success || got != i + 1)
      fail("pingpong: round trip " + std::to_string(i) + ": got " + std::to_string(got) +
           ", want " + std::to_string(i + 1));
  }
  const auto t1 = Clock::now();
  ping.close();
  long extra = 0;
  if (pong.pop(extra) != channel_op_status::closed)
    fail("pingpong: pong not closed after ping was");
  echo.join();
  return ns_between(t0, t1);
}

// One producer (the main fiber) pushes 0..n-1 into buffered_channel<long>(1024)
// (Boost's capacity must be a power of 2, and the channel holds at most
// capacity - 1 values); one consumer fiber, launched before the clock, pops
// and sums until the channel is closed. The timed phase ends when the
// consumer has been joined. ns / value.
double buffered(long n) {
  boost::fibers::buffered_channel<long> ch(1024);
  long sum = 0;
  boost::fibers::fiber consumer([&] {
    long s = 0, v = 0;
    while (ch.pop(v) == channel_op_status::success) s += v;
    sum = s;
  });
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i)
    if (ch.push(i) != channel_op_status::success) fail("buffered: push failed");
  ch.close();
  consumer.join();
  const auto t1 = Clock::now();
  const long want = n * (n - 1) / 2;
  if (sum != want) fail("buffered: sum " + std::to_string(sum) + ", want " + std::to_string(want));
  return ns_between(t0, t1);
}

// One fiber: n x (lock; ++counter; unlock) on a boost::fibers::mutex. ns / pair.
double mutex_uncontended(long n) {
  boost::fibers::mutex mu;
  long counter = 0;
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    mu.lock();
    ++counter;
    mu.unlock();
  }
  const auto t1 = Clock::now();
  if (counter != n)
    fail("mutex_uncontended: counter " + std::to_string(counter) + ", want " + std::to_string(n));
  return ns_between(t0, t1);
}

// Four fibers each do n/4 x (lock; ++counter; unlock), no yields. The timed
// phase includes launching and joining the four. ns / pair.
double mutex_contended(long n) {
  constexpr int kTasks = 4;
  const long per = n / kTasks;
  boost::fibers::mutex mu;
  long counter = 0;
  std::vector<boost::fibers::fiber> fs;
  fs.reserve(kTasks);
  const auto t0 = Clock::now();
  for (int t = 0; t < kTasks; ++t)
    fs.emplace_back([&] {
      for (long i = 0; i < per; ++i) {
        mu.lock();
        ++counter;
        mu.unlock();
      }
    });
  for (auto& f : fs) f.join();
  const auto t1 = Clock::now();
  if (counter != per * kTasks)
    fail("mutex_contended: counter " + std::to_string(counter) + ", want " +
         std::to_string(per * kTasks));
  return ns_between(t0, t1);
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
  {
    Pool pool(threads);
    // The workloads run in a fiber of their own, as in the other two peers
    // (chronos's block_on, Go's main goroutine is a goroutine too).
    boost::fibers::fiber([&] {
      run(n / 10 + 1);  // warm-up: stacks, the heap
      ns = run(n);
    }).join();
  }
  std::printf("RESULT workload=%s peer=boostfiber threads=%ld n=%ld ns_per_op=%.2f\n",
              workload.c_str(), threads, n, ns / static_cast<double>(n));
  return 0;
}
