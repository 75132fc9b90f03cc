// bench/peers/chronos/src/idle.cpp: the `idle` workload of ../shared/peers/run.sh.
//
// Spawns N small-stack fibers that each signal `started` and then park in one
// receive on a shared unbuffered chronos::Channel<int> (release=close in the
// table). Once all have started, the conducting fiber sleeps 100 ms, reads
// VmRSS, closes the channel, which wakes every receiver with nullopt, and
// waits for every fiber to finish. No warm-up: a cold spawn.
//
// The conductor is a fiber (run by block_on), as the Go program's main is a
// goroutine: the deadlock detector sees that it sleeps on a timer and will
// act. Conducted from the main thread, which chronos cannot see, the parked
// million looked like a deadlock and drew a report.
//
//   bytes_per_fiber = (VmRSS with all parked - VmRSS before spawning) / N
//   ms              = first spawn until all N have started
//   join_ms         = closing the channel until all N have finished
//
// The small stacks are packed 2 KiB ones (Config::small_stack_size, README
// "Stacks"), two to a page, as a goroutine starts on 2 KiB: a parked fiber
// here uses about 0.7 KiB of it. --stack-kib 16 gives the default size.
//
//   idle [--threads 2] [--n 100000] [--stack-kib 2]
#include <chronos/chronos.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "peer.hpp"

namespace {

long vm_rss_bytes() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6)) * 1024;  // kB
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  const peer::Args args = peer::parse(argc, argv, "idle", 2, 100'000, false, 2);
  return peer::guarded("idle", [&] {
    chronos::Runtime rt{chronos::Config{.workers = static_cast<unsigned>(args.threads),
                                        .small_stack_size = std::size_t(args.stack_kib) * 1024}};
    rt.block_on([&] {
      chronos::WaitGroup started(args.n), finished(args.n);
      chronos::Channel<int> gate;
      const long rss_before = vm_rss_bytes();
      const auto t0 = peer::Clock::now();
      chronos::go([&] {
        for (long i = 0; i < args.n; ++i) {
          chronos::go(chronos::SpawnOptions{.small_stack = true, .detached = true}, [&] {
            started.done();
            if (gate.recv()) std::abort();  // nobody sends: only close() ends it
            finished.done();
          });
        }
      }).detach();
      started.wait();
      const double start_ms = peer::ns_since(t0) / 1e6;
      chronos::sleep_for(std::chrono::milliseconds(100));  // let the last ones park
      const long rss_parked = vm_rss_bytes();
      const auto t1 = peer::Clock::now();
      gate.close();
      finished.wait();
      const double join_ms = peer::ns_since(t1) / 1e6;
      const double per_fiber =
          static_cast<double>(rss_parked - rss_before) / static_cast<double>(args.n);
      char extra[160];
      std::snprintf(extra, sizeof extra,
                    " ms=%.2f rss_mib=%.2f join_ms=%.2f stack=small-%ldk release=close", start_ms,
                    static_cast<double>(rss_parked) / (1024.0 * 1024.0), join_ms, args.stack_kib);
      peer::result("idle", static_cast<long>(rt.workers()), args.n, "bytes_per_fiber", per_fiber,
                   extra);
    });
  });
}
