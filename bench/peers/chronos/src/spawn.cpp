// bench/peers/chronos/src/spawn.cpp: the `spawn` workload of ../shared/peers/run.sh.
//
// One fiber spawns N fibers with chronos::go(), each of which only signals a
// shared WaitGroup, then waits on it: the shape of the Go program (wg.Add(N),
// N x go func() { wg.Done() }, wg.Wait()). The fibers start detached
// (SpawnOptions::detached), as a goroutine has no handle.
// All N fibers are queued, and alive, before the spawner waits.
// ns_per_spawn = wall time / N, spawning and waiting included, after one
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

#include "peer.hpp"

int main(int argc, char** argv) {
  const peer::Args args = peer::parse(argc, argv, "spawn", 1, 1'000'000, true);
  return peer::guarded("spawn", [&] {
    chronos::Config config{.workers = static_cast<unsigned>(args.threads)};
    if (args.max_cached > 0) config.max_cached_stacks = static_cast<std::size_t>(args.max_cached);
    chronos::Runtime rt{config};
    const chronos::SpawnOptions opts{.small_stack = args.small, .detached = true};
    const double ns = rt.block_on([&] {
      chronos::WaitGroup wg;
      auto round = [&] {
        const auto t0 = peer::Clock::now();
        wg.add(args.n);
        for (long i = 0; i < args.n; ++i) chronos::go(opts, [&wg] { wg.done(); });
        wg.wait();
        return peer::ns_since(t0);
      };
      round();  // warm-up
      return round();
    });
    peer::print_stats(rt);
    std::string extra = std::string(" stack=") + (args.small ? "small" : "normal");
    if (args.max_cached > 0) extra += " max_cached=" + std::to_string(args.max_cached);
    peer::result("spawn", static_cast<long>(rt.workers()), args.n, "ns_per_spawn",
                 ns / static_cast<double>(args.n), extra);
  });
}
