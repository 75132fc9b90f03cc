// bench/first_touch_bench.cpp: what the first touch of a fresh page costs,
// and what committing it ahead (fiber/populate.hpp) saves.
//
// Each iteration maps 64 fresh stack-sized slots (16 KiB each, MAP_NORESERVE,
// as StackPool's slabs are) and commits or touches the top page of each, the
// one a fresh fiber uses. Only that step is timed; the mapping and the unmap
// are not. per_page is the timed step's cost per page:
//
//   BM_TouchFaulting          write one byte to each page: a page fault each
//   BM_PopulateBatch          populate_pages() on the 64 pages at once (one
//                             process_madvise call where the kernel has it)
//   BM_PopulateEach           madvise(MADV_POPULATE_WRITE) once per page
//   BM_TouchAfterPopulate     the first write to pages committed just before
//   BM_TouchWarm              a write to pages already touched (the floor)
//   BM_HugePopulate           populate_pages() on a 2 MiB range advised
//                             MADV_HUGEPAGE (one huge page: a packed slab's,
//                             fiber/stack_pool.hpp), per 4 KiB page in it
//   BM_HugeTouchAfterPopulate the first write to each 4 KiB page of it
//
// Populate + touch after it is what StackPool pays for a fresh slot; compare
// it with BM_TouchFaulting. The pages come from the kernel's free lists, so a
// run right after a process freed gigabytes can look cheaper than cold memory.
//
//   build-bench/bench/first_touch_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>

#include "fiber/populate.hpp"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace {

using chronos::detail::PageRange;

constexpr std::size_t kSlots = chronos::detail::kMaxPopulate;  // one batch
constexpr std::size_t kSlotBytes = 16 * 1024;

const std::size_t kPage = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));

struct Slots {
  char* base = nullptr;
  PageRange tops[kSlots];

  Slots() {
    void* p = ::mmap(nullptr, kSlots * kSlotBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) std::abort();
    base = static_cast<char*>(p);
    for (std::size_t i = 0; i < kSlots; ++i) tops[i] = {base + (i + 1) * kSlotBytes - kPage, kPage};
  }
  ~Slots() { ::munmap(base, kSlots * kSlotBytes); }
  Slots(const Slots&) = delete;
  Slots& operator=(const Slots&) = delete;

  void touch() {
    for (const PageRange& r : tops) static_cast<volatile char*>(r.lo)[kPage - 64] = 1;
  }
};

enum class Before { kNothing, kPopulate, kTouch };
enum class Step { kTouch, kPopulateBatch, kPopulateEach };

void run(benchmark::State& state, Before before, Step step) {
  for (auto _ : state) {
    state.PauseTiming();
    auto* slots = new Slots;
    if (before == Before::kPopulate) chronos::detail::populate_pages(slots->tops, kSlots);
    if (before == Before::kTouch) slots->touch();
    state.ResumeTiming();
    switch (step) {
      case Step::kTouch:
        slots->touch();
        break;
      case Step::kPopulateBatch:
        chronos::detail::populate_pages(slots->tops, kSlots);
        break;
      case Step::kPopulateEach:
        for (const PageRange& r : slots->tops)
          if (::madvise(r.lo, r.len, MADV_POPULATE_WRITE) != 0) state.SkipWithError("madvise");
        break;
    }
    benchmark::ClobberMemory();
    state.PauseTiming();
    delete slots;
    state.ResumeTiming();
  }
  // Pages per second, inverted: seconds per page, printed as "8.9us".
  state.counters["per_page"] =
      benchmark::Counter(static_cast<double>(state.iterations() * kSlots),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  if (!chronos::detail::populate_enabled()) state.SetLabel("populate_pages is off here");
}

void BM_TouchFaulting(benchmark::State& s) {
  run(s, Before::kNothing, Step::kTouch);
}
void BM_PopulateBatch(benchmark::State& s) {
  run(s, Before::kNothing, Step::kPopulateBatch);
}
void BM_PopulateEach(benchmark::State& s) {
  run(s, Before::kNothing, Step::kPopulateEach);
}
void BM_TouchAfterPopulate(benchmark::State& s) {
  run(s, Before::kPopulate, Step::kTouch);
}
void BM_TouchWarm(benchmark::State& s) {
  run(s, Before::kTouch, Step::kTouch);
}

// One huge page's worth of fresh memory, placed and advised by the helper
// the pools use (fiber/populate.hpp), so that the kernel can back it with
// one huge page.
struct HugeRange {
  PageRange range{};

  HugeRange() {
    void* p = chronos::detail::map_for_huge_pages(chronos::detail::kHugePage, 0, MAP_NORESERVE);
    if (p == MAP_FAILED) std::abort();
    range = {p, chronos::detail::kHugePage};
  }
  ~HugeRange() { ::munmap(range.lo, range.len); }
  HugeRange(const HugeRange&) = delete;
  HugeRange& operator=(const HugeRange&) = delete;

  void touch() {
    for (std::size_t o = 0; o < range.len; o += kPage) static_cast<volatile char*>(range.lo)[o] = 1;
  }
};

void run_huge(benchmark::State& state, Step step) {
  for (auto _ : state) {
    state.PauseTiming();
    auto* r = new HugeRange;
    if (step == Step::kTouch) chronos::detail::populate_pages(&r->range, 1);
    state.ResumeTiming();
    if (step == Step::kTouch) {
      r->touch();
    } else {
      chronos::detail::populate_pages(&r->range, 1);
    }
    benchmark::ClobberMemory();
    state.PauseTiming();
    delete r;
    state.ResumeTiming();
  }
  state.counters["per_page"] = benchmark::Counter(
      static_cast<double>(state.iterations() * (chronos::detail::kHugePage / kPage)),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  if (!chronos::detail::populate_enabled()) state.SetLabel("populate_pages is off here");
}

void BM_HugePopulate(benchmark::State& s) {
  run_huge(s, Step::kPopulateBatch);
}
void BM_HugeTouchAfterPopulate(benchmark::State& s) {
  run_huge(s, Step::kTouch);
}

BENCHMARK(BM_TouchFaulting)->UseRealTime();
BENCHMARK(BM_PopulateBatch)->UseRealTime();
BENCHMARK(BM_PopulateEach)->UseRealTime();
BENCHMARK(BM_TouchAfterPopulate)->UseRealTime();
BENCHMARK(BM_TouchWarm)->UseRealTime();
BENCHMARK(BM_HugePopulate)->UseRealTime();
BENCHMARK(BM_HugeTouchAfterPopulate)->UseRealTime();

}  // namespace
