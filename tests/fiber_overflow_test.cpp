// tests/fiber_overflow_test.cpp: stack overflow, stack exhaustion and any
// other fatal fault in a fiber die or fail with a clear message, never
// silently.
#include <gtest/gtest.h>

#include <chronos/chronos.hpp>

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "sched/backtrace.hpp"
#include "test_util.hpp"

namespace {

// Makes the compiler keep a whole buffer in the frame (clang otherwise
// splits a volatile array it can see all of into scalars).
inline void escape(volatile char* p) {
  asm volatile("" : : "r"(p) : "memory");
}

// Each frame holds a buffer the compiler cannot elide. `limit` is never
// reached; it only keeps the compiler from proving the recursion infinite.
volatile int g_limit = 1 << 30;
[[gnu::noinline]] int recurse_forever(int depth) {
  volatile char buf[512];
  escape(buf);
  buf[0] = static_cast<char>(depth);
  if (depth == g_limit) return 0;
  return recurse_forever(depth + 1) + buf[0];
}

void overflow_normal_stack() {
  chronos::Runtime rt{chronos::Config{.workers = 1, .stack_size = 64 * 1024}};
  rt.block_on([] {
    chronos::go(chronos::SpawnOptions{.name = "deep-recursion"}, [] { recurse_forever(0); }).join();
  });
}

TEST(StackOverflowDeathTest, NormalStackHitsTheGuardAndNamesTheFiber) {
  EXPECT_DEATH(overflow_normal_stack(),
               "chronos: stack overflow in fiber #[0-9]+ \"deep-recursion\": stack \\[0x[0-9a-f]+, "
               "0x[0-9a-f]+\\) \\([0-9]+ bytes, normal stack\\)");
}

// Goes `frames` frames of ~1 KiB deep, then yields from the bottom. Only
// every 512th byte is written, so no canary need be hit: the stack pointer
// check catches it.
[[gnu::noinline]] int deep_then_yield(int frames) {
  volatile char buf[1024];
  escape(buf);
  for (std::size_t i = 0; i < sizeof buf; i += 512) buf[i] = static_cast<char>(frames);
  if (frames == 0) {
    chronos::yield();
    return buf[0];
  }
  return deep_then_yield(frames - 1) + buf[512];
}

void overflow_small_stack() {
  chronos::Runtime rt{chronos::Config{.workers = 1, .small_stack_size = 16 * 1024}};
  rt.block_on([] {
    // Neighbours, so that the overflowing fiber's slot is not the first of its
    // slab (which would hit the slab's guard page instead; either way the
    // report names the fiber).
    std::vector<chronos::JoinHandle<void>> others;
    for (int i = 0; i < 3; ++i)
      others.push_back(chronos::go(chronos::SpawnOptions{.small_stack = true}, [] {}));
    auto h = chronos::go(chronos::SpawnOptions{.small_stack = true, .name = "tiny"},
                         [] { deep_then_yield(40); });
    h.join();
    for (auto& o : others) o.join();
  });
}

TEST(StackOverflowDeathTest, SmallStackOverflowIsCaughtAtTheNextSwitch) {
  EXPECT_DEATH(overflow_small_stack(),
               "chronos: stack overflow in fiber #[0-9]+ \"tiny\".*small stack");
}

// Goes `frames` frames deep, filling each, and returns before any switch.
[[gnu::noinline]] int deep_and_back(int frames) {
  volatile char buf[1024];
  escape(buf);
  for (auto& c : buf) c = static_cast<char>(frames);
  if (frames == 0) return buf[0];
  return deep_and_back(frames - 1) + buf[1];
}

void overflow_small_stack_and_return() {
  chronos::Runtime rt{chronos::Config{.workers = 1, .small_stack_size = 16 * 1024}};
  rt.block_on([] {
    std::vector<chronos::JoinHandle<void>> others;
    for (int i = 0; i < 3; ++i)
      others.push_back(chronos::go(chronos::SpawnOptions{.small_stack = true}, [] {}));
    for (auto& o : others) o.join();
    chronos::go(chronos::SpawnOptions{.small_stack = true, .name = "sneaky"}, [] {
      deep_and_back(24);
    }).join();
  });
}

TEST(StackOverflowDeathTest, SmallStackOverflowThatUnwindsFirstIsCaughtByTheNeighboursCanary) {
  // Under ASan the write into the neighbour may be caught by ASan first.
  EXPECT_DEATH(overflow_small_stack_and_return(),
               "chronos: stack overflow in fiber #[0-9]+ \"sneaky\".*small stack|"
               "AddressSanitizer: stack-buffer-(underflow|overflow)");
}

// Packed small stacks (2 KiB, two to a page) carry the same net: an overflow
// runs into the page-mate below, and the stack-pointer check names the fiber.
// (Under a sanitizer the runtime gives packed sizes four times the room, see
// Runtime's Config checks, and 12 KiB of frames overflow that.)
#if CHRONOS_TEST_SANITIZED
constexpr int kPackedOverflowFrames = 12;
#else
constexpr int kPackedOverflowFrames = 4;
#endif

void overflow_packed_stack() {
  chronos::Runtime rt{chronos::Config{.workers = 1, .small_stack_size = 2048}};
  rt.block_on([] {
    std::vector<chronos::JoinHandle<void>> others;
    for (int i = 0; i < 3; ++i)
      others.push_back(chronos::go(chronos::SpawnOptions{.small_stack = true}, [] {}));
    auto h = chronos::go(chronos::SpawnOptions{.small_stack = true, .name = "packed"},
                         [] { deep_then_yield(kPackedOverflowFrames); });
    h.join();
    for (auto& o : others) o.join();
  });
}

TEST(StackOverflowDeathTest, PackedStackOverflowIsCaughtAtTheNextSwitch) {
  EXPECT_DEATH(overflow_packed_stack(),
               "chronos: stack overflow in fiber #[0-9]+ \"packed\": stack \\[0x[0-9a-f]+, "
               "0x[0-9a-f]+\\) \\([0-9]+ bytes, small stack\\)|"
               "AddressSanitizer: stack-buffer-(underflow|overflow)");
}

TEST(PackedStacks, TheSizeIsAPowerOfTwoBelowAPageOrAtLeast8KiB) {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  for (std::size_t bad : {std::size_t{1024}, std::size_t{3000}, page, 6 * std::size_t{1024}}) {
    if (bad >= 8 * 1024) continue;
    try {
      chronos::Runtime rt{chronos::Config{.workers = 1, .small_stack_size = bad}};
      ADD_FAILURE() << bad << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_STREQ(e.what(),
                   ("chronos: Config::small_stack_size must be at least 8 KiB, or a power of two "
                    "from 2 KiB to half a page (" +
                    std::to_string(page / 2) + " bytes here) for packed small stacks")
                       .c_str());
    }
  }
  for (std::size_t good : {std::size_t{2048}, page / 2, std::size_t{8 * 1024}}) {
    chronos::Runtime rt{chronos::Config{.workers = 1, .small_stack_size = good}};
    EXPECT_EQ(rt.block_on([] {
      return chronos::go(chronos::SpawnOptions{.small_stack = true}, [] { return 42; }).join();
    }),
              42);
  }
}

// Thousands of fibers parked at once on packed stacks, through a channel, a
// timer and a mutex, on two workers: each runs to the end exactly once.
TEST(PackedStacks, ParkedFibersOnTwoKiBStacksEachFinishOnce) {
  const int n = 20000 / chronos::test::scale();
  chronos::Runtime rt{chronos::Config{.workers = 2, .small_stack_size = 2048}};
  std::vector<std::atomic<int>> ran(static_cast<std::size_t>(n));
  rt.block_on([&] {
    chronos::Channel<int> gate;
    chronos::Mutex mu;
    long shared = 0;
    chronos::WaitGroup started(n), finished(n);
    for (int i = 0; i < n; ++i) {
      chronos::go(chronos::SpawnOptions{.small_stack = true}, [&, i] {
        started.done();
        if (gate.recv()) std::abort();  // only close() ends it
        chronos::sleep_for(std::chrono::microseconds(100));
        {
          std::lock_guard lock(mu);
          ++shared;
        }
        ran[static_cast<std::size_t>(i)].fetch_add(1, std::memory_order_relaxed);
        finished.done();
      }).detach();
    }
    started.wait();
    gate.close();
    finished.wait();
    EXPECT_EQ(shared, n);
  });
  for (int i = 0; i < n; ++i) ASSERT_EQ(ran[static_cast<std::size_t>(i)].load(), 1) << i;
}

// A fan-out whose every node runs on a packed stack and spawns its children
// from there (the spawn's TCB refill, the deque's spills): skynet with
// 10,000 leaves over channels, each leaf sending its number up.
long packed_skynet(long num, long size) {
  if (size == 1) return num;
  chronos::Channel<long> sums(10);
  const long child = size / 10;
  for (long i = 0; i < 10; ++i) {
    chronos::go(chronos::SpawnOptions{.small_stack = true}, [&sums, n = num + i * child, child] {
      sums.send(packed_skynet(n, child));
    }).detach();
  }
  long total = 0;
  for (int i = 0; i < 10; ++i) total += *sums.recv();
  return total;
}

TEST(PackedStacks, AFanOutSpawnsFromPackedStacks) {
  const long leaves = chronos::test::scale() == 1 ? 10000 : 1000;
  chronos::Runtime rt{chronos::Config{.workers = 2, .small_stack_size = 2048}};
  const long sum = rt.block_on([&] {
    return chronos::go(chronos::SpawnOptions{.small_stack = true},
                       [&] { return packed_skynet(0, leaves); })
        .join();
  });
  EXPECT_EQ(sum, leaves * (leaves - 1) / 2);
}

// A signal handler runs on the stack of whatever the thread was running, unless
// it was installed with SA_ONSTACK. Its frame holds the vector state (3.4 KiB
// with AVX-512: AT_MINSIGSTKSZ), more than a packed stack's 1,920 bytes, so on
// a fiber it would overwrite the slot below. The runtime moves every handler
// installed before it starts onto the workers' alternate signal stacks, the
// one `signal()` installs here included.
std::atomic<int> g_handled{0};
std::atomic<int> g_handled_on_alt_stack{0};
std::atomic<std::uintptr_t> g_alt_stack_base{0};

void note_signal_stack(int) {
  stack_t ss{};
  if (::sigaltstack(nullptr, &ss) == 0 && (ss.ss_flags & SS_ONSTACK)) {
    g_handled_on_alt_stack.fetch_add(1, std::memory_order_relaxed);
    g_alt_stack_base.store(reinterpret_cast<std::uintptr_t>(ss.ss_sp), std::memory_order_relaxed);
  }
  g_handled.fetch_add(1, std::memory_order_relaxed);
}

// The permissions of the mapping that ends at `end`, from /proc/self/maps.
[[maybe_unused]] std::string perms_of_mapping_ending_at(std::uintptr_t end) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::uintptr_t lo = 0, hi = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &lo, &hi, perms) == 3 && hi == end) return perms;
  }
  return "";
}

TEST(PackedStacks, SignalHandlersRunOnTheWorkersAlternateStack) {
  struct sigaction old[2], installed[2];
  const int sigs[2] = {SIGUSR1, SIGUSR2};
  for (int i = 0; i < 2; ++i) ASSERT_EQ(::sigaction(sigs[i], nullptr, &old[i]), 0);
  ASSERT_NE(::signal(SIGUSR1, &note_signal_stack), SIG_ERR);  // no SA_ONSTACK
  struct sigaction sa {};
  sa.sa_handler = &note_signal_stack;
  sa.sa_flags = SA_NODEFER;  // a flag that must survive the move
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGALRM);  // and a mask
  ASSERT_EQ(::sigaction(SIGUSR2, &sa, nullptr), 0);
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(::sigaction(sigs[i], nullptr, &installed[i]), 0);
    ASSERT_FALSE(installed[i].sa_flags & SA_ONSTACK);
  }
  ASSERT_EQ(sigismember(&installed[1].sa_mask, SIGALRM), 1);
  g_handled = 0;
  g_handled_on_alt_stack = 0;
  {
    chronos::Runtime rt{chronos::Config{.workers = 1, .small_stack_size = 2048}};
    for (int i = 0; i < 2; ++i) {  // the same handler, flags and mask, plus SA_ONSTACK
      struct sigaction now {};
      ASSERT_EQ(::sigaction(sigs[i], nullptr, &now), 0);
      EXPECT_EQ(now.sa_handler, &note_signal_stack) << sigs[i];
      EXPECT_EQ(now.sa_flags, installed[i].sa_flags | SA_ONSTACK) << sigs[i];
      for (int m = 1; m < 32; ++m)
        EXPECT_EQ(sigismember(&now.sa_mask, m), sigismember(&installed[i].sa_mask, m)) << m;
    }
    const int done = rt.block_on([] {
      // Page-mates on both sides, parked, so that a frame spilling out of the
      // signalled fiber's slot would land in a live one.
      chronos::Channel<int> gate;
      std::vector<chronos::JoinHandle<int>> mates;
      for (int i = 0; i < 4; ++i)
        mates.push_back(chronos::go(chronos::SpawnOptions{.small_stack = true},
                                    [&gate, i] { return gate.recv().value_or(-1) + i; }));
      auto h = chronos::go(chronos::SpawnOptions{.small_stack = true, .name = "signalled"}, [] {
        for (int sig : {SIGUSR1, SIGUSR2, SIGUSR1}) {
          ::pthread_kill(::pthread_self(), sig);  // handled before pthread_kill returns
          chronos::yield();  // the switch checks this slot's and its neighbour's canaries
        }
        return 3;
      });
      const int n = h.join();
#if !CHRONOS_TEST_TSAN
      // Below the alternate stack, while its worker lives: a guard page.
      EXPECT_EQ(perms_of_mapping_ending_at(g_alt_stack_base.load()), "---p");
#endif
      for (int i = 0; i < 4; ++i) gate.send(10);
      for (int i = 0; i < 4; ++i) EXPECT_EQ(mates[static_cast<std::size_t>(i)].join(), 10 + i);
      return n;
    });
    EXPECT_EQ(done, 3);
  }
  EXPECT_EQ(g_handled.load(), 3);
#if !CHRONOS_TEST_TSAN  // TSan defers a signal and runs the handler on the interrupted stack
  EXPECT_EQ(g_handled_on_alt_stack.load(), 3);
#endif
  for (int i = 0; i < 2; ++i) ::sigaction(sigs[i], &old[i], nullptr);
}

// A fault that is no overflow still names the fiber, and lists its frames as
// module+offset: the first one inside the function that faulted.
[[gnu::noinline, maybe_unused]] void write_through(volatile int* p) {
  *p = 42;
  asm volatile("" ::: "memory");  // no tail call: write_through stays a frame
}

[[maybe_unused]] void crash_in_fiber() {
  chronos::Runtime rt{chronos::Config{.workers = 1}};
  rt.block_on([] {
    chronos::go(chronos::SpawnOptions{.name = "null-write"}, [] {
      write_through(reinterpret_cast<volatile int*>(16));
    }).join();
  });
}

// "0x1a0|0x1a1|...": the offsets of the first `len` bytes of fn in its module.
[[maybe_unused]] std::string offsets_of(void* fn, std::size_t len) {
  Dl_info info{};
  if (!::dladdr(fn, &info) || !info.dli_fbase) return "unknown";
  const auto off =
      reinterpret_cast<std::uintptr_t>(fn) - reinterpret_cast<std::uintptr_t>(info.dli_fbase);
  std::string alts;
  char one[32];
  for (std::size_t i = 0; i < len; ++i) {
    std::snprintf(one, sizeof one, "%s0x%zx", i ? "|" : "", static_cast<std::size_t>(off + i));
    alts += one;
  }
  return alts;
}

// Where chronos was built without libunwind's header, or libunwind8 is not
// installed, a report carries this line instead of frames.
[[maybe_unused]] const char* const kNoUnwinder =
    "    \\(no backtrace: libunwind is not available\\)\n";

TEST(FatalFaultDeathTest, ASegfaultInAFiberNamesTheFiberAndListsItsFrames) {
#if CHRONOS_TEST_SANITIZED
  GTEST_SKIP() << "the sanitizer's SIGSEGV handler came first: chronos passes the fault on to "
                  "it, and it writes the report";
#else
  const std::string in_write_through = offsets_of(reinterpret_cast<void*>(&write_through), 32);
  const std::string frames = chronos::detail::backtrace_init()
                                 ? "    #0 0x[0-9a-f]+ \\(chronos_tests\\+(" + in_write_through +
                                       ")\\)\n"
                                       "    #1 0x[0-9a-f]+ \\("
                                 : kNoUnwinder;
  EXPECT_EXIT(crash_in_fiber(), testing::KilledBySignal(SIGSEGV),
              "chronos: fatal SIGSEGV in fiber #[0-9]+ \"null-write\": address 0x10 \\(nothing "
              "is mapped there\\)\n" +
                  frames);
#endif
}

// A SIGSEGV sent by kill is reported once and kills the process: with the
// default action reinstated, it is sent again (it does not repeat by itself,
// as a fault does).
TEST(FatalFaultDeathTest, ASentSigsegvIsReportedAndStillKills) {
#if CHRONOS_TEST_SANITIZED
  GTEST_SKIP() << "the sanitizer's SIGSEGV handler came first and reports it";
#else
  EXPECT_EXIT(
      {
        chronos::Runtime rt{chronos::Config{.workers = 1}};
        rt.block_on([] {
          chronos::go(chronos::SpawnOptions{.name = "sent"}, [] {
            ::pthread_kill(::pthread_self(), SIGSEGV);
          }).join();
        });
        std::fprintf(stderr, "still running\n");
        std::exit(0);
      },
      testing::KilledBySignal(SIGSEGV),
      std::string("chronos: fatal SIGSEGV in fiber #[0-9]+ \"sent\": sent by process [0-9]+ "
                  "\\(kill or tgkill\\), not a fault\n") +
          (chronos::detail::backtrace_init() ? "    #0 0x" : kNoUnwinder));
#endif
}

TEST(StackOverflowDeathTest, DeepRecursionWithinTheStackIsFine) {
  chronos::Runtime rt{chronos::Config{.workers = 1, .stack_size = 256 * 1024}};
  // ~200 KiB of frames in a 256 KiB stack.
  int r = rt.block_on([] {
    return chronos::go([] {
             struct R {
               [[gnu::noinline]] static int go(int n) {
                 volatile char buf[1000];
                 escape(buf);
                 buf[0] = 1;
                 return n == 0 ? 0 : go(n - 1) + buf[0];
               }
             };
             return R::go(chronos::test::scale() == 1 ? 200 : 50);
           })
        .join();
  });
  EXPECT_EQ(r, chronos::test::scale() == 1 ? 200 : 50);
}

// Spawns normal-stack fibers until the mappings run out, then joins them all.
[[noreturn, maybe_unused]] void exhaust_stacks() {
  chronos::Runtime rt{chronos::Config{.workers = 1, .stack_size = 32 * 1024}};
  long finished = rt.block_on([] {
    std::vector<chronos::JoinHandle<int>> hs;
    hs.reserve(100000);
    std::string error;
    try {
      for (;;) hs.push_back(chronos::go([] { return 1; }));
    } catch (const std::system_error& e) {
      error = e.what();
      if (e.code().value() != ENOMEM) error = "wrong errno";
    }
    std::fprintf(stderr, "spawn failed after %zu fibers: %s\n", hs.size(), error.c_str());
    long sum = 0;
    for (auto& h : hs) sum += h.join();  // every fiber spawned before still runs
    return sum == static_cast<long>(hs.size()) ? sum : -1;
  });
  std::fprintf(stderr, "all %ld earlier fibers finished\n", finished);
  std::exit(finished > 1000 ? 0 : 1);
}

TEST(StackExhaustionDeathTest, SpawnThrowsNamingTheMapLimitAndRunningFibersSurvive) {
#if CHRONOS_TEST_SANITIZED
  GTEST_SKIP() << "maps ~32,000 stacks; too heavy under a sanitizer's shadow memory";
#else
  // In a child process: it fills vm.max_map_count.
  EXPECT_EXIT(
      exhaust_stacks(), testing::ExitedWithCode(0),
      "cannot map a fiber stack of [0-9]+ bytes: vm.max_map_count \\([0-9]+\\) reached(.|\n)*"
      "all [0-9]+ earlier fibers finished");
#endif
}

// A small-stack fiber binds its stack only when it first runs (fiber/tcb.hpp,
// "Binding"). With the address space capped, fibers that park keep theirs
// until a slab can no longer be mapped: the fiber that starts then fails with
// the mapping's error, through its JoinHandle, and every earlier one finishes.
[[noreturn, maybe_unused]] void start_without_a_stack() {
  chronos::Runtime rt{chronos::Config{.workers = 1, .small_stack_size = 64 * 1024}};
  std::string outcome = rt.block_on([&] {
    chronos::Channel<int> ch;
    std::vector<chronos::JoinHandle<void>> parked;
    parked.reserve(100000);
    std::string what;
    {
      long vm_kb = 0;
      std::ifstream status("/proc/self/status");
      for (std::string line; std::getline(status, line);)
        if (line.rfind("VmSize:", 0) == 0) vm_kb = std::stol(line.substr(7));
      const rlim_t cap = static_cast<rlim_t>(vm_kb + 64 * 1024) * 1024;  // 64 MiB more
      const struct rlimit lim { cap, cap };
      if (::setrlimit(RLIMIT_AS, &lim) != 0) return std::string("setrlimit failed");
    }
    for (;;) {
      parked.push_back(chronos::go(chronos::SpawnOptions{.small_stack = true}, [&ch] {
        (void)ch.recv();  // parks, keeping its stack, until the channel closes
      }));
      chronos::yield();  // it runs now: parks, or fails to start
      if (parked.back().done()) break;
      if (parked.size() == parked.capacity()) return std::string("never ran out");
    }
    chronos::JoinHandle<void> failed = std::move(parked.back());
    parked.pop_back();
    try {
      failed.join();
      what = "the fiber without a stack ran";
    } catch (const std::system_error& e) {
      what = e.code().value() == ENOMEM ? e.what() : "wrong errno";
    }
    ch.close();
    for (auto& h : parked) h.join();  // every fiber that had a stack finishes
    std::fprintf(stderr, "%zu fibers parked first\n", parked.size());
    return what;
  });
  std::fprintf(stderr, "failed: %s\nall earlier fibers finished\n", outcome.c_str());
  std::exit(0);
}

TEST(StackExhaustionDeathTest, AFiberThatCannotBindAStackFailsThroughItsHandle) {
#if CHRONOS_TEST_SANITIZED
  GTEST_SKIP() << "caps the address space, which a sanitizer's shadow memory needs";
#else
  EXPECT_EXIT(start_without_a_stack(), testing::ExitedWithCode(0),
              "[0-9]+ fibers parked first\nfailed: chronos: cannot map a fiber stack of [0-9]+ "
              "bytes: out of memory \\(or RLIMIT_AS reached\\)[^\n]*\nall earlier fibers finished");
#endif
}

}  // namespace
