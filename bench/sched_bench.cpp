// bench/sched_bench.cpp: yield and spawn+join through the chronos runtime.
//
// One Runtime with one worker, created once, outside every timed region. Each
// benchmark runs its whole timed loop inside one rt.block_on() fiber (the
// State is iterated from that fiber, on the worker thread). Loops run in
// batches so that the Time column is per unit of work:
//
//   BM_Yield                two fibers take turns with chronos::yield();
//                           Time = per yield (one switch to the other fiber)
//   BM_SpawnJoin/small:S    chronos::go([]{}) then join, one at a time;
//                           Time = per spawn+join
//   BM_SpawnJoinBatch/fibers:1000/small:S
//                           spawn 1000 fibers into a reserved vector of
//                           JoinHandles, then join them all; Time = per fiber
//
// small:1 spawns with SpawnOptions{.small_stack = true}. Every benchmark warms
// up (stack pools, caches) before its timed loop. This binary replaces the
// global operator new with a counting one; "allocs_per_iter" is the number of
// operator new calls per iteration (per yield, per fiber) inside the timed
// loop, and should be 0.
//
//   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCHRONOS_BUILD_TESTS=OFF
//   cmake --build build-bench -j2 --target sched_bench
//   build-bench/bench/sched_bench --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <chronos/chronos.hpp>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include "counting_new.hpp"

namespace {

std::uint64_t allocs() {
  return counting_new::calls();
}

void report_allocs(benchmark::State& state, std::uint64_t before) {
  state.counters["allocs_per_iter"] =
      static_cast<double>(allocs() - before) / static_cast<double>(state.iterations());
}

chronos::Runtime& runtime() {
  static chronos::Runtime rt{chronos::Config{.workers = 1}};
  return rt;
}

constexpr int kWarmup = 10000;

// ---------------------------------------------------------------- yield
void BM_Yield(benchmark::State& state) {
  runtime().block_on([&state] {
    std::atomic<bool> stop{false};
    auto other = chronos::go([&stop] {
      while (!stop.load(std::memory_order_relaxed)) chronos::yield();
    });
    for (int i = 0; i < kWarmup; ++i) chronos::yield();
    const std::uint64_t before = allocs();
    // One yield here and one in `other` per round trip: a batch of 2 yields.
    while (state.KeepRunningBatch(2)) chronos::yield();
    report_allocs(state, before);
    stop.store(true, std::memory_order_relaxed);
    other.join();
    state.SetItemsProcessed(state.iterations());
  });
}
BENCHMARK(BM_Yield);

// ---------------------------------------------------------------- spawn + join
void BM_SpawnJoin(benchmark::State& state) {
  const chronos::SpawnOptions opts{.small_stack = state.range(0) != 0};
  runtime().block_on([&state, &opts] {
    for (int i = 0; i < kWarmup; ++i) chronos::go(opts, [] {}).join();
    const std::uint64_t before = allocs();
    for (auto _ : state) chronos::go(opts, [] {}).join();
    report_allocs(state, before);
    state.SetItemsProcessed(state.iterations());
  });
}
BENCHMARK(BM_SpawnJoin)->ArgName("small")->Arg(0)->Arg(1);

void BM_SpawnJoinBatch(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  const chronos::SpawnOptions opts{.small_stack = state.range(1) != 0};
  runtime().block_on([&state, &opts, batch] {
    std::vector<chronos::JoinHandle<void>> handles;
    handles.reserve(batch);
    auto round = [&] {
      for (std::size_t i = 0; i < batch; ++i) handles.push_back(chronos::go(opts, [] {}));
      for (auto& h : handles) h.join();
      handles.clear();
    };
    for (int i = 0; i < 10; ++i) round();
    const std::uint64_t before = allocs();
    while (state.KeepRunningBatch(static_cast<benchmark::IterationCount>(batch))) round();
    report_allocs(state, before);
    state.SetItemsProcessed(state.iterations());
  });
}
BENCHMARK(BM_SpawnJoinBatch)->ArgNames({"fibers", "small"})->Args({1000, 0})->Args({1000, 1});

}  // namespace
