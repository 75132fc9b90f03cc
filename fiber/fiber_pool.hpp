// fiber/fiber_pool.hpp: where TCBs live.
//
// TCBs (fiber/tcb.hpp) are carved from chunks of kChunkFibers, side by side,
// apart from any stack: a spawn writes a few cache lines of one chunk, and a
// burst of spawns walks its chunks in order, which the hardware prefetcher
// follows. A new chunk is committed whole in one call when it is mapped
// (fiber/populate.hpp), not a page fault per 21 TCBs, and all its TCBs are
// constructed then, before the pool's lock is taken to list it. A TCB is never
// returned to the system while its runtime lives, so anything that walks
// every TCB (dumps, the deadlock detector, shutdown, the gdb extension) reads
// memory that stays valid; a free TCB reads Done and has no payload
// operations. At 192 bytes a TCB, a million fibers keep 192 MB of them after
// the burst, as Go keeps its goroutine records.
//
// Pooling is StackPool's: batches move between the free list and a worker's
// cache under a lock taken once per batch (fiber/adaptive_mutex.hpp). The
// free list is a ring of pointers, not a list linked through the TCBs:
// moving a batch then copies 64 pointers instead of chasing 64 dependent
// cache misses. The ring grows only to the number of TCBs carved, so the
// steady state does not allocate.
//
// Huge pages
// ----------
// The first chunks are mappings of their own. Past kOwnChunks of them (8,192
// TCBs), chunks are cut from 6 MiB arenas: three 2 MiB pages on a 2 MiB
// boundary, advised MADV_HUGEPAGE, 32 chunks exactly. On the development VM
// the first touch of each fresh 4 KiB page costs about 5 us, committed ahead
// or not, and a huge page populated whole about 0.17 us per 4 KiB of it
// (fiber/stack_pool.hpp, "Huge pages"): a million TCBs are 47,000 pages.
// Chunks never go back to the kernel while the pool lives, so nothing ever
// has to split an arena's huge pages. A small program never reaches an
// arena; one that does has at most one huge page committed beyond its
// chunks.
//
// Which end
// ---------
// A thread that takes right after giving gets its own last frees back,
// newest first: they are still in its cache. Any other thread gets the
// oldest free TCBs instead. TCBs another worker has just freed sit in that
// worker's cache, and a spawn's stores to them would wait for each line to
// cross over: with one fiber spawning on one worker and the fibers running
// and exiting on the other, taking the newest cost 83-99 ns a spawn against
// 71-76 ns taking the oldest (README, "Stacks").
#pragma once

#include <atomic>
#include <cstddef>
#include <mutex>
#include <vector>

#include "fiber/adaptive_mutex.hpp"
#include "fiber/tcb.hpp"

namespace chronos::detail {

class FiberPool {
 public:
  explicit FiberPool(RuntimeImpl* rt) : rt_(rt) {}
  ~FiberPool();
  FiberPool(const FiberPool&) = delete;
  FiberPool& operator=(const FiberPool&) = delete;

  // Takes between 1 and n free TCBs into out, adding a chunk if none are
  // free. Throws std::system_error (ENOMEM) if no chunk can be mapped.
  std::size_t take(Fiber** out, std::size_t n);
  // Returns TCBs whose fibers are finished and released.
  void give(Fiber* const* in, std::size_t n) noexcept;

  // Calls fn on every TCB that holds a fiber (spawned, not yet released).
  // For a quiescent runtime (shutdown), which may read Fiber::ops.
  void for_each_fiber(void (*fn)(Fiber*, void*), void* arg);
  // Calls fn on every TCB carved so far, free or not: the caller tells them
  // apart by the state word (a free TCB reads Done). For dumps and scans
  // taken while fibers run, which must not read Fiber::ops. Holds the pool's
  // lock only to copy the list of chunks, never during the walk.
  void for_each_slot(void (*fn)(Fiber*, void*), void* arg);

  std::size_t carved() const noexcept { return carved_.load(std::memory_order_relaxed); }

  static constexpr std::size_t kChunkFibers = 1024;  // 192 KiB a chunk
  static constexpr std::size_t kOwnChunks = 8;       // before chunks come from arenas

 private:
  RuntimeImpl* const rt_;  // every TCB's Fiber::rt
  AdaptiveMutex mu_;
  // Every free TCB (see "Pooling" and "Which end" above): count_ of them
  // from head_ on, in a ring a power of two long, oldest first.
  std::vector<Fiber*> ring_;
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  const void* last_giver_ = nullptr;  // the thread of the last give()
  std::vector<Fiber*> chunks_;        // every chunk, kChunkFibers TCBs each
  std::atomic<std::size_t> carved_{0};
  // The arena later chunks are cut from (see "Huge pages"). Only a pool that
  // grows takes this lock, never a take() or a give() that finds TCBs.
  std::mutex arena_mu_;
  char* arena_next_ = nullptr;  // the next chunk's bytes; guarded by arena_mu_
  char* arena_end_ = nullptr;
  std::size_t own_chunks_ = 0;  // chunks mapped on their own so far; guarded by arena_mu_

  void add_chunk();
  char* map_chunk();  // a chunk's worth of fresh memory
};

}  // namespace chronos::detail
