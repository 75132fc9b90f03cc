// fiber/stack_pool.hpp: fiber stacks, mapped and pooled.
//
// A slot is one stack: [stack ....... | Stack header | tail]. The header
// (struct Stack) sits at the top, the stack grows down from right below it,
// and the tail above it holds the canary. A stack is not a fiber's: a TCB
// (fiber/tcb.hpp, from fiber/fiber_pool.hpp) binds one when it first runs
// and, for most fibers, gives it back as soon as it finishes (see "Binding" in
// fiber/tcb.hpp).
//
//   normal slot   its own mapping: [guard page][stack ....... |Stack|tail]
//                 The PROT_NONE guard page turns an overflow into SIGSEGV,
//                 which fiber/overflow.cpp reports. Two VMAs per stack, so
//                 vm.max_map_count (65530) allows about 32,000 at once.
//   small slot    carved from a slab: [guard page][slot 0][slot 1]...[slot n-1]
//                 One guard per slab (a slab is ~4 MiB), so a million small
//                 stacks need ~500 mappings. A small slot has no guard of its
//                 own; its overflow runs into the header and canary of the
//                 slot below. The net under it: the canary word in each slot's
//                 tail, checked whenever the fiber on it is switched in or
//                 out, and a check of the saved stack pointer against the
//                 stack's bounds at every switch out (sched/switch.cpp). An
//                 overflow is caught at the next switch, not at the faulting
//                 instruction: small stacks are for shallow fibers, see the
//                 README.
//   packed slot   a small slot smaller than a page (Config::small_stack_size
//                 a power of two below the page size, 2 KiB on x86-64): the
//                 same slabs and the same net, with several slots to a page,
//                 so a parked fiber costs half a page of stack, as a
//                 goroutine's 2 KiB does. The header and tail come out of the
//                 requested bytes (1,920 of 2,048 are stack). A page goes
//                 back to the kernel only when all its slots are free.
//
// Memory is mapped MAP_NORESERVE, so a parked fiber costs the stack pages it
// has used, usually one. That one, the slot's top page (header and first
// frames), take() commits for a whole batch of fresh slots in one call
// (fiber/populate.hpp) instead of a page fault each; the rest of a slot is
// committed by the kernel on first touch, as the fiber grows into it.
//
// Huge pages. Packed slabs after a pool's first ask for transparent huge
// pages (madvise MADV_HUGEPAGE), and are placed so that their slots fill
// whole 2 MiB pages. On the development VM the first write to a fresh 4 KiB
// page costs 4.8 us even after populating it (1.1 us): the hypervisor maps
// each small page on its first touch. A huge page, populated whole, costs
// 0.14 us per 4 KiB of it and 0.03 us at first touch (bench/
// first_touch_bench, BM_Huge*), while the host still backs the memory
// (on memory it must back again, 6-8 us either way). A million parked
// fibers on packed stacks fill 2 GB of slabs, half a million pages: on such
// memory they start in 0.5-0.7 s instead of 2.7-2.9 s (README, "Huge pages
// for what a million fibers touch"). Packed slots use every page of a
// slab as they go, so a huge page costs them no memory (a slab is used
// from the bottom up, and only the huge page being filled can be partly
// unused); bigger small slots keep only their top page resident, and a
// huge page would make them pay for all of it, so they keep small pages,
// as does a pool's first slab (a few thousand fibers, which should not pay
// 2 MiB for a few pages). Where the kernel has no huge pages to give, the
// advice does nothing. A slab whose page goes back to the kernel (trim)
// gives up the advice first, or khugepaged would collapse the range back
// into a huge page, returned pages included.
//
// Pooling. take() and give() move batches between the pool's free list and a
// worker's cache (sched/worker.hpp), under a mutex that a worker takes once per
// batch, never per spawn. give() keeps everything; trim() returns the memory
// of free slots past Config::max_cached_stacks, and only idle workers call it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "fiber/adaptive_mutex.hpp"

namespace chronos::detail {

class StackPool;

// The header at the top of every slot. The stack's usable bytes are
// [lo, top()); top() is 64-byte aligned.
struct alignas(64) Stack {
  char* lo = nullptr;            // lowest usable byte
  Stack* next = nullptr;         // the pool's free list
  StackPool* pool = nullptr;     // where it goes back to
  unsigned valgrind_id = 0;      // valgrind stack registration
  std::uint32_t pool_index = 0;  // normal stacks: place in the pool's list of all stacks
  bool first_in_slab = false;    // small stacks: a guard page, not a slot, lies below

  char* top() noexcept { return reinterpret_cast<char*>(this); }
  std::size_t size() noexcept { return static_cast<std::size_t>(top() - lo); }
};

class StackPool {
 public:
  // stack_size: requested usable bytes, rounded up to pages. small: carve
  // slots from slabs instead of mapping each with a guard page.
  StackPool(std::size_t stack_size, bool small);
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  // Takes between 1 and min(n, kMaxTake) free stacks into out, mapping more if
  // none are free.
  // Throws std::system_error (ENOMEM) naming the limit that was hit.
  std::size_t take(Stack** out, std::size_t n);
  // Returns stacks nobody runs on. Never unmaps: a burst keeps its stacks warm
  // for the next one.
  void give(Stack* const* in, std::size_t n) noexcept;

  // Returns the memory of free stacks beyond `keep` to the kernel: a normal
  // stack is unmapped, a small one madvise(MADV_DONTNEED)'d and rebuilt on
  // reuse. Idle workers call this (Config::max_cached_stacks), so a burst does
  // not pin its memory forever and a busy runtime never pays for it.
  std::size_t trim(std::size_t keep) noexcept;
  std::size_t free_count() const noexcept { return nfree_.load(std::memory_order_relaxed); }
  // Whether trim(keep) has anything to return: more free stacks than `keep`,
  // not counting packed slots the last trim had to keep because a page-mate
  // was in use (until the next take() from the free list, which may have
  // freed their pages up).
  bool trim_due(std::size_t keep) const noexcept {
    return nfree_.load(std::memory_order_relaxed) > keep + pinned_.load(std::memory_order_relaxed);
  }

  bool small() const noexcept { return small_; }
  bool packed() const noexcept { return packed_; }
  std::size_t slot_size() const noexcept { return slot_size_; }
  std::size_t mapped_slots() const noexcept { return mapped_.load(std::memory_order_relaxed); }

  // The canary: the highest word of every slot, above the header, so that an
  // overflow from the slot above smashes it before anything else. Read and
  // written atomically: a fiber checks its neighbour's while the pool may be
  // rebuilding that slot.
  static std::uint64_t* canary_of(Stack* s) noexcept {
    return reinterpret_cast<std::uint64_t*>(s->top() + sizeof(Stack) + kTail -
                                            sizeof(std::uint64_t));
  }
  static std::uint64_t canary_value(const Stack* s) noexcept {
    return 0xC4A0'5CA7'A27B'17E5ull ^ reinterpret_cast<std::uintptr_t>(s);
  }
  static std::uint64_t load_canary(Stack* s) noexcept {
    return std::atomic_ref<std::uint64_t>(*canary_of(s)).load(std::memory_order_relaxed);
  }
  static bool canary_intact(Stack* s) noexcept { return load_canary(s) == canary_value(s); }
  // The header of the slot right below s, or null if s is the first slot of
  // its slab (a guard page lies below) or a normal stack.
  Stack* slot_below(Stack* s) const noexcept {
    if (!small_ || s->first_in_slab) return nullptr;
    return reinterpret_cast<Stack*>(s->top() - slot_size_);
  }

  // Bytes reserved at the top of every slot above the header (holds the canary).
  static constexpr std::size_t kTail = 64;
  // The smallest packed slot (Config::small_stack_size's floor below 8 KiB):
  // header and tail take 128 bytes of it.
  static constexpr std::size_t kMinPackedSlot = 2048;
  // The most one take() hands out.
  static constexpr std::size_t kMaxTake = 64;

 private:
  struct Trimmed {
    char* lo;
    bool first_in_slab;
  };
  // Builds the header at the top of a fresh (or trimmed) slot.
  Stack* prepare(char* slot_lo, bool first_in_slab) noexcept;
  // Undoes prepare() on a free small slot whose pages are about to go.
  Trimmed release_slot(Stack* s) noexcept;
  std::size_t trim_packed(Stack* excess, std::size_t n) noexcept;
  // Before packed pages go back: no huge pages for their slabs any more.
  void unadvise_huge(const std::vector<char*>& pages) noexcept;
  // The page holding a slot's top (its header and first frames).
  char* top_page(char* slot_lo) const noexcept;
  char* map_guarded(std::size_t len, bool huge) const;
  void map_normal(Stack** out);
  void map_slab();
  void unmap_normal(Stack* s) noexcept;

  const bool small_;
  const std::size_t page_;
  const bool packed_;      // small slots smaller than a page, several to a page
  std::size_t slot_size_;  // a slot's bytes, guard excluded

  AdaptiveMutex mu_;
  Stack* free_ = nullptr;               // linked through Stack::next
  std::atomic<std::size_t> nfree_{0};   // written under mu_, read without it by trim()
  std::atomic<std::size_t> pinned_{0};  // see trim_due(); written under mu_
  std::vector<Trimmed> trimmed_;        // small slots whose pages were returned; header to rebuild
  struct Slab {
    char* base;  // the mapping: guard page, then the slots
    std::size_t len;
    bool huge;  // the slots are advised MADV_HUGEPAGE (see map_slab)
  };
  std::vector<Slab> slabs_;  // small: every slab (the destructor, trim)
  char* bump_ = nullptr;     // small: next never-used slot in the newest slab
  char* bump_end_ = nullptr;
  std::vector<Stack*> normals_;  // normal: every mapped stack (Stack::pool_index is its place)
  std::atomic<std::size_t> mapped_{0};
};

// Throws std::system_error(ENOMEM) for a failed stack mapping, naming
// vm.max_map_count when that is the limit that was hit.
[[noreturn]] void throw_stack_alloc_error(int err, std::size_t bytes);

}  // namespace chronos::detail
