// bench/timer_lateness.cpp: how late timers fire under load.
//
// Two workers run 4 fibers that only yield (a worker never idles) and 200
// fibers that each sleep 20 times for 1-10 ms. Every wake-up's lateness
// (now - deadline) is recorded; prints p50, p99 and max. A timer never fires
// early, so lateness is never negative (checked).
//
//   timer_lateness [--workers 2] [--spinners 4]
#include <chronos/chronos.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <vector>

int main(int argc, char** argv) {
  unsigned workers = 2;
  int spinners = 4;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--workers") == 0)
      workers = static_cast<unsigned>(std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--spinners") == 0) spinners = std::atoi(argv[i + 1]);
  }
  chronos::Runtime rt{chronos::Config{.workers = workers}};
  std::vector<double> late_us;
  std::mutex mu;
  std::atomic<bool> stop{false};
  std::atomic<long> early{0};
  rt.block_on([&] {
    std::vector<chronos::JoinHandle<void>> load, sleepers;
    for (int i = 0; i < spinners; ++i)
      load.push_back(chronos::go([&] {
        while (!stop.load(std::memory_order_relaxed)) chronos::yield();
      }));
    for (int s = 0; s < 200; ++s)
      sleepers.push_back(chronos::go({.small_stack = true}, [&, s] {
        std::mt19937 rng(static_cast<unsigned>(s));
        std::vector<double> mine;
        for (int k = 0; k < 20; ++k) {
          auto deadline = chronos::Clock::now() + std::chrono::microseconds(1000 + rng() % 9000);
          chronos::sleep_until(deadline);
          auto late = chronos::Clock::now() - deadline;
          if (late.count() < 0) early.fetch_add(1);
          mine.push_back(std::chrono::duration<double, std::micro>(late).count());
        }
        std::lock_guard g(mu);
        late_us.insert(late_us.end(), mine.begin(), mine.end());
      }));
    for (auto& h : sleepers) h.join();
    stop = true;
    for (auto& h : load) h.join();
  });
  std::sort(late_us.begin(), late_us.end());
  auto pct = [&](double p) { return late_us[static_cast<std::size_t>(p * (late_us.size() - 1))]; };
  std::printf(
      "spinners=%d workers=%u wakeups=%zu early=%ld lateness_us p50=%.0f p99=%.0f max=%.0f\n",
      spinners, workers, late_us.size(), early.load(), pct(0.5), pct(0.99), late_us.back());
  return early.load() == 0 ? 0 : 1;
}
