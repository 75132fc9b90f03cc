// fiber/stack_pool.hpp: fiber stacks, with their TCBs, mapped and pooled.
//
// A slot is one fiber's memory: its stack, its payload and its TCB at the top.
//
//   normal slot   its own mapping: [guard page][stack ....... payload|TCB|tail]
//                 The PROT_NONE guard page turns an overflow into SIGSEGV,
//                 which fiber/overflow.cpp reports. Two VMAs per stack, so
//                 vm.max_map_count (65530) allows about 32,000 at once.
//   small slot    carved from a slab: [guard page][slot 0][slot 1]...[slot n-1]
//                 One guard per slab (a slab is ~4 MiB), so a million small
//                 stacks need ~500 mappings. A small slot has no guard of its
//                 own; its overflow runs into the TCB of the slot below. The
//                 net under it: a canary word in each slot's tail, checked
//                 whenever that fiber is switched in or out, and a check of
//                 the saved stack pointer against the stack's bounds at every
//                 switch out (sched/switch.cpp). An overflow is caught at the
//                 next switch, not at the faulting instruction: small stacks are
//                 for shallow fibers, see the README.
//
// Memory is mapped MAP_NORESERVE and committed by the kernel on first touch, so
// an idle fiber costs the pages it has used, usually one.
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

#include "fiber/tcb.hpp"

namespace chronos::detail {

class StackPool {
 public:
  // stack_size: requested usable bytes, rounded up to pages. small: carve
  // slots from slabs instead of mapping each with a guard page.
  StackPool(RuntimeImpl* rt, std::size_t stack_size, bool small);
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  // Takes between 1 and n free TCBs into out, mapping more if none are free.
  // Throws std::system_error (ENOMEM) naming the limit that was hit.
  std::size_t take(Fiber** out, std::size_t n);
  // Returns TCBs whose fibers are finished and released. Never unmaps: a
  // burst keeps its stacks warm for the next one.
  void give(Fiber* const* in, std::size_t n) noexcept;

  // Returns the memory of free stacks beyond `keep` to the kernel: a normal
  // stack is unmapped, a small one madvise(MADV_DONTNEED)'d and rebuilt on
  // reuse. Idle workers call this (Config::max_cached_stacks), so a burst does
  // not pin its memory forever and a busy runtime never pays for it.
  std::size_t trim(std::size_t keep) noexcept;
  std::size_t free_count() const noexcept { return nfree_.load(std::memory_order_relaxed); }

  // Calls fn on every slot that holds a fiber (spawned, not yet released),
  // under the pool's lock. Off the hot path: shutdown and dumps use it.
  void for_each_fiber(void (*fn)(Fiber*, void*), void* arg);
  // Calls fn on every prepared slot, free or not, under the pool's lock: the
  // caller tells them apart by the state word (a free slot reads Done). For
  // dumps taken while fibers run, which must not read Fiber::ops.
  void for_each_slot(void (*fn)(Fiber*, void*), void* arg);

  bool small() const noexcept { return small_; }
  std::size_t slot_size() const noexcept { return slot_size_; }
  std::size_t mapped_slots() const noexcept { return mapped_.load(std::memory_order_relaxed); }

  // The canary: the highest word of every slot, above the TCB, so that an
  // overflow from the slot above smashes it before anything else. Read and
  // written atomically: a fiber checks its neighbour's while the pool may be
  // rebuilding that slot.
  static std::uint64_t* canary_of(Fiber* f) noexcept {
    return reinterpret_cast<std::uint64_t*>(reinterpret_cast<char*>(f) + sizeof(Fiber) + kTail -
                                            sizeof(std::uint64_t));
  }
  static std::uint64_t canary_value(const Fiber* f) noexcept {
    return 0xC4A0'5CA7'A27B'17E5ull ^ reinterpret_cast<std::uintptr_t>(f);
  }
  static std::uint64_t load_canary(Fiber* f) noexcept {
    return std::atomic_ref<std::uint64_t>(*canary_of(f)).load(std::memory_order_relaxed);
  }
  static bool canary_intact(Fiber* f) noexcept { return load_canary(f) == canary_value(f); }
  // The TCB of the slot right below f's, or null if f's slot is the first of
  // its slab (a guard page lies below) or f's stack is a normal one.
  Fiber* slot_below(Fiber* f) const noexcept {
    if (!small_ || f->first_in_slab) return nullptr;
    return reinterpret_cast<Fiber*>(reinterpret_cast<char*>(f) - slot_size_);
  }

  // Bytes reserved at the top of every slot above the TCB (holds the canary).
  static constexpr std::size_t kTail = 64;

 private:
  // Builds a TCB at the top of a fresh (or trimmed) slot.
  Fiber* prepare(char* slot_lo, bool first_in_slab) noexcept;
  char* map_guarded(std::size_t len) const;
  void map_normal(Fiber** out);
  void map_slab();
  void unmap_normal(Fiber* f) noexcept;

  RuntimeImpl* const rt_;
  const bool small_;
  const std::size_t page_;
  std::size_t slot_size_;  // a slot's bytes, guard excluded

  std::mutex mu_;
  Fiber* free_ = nullptr;              // linked through Fiber::next
  std::atomic<std::size_t> nfree_{0};  // written under mu_, read without it by trim()
  struct Trimmed {
    char* lo;
    bool first_in_slab;
  };
  std::vector<Trimmed> trimmed_;  // small slots whose pages were returned; TCB to rebuild
  std::vector<std::pair<char*, std::size_t>> slabs_;  // small: every slab, for the destructor
  char* bump_ = nullptr;  // small: next never-used slot in the newest slab
  char* bump_end_ = nullptr;
  std::vector<Fiber*> normals_;  // normal: every mapped stack (Fiber::pool_index is its place)
  std::atomic<std::size_t> mapped_{0};
};

// Throws std::system_error(ENOMEM) for a failed stack mapping, naming
// vm.max_map_count when that is the limit that was hit.
[[noreturn]] void throw_stack_alloc_error(int err, std::size_t bytes);

}  // namespace chronos::detail
