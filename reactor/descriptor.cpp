// reactor/descriptor.cpp: the descriptor's close protocol and its pool
// (reactor/descriptor.hpp states the invariants).
#include "reactor/descriptor.hpp"

#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "reactor/io_wait.hpp"
#include "sched/worker.hpp"

namespace chronos::detail {

bool Descriptor::op_begin() noexcept {
  // acquire: pairs with close()'s release, so an operation that starts after
  // the close sees the closed bit (and never issues a system call on the fd).
  std::uint32_t v = refs.fetch_add(1, std::memory_order_acquire);
  if (v & kClosed) {
    op_end();
    return false;
  }
  return true;
}

void Descriptor::op_end() noexcept {
  // acq_rel: release orders this operation's use of the fd before the close
  // by whoever settles; acquire lets us settle after everyone else's release.
  std::uint32_t v = refs.fetch_sub(1, std::memory_order_acq_rel) - 1;
  if (v & kClosed) [[unlikely]]
    settle(v);
}

void Descriptor::close() noexcept {
  close_bits(kClosed);
}

void Descriptor::release() noexcept {
  close_bits(kClosed | kReleased);
}

void Descriptor::close_bits(std::uint32_t bits) noexcept {
  // acq_rel: release publishes the closed bit to op_begin's acquire; acquire
  // sees the operations that ended before.
  std::uint32_t v = refs.fetch_or(bits, std::memory_order_acq_rel);
  if (!(v & kClosed)) {
    Worker* w = current_worker();
    notify_closed(w, this, kRead);
    notify_closed(w, this, kWrite);
  }
  settle(v | bits);
}

void Descriptor::settle(std::uint32_t v) noexcept {
  for (;;) {
    if ((v & kOpsMask) != 0 || !(v & kClosed)) return;
    // Read before the CAS: once "fd closed" is set, a racing settle may
    // recycle the descriptor and a new owner may store another fd here.
    const int f = fileno();
    std::uint32_t next;
    if (!(v & kFdClosed)) {
      next = v | kFdClosed;
    } else if ((v & kReleased) && !(v & kRecycled)) {
      next = v | kRecycled;
    } else {
      return;
    }
    // acq_rel: the winner closes or recycles after every user's release, and
    // its close happens before any later settle's recycle.
    if (!refs.compare_exchange_weak(v, next, std::memory_order_acq_rel, std::memory_order_acquire))
      continue;
    if (next & ~v & kFdClosed) {
      // Once: Linux releases the fd even when close() fails with EINTR, and a
      // retry could close a number that has been reused meanwhile.
      ::close(f);
    } else {
      pool->recycle(this);
      return;
    }
    v = next;
  }
}

DescriptorPool::DescriptorPool(Reactor* r)
    : reactor_(r), chunks_(new std::atomic<Descriptor*>[kMaxChunks]) {
  for (std::uint32_t i = 0; i < kMaxChunks; ++i)
    chunks_[i].store(nullptr, std::memory_order_relaxed);
}

DescriptorPool::~DescriptorPool() {
  for (std::uint32_t i = 0; i < used_chunks_; ++i)
    delete[] chunks_[i].load(std::memory_order_relaxed);
}

Descriptor* DescriptorPool::acquire(int fd) {
  std::lock_guard lock(mu_);
  if (!free_) {
    if (used_chunks_ == kMaxChunks)
      throw std::system_error(EMFILE, std::system_category(), "chronos: reactor descriptors");
    auto* chunk = new Descriptor[kChunk];
    for (std::uint32_t i = kChunk; i-- > 0;) {
      chunk[i].index = used_chunks_ * kChunk + i;
      chunk[i].reactor = reactor_;
      chunk[i].pool = this;
      chunk[i].next_free = free_;
      free_ = &chunk[i];
    }
    // release: lookup() (acquire) sees the chunk's fields initialised.
    chunks_[used_chunks_].store(chunk, std::memory_order_release);
    ++used_chunks_;
  }
  Descriptor* d = free_;
  free_ = d->next_free;
  d->next_free = nullptr;
  d->fd.store(fd, std::memory_order_relaxed);
  // relaxed: nobody waits on a free descriptor, and the stale events that
  // may still find it are told apart by the generation below.
  d->slot[kRead].store(slot::kNone, std::memory_order_relaxed);
  d->slot[kWrite].store(slot::kNone, std::memory_order_relaxed);
  d->hung_up.store(0, std::memory_order_relaxed);
  d->rx_drained.store(0, std::memory_order_relaxed);
  d->refs.store(0, std::memory_order_relaxed);
  // release: a poller that reads the new generation (acquire) sees the reset
  // slots. The epoll_ctl that registers fd comes after, and its events carry
  // this generation.
  d->gen.store(d->gen.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  return d;
}

void DescriptorPool::recycle(Descriptor* d) noexcept {
  std::lock_guard lock(mu_);
  // relaxed: stale tokens stop matching at once; the next acquire bumps again.
  d->gen.store(d->gen.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  d->fd.store(-1, std::memory_order_relaxed);
  d->next_free = free_;
  free_ = d;
}

Descriptor* DescriptorPool::lookup(std::uint64_t token) const noexcept {
  const auto index = static_cast<std::uint32_t>(token);
  const auto gen = static_cast<std::uint32_t>(token >> 32);
  if (index / kChunk >= kMaxChunks) return nullptr;
  // acquire: pairs with acquire()'s release of the chunk pointer.
  Descriptor* chunk = chunks_[index / kChunk].load(std::memory_order_acquire);
  if (!chunk) return nullptr;
  Descriptor* d = &chunk[index % kChunk];
  // acquire: pairs with acquire()'s release of the generation (reset slots).
  return d->gen.load(std::memory_order_acquire) == gen ? d : nullptr;
}

}  // namespace chronos::detail
