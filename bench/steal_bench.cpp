// bench/steal_bench.cpp: the cost of the run-queue operations behind work
// stealing, on chronos::detail::ChaseLevDeque (sched/deque.hpp) alone: no
// runtime, no fibers. The deque stores Fiber* and never dereferences them, so
// the items are fake pointers (64 * (i + 1)). Every deque has the runtime's
// default capacity, 1024 (Config::run_queue_capacity).
//
//   BM_OwnerPushPop/resident:R
//       the owner pushes one item and pops it again (LIFO), with R other items
//       left in the deque. Time = per push+pop pair.
//       resident:1  the owner's fast path: no CAS (one seq_cst fence in pop).
//       resident:0  the deque is otherwise empty, so pop() takes the last item
//                   and races thieves for it with a CAS on `top`.
//   BM_StealOne
//       steal(out, 1): a thief takes one item. Single-threaded: 1024 items are
//       pushed (untimed), then stolen one at a time (timed, manual time).
//       Time = per steal: the loads of top and bottom, the fence and one
//       successful CAS on `top`, with every cache line local.
//   BM_StealBatch32
//       steal(out, 32): a thief takes a batch of up to 32, as
//       Worker::steal_other does (kStealBatch). 1024 items are pushed
//       (untimed), then stolen in 31 batches of exactly 32 (timed; a batch
//       takes at most half of what it sees, so 31 leave 32 that are drained
//       untimed). Time = per stolen item; ns_per_batch = per steal() call.
//       Against BM_StealOne it shows what batching saves per item. On the
//       2-CPU development machine: about 0.6 ns an item with one CAS per batch
//       (deque.hpp before 4fc2a1e), about BM_StealOne's 4.4 ns with one CAS
//       per item (since).
//   BM_StealCrossThread/max:M
//       as BM_StealOne (M = 1) and BM_StealBatch32 (M = 32), but the owner is
//       another thread: it fills the deque while the thief waits, then waits
//       (on a flag of its own) while the thief steals, timed. So every slot,
//       and `bottom`, was last written on the other core. Time = per stolen
//       item; for M = 32, ns_per_batch = per steal() call. The thief is the
//       benchmark thread, pinned to the first CPU of the process's mask, and
//       the owner to the second (unpinned with fewer than 2 CPUs: then they
//       share one, and only the untimed hand-over waits on the other).
//
//   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCHRONOS_BUILD_TESTS=OFF
//   cmake --build build-bench -j2 --target steal_bench
//   build-bench/bench/steal_bench --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <thread>

#include "cpu_pair.hpp"
#include "sched/deque.hpp"

namespace {

using chronos::detail::ChaseLevDeque;
using chronos::detail::Fiber;

constexpr std::size_t kCapacity = 1024;

Fiber* fake(std::size_t i) {
  return reinterpret_cast<Fiber*>(static_cast<std::uintptr_t>(64 * (i + 1)));
}

void fill(ChaseLevDeque& d, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) d.push(fake(i));
}

void drain(ChaseLevDeque& d) {
  while (d.pop() != nullptr) {
  }
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---------------------------------------------------------------- owner
void BM_OwnerPushPop(benchmark::State& state) {
  ChaseLevDeque d(kCapacity);
  fill(d, static_cast<std::size_t>(state.range(0)));
  Fiber* const item = fake(999);
  for (auto _ : state) {
    d.push(item);
    Fiber* f = d.pop();
    benchmark::DoNotOptimize(f);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OwnerPushPop)->ArgName("resident")->Arg(0)->Arg(1);

// ---------------------------------------------------------------- steal, one thread
void BM_StealOne(benchmark::State& state) {
  ChaseLevDeque d(kCapacity);
  Fiber* out[1] = {};
  std::size_t got = 0;
  while (state.KeepRunningBatch(kCapacity)) {
    fill(d, kCapacity);
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < kCapacity; ++i) {
      got += d.steal(out, 1);
      benchmark::DoNotOptimize(out[0]);
    }
    state.SetIterationTime(seconds_since(t0));
  }
  if (got != static_cast<std::size_t>(state.iterations()))
    state.SkipWithError("a steal got nothing");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StealOne)->UseManualTime();

void BM_StealBatch32(benchmark::State& state) {
  constexpr std::size_t kBatch = 32;
  // A batch takes at most half (rounded up) of what it sees: it gets the full
  // 32 while at least 63 are left.
  constexpr std::size_t kBatches = (kCapacity - (2 * kBatch - 1)) / kBatch + 1;  // 31
  constexpr std::size_t kItems = kBatches * kBatch;                              // 992
  ChaseLevDeque d(kCapacity);
  Fiber* out[kBatch] = {};
  std::size_t got = 0;
  double total = 0;
  while (state.KeepRunningBatch(kItems)) {
    fill(d, kCapacity);
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < kBatches; ++i) {
      got += d.steal(out, kBatch);
      benchmark::DoNotOptimize(out);
    }
    const double s = seconds_since(t0);
    state.SetIterationTime(s);
    total += s;
    drain(d);
  }
  if (got != static_cast<std::size_t>(state.iterations()))
    state.SkipWithError("a batch got fewer than 32");
  state.SetItemsProcessed(state.iterations());
  state.counters["ns_per_batch"] =
      total * 1e9 / (static_cast<double>(state.iterations()) / static_cast<double>(kBatch));
}
BENCHMARK(BM_StealBatch32)->UseManualTime();

// ---------------------------------------------------------------- steal, two threads
// The owner thread fills the deque while the thief waits; then the thief
// steals while the owner waits, on a flag of its own, away from the deque's
// cache lines. Only the thief's steals are timed, so neither thread's
// scheduling (2 shared CPUs) can get into the figure.
//
// With 2 CPUs or more, the thief (this thread) is pinned to the first CPU of
// the process's mask and the owner to the second, so the steals are always
// cross-core; the thief's mask is restored afterwards.
class Owner {
 public:
  explicit Owner(ChaseLevDeque& d) : d_(d) {
    if (cpus_.ok) {
      pinned_ = bench::pin_to(cpus_.cpu[0]);
      thread_ = std::thread([this, other = cpus_.cpu[1]] {
        bench::pin_to(other);
        run();
      });
    } else {
      thread_ = std::thread([this] { run(); });
    }
  }
  ~Owner() {
    wait_for(kStolen);  // the owner may be filling: let it finish
    turn_.store(kStop, std::memory_order_release);
    thread_.join();
    if (pinned_) cpus_.restore();
  }
  Owner(const Owner&) = delete;
  Owner& operator=(const Owner&) = delete;

  // Thief side: waits until the deque is full again.
  void wait_full() { wait_for(kStolen); }
  // Thief side: the deque is empty; the owner may refill it.
  void refill() { turn_.store(kFill, std::memory_order_release); }

 private:
  enum Turn { kFill, kStolen, kStop };
  void wait_for(int want) {
    for (int spins = 0; turn_.load(std::memory_order_acquire) != want; ++spins)
      if (spins > 1000) std::this_thread::yield();  // in case we share a CPU
  }
  void run() {
    for (;;) {
      for (int spins = 0;; ++spins) {
        const int t = turn_.load(std::memory_order_acquire);
        if (t == kStop) return;
        if (t == kFill) break;
        if (spins > 1000) std::this_thread::yield();
      }
      fill(d_, kCapacity);
      turn_.store(kStolen, std::memory_order_release);
    }
  }

  ChaseLevDeque& d_;
  const bench::CpuPair cpus_;
  bool pinned_ = false;
  alignas(64) std::atomic<int> turn_{kFill};
  std::thread thread_;
};

void BM_StealCrossThread(benchmark::State& state) {
  const auto max = static_cast<std::size_t>(state.range(0));
  // As in BM_StealBatch32: steals that each get exactly `max`.
  const std::size_t steals = max == 1 ? kCapacity : (kCapacity - (2 * max - 1)) / max + 1;
  ChaseLevDeque d(kCapacity);
  Owner owner(d);
  Fiber* out[32] = {};
  std::size_t got = 0;
  double total = 0;
  while (state.KeepRunningBatch(static_cast<benchmark::IterationCount>(steals * max))) {
    owner.wait_full();
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < steals; ++i) {
      got += d.steal(out, max);
      benchmark::DoNotOptimize(out);
    }
    const double sec = seconds_since(t0);
    state.SetIterationTime(sec);
    total += sec;
    while (d.steal(out, 32) != 0) {  // untimed: what is left
    }
    owner.refill();
  }
  if (got != static_cast<std::size_t>(state.iterations()))
    state.SkipWithError("a steal got fewer than asked");
  state.SetItemsProcessed(state.iterations());
  if (max > 1)
    state.counters["ns_per_batch"] =
        total * 1e9 / (static_cast<double>(state.iterations()) / static_cast<double>(max));
}
BENCHMARK(BM_StealCrossThread)->ArgName("max")->Arg(1)->Arg(32)->UseManualTime();

}  // namespace
