// chronos/sync.hpp: synchronisation that parks the fiber, never the worker.
//
//   chronos::WaitGroup wg;
//   wg.add(n);
//   for (...) chronos::go([&] { work(); wg.done(); });
//   wg.wait();   // parks this fiber (or blocks a plain thread) until n done()s
#pragma once

#include <chronos/detail/wait_list.hpp>
#include <chronos/export.hpp>

#include <atomic>
#include <cstdint>

namespace chronos {

// Waits for a collection of fibers (or threads) to finish, as Go's
// sync.WaitGroup. Any number of fibers and threads may wait at once; done()
// from any thread. add() with a negative delta that takes the counter below
// zero throws std::logic_error. Not copyable or movable: waiters point into it.
class CHRONOS_API WaitGroup {
 public:
  WaitGroup() = default;
  explicit WaitGroup(std::int64_t count) : count_(count) {}
  WaitGroup(const WaitGroup&) = delete;
  WaitGroup& operator=(const WaitGroup&) = delete;

  void add(std::int64_t delta = 1);
  void done() { add(-1); }
  // Returns once the counter is zero: at once if it is. Parks a fiber, blocks
  // a plain thread.
  void wait();
  std::int64_t count() const noexcept { return count_.load(std::memory_order_acquire); }

 private:
  std::atomic<std::int64_t> count_{0};
  detail::WaitList waiters_;
};

}  // namespace chronos
