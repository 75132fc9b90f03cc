// sched/channel.cpp: the out-of-line parts of chronos/channel.hpp: parking on
// a channel, and select's loop.
#include <algorithm>
#include <cstdint>

#include "chronos/channel.hpp"
#include "sched/scheduler.hpp"

namespace chronos::detail {
namespace {

void unlock_core(void* core) {
  static_cast<const ChannelCore*>(core)->unlock();
}

// select's channels, each once, in address order: the order every select
// locks them in, so that two selects over the same channels cannot deadlock
// (a single operation only ever holds one channel's lock).
struct LockSet {
  ChannelCore* cores[64];
  std::size_t n = 0;

  void lock() noexcept {
    for (std::size_t i = 0; i < n; ++i) cores[i]->lock();
  }
  void unlock() noexcept {
    for (std::size_t i = n; i-- > 0;) cores[i]->unlock();
  }
};

void unlock_set(void* set) {
  static_cast<LockSet*>(set)->unlock();
}

// select's random case order (per thread; xorshift64*).
std::uint64_t next_random() noexcept {
  thread_local std::uint64_t s = 0x9E3779B97F4A7C15ull ^ reinterpret_cast<std::uintptr_t>(&s);
  s ^= s >> 12;
  s ^= s << 25;
  s ^= s >> 27;
  return s * 0x2545F4914F6CDD1Dull;
}

}  // namespace

WakeReason chan_park(const ChannelCore& ch, Waiter& w, std::int64_t deadline) {
  return park_on(w, deadline, &unlock_core, const_cast<ChannelCore*>(&ch));
}

void throw_channel_closed(const char* what) {
  throw ChannelClosed(what);
}

std::size_t select_impl(SelectCase* const* cases, std::size_t n, bool has_default,
                        std::int64_t deadline) {
  // A random permutation (Fisher-Yates) of the cases: among several ready
  // ones, each is equally likely to be taken.
  std::uint8_t order[64];
  for (std::size_t i = 0; i < n; ++i) order[i] = static_cast<std::uint8_t>(i);
  for (std::size_t i = n; i > 1; --i) std::swap(order[i - 1], order[next_random() % i]);

  LockSet locks;
  for (std::size_t i = 0; i < n; ++i) locks.cores[i] = cases[i]->core();
  std::sort(locks.cores, locks.cores + n);
  locks.n = static_cast<std::size_t>(std::unique(locks.cores, locks.cores + n) - locks.cores);

  locks.lock();
  for (std::size_t k = 0; k < n; ++k) {
    std::size_t i = order[k];
    int r = cases[i]->try_now();
    if (r == 0) continue;
    locks.unlock();
    if (r < 0) throw_channel_closed("chronos: select sends on a closed channel");
    cases[i]->after_try();
    return i;
  }
  if (has_default) {
    locks.unlock();
    return n;
  }

  // Nothing ready: one op per case, all sharing one Waiter, so exactly one
  // case (or the deadline, or a stop) wins.
  Waiter w;
  w.what = WaitReason::kSelect;
  ChanOp ops[64];
  for (std::size_t i = 0; i < n; ++i) {
    ops[i].waiter = &w;
    cases[i]->enqueue(ops[i]);
  }
  auto dequeue_all = [&] {
    locks.lock();  // also waits out completers that took an op and lost
    for (std::size_t i = 0; i < n; ++i) cases[i]->dequeue(ops[i]);
    locks.unlock();
  };
  WakeReason why;
  try {
    why = park_on(w, deadline, &unlock_set, &locks);
  } catch (...) {  // FiberUnwind at runtime shutdown
    dequeue_all();
    throw;
  }
  dequeue_all();
  if (why == WakeReason::kCancelled) throw_cancelled();
  if (why != WakeReason::kNotified) return n;  // the deadline
  for (std::size_t i = 0; i < n; ++i) {
    if (!ops[i].done) continue;
    if (!ops[i].ok && cases[i]->is_send())
      throw_channel_closed("chronos: select's send case: the channel was closed while it waited");
    return i;
  }
  return n;  // not reached: kNotified means some op was done
}

}  // namespace chronos::detail
