// bench/peers/chronos/src/yield.cpp: the `yield` workload of ../shared/peers/run.sh.
//
// Two fibers take turns with chronos::yield(); N yields in all, N/2 in each.
// Both are spawned, then the timer starts and the spawning fiber joins them;
// with one worker (the reference) every yield is one direct switch to the
// other fiber. ns_per_yield = wall time / N, after an untimed warm-up of N/10.
//
//   yield [--threads 1] [--n 10000000]
#include <chronos/chronos.hpp>

#include <algorithm>

#include "peer.hpp"

namespace {

double run(long n) {
  const long per_fiber = n / 2;
  auto body = [per_fiber] {
    for (long i = 0; i < per_fiber; ++i) chronos::yield();
  };
  // go() queues the fibers; neither runs before this fiber parks in join().
  auto a = chronos::go(body);
  auto b = chronos::go(body);
  const auto t0 = peer::Clock::now();
  a.join();
  b.join();
  return peer::ns_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  const peer::Args args = peer::parse(argc, argv, "yield", 1, 10'000'000, false);
  return peer::guarded("yield", [&] {
    chronos::Runtime rt{chronos::Config{.workers = static_cast<unsigned>(args.threads)}};
    const long yields = args.n / 2 * 2;
    const double ns = rt.block_on([&] {
      run(std::max(args.n / 10, 2L));  // warm-up
      return run(args.n);
    });
    peer::result("yield", static_cast<long>(rt.workers()), yields, "ns_per_yield",
                 ns / static_cast<double>(yields));
  });
}
