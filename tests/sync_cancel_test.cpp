// tests/sync_cancel_test.cpp: every blocking call honours the fiber's stop
// token: sleep, join, mutex lock, semaphore, condition wait, wait group,
// channel send/recv, select and future get. Each throws chronos::Cancelled
// and leaves the primitive usable.
#include <gtest/gtest.h>

#include <chronos/chronos.hpp>

#include <functional>
#include <mutex>
#include <stop_token>
#include <string>

namespace {

using namespace std::chrono_literals;
using chronos::Config;
using chronos::Runtime;

// Runs `blocking` in a fiber with a stop token, lets it park, requests a
// stop, and expects Cancelled out of it. Then runs `after` (still in a fiber)
// to check the primitive still works.
void expect_cancelled(
    const std::function<void()>& blocking, const std::function<void()>& after = [] {}) {
  Runtime rt{Config{.workers = 2}};
  rt.block_on([&] {
    std::stop_source stop;
    bool cancelled = false;
    auto h = chronos::go({.stop_token = stop.get_token()}, [&] {
      try {
        blocking();
      } catch (const chronos::Cancelled& e) {
        cancelled = true;
        EXPECT_EQ(e.code(), std::make_error_code(std::errc::operation_canceled));
      }
    });
    chronos::sleep_for(5ms);  // let it park
    stop.request_stop();
    h.join();
    EXPECT_TRUE(cancelled);
    after();
  });
}

TEST(Cancel, Sleep) {
  expect_cancelled([] { chronos::sleep_for(1h); });
}

TEST(Cancel, Join) {
  chronos::Channel<int> gate;
  expect_cancelled([&] {
    auto h = chronos::go([&] { gate.recv(); });
    try {
      h.join();
    } catch (const chronos::Cancelled&) {
      EXPECT_TRUE(h.joinable());  // still ours to join
      gate.close();
      chronos::this_fiber::CancelScope clear{std::stop_token{}};
      h.join();
      throw;
    }
  });
}

TEST(Cancel, MutexLock) {
  chronos::Mutex mu;
  Runtime rt{Config{.workers = 1}};
  rt.block_on([&] {
    mu.lock();
    std::stop_source stop;
    bool cancelled = false;
    auto h = chronos::go({.stop_token = stop.get_token()}, [&] {
      try {
        mu.lock();
      } catch (const chronos::Cancelled&) {
        cancelled = true;
      }
    });
    chronos::yield();
    stop.request_stop();
    h.join();
    EXPECT_TRUE(cancelled);
    mu.unlock();
    EXPECT_TRUE(mu.try_lock());  // nobody was handed it
    mu.unlock();
  });
}

TEST(Cancel, Semaphore) {
  chronos::Semaphore sem(0);
  expect_cancelled([&] { sem.acquire(); },
                   [&] {
                     sem.release();
                     EXPECT_TRUE(sem.try_acquire());  // the permit was not lost
                   });
}

TEST(Cancel, CondVarWaitKeepsTheLock) {
  chronos::Mutex mu;
  chronos::CondVar cv;
  expect_cancelled([&] {
    std::unique_lock lk(mu);
    try {
      cv.wait(lk, [] { return false; });
    } catch (const chronos::Cancelled&) {
      EXPECT_TRUE(lk.owns_lock());
      throw;
    }
  });
}

TEST(Cancel, WaitGroup) {
  chronos::WaitGroup wg(1);
  expect_cancelled([&] { wg.wait(); }, [&] { wg.done(); });
}

TEST(Cancel, ChannelRecvAndSend) {
  chronos::Channel<int> ch;
  expect_cancelled([&] { ch.recv(); });
  expect_cancelled([&] { ch.send(1); },
                   [&] {
                     // The cancelled send left nothing behind.
                     EXPECT_EQ(ch.try_recv(), std::nullopt);
                   });
}

TEST(Cancel, Select) {
  chronos::Channel<int> a, b;
  expect_cancelled(
      [&] { chronos::select(chronos::recv_case(a, [] {}), chronos::recv_case(b, [] {})); });
}

TEST(Cancel, FutureGetLeavesTheFutureValid) {
  chronos::Promise<int> p;
  auto f = p.get_future();
  expect_cancelled(
      [&] {
        try {
          f.get();
        } catch (const chronos::Cancelled&) {
          EXPECT_TRUE(f.valid());
          throw;
        }
      },
      [&] {
        p.set_value(9);
        EXPECT_EQ(f.get(), 9);
      });
}

TEST(Cancel, AlreadyStoppedTokenCancelsTheNextPark) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    std::stop_source stop;
    stop.request_stop();
    chronos::Channel<int> ch(1);
    chronos::this_fiber::CancelScope scope(stop.get_token());
    ch.send(1);                   // needs no wait: succeeds
    EXPECT_EQ(ch.try_recv(), 1);  // likewise
    EXPECT_THROW(ch.recv(), chronos::Cancelled);
    EXPECT_THROW(chronos::sleep_for(1ms), chronos::Cancelled);
  });
}

TEST(Cancel, ScopesNest) {
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    std::stop_source outer, inner;
    EXPECT_FALSE(chronos::this_fiber::stop_token().stop_possible());
    {
      chronos::this_fiber::CancelScope a(outer.get_token());
      {
        chronos::this_fiber::CancelScope b(inner.get_token());
        inner.request_stop();
        EXPECT_TRUE(chronos::this_fiber::stop_token().stop_requested());
      }
      EXPECT_FALSE(chronos::this_fiber::stop_token().stop_requested());
      EXPECT_TRUE(chronos::this_fiber::stop_token().stop_possible());
    }
  });
}

}  // namespace
