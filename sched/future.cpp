// sched/future.cpp: the out-of-line parts of chronos/future.hpp: waiting on
// and completing a future's shared state, and the pool the states come from.

#include <cstdint>
#include <new>

#include "arch/sanitizer.hpp"
#include "chronos/future.hpp"
#include "fiber/backoff.hpp"

namespace chronos::detail {

void FutureStateBase::publish() noexcept {
  WaitNode* n = wait_list_take(waiters);
  wait_list_unlock(waiters);
  if (n) wait_list_wake(n);
}

bool FutureStateBase::wait_until_ns(std::int64_t deadline) {
  wait_list_lock(waiters);
  if (status != kPending) {
    wait_list_unlock(waiters);
    return true;
  }
  WaitNode node(WaitReason::kFuture, this);
  switch (wait_list_wait(waiters, node, deadline)) {
    case WakeReason::kNotified:
      return true;
    case WakeReason::kCancelled:
      throw_cancelled();
    default:
      return false;
  }
}

// ---------------------------------------------------------------- the pool
//
// Four size classes (64, 128, 256, 512 bytes). Each thread keeps a free list
// per class of up to kCacheMax blocks; a thread that runs dry takes a batch
// from the shared list, one that overflows gives a batch back. A future made
// on one worker and released on another so moves blocks between threads
// without either ever allocating once the pool is warm. Under ASan the pool
// is bypassed, so that use-after-free is still caught.
#if CHRONOS_ASAN

void* pool_allocate(std::size_t size) {
  return ::operator new(size);
}
void pool_deallocate(void* p, std::size_t) noexcept {
  ::operator delete(p);
}

#else

namespace {

constexpr int kClasses = 4;
constexpr std::size_t kMaxPooled = 512;
constexpr std::uint32_t kCacheMax = 128;
constexpr std::uint32_t kBatch = 32;

struct Block {
  Block* next;
};

int class_of(std::size_t size) noexcept {
  return size <= 64 ? 0 : size <= 128 ? 1 : size <= 256 ? 2 : 3;
}
std::size_t class_size(int c) noexcept {
  return std::size_t{64} << c;
}

// The shared lists: a spin lock each, taken once per batch.
struct Shared {
  std::atomic<bool> locked{false};
  Block* head = nullptr;
  void lock() noexcept {
    while (locked.exchange(true, std::memory_order_acquire))
      while (locked.load(std::memory_order_relaxed)) cpu_relax();
  }
  void unlock() noexcept { locked.store(false, std::memory_order_release); }
};
Shared g_shared[kClasses];

struct Cache {
  Block* head[kClasses] = {};
  std::uint32_t count[kClasses] = {};
  ~Cache() {  // a thread that exits hands its blocks to the others
    for (int c = 0; c < kClasses; ++c) {
      while (Block* b = head[c]) {
        head[c] = b->next;
        g_shared[c].lock();
        b->next = g_shared[c].head;
        g_shared[c].head = b;
        g_shared[c].unlock();
      }
    }
  }
};
thread_local Cache t_cache;

}  // namespace

void* pool_allocate(std::size_t size) {
  if (size > kMaxPooled) return ::operator new(size);
  const int c = class_of(size);
  Cache& cache = t_cache;
  if (!cache.head[c]) {
    Shared& s = g_shared[c];
    s.lock();
    for (std::uint32_t i = 0; i < kBatch && s.head; ++i) {
      Block* b = s.head;
      s.head = b->next;
      b->next = cache.head[c];
      cache.head[c] = b;
      ++cache.count[c];
    }
    s.unlock();
    if (!cache.head[c]) return ::operator new(class_size(c));
  }
  Block* b = cache.head[c];
  cache.head[c] = b->next;
  --cache.count[c];
  return b;
}

void pool_deallocate(void* p, std::size_t size) noexcept {
  if (size > kMaxPooled) {
    ::operator delete(p);
    return;
  }
  const int c = class_of(size);
  Cache& cache = t_cache;
  auto* b = static_cast<Block*>(p);
  b->next = cache.head[c];
  cache.head[c] = b;
  if (++cache.count[c] <= kCacheMax) return;
  // Too many here: give a batch back for other threads.
  Block* batch = nullptr;
  for (std::uint32_t i = 0; i < kBatch; ++i) {
    Block* x = cache.head[c];
    cache.head[c] = x->next;
    x->next = batch;
    batch = x;
  }
  cache.count[c] -= kBatch;
  Shared& s = g_shared[c];
  s.lock();
  while (batch) {
    Block* x = batch;
    batch = x->next;
    x->next = s.head;
    s.head = x;
  }
  s.unlock();
}

#endif  // CHRONOS_ASAN

}  // namespace chronos::detail
