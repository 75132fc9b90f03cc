// sched/timer_wheel.cpp: the hierarchical timing wheel (sched/timer_wheel.hpp).
#include "sched/timer_wheel.hpp"

#include "fiber/backoff.hpp"

#include <bit>

namespace chronos::detail {
namespace {

// The due-list and slot lists are doubly linked through prev/next with a null
// terminator; `head` is the list's head pointer.
void push_front(Timer*& head, Timer* t) noexcept {
  t->prev = nullptr;
  t->next = head;
  if (head) head->prev = t;
  head = t;
}

// Sorts a singly linked list (through next) by deadline; stable. A
// bottom-up merge sort: no allocation, O(n log n), and no recursion, so its
// stack use does not grow with the batch. It runs on whatever stack the
// worker is on, a 2 KiB packed one included, and a batch can be thousands of
// timers that fell due together (a recursive sort took 64 bytes a level).
Timer* sort_by_deadline(Timer* list) noexcept {
  if (!list || !list->next) return list;  // the usual batch: one timer
  for (std::size_t width = 1;; width *= 2) {
    Timer* head = nullptr;
    Timer** tail = &head;
    std::size_t runs = 0;
    for (Timer* p = list; p;) {  // merge each pair of runs of `width`
      ++runs;
      Timer* q = p;
      std::size_t np = 0, nq = width;
      for (; np < width && q; ++np) q = q->next;
      while (np > 0 || (nq > 0 && q)) {
        Timer* e;
        // From the first run unless the second's head is strictly earlier:
        // equal deadlines keep their order.
        if (np > 0 && (nq == 0 || !q || !(q->deadline < p->deadline))) {
          e = p;
          p = p->next;
          --np;
        } else {
          e = q;
          q = q->next;
          --nq;
        }
        *tail = e;
        tail = &e->next;
      }
      p = q;
    }
    *tail = nullptr;
    list = head;
    if (runs <= 1) break;
  }
  return list;
}

constexpr std::uint8_t kDueList = 0xFF;  // Timer::level of a timer on the due list
constexpr std::uint64_t kTopSpan = std::uint64_t{1}
                                   << (TimerWheel::kSlotBits * (TimerWheel::kLevels - 1));

}  // namespace

TimerWheel::TimerWheel(std::int64_t origin_ns) noexcept : origin_(origin_ns) {}

void TimerWheel::lock() noexcept {
  for (;;) {
    if (try_lock()) return;
    while (locked_.load(std::memory_order_relaxed)) cpu_relax();
  }
}

std::uint64_t TimerWheel::tick_of(std::int64_t deadline) const noexcept {
  if (deadline <= origin_) return 0;
  // Round up: a timer never fires before its deadline.
  std::uint64_t d = static_cast<std::uint64_t>(deadline - origin_);
  return (d + kTickNs - 1) / kTickNs;
}

void TimerWheel::file(Timer* t) noexcept {
  std::uint64_t tick = tick_of(t->deadline);
  if (tick <= elapsed_) {
    t->level = kDueList;
    push_front(due_, t);
    return;
  }
  // Beyond the top level's reach: file at most 62 top-level slots ahead, so
  // that the slot is never the current one (re-filed when it comes round).
  std::uint64_t farthest = elapsed_ + 62 * kTopSpan;
  if (tick > farthest) tick = farthest;
  std::uint64_t differ = (elapsed_ ^ tick) | (kSlots - 1);
  int level = (63 - std::countl_zero(differ)) / kSlotBits;
  if (level >= kLevels) level = kLevels - 1;
  int slot = static_cast<int>((tick >> (level * kSlotBits)) & (kSlots - 1));
  t->level = static_cast<std::uint8_t>(level);
  t->slot = static_cast<std::uint8_t>(slot);
  push_front(slots_[level][slot], t);
  occupied_[level] |= std::uint64_t{1} << slot;
}

void TimerWheel::unlink(Timer* t) noexcept {
  if (t->next) t->next->prev = t->prev;
  if (t->prev) {
    t->prev->next = t->next;
    return;
  }
  // t heads its list: the due list or the slot it was filed in.
  if (t->level == kDueList) {
    due_ = t->next;
    return;
  }
  slots_[t->level][t->slot] = t->next;
  if (!t->next) occupied_[t->level] &= ~(std::uint64_t{1} << t->slot);
}

bool TimerWheel::next_expiry(Expiry& out) const noexcept {
  bool found = false;
  for (int level = 0; level < kLevels; ++level) {
    std::uint64_t mask = occupied_[level];
    if (!mask) continue;
    const int shift = level * kSlotBits;
    const int now_slot = static_cast<int>((elapsed_ >> shift) & (kSlots - 1));
    const int ahead = std::countr_zero(std::rotr(mask, now_slot));
    const int slot = (now_slot + ahead) & (kSlots - 1);
    std::uint64_t tick;
    if (ahead == 0) {
      tick = elapsed_;  // the slot we are in (levels above 0): cascade it now
    } else {
      const std::uint64_t span = std::uint64_t{1} << shift;
      const std::uint64_t level_start = elapsed_ & ~((span << kSlotBits) - 1);
      tick = level_start + static_cast<std::uint64_t>(slot) * span;
      if (slot < now_slot) tick += span << kSlotBits;  // wrapped (a far timer at the top)
    }
    if (!found || tick < out.tick) out = Expiry{level, slot, tick};
    found = true;
  }
  return found;
}

void TimerWheel::publish_next_due() noexcept {
  std::int64_t next = kNoDeadline;
  Expiry e;
  if (due_) {
    next = origin_;
  } else if (next_expiry(e)) {
    next = origin_ + static_cast<std::int64_t>(e.tick) * kTickNs;
  }
  next_due_.store(next, std::memory_order_relaxed);
}

void TimerWheel::arm(Timer* t) noexcept {
  lock();
  t->wheel = this;
  // relaxed: the lock orders this with cancel() and poll().
  t->state.store(Timer::kArmed, std::memory_order_relaxed);
  file(t);
  armed_.store(armed_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  if (t->deadline < next_due_.load(std::memory_order_relaxed)) publish_next_due();
  unlock();
}

bool TimerWheel::cancel(Timer* t) noexcept {
  lock();
  if (t->state.load(std::memory_order_relaxed) != Timer::kArmed) {
    unlock();
    return false;
  }
  unlink(t);
  t->state.store(Timer::kIdle, std::memory_order_relaxed);
  std::size_t left = armed_.load(std::memory_order_relaxed) - 1;
  armed_.store(left, std::memory_order_relaxed);
  // An earlier-than-needed next_due() only costs a sleeper an early look; an
  // empty wheel must say so, though (shutdown and sleepers rely on it).
  if (left == 0) next_due_.store(kNoDeadline, std::memory_order_relaxed);
  unlock();
  return true;
}

std::size_t TimerWheel::poll(std::int64_t now) noexcept {
  lock();
  return poll_locked(now);
}

std::size_t TimerWheel::try_poll(std::int64_t now) noexcept {
  if (!try_lock()) return 0;
  return poll_locked(now);
}

std::size_t TimerWheel::poll_locked(std::int64_t now) noexcept {
  Timer* fire = due_;  // singly linked through next from here on
  due_ = nullptr;
  const std::uint64_t now_tick =
      now <= origin_ ? 0 : static_cast<std::uint64_t>(now - origin_) / kTickNs;
  Expiry e;
  while (next_expiry(e) && e.tick <= now_tick) {
    if (e.tick > elapsed_) elapsed_ = e.tick;
    Timer* list = slots_[e.level][e.slot];
    slots_[e.level][e.slot] = nullptr;
    occupied_[e.level] &= ~(std::uint64_t{1} << e.slot);
    while (list) {
      Timer* t = list;
      list = t->next;
      if (tick_of(t->deadline) <= elapsed_) {
        t->next = fire;
        fire = t;
      } else {
        file(t);  // one level down, or a far timer back at the top
      }
    }
  }
  if (now_tick > elapsed_) elapsed_ = now_tick;
  std::size_t n = 0;
  for (Timer* t = fire; t; t = t->next) {
    // relaxed: the lock orders it with cancel(), which then waits for kIdle.
    t->state.store(Timer::kFiring, std::memory_order_relaxed);
    ++n;
  }
  armed_.store(armed_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  publish_next_due();
  unlock();
  fire = sort_by_deadline(fire);
  while (fire) {
    Timer* t = fire;
    fire = t->next;  // read before fire(): t may be gone afterwards
    t->fire(t);
  }
  return n;
}

}  // namespace chronos::detail
