// bench/peers/chronos/src/pingpong.cpp: the `pingpong` workload of ../shared/peers/run.sh.
//
// Two fibers exchange an integer over two unbuffered chronos::Channel<long>:
// the block_on fiber sends i on ping; the other fiber receives it and sends
// i+1 back on pong; the first checks the value (a wrong one exits 1). N round
// trips; ping is then closed, which ends the other fiber's range-for, and it
// closes pong.
//
// ns_per_roundtrip = wall time / N, after an untimed warm-up of N/10. With
// --threads 2 the two fibers may run on different workers (the echo fiber is
// spawned with go(), where the other worker can steal it).
//
//   pingpong [--threads 1] [--n 1000000]
#include <chronos/chronos.hpp>

#include <stdexcept>
#include <string>

#include "peer.hpp"

namespace {

double run(long n) {
  chronos::Channel<long> ping, pong;
  auto echo = chronos::go([&] {
    for (long v : ping) pong.send(v + 1);
    pong.close();
  });
  const auto t0 = peer::Clock::now();
  for (long i = 0; i < n; ++i) {
    ping.send(i);
    const long got = *pong.recv();
    if (got != i + 1)
      throw std::runtime_error("round trip " + std::to_string(i) + ": got " + std::to_string(got) +
                               ", want " + std::to_string(i + 1));
  }
  const double ns = peer::ns_since(t0);
  ping.close();
  if (pong.recv()) throw std::runtime_error("pong not closed after ping was");
  echo.join();
  return ns;
}

}  // namespace

int main(int argc, char** argv) {
  const peer::Args args = peer::parse(argc, argv, "pingpong", 1, 1'000'000, false);
  return peer::guarded("pingpong", [&] {
    chronos::Runtime rt{chronos::Config{.workers = static_cast<unsigned>(args.threads)}};
    rt.block_on([&] { run(args.n / 10 + 1); });
    const double ns = rt.block_on([&] { return run(args.n); });
    peer::result("pingpong", static_cast<long>(rt.workers()), args.n, "ns_per_roundtrip",
                 ns / static_cast<double>(args.n));
  });
}
