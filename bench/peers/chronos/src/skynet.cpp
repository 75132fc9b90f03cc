// bench/peers/chronos/src/skynet.cpp: the `skynet` workload of ../shared/peers/run.sh.
//
// The classic skynet tree, in Go's shape: each node spawns 10 children until
// there are N leaves (10^6: depth 6, 1,111,111 fibers in all, the root
// included). A leaf sends its own number to its parent over the parent's
// unbuffered chronos::Channel<long>; a parent spawns its 10 children
// (started detached, as `go` does), receives their 10 values from its channel, and
// sends the sum up on its own parent's channel. The root's sum must be
// N(N-1)/2 (499999500000 for N = 10^6); otherwise the program exits 1.
//
// Every fiber has a small stack (SpawnOptions::small_stack), as in the spawn
// workload: stack=small. chan=unbuffered.
//
// ms = wall time of one whole tree, after one untimed warm-up tree.
//
//   skynet [--threads 2] [--n 1000000]      (N a power of 10)
#include <chronos/chronos.hpp>

#include <stdexcept>
#include <string>

#include "peer.hpp"

namespace {

constexpr long kFanOut = 10;
const chronos::SpawnOptions kOpts{.small_stack = true, .detached = true};

void skynet(chronos::Channel<long>& out, long num, long size) {
  if (size == 1) {
    out.send(num);
    return;
  }
  chronos::Channel<long> rc;  // unbuffered, as Go's make(chan int)
  const long child = size / kFanOut;
  for (long i = 0; i < kFanOut; ++i)
    chronos::go(kOpts, [&rc, num, i, child] { skynet(rc, num + i * child, child); });
  long sum = 0;
  for (long i = 0; i < kFanOut; ++i) sum += *rc.recv();
  out.send(sum);
}

// One whole tree, from the calling fiber. Returns the root's sum; ns is set to
// the wall time.
long tree(long n, double& ns) {
  const auto t0 = peer::Clock::now();
  chronos::Channel<long> root;
  chronos::go(kOpts, [&root, n] { skynet(root, 0, n); });
  const long sum = *root.recv();
  ns = peer::ns_since(t0);
  return sum;
}

std::string wrong(long sum, long want) {
  return "wrong sum " + std::to_string(sum) + ", want " + std::to_string(want);
}

}  // namespace

int main(int argc, char** argv) {
  const peer::Args args = peer::parse(argc, argv, "skynet", 2, 1'000'000, false);
  for (long p = args.n; p != 1; p /= kFanOut)
    if (p % kFanOut != 0)
      peer::usage_error("skynet", "--n must be a power of 10, got " + std::to_string(args.n));
  const long want = args.n * (args.n - 1) / 2;
  return peer::guarded("skynet", [&] {
    chronos::Runtime rt{chronos::Config{.workers = static_cast<unsigned>(args.threads)}};
    double ns = 0;
    const long warm = rt.block_on([&] { return tree(args.n, ns); });
    if (warm != want) throw std::runtime_error("warm-up: " + wrong(warm, want));
    const long sum = rt.block_on([&] { return tree(args.n, ns); });
    if (sum != want) throw std::runtime_error(wrong(sum, want));  // guarded(): exit 1
    peer::print_stats(rt);
    peer::result("skynet", static_cast<long>(rt.workers()), args.n, "ms", ns / 1e6,
                 " sum=" + std::to_string(sum) + " stack=small chan=unbuffered");
  });
}
