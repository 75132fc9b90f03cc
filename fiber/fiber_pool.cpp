// fiber/fiber_pool.cpp: carving and pooling TCBs (fiber/fiber_pool.hpp).
#include "fiber/fiber_pool.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <new>
#include <string>
#include <system_error>

#include "fiber/populate.hpp"

namespace chronos::detail {
namespace {

constexpr std::size_t kChunkBytes = FiberPool::kChunkFibers * sizeof(Fiber);

}  // namespace

FiberPool::~FiberPool() {
  // Every fiber has been released by now (RuntimeImpl's shutdown guarantees
  // it, or the runtime's memory is kept): destroy what was carved, unmap.
  for (Fiber* c : chunks_) {
    Fiber* end = c == chunks_.back() ? bump_ : c + kChunkFibers;
    for (Fiber* f = c; f != end; ++f) f->~Fiber();
    ::munmap(c, kChunkBytes);
  }
}

std::size_t FiberPool::take(Fiber** out, std::size_t n) {
  std::lock_guard lock(mu_);
  std::size_t got = std::min(n, free_.size());
  std::copy(free_.end() - static_cast<std::ptrdiff_t>(got), free_.end(), out);
  free_.resize(free_.size() - got);
  while (got < n) {
    if (bump_ == bump_end_) {
      if (got > 0) break;
      void* p =
          ::mmap(nullptr, kChunkBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) {
        int err = errno;
        throw std::system_error(err, std::generic_category(),
                                "chronos: cannot map " + std::to_string(kChunkBytes) +
                                    " bytes for fiber control blocks");
      }
      try {
        chunks_.reserve(chunks_.size() + 1);
        // Doubling, not chunk by chunk: a burst of a million spawns carves
        // a thousand chunks, and growing by one each time copied the list a
        // thousand times over.
        const std::size_t need = (chunks_.size() + 1) * kChunkFibers;
        if (free_.capacity() < need) free_.reserve(std::max(need, 2 * free_.capacity()));
      } catch (...) {
        ::munmap(p, kChunkBytes);
        throw;
      }
      // Committed now, in one call, rather than a page fault per 21 TCBs as
      // they are carved (fiber/populate.hpp): 48 faults under this lock cost
      // half a millisecond on a VM, the call a tenth of that.
      PageRange chunk{p, kChunkBytes};
      populate_pages(&chunk, 1);
      chunks_.push_back(static_cast<Fiber*>(p));
      bump_ = static_cast<Fiber*>(p);
      bump_end_ = bump_ + kChunkFibers;
    }
    Fiber* f = ::new (bump_++) Fiber();
    f->rt = rt_;
    out[got++] = f;
    carved_.fetch_add(1, std::memory_order_relaxed);
  }
  return got;
}

void FiberPool::give(Fiber* const* in, std::size_t n) noexcept {
  std::lock_guard lock(mu_);
  // Reserved whenever a chunk is carved, so that this never allocates (and
  // so never throws): the list holds at most every TCB carved.
  free_.insert(free_.end(), in, in + n);
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
  // a chunk is never unmapped while the pool lives, and every TCB in the
  // copied extents was constructed, under the lock, before we took it. TCBs
  // carved after the copy are not visited; the visitors already cope with
  // fibers that change state while they look.
  std::vector<std::pair<Fiber*, Fiber*>> extents;
  {
    std::lock_guard lock(mu_);
    extents.reserve(chunks_.size());
    for (Fiber* c : chunks_)
      extents.emplace_back(c, c == chunks_.back() ? bump_ : c + kChunkFibers);
  }
  for (auto [lo, end] : extents)
    for (Fiber* f = lo; f != end; ++f) fn(f, arg);
}

}  // namespace chronos::detail
