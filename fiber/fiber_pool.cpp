// fiber/fiber_pool.cpp: carving and pooling TCBs (fiber/fiber_pool.hpp).
#include "fiber/fiber_pool.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <new>
#include <string>
#include <system_error>

#include "fiber/populate.hpp"

namespace chronos::detail {
namespace {

constexpr std::size_t kChunkBytes = FiberPool::kChunkFibers * sizeof(Fiber);
constexpr std::size_t kArenaBytes = 3 * kHugePage;  // 32 chunks of 192 KiB
static_assert(kArenaBytes % kChunkBytes == 0, "an arena holds whole chunks");

[[noreturn]] void throw_map_error(int err, std::size_t bytes) {
  throw std::system_error(
      err, std::generic_category(),
      "chronos: cannot map " + std::to_string(bytes) + " bytes for fiber control blocks");
}

}  // namespace

FiberPool::~FiberPool() {
  // Every fiber has been released by now (RuntimeImpl's shutdown guarantees
  // it, or the runtime's memory is kept): destroy what was carved, unmap.
  for (Fiber* c : chunks_) {
    for (Fiber* f = c; f != c + kChunkFibers; ++f) f->~Fiber();
    ::munmap(c, kChunkBytes);  // (a chunk cut from an arena: that part of it)
  }
  if (arena_next_ != arena_end_)
    ::munmap(arena_next_, static_cast<std::size_t>(arena_end_ - arena_next_));
}

// A chunk's memory: a mapping of its own for the first kOwnChunks, then the
// next slice of the current arena, mapping a new one when it is used up.
char* FiberPool::map_chunk() {
  std::lock_guard lock(arena_mu_);
  if (own_chunks_ < kOwnChunks) {
    void* p =
        ::mmap(nullptr, kChunkBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw_map_error(errno, kChunkBytes);
    ++own_chunks_;
    return static_cast<char*>(p);
  }
  if (arena_next_ == arena_end_) {
    void* p = map_for_huge_pages(kArenaBytes, 0, 0);
    if (p == MAP_FAILED) throw_map_error(errno, kArenaBytes);
    arena_next_ = static_cast<char*>(p);
    arena_end_ = arena_next_ + kArenaBytes;
  }
  char* p = arena_next_;
  arena_next_ += kChunkBytes;
  return p;
}

namespace {

// Which thread gave the pool its last batch (see "Which end" in the header).
thread_local const char t_self = 0;

}  // namespace

std::size_t FiberPool::take(Fiber** out, std::size_t n) {
  for (;;) {
    {
      std::lock_guard lock(mu_);
      const std::size_t got = std::min(n, count_);
      const std::size_t mask = ring_.size() - 1;
      if (last_giver_ == &t_self) {  // our own last frees, newest first
        for (std::size_t i = 0; i < got; ++i) out[i] = ring_[(head_ + count_ - 1 - i) & mask];
      } else {  // the oldest
        for (std::size_t i = 0; i < got; ++i) out[i] = ring_[(head_ + i) & mask];
        head_ = (head_ + got) & mask;
      }
      count_ -= got;
      if (got > 0) return got;
    }
    add_chunk();
  }
}

void FiberPool::give(Fiber* const* in, std::size_t n) noexcept {
  std::lock_guard lock(mu_);
  // Sized whenever a chunk is added, so that this never allocates (and so
  // never throws): the ring holds at most every TCB carved.
  const std::size_t mask = ring_.size() - 1;
  for (std::size_t i = 0; i < n; ++i) ring_[(head_ + count_ + i) & mask] = in[i];
  count_ += n;
  last_giver_ = &t_self;
}

// Maps, commits and constructs a whole chunk with the lock let go, then files
// its TCBs as free under it. The slow part of growing (a mapping, 48 pages
// committed, 192 KiB written) used to run under the lock, one batch of 64
// TCBs at a time, and a worker returning TCBs meanwhile slept on the lock:
// thousands of futex calls a round in a two-worker spawn burst. Two takers
// that find the pool empty at once both add a chunk; the spare TCBs stay
// free for the next burst.
void FiberPool::add_chunk() {
  void* p = map_chunk();
  // Committed in one call rather than a page fault per 21 TCBs
  // (fiber/populate.hpp): 48 faults cost half a millisecond on a VM, the
  // call a tenth of that. The stores below then hit memory that is there.
  PageRange range{p, kChunkBytes};
  populate_pages(&range, 1);
  auto* chunk = static_cast<Fiber*>(p);
  for (std::size_t i = 0; i < kChunkFibers; ++i) (::new (chunk + i) Fiber())->rt = rt_;
  std::lock_guard lock(mu_);
  try {
    chunks_.reserve(chunks_.size() + 1);
    // Doubling, not chunk by chunk: a burst of a million spawns adds a
    // thousand chunks, and growing by one each time copied the list a
    // thousand times over. This growth is the one slow step left under the
    // lock: ten times on the way to a million TCBs, the last copying 4 MB.
    const std::size_t need = (chunks_.size() + 1) * kChunkFibers;
    if (ring_.size() < need) {
      std::size_t cap = ring_.empty() ? kChunkFibers : 2 * ring_.size();
      while (cap < need) cap *= 2;
      std::vector<Fiber*> bigger(cap);
      for (std::size_t i = 0; i < count_; ++i) bigger[i] = ring_[(head_ + i) & (ring_.size() - 1)];
      ring_.swap(bigger);
      head_ = 0;
    }
  } catch (...) {
    for (std::size_t i = 0; i < kChunkFibers; ++i) chunk[i].~Fiber();
    ::munmap(p, kChunkBytes);
    throw;
  }
  chunks_.push_back(chunk);
  const std::size_t mask = ring_.size() - 1;
  for (std::size_t i = 0; i < kChunkFibers; ++i) ring_[(head_ + count_ + i) & mask] = chunk + i;
  count_ += kChunkFibers;
  last_giver_ = nullptr;  // taken from the head: a burst walks the chunk upwards
  carved_.fetch_add(kChunkFibers, std::memory_order_relaxed);
}

void FiberPool::for_each_fiber(void (*fn)(Fiber*, void*), void* arg) {
  struct Filter {
    void (*fn)(Fiber*, void*);
    void* arg;
  } filter{fn, arg};
  for_each_slot(
      [](Fiber* f, void* p) {
        auto* flt = static_cast<Filter*>(p);
        if (f->ops) flt->fn(f, flt->arg);  // a free TCB has no payload operations
      },
      &filter);
}

void FiberPool::for_each_slot(void (*fn)(Fiber*, void*), void* arg) {
  // The lock guards the list of chunks, not the TCBs: copy the list, then
  // walk without it, so that a dump or a deadlock scan of a million TCBs
  // never holds up a worker refilling its cache. Walking unlocked is safe:
  // a chunk is never unmapped while the pool lives, and every TCB of a
  // listed chunk was constructed before the chunk was listed (the lock
  // orders the two). Chunks added after the copy are not visited; the
  // visitors already cope with fibers that change state while they look.
  std::vector<Fiber*> chunks;
  {
    std::lock_guard lock(mu_);
    chunks = chunks_;
  }
  for (Fiber* c : chunks)
    for (Fiber* f = c; f != c + kChunkFibers; ++f) fn(f, arg);
}

}  // namespace chronos::detail
