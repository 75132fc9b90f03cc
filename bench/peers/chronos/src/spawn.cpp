// bench/peers/chronos/src/spawn.cpp: the `spawn` workload of ../shared/peers/run.sh.
//
// One fiber spawns N empty fibers with chronos::go(), then waits for all of
// them. chronos has no wait group yet, so the spawner keeps the N JoinHandles
// in a vector (reserved before timing) and joins them in order at the end; all
// N fibers are queued, and alive, before the first one runs.
// ns_per_spawn = wall time / N, spawning and joining included, after one
// untimed warm-up round of N.
//
// Stacks: small by default (SpawnOptions::small_stack, Config::small_stack_size,
// carved from slabs), comparable to a goroutine's few-KiB initial stack; a
// million normal stacks (a mapping plus a guard page each) would exceed
// vm.max_map_count. --normal uses normal stacks. The stack= column says which.
// --max-cached N sets Config::max_cached_stacks (free stacks kept warm; past
// it a small stack's pages are returned) and adds a max_cached= column.
//
//   spawn [--threads 1] [--n 1000000] [--small | --normal] [--max-cached N]
#include <chronos/chronos.hpp>

#include <string>
#include <vector>

#include "peer.hpp"

int main(int argc, char** argv) {
  const peer::Args args = peer::parse(argc, argv, "spawn", 1, 1'000'000, true);
  return peer::guarded("spawn", [&] {
    chronos::Config config{.workers = static_cast<unsigned>(args.threads)};
    if (args.max_cached > 0) config.max_cached_stacks = static_cast<std::size_t>(args.max_cached);
    chronos::Runtime rt{config};
    const chronos::SpawnOptions opts{.small_stack = args.small};
    const double ns = rt.block_on([&] {
      std::vector<chronos::JoinHandle<void>> handles;
      handles.reserve(static_cast<std::size_t>(args.n));
      auto round = [&] {
        const auto t0 = peer::Clock::now();
        for (long i = 0; i < args.n; ++i) handles.push_back(chronos::go(opts, [] {}));
        for (auto& h : handles) h.join();
        const double elapsed = peer::ns_since(t0);
        handles.clear();
        return elapsed;
      };
      round();  // warm-up
      return round();
    });
    std::string extra = std::string(" stack=") + (args.small ? "small" : "normal");
    if (args.max_cached > 0) extra += " max_cached=" + std::to_string(args.max_cached);
    peer::result("spawn", static_cast<long>(rt.workers()), args.n, "ns_per_spawn",
                 ns / static_cast<double>(args.n), extra);
  });
}
