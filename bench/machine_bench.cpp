// bench/machine_bench.cpp: what the machine charges for the two things an
// echo server cannot avoid, measured without chronos, so that the echo
// figures (README, "Echo") can be read against them.
//
//   BM_Syscall        the cheapest system call there is (getppid through
//                     syscall(2), so that libc cannot answer it): the floor
//                     under every recv, send and epoll_wait. On a kernel with
//                     page-table isolation and no PCID, each entry and exit
//                     also flushes the TLB.
//   BM_RecvEmpty      recv on an empty non-blocking socket (EAGAIN): the
//                     price of asking once too often.
//   BM_LineTransfer   one cache line handed back and forth between two
//                     threads pinned to two CPUs; Time = a round trip,
//                     ns_per_transfer = one hand-over. About what each line a
//                     fiber last wrote on one CPU costs when it resumes on
//                     the other (less where the reads overlap).
//                     Skipped where the process may use only one CPU.
//
//   build-bench/bench/machine_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <thread>

#include "cpu_pair.hpp"

namespace {

void BM_Syscall(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(::syscall(SYS_getppid));
}
BENCHMARK(BM_Syscall);

void BM_RecvEmpty(benchmark::State& state) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    state.SkipWithError("socketpair failed");
    return;
  }
  char buf[64];
  for (auto _ : state) {
    const ssize_t n = ::recv(sv[0], buf, sizeof buf, 0);
    if (n != -1 || errno != EAGAIN) {
      state.SkipWithError("recv on an empty socket did not fail with EAGAIN");
      break;
    }
  }
  ::close(sv[0]);
  ::close(sv[1]);
}
BENCHMARK(BM_RecvEmpty);

void BM_LineTransfer(benchmark::State& state) {
  const bench::CpuPair cpus;
  if (!cpus.ok) {
    state.SkipWithError("needs two CPUs");
    return;
  }
  // The line: the main thread writes odd values, the partner the next even
  // one. relaxed: each side only waits for the other's value of this one
  // atomic, which coherence delivers; nothing else is published through it.
  alignas(64) static std::atomic<std::uint64_t> line{0};
  static constexpr std::uint64_t kStop = ~std::uint64_t{0};
  line.store(0, std::memory_order_relaxed);
  std::thread partner([other = cpus.cpu[1]] {
    bench::pin_to(other);
    for (std::uint64_t seen = 0;;) {
      std::uint64_t v;
      while ((v = line.load(std::memory_order_relaxed)) == seen) {
      }
      if (v == kStop) return;
      seen = v + 1;
      line.store(seen, std::memory_order_relaxed);
    }
  });
  bench::pin_to(cpus.cpu[0]);
  std::uint64_t v = 0;
  for (auto _ : state) {
    line.store(++v, std::memory_order_relaxed);
    ++v;
    while (line.load(std::memory_order_relaxed) != v) {
    }
  }
  line.store(kStop, std::memory_order_relaxed);
  partner.join();
  cpus.restore();
  // Two hand-overs per iteration: report one.
  state.counters["ns_per_transfer"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_LineTransfer)->UseRealTime();

}  // namespace
