// tests/sync_future_test.cpp: Promise/Future between fibers and threads,
// exceptions, broken promises, misuse, and deadlines.
#include <gtest/gtest.h>

#include <chronos/chronos.hpp>

#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using chronos::Config;
using chronos::Future;
using chronos::Promise;
using chronos::Runtime;
using chronos::test::scaled;

std::future_errc code_of(const std::future_error& e) {
  return static_cast<std::future_errc>(e.code().value());
}

TEST(Future, FiberWaitsForAPromiseSetByAThread) {
  Runtime rt{Config{.workers = 2}};
  Promise<std::string> p;
  Future<std::string> f = p.get_future();
  auto h = rt.spawn([&] { return f.get(); });  // parks the fiber
  std::thread t([p = std::move(p)]() mutable {
    std::this_thread::sleep_for(5ms);
    p.set_value("from a thread");
  });
  EXPECT_EQ(h.join(), "from a thread");
  t.join();
}

TEST(Future, ThreadWaitsForAFiber) {
  Runtime rt{Config{.workers = 1}};
  Promise<int> p;
  Future<int> f = p.get_future();
  rt.spawn([p = std::move(p)]() mutable {
      chronos::sleep_for(2ms);
      p.set_value(42);
    }).detach();
  EXPECT_EQ(f.get(), 42);  // blocks this plain thread
  EXPECT_FALSE(f.valid());
}

TEST(Future, ExceptionsPropagate) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    Promise<int> p;
    auto f = p.get_future();
    auto h = chronos::go([&] {
      try {
        throw std::runtime_error("boom");
      } catch (...) {
        p.set_exception(std::current_exception());
      }
    });
    try {
      f.get();
      FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "boom");
    }
    h.join();
  });
}

TEST(Future, BrokenPromise) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    Future<int> f;
    {
      Promise<int> p;
      f = p.get_future();
    }
    try {
      f.get();
      FAIL() << "no exception";
    } catch (const std::future_error& e) {
      EXPECT_EQ(code_of(e), std::future_errc::broken_promise);
    }
  });
}

TEST(Future, MisuseIsAClearError) {
  Promise<void> p;
  auto f = p.get_future();
  try {
    p.get_future();
    FAIL();
  } catch (const std::future_error& e) {
    EXPECT_EQ(code_of(e), std::future_errc::future_already_retrieved);
  }
  p.set_value();
  try {
    p.set_value();
    FAIL();
  } catch (const std::future_error& e) {
    EXPECT_EQ(code_of(e), std::future_errc::promise_already_satisfied);
  }
  EXPECT_THROW(p.set_exception(std::make_exception_ptr(1)), std::future_error);
  EXPECT_TRUE(f.ready());
  f.get();
  try {
    f.get();
    FAIL();
  } catch (const std::future_error& e) {
    EXPECT_EQ(code_of(e), std::future_errc::no_state);
  }
}

TEST(Future, WaitWithDeadline) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    Promise<int> p;
    auto f = p.get_future();
    EXPECT_EQ(f.wait_for(10ms), std::future_status::timeout);
    p.set_value(3);
    EXPECT_EQ(f.wait_until(chronos::Clock::now() + 1s), std::future_status::ready);
    EXPECT_EQ(f.get(), 3);
  });
}

TEST(Future, ValueTypeIsDestroyedOnce) {
  auto token = std::make_shared<int>(1);
  {
    Promise<std::shared_ptr<int>> p;
    auto f = p.get_future();
    p.set_value(token);
    EXPECT_EQ(token.use_count(), 2);
  }  // neither get() nor a waiter: the state still destroys the value
  EXPECT_EQ(token.use_count(), 1);
}

// Many futures completed across workers: each get() sees its own value.
TEST(Future, ManyAcrossWorkers) {
  Runtime rt{Config{.workers = 2}};
  const int n = static_cast<int>(scaled(20000));
  std::vector<chronos::JoinHandle<void>> hs;
  for (int i = 0; i < n; i += 100)
    hs.push_back(rt.spawn([i] {
      for (int k = i; k < i + 100; ++k) {
        Promise<int> p;
        auto f = p.get_future();
        auto h = chronos::go([&p, k] { p.set_value(k * 2); });
        EXPECT_EQ(f.get(), k * 2);
        h.join();
      }
    }));
  for (auto& h : hs) h.join();
}

}  // namespace
