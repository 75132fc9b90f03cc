// tests/sched_basic_test.cpp: the fiber API on one worker: values, order,
// exceptions, misuse.
#include <gtest/gtest.h>

#include <chronos/chronos.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cfenv>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "test_util.hpp"

namespace {

using chronos::Config;
using chronos::JoinHandle;
using chronos::Runtime;
using chronos::SpawnOptions;

Runtime& one_worker() {
  static Runtime rt{Config{.workers = 1}};
  return rt;
}

TEST(Fiber, TheIssueExampleReturns42) {
  Runtime rt{Config{.workers = 1}};
  int r = rt.block_on([] {
    JoinHandle<int> h = chronos::go([] {
      chronos::yield();
      return 21;
    });
    return 2 * h.join();
  });
  EXPECT_EQ(r, 42);
}

TEST(Fiber, ManyFibersInterleaveInAKnownOrder) {
  constexpr int kFibers = 50, kRounds = 20;
  std::vector<int> trace;
  int started = 0;
  bool go = false;
  one_worker().block_on([&] {
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < kFibers; ++i) {
      hs.push_back(chronos::go([&, i] {
        ++started;
        while (!go) chronos::yield();
        for (int r = 0; r < kRounds; ++r) {
          trace.push_back(i);
          chronos::yield();
        }
      }));
    }
    while (started < kFibers) chronos::yield();
    go = true;  // every fiber now waits in the yield queue
    for (auto& h : hs) h.join();
  });
  // Yielding fibers take turns in a fixed rotation: every round visits each
  // fiber once, in the same order as the first round.
  ASSERT_EQ(trace.size(), static_cast<std::size_t>(kFibers * kRounds));
  std::vector<int> first(trace.begin(), trace.begin() + kFibers);
  std::vector<int> sorted = first;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < kFibers; ++i) ASSERT_EQ(sorted[i], i);
  for (int r = 1; r < kRounds; ++r) {
    std::vector<int> round(trace.begin() + r * kFibers, trace.begin() + (r + 1) * kFibers);
    EXPECT_EQ(round, first) << "round " << r;
  }
}

TEST(Fiber, NewFibersRunNewestFirstAndByPriority) {
  std::vector<int> order;
  Runtime rt{Config{.workers = 1}};  // fresh: no fairness tick falls in these few rounds
  rt.block_on([&] {
    std::vector<JoinHandle<void>> hs;
    auto spawn = [&](unsigned prio, int tag) {
      hs.push_back(
          chronos::go(SpawnOptions{.priority = prio}, [&order, tag] { order.push_back(tag); }));
    };
    spawn(8, 1);   // normal
    spawn(0, 2);   // low
    spawn(15, 3);  // high
    spawn(8, 4);   // normal
    spawn(12, 5);  // high
    spawn(3, 6);   // low
    for (auto& h : hs) h.join();
  });
  // High first, then normal, then low; newest first within a class (the
  // owner's end of a Chase-Lev deque is LIFO).
  EXPECT_EQ(order, (std::vector<int>{5, 3, 4, 1, 6, 2}));
}

TEST(Fiber, YieldWithNothingElseRunnableReturnsAtOnce) {
  int r = one_worker().block_on([] {
    for (int i = 0; i < 1000; ++i) chronos::yield();
    return 7;
  });
  EXPECT_EQ(r, 7);
}

TEST(Fiber, JoinReturnsMoveOnlyValuesAndVoid) {
  auto p = one_worker().block_on([] {
    auto h = chronos::go([] { return std::make_unique<std::string>("moved out"); });
    bool ran = false;
    chronos::go([&] { ran = true; }).join();
    EXPECT_TRUE(ran);
    return h.join();
  });
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, "moved out");
}

// Small stacks bind when a fiber first runs and go back when it ends
// (fiber/tcb.hpp, "Binding"): 10,000 spawned fibers hold no stack until
// they run, and fibers that run one after another share a few.
TEST(Fiber, SmallStacksAreBoundWhenAFiberFirstRunsAndReturnedWhenItEnds) {
  chronos::Runtime rt{chronos::Config{.workers = 1}};
  rt.block_on([&] {
    const chronos::SpawnOptions small{.small_stack = true};
    chronos::go(small, [] {}).join();  // fills the worker's stack cache
    const std::uint64_t before = rt.stats().stacks_mapped;
    std::vector<chronos::JoinHandle<int>> hs;
    for (int i = 0; i < 10000; ++i) hs.push_back(chronos::go(small, [i] { return i; }));
    EXPECT_EQ(rt.stats().stacks_mapped, before);  // spawned, not started: no stack yet
    long sum = 0;
    for (auto& h : hs) sum += h.join();
    EXPECT_EQ(sum, 10000L * 9999 / 2);
    EXPECT_LE(rt.stats().stacks_mapped, before + 64);
    // A payload too large for the TCB (bound at spawn, the payload on the stack).
    std::array<char, 64> big{};
    big[63] = 5;
    EXPECT_EQ(chronos::go(small, [big] { return int(big[63]); }).join(), 5);
  });
}

TEST(Fiber, DoneReportsCompletionWithoutBlocking) {
  one_worker().block_on([] {
    auto h = chronos::go([] { return 5; });
    EXPECT_FALSE(h.done());  // not run yet: we have not yielded
    while (!h.done()) chronos::yield();
    EXPECT_TRUE(h.done());
    EXPECT_EQ(h.join(), 5);
    EXPECT_FALSE(h.joinable());
  });
}

TEST(Fiber, ExceptionPropagatesThroughJoinWithItsType) {
  struct Custom : std::runtime_error {
    int code;
    explicit Custom(int c) : std::runtime_error("custom"), code(c) {}
  };
  int code = one_worker().block_on([] {
    try {
      chronos::go([]() -> int { throw Custom(17); }).join();
    } catch (const Custom& e) {
      return e.code;
    }
    return -1;
  });
  EXPECT_EQ(code, 17);
  EXPECT_THROW(one_worker().block_on([] { throw std::out_of_range("from block_on"); }),
               std::out_of_range);
}

TEST(Fiber, ExceptionThrownAndCaughtInsideAFiberAcrossYields) {
  std::string seen = one_worker().block_on([] {
    return chronos::go([] {
             std::string s;
             for (int i = 0; i < 3; ++i) {
               try {
                 chronos::yield();
                 throw std::runtime_error("round " + std::to_string(i));
               } catch (const std::exception& e) {
                 chronos::yield();  // a switch while an exception is being handled
                 s += e.what();
                 s += ';';
               }
             }
             return s;
           })
        .join();
  });
  EXPECT_EQ(seen, "round 0;round 1;round 2;");
}

TEST(Fiber, RoundingModeStaysWithEachFiber) {
  one_worker().block_on([] {
    std::array<int, 4> modes{FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO, FE_TONEAREST};
    std::vector<JoinHandle<int>> hs;
    for (int m : modes) {
      // preserve_fp_env: the default inline switch keeps FP control state
      // per fiber only for the fibers that ask (the asm switch always does).
      hs.push_back(chronos::go(SpawnOptions{.preserve_fp_env = true}, [m] {
        std::fesetround(m);
        int bad = 0;
        for (int i = 0; i < 10; ++i) {
          chronos::yield();  // the others set their own modes meanwhile
          if (std::fegetround() != m) ++bad;
        }
        return bad;
      }));
    }
    for (auto& h : hs) EXPECT_EQ(h.join(), 0);
  });
  // The worker's scheduler loop and later fibers are not affected.
  EXPECT_EQ(one_worker().block_on([] { return std::fegetround(); }), FE_TONEAREST);
}

TEST(Fiber, CallsOutsideAFiberAreLogicErrors) {
  EXPECT_THROW(chronos::yield(), std::logic_error);
  EXPECT_THROW(chronos::go([] {}), std::logic_error);
  try {
    chronos::yield();
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("outside a fiber"), std::string::npos) << e.what();
  }
  EXPECT_EQ(chronos::this_fiber::id(), 0u);
  EXPECT_TRUE(chronos::this_fiber::name().empty());
}

TEST(Fiber, BlockOnInsideAFiberIsALogicError) {
  Runtime& rt = one_worker();
  bool threw = rt.block_on([&] {
    try {
      rt.block_on([] { return 1; });
    } catch (const std::logic_error&) {
      return true;
    }
    return false;
  });
  EXPECT_TRUE(threw);
}

TEST(Fiber, JoinOnAnEmptyHandleIsALogicError) {
  JoinHandle<int> empty;
  EXPECT_THROW(empty.join(), std::logic_error);
  auto h = one_worker().spawn([] { return 3; });
  EXPECT_EQ(h.join(), 3);
  EXPECT_THROW(h.join(), std::logic_error);  // a handle joins once
}

TEST(Fiber, PriorityAbove15IsRejected) {
  one_worker().block_on([] {
    EXPECT_THROW(chronos::go(SpawnOptions{.priority = 16}, [] {}), std::invalid_argument);
    EXPECT_NO_THROW(chronos::go(SpawnOptions{.priority = 15}, [] {}).join());
    EXPECT_NO_THROW(chronos::go(SpawnOptions{.priority = 0}, [] {}).join());
  });
  EXPECT_THROW(one_worker().spawn(SpawnOptions{.priority = 99}, [] {}), std::invalid_argument);
}

TEST(Fiber, IdsAreUniqueAndNamesAreKept) {
  auto [a, b, name, truncated] = one_worker().block_on([] {
    auto h1 = chronos::go(SpawnOptions{.name = "alpha"},
                          [] { return std::string(chronos::this_fiber::name()); });
    auto h2 = chronos::go(SpawnOptions{.name = std::string(100, 'x')},
                          [] { return std::string(chronos::this_fiber::name()); });
    chronos::FiberId id1 = h1.id(), id2 = h2.id();
    return std::make_tuple(id1, id2, h1.join(), h2.join());
  });
  EXPECT_NE(a, 0u);
  EXPECT_NE(b, 0u);
  EXPECT_NE(a, b);
  EXPECT_EQ(name, "alpha");
  EXPECT_EQ(truncated, std::string(31, 'x'));
}

// A TCB is reused at once (the worker's cache is LIFO), and its name and
// stop token live on a line that spawn and release skip unless a flag says
// they hold something: the next fiber must see neither.
TEST(Fiber, AReusedTcbKeepsNeitherTheNameNorTheStopTokenOfTheFiberBefore) {
  one_worker().block_on([] {
    std::stop_source src;
    for (int i = 0; i < 64; ++i) {
      auto named = chronos::go(SpawnOptions{.name = "named", .stop_token = src.get_token()}, [] {
        return std::make_pair(std::string(chronos::this_fiber::name()),
                              chronos::this_fiber::stop_token().stop_possible());
      });
      EXPECT_EQ(named.join(), std::make_pair(std::string("named"), true));
      for (bool small : {true, false}) {
        auto plain = chronos::go(SpawnOptions{.small_stack = small}, [] {
          return std::make_pair(std::string(chronos::this_fiber::name()),
                                chronos::this_fiber::stop_token().stop_possible());
        });
        EXPECT_EQ(plain.join(), std::make_pair(std::string(), false)) << "round " << i;
      }
    }
  });
}

TEST(Fiber, ThisFiberIdMatchesTheHandle) {
  one_worker().block_on([] {
    std::atomic<chronos::FiberId> inside{0};
    auto h = chronos::go([&] { inside = chronos::this_fiber::id(); });
    chronos::FiberId outside = h.id();
    h.join();
    EXPECT_EQ(inside.load(), outside);
    EXPECT_NE(chronos::this_fiber::id(), outside);
  });
}

// Counts constructions and destructions, and where the last destruction ran.
struct Tracked {
  static inline std::atomic<int> alive{0};
  static inline std::atomic<chronos::FiberId> destroyed_on{0};
  std::array<char, 2000> big{};  // larger than the inline payload limit when asked
  bool live = true;
  Tracked() { ++alive; }
  Tracked(Tracked&& o) noexcept : big(o.big) {
    ++alive;
    o.live = false;
  }
  Tracked(const Tracked&) = delete;
  ~Tracked() {
    --alive;
    if (live) destroyed_on = chronos::this_fiber::id();
  }
};

TEST(Fiber, CallableIsDestroyedOnTheFiberExactlyOnce) {
  one_worker().block_on([] {
    Tracked t;
    t.big[0] = 42;
    auto h = chronos::go([t = std::move(t)] { return int(t.big[0]); });  // a ~2 KB payload: boxed
    chronos::FiberId id = h.id();
    EXPECT_EQ(h.join(), 42);
    EXPECT_EQ(Tracked::destroyed_on.load(), id);
  });
  EXPECT_EQ(Tracked::alive.load(), 0);
}

// A payload whose destructor does nothing has no destroy operation, so that
// a fiber's exit skips the call; one that owns something keeps it, and what
// it owns is freed when the fiber is, joined or not.
TEST(Fiber, OnlyPayloadsThatOwnSomethingAreDestroyed) {
  using chronos::detail::OpsFor;
  using chronos::detail::PayloadFor;
  auto trivial = [x = 1] { return x; };
  using Trivial = PayloadFor<decltype(trivial)>::type;
  static_assert(OpsFor<Trivial, decltype(trivial)&&>::ops.destroy == nullptr);
  auto owns_callable = [s = std::string("x")] { return int(s.size()); };
  using OwnsCallable = PayloadFor<decltype(owns_callable)>::type;
  using OwnsCallableOps = OpsFor<OwnsCallable, decltype(owns_callable)&&>;
  static_assert(OwnsCallableOps::ops.destroy == &OwnsCallableOps::destroy);
  auto owns_result = [] { return std::string("x"); };
  using OwnsResult = PayloadFor<decltype(owns_result)>::type;
  using OwnsResultOps = OpsFor<OwnsResult, decltype(owns_result)&&>;
  static_assert(OwnsResultOps::ops.destroy == &OwnsResultOps::destroy);

  std::weak_ptr<int> result, callable;
  int trivial_ran = 0;
  {
    Runtime rt{Config{.workers = 1}};
    rt.block_on([&] {
      auto r = std::make_shared<int>(7);
      auto c = std::make_shared<int>(8);
      result = r;
      callable = c;
      // Dropped unjoined: the result stays in the payload until the fiber is
      // freed after it finishes.
      (void)chronos::go([r = std::move(r)]() mutable { return std::move(r); });
      // Joined: the callable dies on the fiber, the result is moved out.
      EXPECT_EQ(chronos::go([c = std::move(c)] { return *c; }).join(), 8);
      EXPECT_EQ(chronos::go([&trivial_ran, x = 5] { return trivial_ran += x; }).join(), 5);
    });
  }  // the runtime runs what is left and frees every TCB
  EXPECT_TRUE(callable.expired());
  EXPECT_TRUE(result.expired());
  EXPECT_EQ(trivial_ran, 5);
}

TEST(Fiber, SmallStackFibersRunLikeOthers) {
  int sum = one_worker().block_on([] {
    std::vector<JoinHandle<int>> hs;
    for (int i = 0; i < 1000; ++i)
      hs.push_back(chronos::go(SpawnOptions{.small_stack = true}, [i] {
        chronos::yield();
        return i;
      }));
    int s = 0;
    for (auto& h : hs) s += h.join();
    return s;
  });
  EXPECT_EQ(sum, 999 * 1000 / 2);
}

TEST(Fiber, NestedSpawnTreeSumsCorrectly) {
  struct Tree {
    static long node(int depth, long base) {
      if (depth == 0) return base;
      std::vector<JoinHandle<long>> kids;
      for (int i = 0; i < 10; ++i)
        kids.push_back(chronos::go(SpawnOptions{.small_stack = true},
                                   [=] { return node(depth - 1, base * 10 + i); }));
      long s = 0;
      for (auto& k : kids) s += k.join();
      return s;
    }
  };
  const int depth = chronos::test::scale() == 1 ? 5 : 3;
  long leaves = 1;
  for (int i = 0; i < depth; ++i) leaves *= 10;
  EXPECT_EQ(one_worker().block_on([=] { return Tree::node(depth, 0); }), leaves * (leaves - 1) / 2);
}

}  // namespace
