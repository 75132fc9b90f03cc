// sched/inspect.cpp: fiber snapshots and the dump text (sched/inspect.hpp).
#include "sched/inspect.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>

#include "sched/backtrace.hpp"
#include "sched/registry.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/timer.hpp"

namespace chronos::detail {
namespace {

constexpr std::size_t kMaxFrames = 48;
// A bounded dump lists what the fibers it leaves out wait on in at most this
// many lines, largest group first.
constexpr std::size_t kSummaryGroups = 16;

struct Walk {
  std::vector<FiberSnapshot>* out;
  bool backtraces;
  std::int64_t now;
  // Bounded walks (snapshot_fibers' keep): `out` is a max-heap by id of at
  // most `keep` fibers, and every other fiber is only counted in `rest`.
  std::size_t keep = SIZE_MAX;
  WaitCounts* rest = nullptr;

  static bool by_id(const FiberSnapshot& a, const FiberSnapshot& b) { return a.id < b.id; }
  bool bounded() const { return keep != SIZE_MAX; }
  // Whether a fiber with this id would be kept, so is worth a stack walk.
  bool would_keep(FiberId id) const {
    return !bounded() || out->size() < keep || (!out->empty() && id < out->front().id);
  }
};

WaitKey key_of(const FiberSnapshot& s) {
  if (s.state != FiberState::kWaiting) return WaitKey{.state = s.state};
  return WaitKey{s.state, s.kind, s.reason, s.object, s.joins, s.fd, s.io_write};
}

// Sets the hold on a Waiting fiber. Returns the word it held, or 0 if the
// fiber is not (or no longer) Waiting.
std::uint64_t hold(Fiber* f) noexcept {
  std::uint64_t s = f->state.load(std::memory_order_acquire);
  while (state_word::state(s) == FiberState::kWaiting && !(s & state_word::kHeld)) {
    // acquire: pairs with the release that published Waiting (saved context,
    // stack, wait fields), and with a previous inspector's release.
    if (f->state.compare_exchange_weak(s, s | state_word::kHeld, std::memory_order_acquire,
                                       std::memory_order_acquire))
      return s;
  }
  return 0;
}

void let_go(Fiber* f, std::uint64_t held) noexcept {
  // release: our reads of the stack happen before a waker's acquire CAS
  // (claim) that follows. Only we change a held word.
  f->state.store(held, std::memory_order_release);
}

void read_wait(Fiber* f, FiberSnapshot& s, const Walk& walk) {
  s.kind = f->wait_kind;
  if (f->wait_since) s.waiting_ns = waited_ns(f->wait_since, walk.now);
  void* on = state_word::pointer(f->state.load(std::memory_order_relaxed));
  switch (s.kind) {
    case WaitKind::kSync:
      if (on) {
        auto* w = static_cast<const Waiter*>(on);
        s.reason = w->what;
        s.object = w->object;
      }
      break;
    case WaitKind::kJoin:
      if (on) s.joins = static_cast<const Fiber*>(on)->id;
      break;
    case WaitKind::kIo:
      if (on) {
        auto* site = static_cast<const IoSite*>(on);
        s.fd = site->fd;
        s.io_write = site->write;
      }
      break;
    case WaitKind::kNone:
    case WaitKind::kBlocking:
      break;
  }
}

void finish(FiberSnapshot& s, std::uint64_t word, Walk& walk) {
  s.state = state_word::state(word);
  s.priority = state_word::priority(word);
  s.small_stack = state_word::small(word);
  if (!walk.bounded()) {
    walk.out->push_back(std::move(s));
    return;
  }
  std::vector<FiberSnapshot>& heap = *walk.out;
  if (heap.size() == walk.keep) {
    if (walk.keep == 0 || s.id > heap.front().id) {
      ++(*walk.rest)[key_of(s)];
      return;
    }
    std::pop_heap(heap.begin(), heap.end(), Walk::by_id);  // the highest id makes room
    ++(*walk.rest)[key_of(heap.back())];
    heap.pop_back();
  }
  heap.push_back(std::move(s));
  std::push_heap(heap.begin(), heap.end(), Walk::by_id);
}

// A fiber that is not Waiting may become Waiting again between our load and
// the hold (a ping-pong pair parks thousands of times a second), so the hold
// is retried a few times; after that the fiber is shown as Waiting with no
// details rather than spinning on it.
constexpr int kHoldTries = 4;

void visit(Fiber* f, void* arg) {
  auto& walk = *static_cast<Walk*>(arg);
  FiberSnapshot s;
  s.tcb = f;
  std::uint64_t word = 0;
  for (int tries = 0;; ++tries) {
    word = f->state.load(std::memory_order_acquire);
    FiberState st = state_word::state(word);
    if (st == FiberState::kDone) return;  // a free TCB, or finished
    if (st != FiberState::kWaiting) break;
    if (std::uint64_t held = hold(f)) {
      s.id = f->id;
      s.name = f->name;
      read_wait(f, s, walk);
      if (walk.backtraces && walk.would_keep(s.id)) {
        s.frames.resize(kMaxFrames);
        s.frames.resize(backtrace_suspended(f->ctx, s.frames.data(), kMaxFrames));
      }
      let_go(f, held);
      return finish(s, held, walk);
    }
    if (tries == kHoldTries) break;
  }
  // Not held: the fiber may run meanwhile, so only its id and name are read
  // (racy by design, see arch::sanitizer_snapshot_reads_begin), and the
  // pointer is read as a Worker only when the word we loaded says Ready or
  // Running. While Waiting it points at what the fiber waits on.
  arch::sanitizer_snapshot_reads_begin();
  s.id = f->id;
  char name[kNameCapacity];
  std::memcpy(name, f->name, sizeof name);
  arch::sanitizer_snapshot_reads_end();
  name[kNameCapacity - 1] = '\0';
  s.name = name;
  FiberState st = state_word::state(word);
  if (st == FiberState::kReady || st == FiberState::kRunning)
    if (auto* w = static_cast<const Worker*>(state_word::pointer(word)))
      s.worker = static_cast<int>(w->index);
  finish(s, word, walk);
}

const char* reason_text(WaitReason r) {
  switch (r) {
    case WaitReason::kChannelSend:
      return "channel send";
    case WaitReason::kChannelRecv:
      return "channel recv";
    case WaitReason::kSelect:
      return "select";
    case WaitReason::kMutex:
      return "mutex";
    case WaitReason::kCondVar:
      return "condition variable";
    case WaitReason::kSemaphore:
      return "semaphore";
    case WaitReason::kWaitGroup:
      return "wait group";
    case WaitReason::kFuture:
      return "future";
    case WaitReason::kSleep:
      return "sleep";
    case WaitReason::kOther:
      break;
  }
  return "wait";
}

void appendf(std::string& out, const char* fmt, auto... args) {
  char buf[512];
  int n = std::snprintf(buf, sizeof buf, fmt, args...);
  if (n > 0) out.append(buf, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof buf - 1));
}

}  // namespace

std::vector<FiberSnapshot> snapshot_fibers(RuntimeImpl* rt, bool backtraces, std::size_t keep,
                                           WaitCounts* rest) {
  std::vector<FiberSnapshot> out;
  Walk walk{&out, backtraces, now_ns(), rest ? keep : SIZE_MAX, rest};
  rt->fibers().for_each_slot(&visit, &walk);
  if (walk.bounded()) {
    std::sort_heap(out.begin(), out.end(), Walk::by_id);
  } else {
    std::sort(out.begin(), out.end(), Walk::by_id);
  }
  return out;
}

std::string describe_wait(const WaitKey& k) {
  std::string out;
  switch (k.kind) {
    case WaitKind::kSync:
      out = reason_text(k.reason);
      if (k.object) appendf(out, " %p", k.object);
      break;
    case WaitKind::kJoin:
      appendf(out, "join fiber %" PRIu64, k.joins);
      break;
    case WaitKind::kIo:
      appendf(out, "fd %d (%s)", k.fd, k.io_write ? "write" : "read");
      break;
    case WaitKind::kBlocking:
      out = "spawn_blocking job";
      break;
    case WaitKind::kNone:
      out = "wait";
      break;
  }
  return out;
}

namespace {

// Whether a wait could end without another fiber's help (see scan_for_deadlock).
bool may_end_by_itself(WaitKind kind, WaitReason reason) {
  switch (kind) {
    case WaitKind::kIo:
    case WaitKind::kBlocking:
      return true;
    case WaitKind::kSync:
      return reason == WaitReason::kSleep;
    case WaitKind::kJoin:
    case WaitKind::kNone:
      return false;
  }
  return false;
}

// The deadlock scan's visitor: no allocation, no stack walk, and nothing left
// to do once the verdict can no longer become kAllStuck.
struct Scan {
  StuckScan verdict = StuckScan::kNoFibers;
  std::size_t stuck = 0;
};

void scan_one(Fiber* f, void* arg) {
  auto& scan = *static_cast<Scan*>(arg);
  StuckScan& verdict = scan.verdict;
  if (verdict == StuckScan::kMayWake || verdict == StuckScan::kMoving) return;
  const FiberState st = state_word::state(f->state.load(std::memory_order_acquire));
  if (st == FiberState::kDone) return;  // a free TCB, or finished
  const std::uint64_t held = st == FiberState::kWaiting ? hold(f) : 0;
  if (!held) {  // Ready or Running, or woken (or held by a dump) since the load
    verdict = StuckScan::kMoving;
    return;
  }
  WaitReason reason = WaitReason::kOther;
  if (f->wait_kind == WaitKind::kSync)
    if (auto* w = static_cast<const Waiter*>(state_word::pointer(held))) reason = w->what;
  const bool wakes = may_end_by_itself(f->wait_kind, reason);
  let_go(f, held);
  verdict = wakes ? StuckScan::kMayWake : StuckScan::kAllStuck;
  scan.stuck += !wakes;
}

}  // namespace

StuckScan scan_for_deadlock(RuntimeImpl* rt, std::size_t& stuck) {
  Scan scan;
  rt->fibers().for_each_slot(&scan_one, &scan);
  stuck = scan.stuck;
  return scan.verdict;
}

void write_runtime_dump(RuntimeImpl* rt, std::string& out, std::size_t max_fibers) {
  WaitCounts rest;
  std::vector<FiberSnapshot> fibers =
      snapshot_fibers(rt, true, max_fibers, max_fibers == SIZE_MAX ? nullptr : &rest);
  std::size_t left_out = 0;
  for (const auto& [key, n] : rest) left_out += n;
  appendf(out, "chronos: runtime %p, %u workers, %zu live fibers\n", static_cast<void*>(rt),
          rt->worker_count(), fibers.size() + left_out);
  Symbolizer sym;
  bool any_frames = false;
  for (const FiberSnapshot& s : fibers) {
    appendf(out, "\nfiber %" PRIu64, s.id);
    if (!s.name.empty()) appendf(out, " \"%s\"", s.name.c_str());
    out += " [";
    if (s.state == FiberState::kWaiting) {
      out += "waiting: " + describe_wait(key_of(s));
      appendf(out, ", %.1f ms", static_cast<double>(s.waiting_ns) / 1e6);
    } else if (s.state == FiberState::kRunning) {
      appendf(out, "running on worker %d", s.worker);
    } else if (s.worker >= 0) {
      appendf(out, "runnable, queued on worker %d", s.worker);
    } else {
      out += "runnable";
    }
    appendf(out, "] priority %u%s\n", s.priority, s.small_stack ? ", small stack" : "");
    for (std::size_t i = 0; i < s.frames.size(); ++i)
      appendf(out, "    #%-2zu %s\n", i, sym.name(s.frames[i], i > 0).c_str());
    any_frames |= !s.frames.empty();
  }
  if (!any_frames && !backtrace_init())
    appendf(out, "\n(no backtraces: %s)\n", backtrace_unavailable_why());
  if (left_out == 0) return;
  appendf(out,
          "\n... and %zu more fibers, not shown one by one (chronos::dump_fibers() shows "
          "every fiber). What they wait on, most common first:\n",
          left_out);
  std::vector<std::pair<std::size_t, const WaitKey*>> groups;
  for (const auto& [key, n] : rest) groups.emplace_back(n, &key);
  // Largest first; ties in the map's order (stable).
  std::stable_sort(groups.begin(), groups.end(),
                   [](auto& a, auto& b) { return a.first > b.first; });
  std::size_t shown = 0;
  for (std::size_t i = 0; i < groups.size() && i < kSummaryGroups; ++i) {
    const WaitKey& k = *groups[i].second;
    if (k.state == FiberState::kWaiting) {
      appendf(out, "  %zu waiting: %s\n", groups[i].first, describe_wait(k).c_str());
    } else {
      appendf(out, "  %zu %s\n", groups[i].first,
              k.state == FiberState::kRunning ? "running" : "runnable");
    }
    shown += groups[i].first;
  }
  if (groups.size() > kSummaryGroups)
    appendf(out, "  %zu in %zu other waits\n", left_out - shown, groups.size() - kSummaryGroups);
}

void write_dump(std::string& out) {
  RuntimeList& l = runtime_list();
  std::lock_guard lock(l.mu);
  if (!l.head) out += "chronos: no runtime is running\n";
  for (RuntimeImpl* rt = l.head; rt; rt = rt->next_runtime_) write_runtime_dump(rt, out);
}

}  // namespace chronos::detail
