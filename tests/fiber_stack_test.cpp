// tests/fiber_stack_test.cpp: the TCB's packed words and the stack pool.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fiber/fiber_pool.hpp"
#include "fiber/populate.hpp"
#include "fiber/stack_pool.hpp"
#include "fiber/tcb.hpp"

namespace {

using namespace chronos::detail;

const std::size_t kPage = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));

bool resident(const void* p) {
  unsigned char v = 0;
  auto page = reinterpret_cast<std::uintptr_t>(p) & ~(kPage - 1);
  EXPECT_EQ(mincore(reinterpret_cast<void*>(page), 1, &v), 0);
  return v & 1;
}

// Whether this kernel can populate at all (MADV_POPULATE_WRITE: Linux 5.14),
// and whether populating is on here (not under valgrind, see populate.hpp).
bool populating() {
  if (!populate_enabled()) return false;
  void* p = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  bool ok = p != MAP_FAILED && madvise(p, kPage, 23 /* MADV_POPULATE_WRITE */) == 0;
  if (p != MAP_FAILED) munmap(p, kPage);
  return ok;
}

TEST(Populate, CommitsExactlyTheRangesGivenAsZeroedWritablePages) {
  if (!populating()) {
    GTEST_SKIP() << "no MADV_POPULATE_WRITE here, or under valgrind";
  }
  constexpr std::size_t kPages = 16;
  auto* p = static_cast<char*>(
      mmap(nullptr, kPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  // Every third page, and one two-page range: as a batch of stack tops is.
  std::vector<PageRange> ranges;
  std::set<std::size_t> want;
  for (std::size_t i = 0; i < 12; i += 3) {
    ranges.push_back({p + i * kPage, kPage});
    want.insert(i);
  }
  ranges.push_back({p + 13 * kPage, 2 * kPage});
  want.insert(13);
  want.insert(14);
  populate_pages(ranges.data(), ranges.size());
  for (std::size_t i = 0; i < kPages; ++i)
    EXPECT_EQ(resident(p + i * kPage), want.count(i) == 1) << "page " << i;
  for (std::size_t i : want) {
    EXPECT_EQ(p[i * kPage], 0);
    EXPECT_EQ(p[i * kPage + kPage - 1], 0);
    p[i * kPage] = 1;  // writable
  }
  munmap(p, kPages * kPage);
}

TEST(Populate, AnEmptyBatchAndAnUnmappedRangeAreHarmless) {
  populate_pages(nullptr, 0);
  // A range nobody has mapped: the kernel refuses it (ENOMEM), and the call
  // neither crashes nor stops populating for later calls.
  auto* p = static_cast<char*>(
      mmap(nullptr, 2 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  munmap(p + kPage, kPage);
  PageRange hole{p + kPage, kPage};
  populate_pages(&hole, 1);
  PageRange ok{p, kPage};
  populate_pages(&ok, 1);
  if (populating()) {
    EXPECT_TRUE(resident(p));
  }
  munmap(p, kPage);
}

TEST(Tcb, StateWordPacksStatePointerPriorityAndFlag) {
  alignas(64) static char object[64];
  for (unsigned prio : {0u, 7u, 15u}) {
    for (bool small : {false, true}) {
      for (auto st :
           {FiberState::kReady, FiberState::kRunning, FiberState::kWaiting, FiberState::kDone}) {
        std::uint64_t w = state_word::pack(st, object, prio, small);
        EXPECT_EQ(state_word::state(w), st);
        EXPECT_EQ(state_word::pointer(w), object);
        EXPECT_EQ(state_word::priority(w), prio);
        EXPECT_EQ(state_word::small(w), small);
        // A transition changes state and pointer, keeps priority and flag.
        std::uint64_t w2 = state_word::with(w, FiberState::kWaiting, nullptr);
        EXPECT_EQ(state_word::state(w2), FiberState::kWaiting);
        EXPECT_EQ(state_word::pointer(w2), nullptr);
        EXPECT_EQ(state_word::priority(w2), prio);
        EXPECT_EQ(state_word::small(w2), small);
      }
    }
  }
}

TEST(Tcb, HotFieldsShareOneCacheLine) {
  // Everything a switch, spawn or exit writes is in the first line; the
  // second holds what a running fiber only reads (fiber/tcb.hpp).
  EXPECT_LT(offsetof(Fiber, cold), 64u);
  EXPECT_LT(offsetof(Fiber, stack), 64u);
  EXPECT_LT(offsetof(Fiber, wait_since), 64u);
  EXPECT_LT(offsetof(Fiber, wait_kind), 64u);
  EXPECT_EQ(offsetof(Fiber, payload), 64u);
  EXPECT_EQ(offsetof(Fiber, inline_payload) + kTcbPayload, 128u);
  EXPECT_EQ(offsetof(Fiber, state), 0u);
  EXPECT_EQ(alignof(Fiber), 64u);
  EXPECT_TRUE(std::atomic<std::uint64_t>::is_always_lock_free);
}

TEST(Tcb, WaitStampsMeasureAWaitToWithinTwoTicksAcrossTheWrap) {
  constexpr std::int64_t kTick = std::int64_t{1} << kWaitTickShift;
  const std::int64_t wrap = kTick << 32;  // where the 32-bit tick count wraps
  for (std::int64_t start : {std::int64_t{0}, 5 * kTick + 3, wrap - 3 * kTick + 7, 7 * wrap + 11}) {
    const std::uint32_t since = wait_stamp(start);
    EXPECT_NE(since, 0u) << "0 means never stamped";
    for (std::int64_t waited : {std::int64_t{0}, kTick / 2, 10 * kTick, std::int64_t{300'000'000},
                                std::int64_t{86'400'000'000'000}}) {  // up to a day
      const std::int64_t got = waited_ns(since, start + waited);
      EXPECT_LE(got, waited + 2 * kTick) << "start " << start << " waited " << waited;
      EXPECT_GE(got, waited - 2 * kTick) << "start " << start << " waited " << waited;
    }
  }
}

TEST(StackPool, NormalStacksAreReusedNotRemapped) {
  StackPool pool(64 * 1024, false);
  std::vector<Stack*> first(8);
  for (auto& f : first) ASSERT_EQ(pool.take(&f, 1), 1u);
  EXPECT_EQ(pool.mapped_slots(), 8u);
  std::set<Stack*> distinct(first.begin(), first.end());
  EXPECT_EQ(distinct.size(), 8u);
  for (Stack* f : first) {
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(f) % 64, 0u);
    EXPECT_GE(f->top() - f->lo, 64 * 1024);
    EXPECT_EQ(f->pool, &pool);
    f->lo[0] = 1;  // the whole stack is writable...
  }
  pool.give(first.data(), first.size());
  std::vector<Stack*> again(8);
  for (auto& f : again) ASSERT_EQ(pool.take(&f, 1), 1u);
  EXPECT_EQ(pool.mapped_slots(), 8u);  // ...and comes back without a new mapping
  EXPECT_EQ(std::set<Stack*>(again.begin(), again.end()), distinct);
  pool.give(again.data(), again.size());
}

// The permissions /proc/self/maps gives for the mapping that holds p.
std::string perms_of(const void* p) {
  std::ifstream maps("/proc/self/maps");
  auto a = reinterpret_cast<std::uintptr_t>(p);
  for (std::string line; std::getline(maps, line);) {
    std::uintptr_t lo = 0, hi = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &lo, &hi, perms) == 3 && lo <= a && a < hi)
      return perms;
  }
  return "unmapped";
}

TEST(StackPool, GuardPageBelowEveryNormalStackIsInaccessible) {
  StackPool pool(64 * 1024, false);
  Stack* f;
  ASSERT_EQ(pool.take(&f, 1), 1u);
  EXPECT_EQ(perms_of(f->lo - 1), "---p");
  EXPECT_EQ(perms_of(f->lo), "rw-p");
  pool.give(&f, 1);
}

TEST(StackPool, EverySmallSlabStartsWithAGuardPage) {
  StackPool pool(16 * 1024, true);
  Stack* f;
  ASSERT_EQ(pool.take(&f, 1), 1u);  // the first slot of a fresh slab
  EXPECT_EQ(perms_of(f->lo - 1), "---p");
  pool.give(&f, 1);
}

TEST(StackPool, SmallSlotsComeFromSlabsWithIntactCanaries) {
  StackPool pool(16 * 1024, true);
  std::vector<Stack*> fibers(1000);
  std::size_t got = 0;
  while (got < fibers.size()) got += pool.take(fibers.data() + got, fibers.size() - got);
  EXPECT_EQ(pool.mapped_slots(), 1000u);
  std::set<Stack*> distinct(fibers.begin(), fibers.end());
  EXPECT_EQ(distinct.size(), 1000u);
  for (Stack* f : fibers) {
    EXPECT_TRUE(StackPool::canary_intact(f));
    // The canary is the slot's highest word, right under the slot above.
    EXPECT_EQ(reinterpret_cast<char*>(StackPool::canary_of(f)) + sizeof(std::uint64_t),
              f->lo + pool.slot_size());
    if (Stack* below = pool.slot_below(f)) {
      EXPECT_EQ(below->lo + pool.slot_size(), f->lo);
    }
  }
  // Smashing a canary is seen.
  EXPECT_TRUE(fibers[0]->first_in_slab || fibers.back()->first_in_slab);
  std::uint64_t saved = *StackPool::canary_of(fibers[3]);
  *StackPool::canary_of(fibers[3]) = 0;
  EXPECT_FALSE(StackPool::canary_intact(fibers[3]));
  *StackPool::canary_of(fibers[3]) = saved;
  pool.give(fibers.data(), fibers.size());
}

TEST(StackPool, TrimUnmapsNormalStacksAndReturnsSmallOnesPages) {
  StackPool normal(32 * 1024, false);
  std::vector<Stack*> n(10);
  for (auto& f : n) normal.take(&f, 1);
  normal.give(n.data(), n.size());
  EXPECT_EQ(normal.mapped_slots(), 10u);  // give() keeps everything
  EXPECT_EQ(normal.trim(4), 6u);
  EXPECT_EQ(normal.mapped_slots(), 4u);  // 6 unmapped
  EXPECT_EQ(normal.free_count(), 4u);
  EXPECT_EQ(normal.trim(4), 0u);

  StackPool small(16 * 1024, true);
  std::vector<Stack*> s(10);
  for (auto& f : s) small.take(&f, 1);
  std::vector<char*> los;
  for (Stack* f : s) {
    f->lo[100] = 1;  // touch a page below the header
    los.push_back(f->lo);
  }
  small.give(s.data(), s.size());
  EXPECT_EQ(small.trim(4), 6u);
  EXPECT_EQ(small.free_count(), 4u);
  int resident = 0;
  for (char* lo : los) {
    unsigned char v = 0;
    ASSERT_EQ(mincore(lo, 1, &v), 0);
    resident += v & 1;
  }
  EXPECT_EQ(resident, 4);  // the trimmed six gave their pages back
  // Trimmed slots stay mapped (they are inside a slab) but come back rebuilt.
  std::vector<Stack*> again(10);
  for (auto& f : again) {
    ASSERT_EQ(small.take(&f, 1), 1u);
    EXPECT_TRUE(StackPool::canary_intact(f));
    EXPECT_EQ(f->pool, &small);
  }
  small.give(again.data(), again.size());
}

// A fresh slot is committed one page at a time: its top page (the header and
// the first frames), which take() populates for the whole batch in one call,
// and nothing below it until the fiber grows into it. Populating more would
// multiply what a parked fiber costs (4.3 KB, README).
TEST(StackPool, FreshSlotsCommitOnlyTheirTopPage) {
  for (bool small : {true, false}) {
    StackPool pool(32 * 1024, small);
    Stack* got[StackPool::kMaxTake];
    std::size_t n = small ? pool.take(got, StackPool::kMaxTake) : pool.take(got, 1);
    ASSERT_EQ(n, small ? StackPool::kMaxTake : 1u);
    for (std::size_t i = 0; i < n; ++i) {
      Stack* s = got[i];
      EXPECT_TRUE(resident(s->top() - 1)) << "slot " << i;  // the first frames' page
      EXPECT_TRUE(resident(s));
      std::size_t below = 0;
      char* slot_end = s->lo + pool.slot_size();
      for (char* q = s->lo; q < slot_end - kPage; q += kPage) below += resident(q);
      EXPECT_EQ(below, 0u) << "slot " << i << " (small: " << small << ")";
    }
    pool.give(got, n);
  }
}

// Packed slots (a small stack size below the page size) tile the pages of a
// slab: 2 KiB slots come two to a page, the header and canary out of the
// slot's own bytes, and a fresh batch commits each shared top page once.
TEST(StackPool, PackedSlotsShareEachPageAndKeepTheCanaryLayout) {
  StackPool pool(2048, true);
  ASSERT_TRUE(pool.packed());
  ASSERT_EQ(pool.slot_size(), 2048u);
  Stack* got[StackPool::kMaxTake];
  std::size_t n = pool.take(got, StackPool::kMaxTake);
  ASSERT_EQ(n, StackPool::kMaxTake);
  std::set<std::uintptr_t> pages;
  for (std::size_t i = 0; i < n; ++i) {
    Stack* s = got[i];
    EXPECT_EQ(s->size(), 2048u - sizeof(Stack) - StackPool::kTail);
    EXPECT_TRUE(StackPool::canary_intact(s));
    EXPECT_EQ(reinterpret_cast<char*>(StackPool::canary_of(s)) + sizeof(std::uint64_t),
              s->lo + 2048);
    EXPECT_TRUE(resident(s->lo)) << "slot " << i;  // the whole slot is its top page
    if (Stack* below = pool.slot_below(s)) {
      EXPECT_EQ(below->lo + 2048, s->lo);
    }
    pages.insert(reinterpret_cast<std::uintptr_t>(s->lo) & ~(kPage - 1));
  }
  EXPECT_EQ(pages.size(), n * 2048 / kPage);  // fresh slots come in address order
  // The first slot of the slab sits right on its guard page.
  EXPECT_TRUE(got[0]->first_in_slab);
  EXPECT_EQ(perms_of(got[0]->lo - 1), "---p");
  pool.give(got, n);
}

// Trimming packed slots returns a page only when every slot on it is free;
// the slots of a page that has one in use stay on the free list, intact.
TEST(StackPool, TrimReturnsOnlyPackedPagesWhoseSlotsAreAllFree) {
  StackPool pool(2048, true);
  const std::size_t per_page = kPage / 2048;
  std::vector<Stack*> s(8 * per_page);
  std::size_t got = 0;
  while (got < s.size()) got += pool.take(s.data() + got, s.size() - got);
  std::sort(s.begin(), s.end());
  std::vector<char*> los;  // a trimmed slot's header reads as zeros
  for (Stack* f : s) los.push_back(f->lo);
  // Keep the first slot of page 0 and of page 3 in use; free the rest.
  std::vector<Stack*> in_use{s[0], s[3 * per_page]};
  std::vector<Stack*> freed;
  for (Stack* f : s)
    if (f != s[0] && f != s[3 * per_page]) freed.push_back(f);
  for (Stack* f : freed) f->lo[8] = 1;  // dirty each slot's bottom
  pool.give(freed.data(), freed.size());
  const std::size_t partial = 2 * (per_page - 1);  // the page-mates of the two in use
  EXPECT_EQ(pool.trim(0), freed.size() - partial);
  EXPECT_EQ(pool.free_count(), partial);
  for (std::size_t page = 0; page < 8; ++page) {
    bool kept = page == 0 || page == 3;
    EXPECT_EQ(resident(los[page * per_page]), kept) << "page " << page;
  }
  for (Stack* f : in_use) EXPECT_TRUE(StackPool::canary_intact(f));
  // What is left is not due for trimming (an idle worker would only sort it
  // again), until a take() from the free list may have freed a page-mate.
  EXPECT_FALSE(pool.trim_due(0));
  EXPECT_EQ(pool.trim(0), 0u);
  EXPECT_EQ(pool.free_count(), partial);
  Stack* one;
  ASSERT_EQ(pool.take(&one, 1), 1u);
  pool.give(&one, 1);
  EXPECT_TRUE(pool.trim_due(0));
  EXPECT_EQ(pool.trim(0), 0u);  // still none whose page-mates are all free
  EXPECT_FALSE(pool.trim_due(0));
  // Every slot comes back, rebuilt.
  std::vector<Stack*> again(freed.size());
  got = 0;
  while (got < again.size()) got += pool.take(again.data() + got, again.size() - got);
  std::set<Stack*> distinct(again.begin(), again.end());
  EXPECT_EQ(distinct.size(), again.size());
  for (Stack* f : again) {
    EXPECT_TRUE(StackPool::canary_intact(f));
    EXPECT_EQ(f->pool, &pool);
    EXPECT_EQ(distinct.count(s[0]) + distinct.count(s[3 * per_page]), 0u);
  }
  EXPECT_EQ(pool.mapped_slots(), s.size());  // reused, none carved anew
  pool.give(again.data(), again.size());
  pool.give(in_use.data(), in_use.size());
}

// The VmFlags of the mapping that holds p ("hg": advised MADV_HUGEPAGE,
// "nh": MADV_NOHUGEPAGE), or "unmapped".
std::string vm_flags_of(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  auto a = reinterpret_cast<std::uintptr_t>(p);
  bool in = false;
  for (std::string line; std::getline(smaps, line);) {
    std::uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > 20) {
      in = lo <= a && a < hi;  // a mapping's first line ("lo-hi perms ...")
    } else if (in && line.rfind("VmFlags:", 0) == 0) {
      return line.substr(8) + " ";
    }
  }
  return "unmapped";
}

bool has_flag(const std::string& flags, const char* f) {
  return flags.find(std::string(" ") + f + " ") != std::string::npos;
}

// Packed slots fill every page they use, so every slab after the first asks
// for huge pages (stack_pool.hpp, "Huge pages"), placed so that its slots
// fill whole 2 MiB pages. The first slab, all a small program ever uses,
// keeps small pages. A slab that returns a page gives up its huge pages
// first, so that the kernel does not collapse the page back in.
TEST(StackPool, PackedSlabsAfterTheFirstAskForHugePagesUntilTheyReturnOne) {
  if (vm_flags_of(&kPage).find("rd") == std::string::npos) GTEST_SKIP() << "no VmFlags in smaps";
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  if (!thp) GTEST_SKIP() << "this kernel has no transparent huge pages";
  StackPool pool(2048, true);
  const std::size_t per_slab = (4u << 20) / 2048;
  std::vector<Stack*> s(per_slab + 2 * StackPool::kMaxTake);
  std::size_t got = 0;
  while (got < s.size()) got += pool.take(s.data() + got, s.size() - got);
  // Two slabs, the second begun in the order the slots were handed out; the
  // first slot of each sits on the slab's guard page.
  std::vector<char*> firsts;
  for (Stack* f : s)
    if (f->first_in_slab) firsts.push_back(f->lo);
  ASSERT_EQ(firsts.size(), 2u);
  char* const first = firsts[0];
  char* const second = firsts[1];
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(second) % (2u << 20), 0u);
  EXPECT_EQ(perms_of(second - 1), "---p");
  EXPECT_TRUE(has_flag(vm_flags_of(second), "hg")) << vm_flags_of(second);
  EXPECT_FALSE(has_flag(vm_flags_of(first), "hg")) << vm_flags_of(first);
  for (Stack* f : s) EXPECT_TRUE(StackPool::canary_intact(f));
  // Free and trim everything: the pages go back, the advice goes with them.
  pool.give(s.data(), s.size());
  EXPECT_EQ(pool.trim(0), s.size());
  const std::string after = vm_flags_of(second);
  EXPECT_FALSE(has_flag(after, "hg")) << after;
  EXPECT_TRUE(has_flag(after, "nh")) << after;
  EXPECT_FALSE(resident(second));
  EXPECT_FALSE(resident(first));
  // And the slots come back rebuilt, from the same two slabs.
  got = 0;
  while (got < s.size()) got += pool.take(s.data() + got, s.size() - got);
  for (Stack* f : s) EXPECT_TRUE(StackPool::canary_intact(f));
  EXPECT_EQ(pool.mapped_slots(), s.size());
  pool.give(s.data(), s.size());
}

// take() reserves fresh slots under its lock and writes their headers after
// it, so two workers refilling at once fault their pages in parallel. Every
// slot must still be handed out once, with its header and canary in place,
// and a canary read of the slot below (a switch's overflow check) sees either
// nothing yet or the canary, never anything else.
void concurrent_takes(std::size_t size);

TEST(StackPool, ConcurrentTakesHandOutDistinctPreparedSlots) {
  for (std::size_t size : {std::size_t{16 * 1024}, std::size_t{2048}}) {
    SCOPED_TRACE(size);
    concurrent_takes(size);
  }
}

void concurrent_takes(std::size_t size) {
  StackPool pool(size, true);
  constexpr std::size_t kPerThread = 3000;
  std::vector<Stack*> got[2];
  std::atomic<bool> bad_below{false};
  auto taker = [&](std::vector<Stack*>& mine) {
    Stack* batch[256];
    while (mine.size() < kPerThread) {
      std::size_t n = pool.take(batch, 256);
      ASSERT_GE(n, 1u);
      ASSERT_LE(n, StackPool::kMaxTake);
      for (std::size_t i = 0; i < n; ++i) {
        if (Stack* below = pool.slot_below(batch[i])) {
          std::uint64_t c = StackPool::load_canary(below);
          if (c != 0 && c != StackPool::canary_value(below)) bad_below = true;
        }
        mine.push_back(batch[i]);
      }
    }
  };
  std::thread a(taker, std::ref(got[0])), b(taker, std::ref(got[1]));
  a.join();
  b.join();
  EXPECT_FALSE(bad_below.load());
  std::set<Stack*> all;
  for (auto& mine : got)
    for (Stack* s : mine) {
      EXPECT_TRUE(all.insert(s).second) << "a slot handed out twice";
      EXPECT_EQ(s->pool, &pool);
      EXPECT_TRUE(StackPool::canary_intact(s));
      EXPECT_EQ(s->top() - s->lo,
                static_cast<std::ptrdiff_t>(pool.slot_size() - sizeof(Stack) - StackPool::kTail));
    }
  EXPECT_EQ(all.size(), got[0].size() + got[1].size());
  EXPECT_GE(all.size(), 2 * kPerThread);
  for (auto& mine : got) pool.give(mine.data(), mine.size());
}

// A new normal stack is mapped outside the pool's lock too; the list of
// all stacks, edited under it, must still hold each one once.
TEST(StackPool, ConcurrentNormalMappingsAreEachCountedOnce) {
  StackPool pool(64 * 1024, false);
  std::vector<Stack*> got[2];
  auto taker = [&](std::vector<Stack*>& mine) {
    for (int i = 0; i < 200; ++i) {
      Stack* s = nullptr;
      ASSERT_EQ(pool.take(&s, 1), 1u);
      mine.push_back(s);
    }
  };
  std::thread a(taker, std::ref(got[0])), b(taker, std::ref(got[1]));
  a.join();
  b.join();
  std::set<Stack*> all(got[0].begin(), got[0].end());
  all.insert(got[1].begin(), got[1].end());
  EXPECT_EQ(all.size(), 400u);
  EXPECT_EQ(pool.mapped_slots(), 400u);
  for (Stack* s : all) EXPECT_EQ(s->pool, &pool);
  for (auto& mine : got) pool.give(mine.data(), mine.size());
  EXPECT_EQ(pool.trim(0), 400u);  // unmaps each through the list: all there
  EXPECT_EQ(pool.mapped_slots(), 0u);
}

TEST(FiberPool, TcbsAreCarvedSideBySideAndReused) {
  FiberPool pool(nullptr);
  std::vector<Fiber*> f(100);
  std::size_t got = 0;
  while (got < f.size()) got += pool.take(f.data() + got, f.size() - got);
  EXPECT_EQ(pool.carved(), FiberPool::kChunkFibers);  // a chunk is made whole
  for (std::size_t i = 1; i < f.size(); ++i) {
    EXPECT_EQ(f[i], f[i - 1] + 1);  // one chunk, in order: a burst of spawns walks memory
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(f[i]) % 64, 0u);
    EXPECT_EQ(f[i]->load_state(), FiberState::kDone);  // a free TCB reads Done
  }
  pool.give(f.data(), f.size());
  std::vector<Fiber*> again(100);
  got = 0;
  while (got < again.size()) got += pool.take(again.data() + got, again.size() - got);
  EXPECT_EQ(pool.carved(), FiberPool::kChunkFibers);  // reused, no chunk added
  EXPECT_EQ(std::set<Fiber*>(again.begin(), again.end()), std::set<Fiber*>(f.begin(), f.end()));
  pool.give(again.data(), again.size());
}

// "Which end" (fiber/fiber_pool.hpp): the thread that gave last gets its own
// frees back, newest first; another thread gets the oldest free TCBs.
TEST(FiberPool, AGiverTakesItsNewestBackAndOthersTakeTheOldest) {
  FiberPool pool(nullptr);
  std::vector<Fiber*> f(8);
  std::size_t got = 0;
  while (got < f.size()) got += pool.take(f.data() + got, f.size() - got);
  // Free them in two batches from two threads: f[0..4) first, then f[4..8).
  std::thread([&] { pool.give(f.data(), 4); }).join();
  pool.give(f.data() + 4, 4);  // this thread gave last
  // All of the first chunk but our 8 is free too, older than either batch.
  const std::size_t older = FiberPool::kChunkFibers - f.size();
  Fiber* mine[2] = {};
  ASSERT_EQ(pool.take(mine, 2), 2u);
  EXPECT_EQ(mine[0], f[7]);  // newest first
  EXPECT_EQ(mine[1], f[6]);
  std::vector<Fiber*> theirs(older + 3);
  std::thread([&] {
    std::size_t n = 0;
    while (n < theirs.size()) n += pool.take(theirs.data() + n, theirs.size() - n);
  }).join();
  // The other thread got the never-used ones first, then the first batch
  // freed, in the order it was freed.
  EXPECT_EQ(theirs[older], f[0]);
  EXPECT_EQ(theirs[older + 1], f[1]);
  EXPECT_EQ(theirs[older + 2], f[2]);
  for (std::size_t i = 0; i < older; ++i)
    EXPECT_TRUE(std::find(f.begin(), f.end(), theirs[i]) == f.end());
  pool.give(mine, 2);
  pool.give(theirs.data(), theirs.size());
  pool.give(&f[3], 1);
  pool.give(&f[4], 2);
  EXPECT_EQ(pool.carved(), FiberPool::kChunkFibers);  // nothing lost, no chunk added
  std::vector<Fiber*> all(FiberPool::kChunkFibers);
  got = 0;
  while (got < all.size()) got += pool.take(all.data() + got, all.size() - got);
  EXPECT_EQ(std::set<Fiber*>(all.begin(), all.end()).size(), FiberPool::kChunkFibers);
  EXPECT_EQ(pool.carved(), FiberPool::kChunkFibers);
  pool.give(all.data(), all.size());
}

// A new chunk of TCBs is committed whole when it is mapped (one call, not a
// page fault per 21 TCBs carved): its last page is there before any TCB on
// it has been carved.
TEST(FiberPool, ANewChunkIsCommittedWhole) {
  if (!populating()) {
    GTEST_SKIP() << "no MADV_POPULATE_WRITE here, or under valgrind";
  }
  FiberPool pool(nullptr);
  Fiber* f = nullptr;
  ASSERT_EQ(pool.take(&f, 1), 1u);
  const auto* chunk = reinterpret_cast<const char*>(f);  // a fresh pool carves from its start
  const std::size_t bytes = FiberPool::kChunkFibers * sizeof(Fiber);
  EXPECT_TRUE(resident(chunk + bytes / 2));
  EXPECT_TRUE(resident(chunk + bytes - 1));  // the last page
  pool.give(&f, 1);
}

// Past kOwnChunks chunks of their own, chunks are cut from 6 MiB arenas on a
// 2 MiB boundary, advised MADV_HUGEPAGE (fiber_pool.hpp, "Huge pages"),
// side by side; every TCB is still handed out once, constructed and free.
TEST(FiberPool, LaterChunksAreCutFromHugePageArenas) {
  if (vm_flags_of(&kPage).find("rd") == std::string::npos) GTEST_SKIP() << "no VmFlags in smaps";
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  if (!thp) GTEST_SKIP() << "this kernel has no transparent huge pages";
  FiberPool pool(nullptr);
  const std::size_t per_chunk = FiberPool::kChunkFibers;
  const std::size_t own = FiberPool::kOwnChunks * per_chunk;
  std::vector<Fiber*> f(own + 3 * per_chunk);  // three chunks from the arena
  std::size_t got = 0;
  while (got < f.size()) got += pool.take(f.data() + got, f.size() - got);
  EXPECT_EQ(pool.carved(), f.size());
  EXPECT_EQ(std::set<Fiber*>(f.begin(), f.end()).size(), f.size());
  for (Fiber* t : f) EXPECT_EQ(t->load_state(), FiberState::kDone);  // constructed, free
  // The first chunk from the arena starts it, on a huge-page boundary; the
  // next two follow it.
  const auto* arena = reinterpret_cast<const char*>(f[own]);
  const std::size_t chunk_bytes = per_chunk * sizeof(Fiber);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(arena) % (2u << 20), 0u);
  EXPECT_EQ(reinterpret_cast<const char*>(f[own + per_chunk]), arena + chunk_bytes);
  EXPECT_EQ(reinterpret_cast<const char*>(f[own + 2 * per_chunk]), arena + 2 * chunk_bytes);
  EXPECT_TRUE(has_flag(vm_flags_of(arena), "hg")) << vm_flags_of(arena);
  EXPECT_FALSE(has_flag(vm_flags_of(f[0]), "hg")) << vm_flags_of(f[0]);
  pool.give(f.data(), f.size());
}

TEST(FiberPool, ConcurrentTakesFromAnEmptyPoolHandOutDistinctConstructedTcbs) {
  // Threads that all find the pool empty carve from the same chunks, and
  // map new ones, at once. Nothing is handed out twice, every TCB reads Done,
  // and the walk over every slot sees exactly what was carved.
  FiberPool pool(nullptr);
  constexpr int kThreads = 4;
  constexpr std::size_t kEach = 3 * FiberPool::kChunkFibers + 17;
  std::vector<std::vector<Fiber*>> got(kThreads, std::vector<Fiber*>(kEach));
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < kThreads) {
      }
      for (std::size_t n = 0; n < kEach;)
        n += pool.take(got[t].data() + n, std::min<std::size_t>(64, kEach - n));
    });
  for (auto& th : threads) th.join();
  std::set<Fiber*> all;
  for (auto& v : got)
    for (Fiber* f : v) {
      EXPECT_TRUE(all.insert(f).second) << "handed out twice: " << f;
      EXPECT_EQ(f->load_state(), FiberState::kDone);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(f) % 64, 0u);
    }
  EXPECT_EQ(all.size(), kThreads * kEach);
  // Every TCB made is visited once, whether handed out or still free.
  std::size_t slots = 0;
  pool.for_each_slot([](Fiber*, void* n) { ++*static_cast<std::size_t*>(n); }, &slots);
  EXPECT_EQ(slots, pool.carved());
  EXPECT_GE(pool.carved(), kThreads * kEach);
  for (auto& v : got) pool.give(v.data(), v.size());
}

// A walk over every TCB (a dump, the deadlock scan) does not hold the pool's
// lock while it visits: a take that must carve a new chunk meanwhile goes
// through. Before, the monitor's scan of a million TCBs held it throughout.
TEST(FiberPool, AWalkDoesNotHoldUpATakeThatCarves) {
  FiberPool pool(nullptr);
  std::vector<Fiber*> f(FiberPool::kChunkFibers);  // the first chunk, used up
  std::size_t got = 0;
  while (got < f.size()) got += pool.take(f.data() + got, f.size() - got);
  struct Shared {
    FiberPool* pool;
    std::atomic<bool> walking{false};
    std::atomic<bool> carved{false};
    bool carved_during_walk = false;
  } sh{&pool};
  std::thread taker([&] {
    while (!sh.walking.load()) std::this_thread::yield();
    Fiber* more = nullptr;
    EXPECT_EQ(pool.take(&more, 1), 1u);  // a new chunk: needs the lock
    sh.carved.store(true);
    pool.give(&more, 1);
  });
  pool.for_each_slot(
      [](Fiber* x, void* arg) {
        auto& s = *static_cast<Shared*>(arg);
        if (s.walking.exchange(true)) return;  // only the first visit waits
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!s.carved.load() && std::chrono::steady_clock::now() < until)
          std::this_thread::yield();
        s.carved_during_walk = s.carved.load();
        (void)x;
      },
      &sh);
  taker.join();
  EXPECT_TRUE(sh.carved_during_walk) << "take() waited for the walk to end";
  EXPECT_EQ(pool.carved(), 2 * FiberPool::kChunkFibers);
  pool.give(f.data(), f.size());
}

TEST(FiberPool, ForEachFiberVisitsOnlyTcbsInUse) {
  FiberPool pool(nullptr);
  std::vector<Fiber*> f(FiberPool::kChunkFibers + 5);  // two chunks
  std::size_t got = 0;
  while (got < f.size()) got += pool.take(f.data() + got, f.size() - got);
  static const PayloadOps ops{};  // any non-null ops marks a TCB in use
  f[1]->ops = &ops;
  f.back()->ops = &ops;
  std::vector<Fiber*> seen;
  pool.for_each_fiber(
      [](Fiber* x, void* arg) { static_cast<std::vector<Fiber*>*>(arg)->push_back(x); }, &seen);
  EXPECT_EQ(std::set<Fiber*>(seen.begin(), seen.end()), (std::set<Fiber*>{f[1], f.back()}));
  std::size_t slots = 0;
  pool.for_each_slot([](Fiber*, void* n) { ++*static_cast<std::size_t*>(n); }, &slots);
  EXPECT_EQ(slots, 2 * FiberPool::kChunkFibers);  // every TCB of both chunks, free or not
  EXPECT_EQ(slots, pool.carved());
  f[1]->ops = f.back()->ops = nullptr;
  pool.give(f.data(), f.size());
}

}  // namespace
