// reactor/descriptor.hpp: the per-fd record the reactor and parked fibers
// share, and the pool that keeps it in stable memory.
//
// A Descriptor belongs to one open socket (TcpStream, TcpListener, UdpSocket)
// from open until the owning object is destroyed. It holds two wait slots,
// the reader's and the writer's (reactor/io_wait.hpp has their state machine),
// the fd, and a reference count that defers the real close(2) until no
// operation is using the fd any more.
//
// Invariants
// ----------
// * Descriptors are never freed while their Reactor lives. The pool hands them
//   out from chunks that stay mapped; a released descriptor goes on a free
//   list. So a late epoll event, a timer firing late, or a fiber woken by a
//   close never touches freed memory.
// * epoll's data word is (generation << 32 | index). Every reuse bumps the
//   generation, and the poller drops events whose generation is stale: an
//   event of a closed socket never reaches the socket that reuses its slot.
// * The fd is registered with epoll exactly once, edge-triggered, for
//   EPOLLIN | EPOLLOUT | EPOLLRDHUP, when the socket is opened; close(2)
//   removes it from the epoll set (chronos never dups these fds).
// * refs: bit 31 "closed" (close() has begun), bit 30 "released" (the owning
//   object is gone), bit 29 "fd closed", bit 28 "recycled", bits 0..27 the
//   operations in flight. Once closed with no operation in flight, exactly one
//   thread (the one whose CAS sets "fd closed") closes the fd; once also
//   released, exactly one (the one whose CAS sets "recycled") returns the
//   descriptor to the pool. So an operation never issues a system call on an
//   fd number after close() has begun, and a descriptor is never recycled
//   while an operation still uses it, even when close() or the owner's
//   destructor races an operation on another fiber.
//
// Short reads
// -----------
// A stream read that returns fewer bytes than it asked for emptied the
// socket's receive queue at that moment, and edge-triggered epoll reports
// every arrival after it. So TcpStream::read notes it (rx_drained), and its
// next call waits on the reader slot straight away instead of first making a
// recv(2) that would only say EAGAIN (Tokio does the same): one system call
// less per request in a request/response exchange. The wait returns at once
// when readiness is already pending.
//
// The exception is a hang-up (FIN, RST, a socket error): its one edge may
// have been folded into readiness the reader consumed before its short read,
// and nothing more will ever arrive. The poller marks `hung_up`, fences, and
// only then looks at the slot; the reader fences after its short read and
// then reads `hung_up`, and skips the recv only if it is clear. This is the
// store-buffering pattern with seq_cst fences on both sides: either the
// poller sees the reader's consume of the slot (it stores kReady again, so
// the wait returns at once), or the reader sees `hung_up` (and calls recv,
// which reports the end or the error). A stale hang-up, e.g. the EPOLLHUP of
// a socket not yet connected, only turns the skip off.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "fiber/adaptive_mutex.hpp"

namespace chronos::detail {

class Reactor;
class DescriptorPool;

struct alignas(64) Descriptor {
  // The wait slots, [0] reader and [1] writer (reactor/io_wait.hpp).
  std::atomic<std::uintptr_t> slot[2] = {0, 0};
  std::atomic<std::uint32_t> gen{0};  // bumped on every reuse
  std::atomic<std::uint32_t> refs{0};
  // Fixed from open to recycling. Atomic (relaxed) only because a settle()
  // that loses its race may read it while the winner recycles.
  std::atomic<int> fd{-1};
  std::uint32_t index = 0;  // position in the pool, for epoll's data word
  Reactor* reactor = nullptr;
  DescriptorPool* pool = nullptr;
  Descriptor* next_free = nullptr;  // the pool's free list (pool lock held)
  // Short reads (above). hung_up: the poller saw EPOLLRDHUP, EPOLLHUP or
  // EPOLLERR; sticky until reuse. rx_drained: the last read was short; only
  // the socket's reader touches it (atomic so that misuse stays defined).
  std::atomic<std::uint8_t> hung_up{0};
  std::atomic<std::uint8_t> rx_drained{0};

  static constexpr std::uint32_t kClosed = 1u << 31;
  static constexpr std::uint32_t kReleased = 1u << 30;
  static constexpr std::uint32_t kFdClosed = 1u << 29;
  static constexpr std::uint32_t kRecycled = 1u << 28;
  static constexpr std::uint32_t kOpsMask = kRecycled - 1;

  int fileno() const noexcept { return fd.load(std::memory_order_relaxed); }

  // The poller's half of "Short reads": before it hands the event to the
  // slots.
  void mark_hung_up() noexcept {
    hung_up.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  // The reader's half: may the next read wait without trying recv first?
  bool read_may_skip() const noexcept {
    if (rx_drained.load(std::memory_order_relaxed) == 0) return false;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return hung_up.load(std::memory_order_relaxed) == 0;
  }

  std::uint64_t token() const noexcept {
    return static_cast<std::uint64_t>(gen.load(std::memory_order_relaxed)) << 32 | index;
  }

  // An operation starts: false if the descriptor is closed (the caller fails
  // with EBADF; the reference it took is already dropped).
  bool op_begin() noexcept;
  // An operation ends; closes the fd if it was the last user after close().
  void op_end() noexcept;
  // Marks the descriptor closed, wakes every fiber parked on it with EBADF,
  // and closes the fd now or when the last operation in flight ends.
  // Idempotent.
  void close() noexcept;
  // The owning object is gone: close(), and recycle the descriptor once no
  // operation uses it any more.
  void release() noexcept;

 private:
  void close_bits(std::uint32_t bits) noexcept;
  // Closes the fd and recycles the descriptor when their time has come.
  void settle(std::uint32_t v) noexcept;
};

static_assert(sizeof(Descriptor) == 64, "a descriptor is one cache line");

// Scoped op_begin/op_end: get() is the descriptor held, or null if the
// socket was closed (or never opened).
class OpGuard {
 public:
  explicit OpGuard(Descriptor* d) noexcept : d_(d && d->op_begin() ? d : nullptr) {}
  ~OpGuard() {
    if (d_) d_->op_end();
  }
  OpGuard(const OpGuard&) = delete;
  OpGuard& operator=(const OpGuard&) = delete;
  Descriptor* get() const noexcept { return d_; }

 private:
  Descriptor* d_;
};

// Stable storage for descriptors: chunks of kChunk, never freed before the
// pool. acquire/release take a mutex: they run once per socket, not per wait.
// lookup is lock-free (the poller's path).
class DescriptorPool {
 public:
  static constexpr std::uint32_t kChunk = 256;
  static constexpr std::uint32_t kMaxChunks = 8192;  // 2M descriptors

  explicit DescriptorPool(Reactor* r);
  ~DescriptorPool();
  DescriptorPool(const DescriptorPool&) = delete;
  DescriptorPool& operator=(const DescriptorPool&) = delete;

  // A fresh descriptor for fd: both slots empty, no flags, a new generation. Throws
  // std::system_error(EMFILE) past kMaxChunks * kChunk.
  Descriptor* acquire(int fd);
  // Back to the free list (Descriptor::settle, or a failed open). The fd must
  // be closed already, and nobody may use d any more.
  void recycle(Descriptor* d) noexcept;
  // The descriptor an epoll token names, or null if the token is stale.
  Descriptor* lookup(std::uint64_t token) const noexcept;

 private:
  Reactor* const reactor_;
  AdaptiveMutex mu_;
  Descriptor* free_ = nullptr;
  std::uint32_t used_chunks_ = 0;  // under mu_
  // Published with release once filled; read by lookup with acquire.
  std::unique_ptr<std::atomic<Descriptor*>[]> chunks_;
};

}  // namespace chronos::detail
