// tests/alloc_test.cpp: after warm-up, spawning, yielding and joining call
// neither malloc nor mmap.
//
// This binary interposes malloc, calloc, realloc, free, operator new and mmap
// with counting versions. A sanitizer owns those symbols, so sanitized builds
// leave this test out (tests/CMakeLists.txt).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chronos/chronos.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_news{0}, g_mallocs{0}, g_mmaps{0};
void count(std::atomic<long>& c) {
  if (g_counting.load(std::memory_order_relaxed)) c.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

void* operator new(std::size_t n) {
  count(g_news);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  return operator new(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void __libc_free(void*);

void* malloc(std::size_t n) {
  count(g_mallocs);
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t s) {
  count(g_mallocs);
  return __libc_calloc(n, s);
}
void* realloc(void* p, std::size_t n) {
  count(g_mallocs);
  return __libc_realloc(p, n);
}
void free(void* p) {
  __libc_free(p);
}
void* mmap(void* a, std::size_t l, int prot, int flags, int fd, off_t off) {
  count(g_mmaps);
  return reinterpret_cast<void*>(::syscall(SYS_mmap, a, l, prot, flags, fd, off));
}
}

namespace {

struct Counts {
  long news, mallocs, mmaps;
};

template <class F>
Counts measure(F&& f) {
  g_news = g_mallocs = g_mmaps = 0;
  g_counting = true;
  f();
  g_counting = false;
  return {g_news.load(), g_mallocs.load(), g_mmaps.load()};
}

void spawn_join_rounds(int rounds, bool small) {
  for (int r = 0; r < rounds; ++r) {
    auto h = chronos::go(chronos::SpawnOptions{.small_stack = small}, [r] { return r; });
    if (h.join() != r) std::abort();
  }
}

void batch_rounds(std::vector<chronos::JoinHandle<int>>& hs, int batch) {
  for (int i = 0; i < batch; ++i) hs.push_back(chronos::go([i] { return i; }));
  for (auto& h : hs) h.join();
  hs.clear();
}

// The runtimes under test run without the monitor thread (sched/monitor.hpp):
// its slow-fiber and deadlock reports format text and walk stacks, which
// allocates, and on a loaded machine a fiber of these tests can run past the
// watchdog's threshold (seen in CI). Reports are rare events, not the steady
// state measured here.
chronos::Config quiet(unsigned workers, bool pin = true) {
  chronos::Config c{.workers = workers, .pin_workers = pin};
  c.slow_fiber_threshold = {};
  c.deadlock_action = chronos::DeadlockAction::kIgnore;
  return c;
}

void yield_rounds(int n) {
  auto other = chronos::go([n] {
    for (int i = 0; i < n; ++i) chronos::yield();
  });
  for (int i = 0; i < n; ++i) chronos::yield();
  other.join();
}

TEST(SteadyState, SpawnJoinYieldAllocateNothing) {
  chronos::Runtime rt{quiet(1)};
  std::uint64_t mapped_before = 0, mapped_after = 0;
  Counts c = rt.block_on([&] {
    std::vector<chronos::JoinHandle<int>> hs;
    hs.reserve(1000);
    // Warm-up: fills the stack caches and the pool.
    spawn_join_rounds(1000, false);
    spawn_join_rounds(1000, true);
    batch_rounds(hs, 1000);
    yield_rounds(1000);
    mapped_before = rt.stats().stacks_mapped;
    Counts inner = measure([&] {
      spawn_join_rounds(100000, false);
      spawn_join_rounds(100000, true);
      for (int i = 0; i < 20; ++i) batch_rounds(hs, 1000);
      yield_rounds(100000);
    });
    mapped_after = rt.stats().stacks_mapped;
    return inner;
  });
  EXPECT_EQ(c.news, 0) << "operator new calls in steady state";
  EXPECT_EQ(c.mallocs, 0) << "malloc calls in steady state";
  EXPECT_EQ(c.mmaps, 0) << "mmap calls in steady state";
  EXPECT_EQ(mapped_after, mapped_before);
}

TEST(SteadyState, StealingAcrossTwoWorkersAllocatesNothing) {
  chronos::Runtime rt{quiet(2, false)};
  std::vector<chronos::JoinHandle<int>> hs;
  hs.reserve(4000);
  int width = 4000;
  auto fan_out = [&hs, &width] {
    for (int round = 0; round < 20; ++round) {
      for (int i = 0; i < width; ++i)
        hs.push_back(chronos::go([i] {
          volatile int spin = 0;  // a little work, so the other worker steals
          for (int k = 0; k < 2000; ++k) spin = spin + k;
          return i;
        }));
      for (auto& h : hs) h.join();
      hs.clear();
    }
  };
  // Warm-up, twice as wide as the measured run: with two workers, stacks sit
  // in either worker's cache, so the peak demand varies a little from run to
  // run; steady state is a workload no larger than what has been seen.
  rt.block_on(fan_out);
  width = 2000;
  std::uint64_t steals_before = 0;
  for (auto& w : rt.stats().workers) steals_before += w.steals;
  Counts c = measure([&] { rt.spawn(fan_out).join(); });
  std::uint64_t steals_after = 0;
  for (auto& w : rt.stats().workers) steals_after += w.steals;
  EXPECT_EQ(c.news, 0) << "operator new calls while stealing";
  EXPECT_EQ(c.mallocs, 0) << "malloc calls while stealing";
  EXPECT_EQ(c.mmaps, 0) << "mmap calls while stealing";
  EXPECT_GT(steals_after, steals_before) << "the measured run never stole: the test proves nothing";
}

// Channels (unbuffered, buffered, select), timers (sleeps and deadlines
// that are cancelled because the operation finished first), a contended
// mutex and futures: no allocation per operation once warm.
void sync_rounds(int n) {
  chronos::Channel<int> ping, pong;  // (constructing an unbuffered channel allocates nothing)
  auto echo = chronos::go([&] {
    for (int v : ping) pong.send(v + 1);
  });
  for (int i = 0; i < n; ++i) {
    ping.send(i);
    if (pong.recv_for(std::chrono::seconds(10)) != i + 1) std::abort();  // arms and cancels a timer
  }
  ping.close();
  echo.join();
  chronos::Mutex mu;
  long counter = 0;
  auto locker = chronos::go([&] {
    for (int i = 0; i < n; ++i) {
      std::lock_guard g(mu);
      ++counter;
      if (i % 16 == 0) chronos::yield();  // held across a switch: the other one parks on it
    }
  });
  for (int i = 0; i < n; ++i) {
    std::lock_guard g(mu);
    ++counter;
  }
  locker.join();
  if (counter != 2L * n) std::abort();
  for (int i = 0; i < n / 10; ++i) {
    chronos::Promise<int> p;
    auto f = p.get_future();
    auto h = chronos::go([&p, i] { p.set_value(i); });
    if (f.get() != i) std::abort();
    h.join();
    bool took = false;
    chronos::select(chronos::recv_case(ping, [&] { took = true; }),  // closed: ready at once
                    chronos::send_case(pong, 1, [] {}));
    if (!took) std::abort();
  }
  chronos::sleep_for(std::chrono::milliseconds(1));
}

// One worker: with two, the few spawns in each round move stacks between
// the workers' caches, and the pool's steady state there is the subject of
// StealingAcrossTwoWorkersAllocatesNothing, not of this test.
TEST(SteadyState, ChannelsTimersMutexFuturesAllocateNothing) {
  chronos::Runtime rt{quiet(1)};
  chronos::Channel<int> buffered(64);  // its ring is allocated here, once
  Counts c = rt.block_on([&] {
    sync_rounds(5000);  // warm-up: stack caches, the future pool
    return measure([&] {
      sync_rounds(50000);
      auto producer = chronos::go([&] {
        for (int i = 0; i < 100000; ++i) buffered.send(i);
      });
      for (int i = 0; i < 100000; ++i)
        if (buffered.recv() != i) std::abort();
      producer.join();
    });
  });
  EXPECT_EQ(c.news, 0) << "operator new calls per sync operation";
  EXPECT_EQ(c.mallocs, 0) << "malloc calls per sync operation";
  EXPECT_EQ(c.mmaps, 0) << "mmap calls per sync operation";
}

TEST(SteadyState, TheCountersSeeAllocations) {
  // The test above would pass vacuously if counting were broken.
  Counts c = measure([] {
    auto* p = new int(3);
    asm volatile("" : : "r"(p) : "memory");  // clang may elide a new/delete pair it can see
    delete p;
    void* m = ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ::munmap(m, 4096);
  });
  EXPECT_EQ(c.news, 1);
  EXPECT_GE(c.mallocs, 1);
  EXPECT_EQ(c.mmaps, 1);
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
