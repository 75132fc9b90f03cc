// sched/runtime.cpp: starting, feeding, idling and stopping the runtime.
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <typeinfo>

#include "arch/sanitizer.hpp"
#include "fiber/backoff.hpp"
#include "fiber/futex.hpp"
#include "fiber/overflow.hpp"
#include "sched/backtrace.hpp"
#include "sched/monitor.hpp"
#include "sched/registry.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/scheduler.hpp"
#include "sched/trace.hpp"

namespace chronos::detail {
namespace {

constexpr std::size_t kInjectCapacity = std::size_t{1} << 16;

Fiber* running_fiber() noexcept {
  Worker* w = current_worker();
  return (w && w->current != &w->main) ? w->current : nullptr;
}

std::vector<int> cpus_available() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int i = 0; i < CPU_SETSIZE; ++i)
      if (CPU_ISSET(i, &set)) cpus.push_back(i);
  }
  return cpus;
}

std::size_t round_up_pow2(std::size_t n) {
  std::size_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

Config normalize(Config c) {
  if (c.workers == 0)
    c.workers = static_cast<unsigned>(std::max<std::size_t>(1, cpus_available().size()));
  if (c.run_queue_capacity < 16 || c.run_queue_capacity > (1u << 24))
    throw std::invalid_argument("chronos: Config::run_queue_capacity must be 16 to 2^24");
  c.run_queue_capacity = round_up_pow2(c.run_queue_capacity);
  if (c.workers > 4096)
    throw std::invalid_argument("chronos: Config::workers must be at most 4096");
  if (c.stack_size < 16 * 1024)
    throw std::invalid_argument("chronos: Config::stack_size must be at least 16 KiB");
  // Small stacks of 8 KiB and up are whole pages; below a page they are
  // packed several to a page, which needs a size that divides it.
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const bool packed = c.small_stack_size >= StackPool::kMinPackedSlot &&
                      c.small_stack_size <= page / 2 && std::has_single_bit(c.small_stack_size);
  if (c.small_stack_size < 8 * 1024 && !packed)
    throw std::invalid_argument(
        "chronos: Config::small_stack_size must be at least 8 KiB, or a power of two from 2 KiB "
        "to half a page (" +
        std::to_string(page / 2) + " bytes here) for packed small stacks");
#if CHRONOS_ASAN || CHRONOS_TSAN
  // A sanitizer's frames are several times larger (redzones, its runtime's
  // calls on the fiber's stack), and a packed 2 KiB stack overflows in the
  // scheduler's own paths: packed sizes get four times the room (so they
  // are no longer packed), as Go's race build gets a larger stack guard.
  if (packed) c.small_stack_size *= 4;
#endif
  apply_environment(c);
  return c;
}

// How the trace shows a park's reason (TraceKind::kPark's arg is a WaitReason).
const char* trace_reason_name(std::uint64_t arg) {
  static constexpr const char* kNames[] = {
      "wait",      "channel send", "channel recv", "select", "mutex", "condition variable",
      "semaphore", "wait group",   "future",       "sleep",  "join",  "spawn_blocking"};
  return arg < std::size(kNames) ? kNames[arg] : "wait";
}

std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return std::string(typeid(ex).name()) + ": " + ex.what();
  } catch (...) {
    return "an exception not derived from std::exception";
  }
}

}  // namespace

RuntimeImpl::RuntimeImpl(Config cfg)
    : cfg_(normalize(std::move(cfg))),
      born_in_((watch_forks(), fork_generation())),
      fibers_(this),
      normal_pool_(cfg_.stack_size, false),
      small_pool_(cfg_.small_stack_size, true),
      inject_(kInjectCapacity),
      cpus_(cpus_available()) {
  // Loaded now (once per process), so that a crash report's handler can walk
  // the stack: a handler cannot load a library. Without libunwind, the
  // handler gets no walker and its report says that libunwind is missing.
  install_overflow_handler(&running_fiber, backtrace_init() ? &backtrace_signal : nullptr);
  // Before any worker runs a fiber: a handler that runs on a fiber's stack
  // can overrun it (fiber/overflow.hpp).
  move_handlers_to_alt_stack();
  set_coarse_now(now_ns());
  for (unsigned i = 0; i < cfg_.workers; ++i)
    workers_.push_back(std::make_unique<Worker>(this, i, cfg_.run_queue_capacity));
  if (!cfg_.trace_path.empty()) {
    tracer_ = std::make_unique<Tracer>(cfg_.trace_path, cfg_.workers);
    tracer_->set_reason_names(&trace_reason_name);
    for (auto& w : workers_) w->trace = tracer_->worker(w->index);
  }
  try {
    for (auto& w : workers_) threads_.emplace_back([w = w.get()] { w->run(); });
    monitor_ = std::make_unique<Monitor>(this);
    register_runtime(this);
  } catch (...) {
    shutdown();
    uninstall_overflow_handler();
    throw;
  }
}

RuntimeImpl::~RuntimeImpl() {
  shutdown();
  unregister_runtime(this);
  uninstall_overflow_handler();
}

void RuntimeImpl::check_not_forked(const char* what) const {
  if (forked_away()) [[unlikely]]
    throw std::logic_error(std::string("chronos: ") + what +
                           " in a process forked from the one that started this runtime: "
                           "none of its threads exist here (start a new Runtime in the child, "
                           "or fork before starting one)");
}

Fiber* RuntimeImpl::spawn_external(const SpawnOptions& opts, const PayloadOps* ops, void* src) {
  check_not_forked("Runtime::spawn()");
  if (opts.priority > 15)
    throw std::invalid_argument("chronos: SpawnOptions::priority must be 0-15, got " +
                                std::to_string(opts.priority));
  // Count the fiber before checking, so that shutdown() either sees it in
  // live() or we see !accepting_ (seq_cst on both sides: a store-load pair).
  external_spawned_.fetch_add(1, std::memory_order_seq_cst);
  if (!accepting_.load(std::memory_order_seq_cst)) {
    external_spawned_.fetch_sub(1, std::memory_order_relaxed);
    throw std::logic_error("chronos: Runtime::spawn() after Runtime::shutdown() has begun");
  }
  Fiber* f = nullptr;
  Stack* eager = nullptr;
  try {
    fibers_.take(&f, 1);
    if (binds_at_spawn(opts, ops)) pool(opts.small_stack).take(&eager, 1);
    init_fiber(f, opts, ops, src, take_id_block(1), eager, &fiber_main);
  } catch (...) {
    if (eager) eager->pool->give(&eager, 1);
    if (f) fibers_.give(&f, 1);
    external_spawned_.fetch_sub(1, std::memory_order_relaxed);
    throw;
  }
  if (tracer_) [[unlikely]] {
    Worker* w = current_worker();
    if (w && w->rt == this) {
      w->trace->record(TraceKind::kSpawn, f->id, opts.priority);
    } else {
      tracer_->record_foreign(TraceKind::kSpawn, f->id, opts.priority);
    }
  }
  inject(f);
  return f;
}

void RuntimeImpl::inject(Fiber* f) noexcept {
  // Back-pressure: a full ring (65,536 fibers waiting to be picked up) makes
  // the producer wait for the workers instead of dropping or failing. A
  // worker never comes here for its own overflow (inject_batch).
  while (!inject_.push(f)) std::this_thread::yield();
  wake_one();
}

void RuntimeImpl::inject_batch(Fiber* const* fs, std::size_t n) noexcept {
  if (n == 0) return;
  inject_.push_batch(fs, n);
  wake_one();
}

std::size_t RuntimeImpl::inject_pop(Fiber** out, std::size_t max) noexcept {
  return inject_.pop_batch(out, max);
}

void RuntimeImpl::wake_one() noexcept {
  // The waker's half of the wake-up rule (scheduler.hpp): push, fence, check.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_relaxed) == 0) return;
  if (workers_.size() < 2) {  // no spinning slots (see notify_work)
    wake_epoch_.fetch_add(1, std::memory_order_release);
    wake_sleeper();
    return;
  }
  // Then notify_work's rule. Before it, a plain thread closing a channel
  // that a million fibers waited on made a futex call for nearly every one:
  // the workers drained the queue faster than it filled and kept going back
  // to sleep, and the join took 2-4 s instead of half a second.
  wake_spinner();
}

void RuntimeImpl::wake_spinner() noexcept {
  // Claim the spinning slot for the worker we wake, so that a burst wakes
  // one worker, not one per fiber; it passes the work on when it finds some
  // (spin_for_work), which wakes as many as there is work for. If the slot
  // is taken, someone spins, or was woken and counts as spinning until it
  // finds work: it will see this fiber, since a spinner re-checks every
  // queue after it announces itself as a sleeper and fences (idle_wait).
  std::uint32_t idle_spinners = 0;
  if (!spinning_.compare_exchange_strong(idle_spinners, 1, std::memory_order_acq_rel,
                                         std::memory_order_relaxed))
    return;
  spin_token_.store(true, std::memory_order_release);
  wake_epoch_.fetch_add(1, std::memory_order_release);
  wake_sleeper();
}

void RuntimeImpl::wake_sleeper() noexcept {
  if (futex_wake(&wake_epoch_, 1) > 0) return;
  // Nobody on the futex: the sleeper may be the one blocked in the poller.
  // seq_cst: the poller sets the flag, fences, then re-checks the queues.
  if (poller_blocked_.load(std::memory_order_seq_cst)) poller()->interrupt();
}

void RuntimeImpl::notify_work() noexcept {
  // Cheap when it matters: one relaxed load while every worker is busy. No
  // fence here (as in Go): a worker going to sleep at this very moment may
  // miss this fiber, which then waits for its own worker, never forever.
  if (sleepers_.load(std::memory_order_relaxed) == 0) return;
  // One worker: the only "sleeper" is this worker, readying fibers from
  // inside idle_wait's poll, and spin_for_work never takes a token with
  // fewer than two workers, so a token set here would stay set and keep
  // idle_wait from ever sleeping (shutdown would wait forever).
  if (workers_.size() < 2) return;
  wake_spinner();
}

bool RuntimeImpl::take_handed_spin() noexcept {
  // A plain load first: no RMW on the way back from most sleeps.
  return spin_token_.load(std::memory_order_relaxed) &&
         spin_token_.exchange(false, std::memory_order_acq_rel);
}

void RuntimeImpl::stop_spinning(bool found) noexcept {
  std::uint32_t left = spinning_.fetch_sub(1, std::memory_order_acq_rel) - 1;
  // The last spinner found work: there may be more, so wake another to look
  // (Go's resetspinning). A spinner that found none just goes idle.
  if (found && left == 0) notify_work();
}

Fiber* RuntimeImpl::spin_for_work(Worker* w, bool handed) {
  if (workers_.size() < 2) return nullptr;  // nobody to steal from
  // Take the slot notify_work() reserved for us, or one of kMaxSpinners.
  if (!handed && !spin_token_.exchange(false, std::memory_order_acq_rel)) {
    // relaxed: a stale count only lets one more spin, or one fewer.
    const std::uint32_t cap = max_spinners(static_cast<std::uint32_t>(workers_.size()),
                                           sleepers_.load(std::memory_order_relaxed));
    std::uint32_t s = spinning_.load(std::memory_order_relaxed);
    do {
      if (s >= cap) return nullptr;
    } while (!spinning_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel,
                                              std::memory_order_relaxed));
  }
  Fiber* f = nullptr;
  for (int round = 0; round < kSpinRounds && !f && !exiting(); ++round) {
    f = w->pop_runnable();
    if (!f)
      for (int k = 0; k < 16; ++k) cpu_relax();
  }
  stop_spinning(f != nullptr);
  return f;
}

void RuntimeImpl::pin(unsigned index) noexcept {
  if (!cfg_.pin_workers || cpus_.empty()) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpus_[index % cpus_.size()], &set);
  ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set);  // best effort
}

bool RuntimeImpl::any_work_visible() const noexcept {
  if (!inject_.empty() || spin_token_.load(std::memory_order_relaxed)) return true;
  for (auto& w : workers_)
    if (!w->deques_empty()) return true;
  return false;
}

bool RuntimeImpl::all_asleep() const noexcept {
  return sleepers_.load(std::memory_order_seq_cst) == workers_.size() && !any_work_visible();
}

std::uint64_t RuntimeImpl::activity() const noexcept {
  std::uint64_t n = 0;
  for (auto& w : workers_) n += w->fibers_run.get() + w->wakeups.get();
  return n;
}

void RuntimeImpl::idle_wait(Worker* w) {
  std::uint32_t epoch = wake_epoch_.load(std::memory_order_relaxed);
  // seq_cst RMW: also releases this worker's counters to shutdown(), which
  // reads them after seeing every worker asleep.
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  // At most one worker blocks in the poller; the others sleep on the futex.
  Poller* p = poller();
  const bool polling = p && !poll_busy_.exchange(true, std::memory_order_acquire);
  if (polling) poller_blocked_.store(true, std::memory_order_relaxed);
  // The sleeper's half of the wake-up rule: announce, fence, re-check every
  // queue a fiber could be waiting in.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  auto stop_polling = [&] {
    if (!polling) return;
    poller_blocked_.store(false, std::memory_order_relaxed);
    poll_busy_.store(false, std::memory_order_release);
  };
  if (exiting() || w->has_local_work() || any_work_visible()) {
    stop_polling();
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  if (!accepting_.load(std::memory_order_relaxed)) {
    quiet_epoch_.fetch_add(1, std::memory_order_release);  // shutdown() re-checks
    futex_wake(&quiet_epoch_, INT_MAX);
  }
  w->parks.bump();
  if (w->trace) [[unlikely]]
    w->trace->record(TraceKind::kWorkerPark, 0, 0);
  // Sleep until the earliest timer on any wheel is due (idle workers fire
  // busy workers' timers too, in run_due_timers_and_io).
  const std::int64_t deadline = earliest_timer();
  const std::int64_t now = deadline == kNoDeadline ? 0 : now_ns();
  const std::int64_t left =
      deadline == kNoDeadline ? -1 : std::max<std::int64_t>(deadline - now, 0);
  const std::size_t keep = cfg_.max_cached_stacks;
  bool more_than_one = false;  // the poll readied more than this worker can run at once
  if (polling) {
    last_io_poll_.store(now, std::memory_order_relaxed);
    w->polling_idle = true;
    more_than_one = p->poll(w, left) > 1;
    w->polling_idle = false;
    stop_polling();
  } else if (left >= 0) {
    futex_wait_for(&wake_epoch_, epoch, timespec{left / 1'000'000'000, left % 1'000'000'000});
  } else if (normal_pool_.trim_due(keep) || small_pool_.trim_due(keep)) {
    // A past burst left more free stacks than Config::max_cached_stacks: give
    // the excess back, but only once the runtime has stayed idle for a
    // second, so that a brief lull between two bursts does not cost the next
    // one its warm stacks.
    if (futex_wait_for(&wake_epoch_, epoch, timespec{1, 0}) && !exiting() &&
        wake_epoch_.load(std::memory_order_relaxed) == epoch) {
      normal_pool_.trim(keep);
      small_pool_.trim(keep);
      futex_wait(&wake_epoch_, epoch);
    }
  } else {
    futex_wait(&wake_epoch_, epoch);
  }
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
  w->wakeups.bump();
  if (w->trace) [[unlikely]]
    w->trace->record(TraceKind::kWorkerUnpark, 0, 0);
  set_coarse_now(now_ns());          // the monitor may have slept through the idle spell
  if (more_than_one) notify_work();  // a sleeping worker may take some
}

bool RuntimeImpl::run_due_timers_and_io(Worker* w) {
  std::int64_t now = now_ns();
  std::size_t n = 0;
  if (w->timers.next_due() <= now) n += w->fire_timers(w->timers, now, false);
  for (auto& other : workers_)  // a busy worker's due timers, on its behalf
    if (other.get() != w && other->timers.next_due() <= now)
      n += w->fire_timers(other->timers, now, true);
  n += static_cast<std::size_t>(poll_io(w, now));
  return n > 0;
}

int RuntimeImpl::poll_io(Worker* w, std::int64_t now) {
  Poller* p = poller();
  if (!p) return 0;
  if (now - last_io_poll_.load(std::memory_order_relaxed) < kIoPollIntervalNs) return 0;
  if (poll_busy_.exchange(true, std::memory_order_acquire)) return 0;  // someone polls
  last_io_poll_.store(now, std::memory_order_relaxed);
  int n = p->poll(w, 0);
  poll_busy_.store(false,
                   std::memory_order_release);  // release: pairs with the next poller's acquire
  return n;
}

std::size_t RuntimeImpl::timers_armed() const noexcept {
  std::size_t n = 0;
  for (auto& w : workers_) n += w->timers.armed();
  return n;
}

std::int64_t RuntimeImpl::earliest_timer() const noexcept {
  std::int64_t t = kNoDeadline;
  for (auto& w : workers_) t = std::min(t, w->timers.next_due());
  return t;
}

std::int64_t RuntimeImpl::live() const noexcept {
  auto n = static_cast<std::int64_t>(external_spawned_.load(std::memory_order_acquire));
  for (auto& w : workers_)
    n += static_cast<std::int64_t>(w->spawned.get()) - static_cast<std::int64_t>(w->exited.get());
  return n;
}

int RuntimeImpl::unwind_parked() {
  // Every worker asleep, no fiber queued, no timer armed, no blocking job
  // owing a wake-up: whatever is parked now waits on something only another
  // fiber or the kernel (an fd becoming ready) could end. The kernel can
  // still do so while this sweep runs, so each fiber is won with the wakers'
  // own CAS (Waiting -> Ready), and nothing else of it is read or written
  // before the CAS succeeds: a fiber the reactor wins runs on a worker
  // meanwhile, and writes its TCB as it exits. A won fiber is ours until
  // queued: mark it to unwind, then queue them all at once, so that one
  // unwinding early cannot resume another normally. A free TCB reads Done,
  // so every slot is visited by its state word alone.
  std::vector<Fiber*> parked;
  auto visit = [](Fiber* f, void* out) {
    if (f->load_state() != FiberState::kWaiting) return;
    if (!claim(f, FiberState::kReady, nullptr)) return;  // (waits out a dump's hold)
    f->unwinding = true;  // published to its worker by inject_batch's release
    static_cast<std::vector<Fiber*>*>(out)->push_back(f);
  };
  fibers_.for_each_slot(visit, &parked);
  inject_batch(parked.data(), parked.size());
  return static_cast<int>(parked.size());
}

void RuntimeImpl::shutdown() {
  std::lock_guard lock(shutdown_mu_);
  if (joined_) return;
  if (Worker* w = current_worker(); w && w->rt == this) {
    std::fputs("chronos: Runtime::shutdown() (or ~Runtime) called from one of its own fibers\n",
               stderr);
    std::abort();
  }
  accepting_.store(false, std::memory_order_seq_cst);
  const auto n = static_cast<std::uint32_t>(workers_.size());
  for (;;) {
    std::uint32_t epoch = quiet_epoch_.load(std::memory_order_acquire);
    // A sleeping fiber, or one whose blocking job runs, is not parked
    // forever. Owed wake-ups are read after the sleepers (see Poller).
    Poller* p = poller();
    if (sleepers_.load(std::memory_order_seq_cst) == n && (!p || p->wakeups_owed() == 0) &&
        !any_work_visible() && timers_armed() == 0) {
      if (live() == 0) break;
      if (unwind_parked() > 0) continue;  // wakes what is parked forever, then re-check
    }
    // Woken when a worker goes idle; the timeout covers an in-flight spawn
    // that bypassed the idle path.
    struct timespec ts {
      0, 10'000'000
    };
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&quiet_epoch_), FUTEX_WAIT_PRIVATE, epoch,
              &ts, nullptr, 0);
  }
  if (monitor_) monitor_->stop();  // before the threads it signals are gone
  exiting_.store(true, std::memory_order_release);
  wake_epoch_.fetch_add(1, std::memory_order_release);
  futex_wake(&wake_epoch_, INT_MAX);
  if (Poller* p = poller()) p->interrupt();
  for (auto& t : threads_) t.join();
  joined_ = true;
  if (tracer_) {
    std::string error;
    if (!tracer_->write(&error))
      std::fprintf(stderr, "chronos: the execution trace was not written: %s\n", error.c_str());
  }
}

void RuntimeImpl::report_uncaught(Fiber* f) noexcept {
  std::exception_ptr e = std::exchange(f->error, nullptr);
  FiberInfo info{f->id, std::string_view(f->name)};
  if (cfg_.on_uncaught) {
    cfg_.on_uncaught(info, e);  // noexcept context: a throwing handler terminates
    return;
  }
  std::string what = describe(e);
  std::fprintf(stderr, "chronos: uncaught exception in fiber #%llu \"%s\": %s\n",
               static_cast<unsigned long long>(info.id), f->name, what.c_str());
  std::fflush(stderr);
  std::terminate();
}

void RuntimeImpl::release(Fiber* f) noexcept {
  Worker* w = current_worker();
  if (w && w->rt == this) {
    w->release_retired(f);
    return;
  }
  Stack* s = retire_fiber(f);  // an eager fiber's stack, which held its result
  if (s) s->pool->give(&s, 1);
  fibers_.give(&f, 1);
}

std::size_t RuntimeImpl::unreleased_fibers() {
  std::size_t n = 0;
  auto visit = [](Fiber*, void* count) { ++*static_cast<std::size_t*>(count); };
  fibers_.for_each_fiber(visit, &n);
  return n;
}

Poller* RuntimeImpl::install_poller(std::unique_ptr<Poller> p) {
  std::lock_guard lock(poller_mu_);
  if (!poller_owner_) {
    poller_owner_ = std::move(p);
    // release: whoever loads the pointer sees the poller fully constructed.
    poller_.store(poller_owner_.get(), std::memory_order_release);
  }
  return poller_owner_.get();
}

RuntimeStats RuntimeImpl::stats() const {
  RuntimeStats s;
  for (auto& w : workers_) {
    WorkerStats ws;
    ws.fibers_run = w->fibers_run.get();
    ws.spawned = w->spawned.get();
    ws.steals = w->steals.get();
    ws.stolen = w->stolen.get();
    ws.failed_steals = w->failed_steals.get();
    ws.retaken = w->retaken.load(std::memory_order_relaxed);
    ws.parks = w->parks.get();
    ws.wakeups = w->wakeups.get();
    ws.io_waits = w->io_waits.get();
    ws.timers_fired = w->timers_fired.get();
    ws.queued = w->queued();
    ws.timers_armed = w->timers.armed();
    s.workers.push_back(ws);
  }
  std::int64_t l = live();
  s.live_fibers = l > 0 ? static_cast<std::uint64_t>(l) : 0;
  s.stacks_mapped = normal_pool_.mapped_slots() + small_pool_.mapped_slots();
  s.stacks_free = normal_pool_.free_count() + small_pool_.free_count();
  s.inject_queued = inject_.size();
  s.sleeping_workers = sleepers_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace chronos::detail

namespace chronos {

Runtime::Runtime(Config config) : impl_(std::make_unique<detail::RuntimeImpl>(std::move(config))) {}
Runtime::~Runtime() {
  if (impl_->forked_away()) {
    // A forked child: the workers to stop and join are the parent's. Keep
    // the copy, out of the list that dumps and the monitor walk.
    detail::retire_forked(impl_.release());
    return;
  }
  impl_->shutdown();
  if (std::size_t n = impl_->unreleased_fibers(); n > 0) {
    // JoinHandles that outlive their runtime still point into its stack pools.
    // Keep the memory so that they stay valid, and say so.
    std::fprintf(stderr,
                 "chronos: Runtime destroyed while %zu JoinHandle(s) still hold its fibers; its "
                 "memory is kept so that they stay valid (join or drop handles first)\n",
                 n);
    (void)impl_.release();
  }
}
void Runtime::shutdown() {
  impl_->check_not_forked("Runtime::shutdown()");
  impl_->shutdown();
}
unsigned Runtime::workers() const noexcept {
  return impl_->worker_count();
}
RuntimeStats Runtime::stats() const {
  return impl_->stats();
}

void Runtime::check_block_on() const {
  impl_->check_not_forked("Runtime::block_on()");
  detail::Worker* w = detail::current_worker();
  if (w && w->current != &w->main)
    throw std::logic_error(
        "chronos: Runtime::block_on() called from inside a fiber; it would block a worker "
        "thread (spawn the work and join() its handle instead)");
}

}  // namespace chronos
