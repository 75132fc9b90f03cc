// tests/gdb_fibers_prog.cpp: the program tests/gdb_fibers_test.sh debugs with
// tools/gdb/chronos.py.
//
// One worker runs, in turn, fibers that end up in known places:
//   recv-parked    Waiting in ch.recv(), inside park_in_recv()
//   mutex-parked   Waiting on a Mutex the main thread holds, in park_on_mutex()
//   small-parked   a small stack, priority 3, Waiting in park_small()
//   yield-ready    Ready and switched out, inside chronos::yield() in park_in_yield()
//   finished       Done, its handle not yet joined
//   spinner        Running: it spins without yielding, so the one worker stays
//                  on it and everything above stays where it is
//   not-started    Ready, spawned after the spinner took the worker: it has
//                  never run (a normal stack, bound at spawn)
//   lazy-small     the same with a small stack, which is bound only when it
//                  first runs: it has none yet
// The main thread prints their ids, then calls chronos_gdb_test_stop(), where
// the script breaks. Afterwards everything is released and joined, and the
// program exits 0, but only if a helper thread's read() from a pipe, during
// which gdb may have borrowed that thread's registers, came back intact.
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <chronos/chronos.hpp>
#include <cstdio>
#include <thread>

namespace {

std::atomic<int> arrived{0};
std::atomic<bool> spinning{false};
std::atomic<bool> release{false};

[[gnu::noinline]] int park_in_recv(chronos::Channel<int>& ch) {
  arrived.fetch_add(1);
  int v = ch.recv().value_or(-1);
  asm volatile("" ::: "memory");  // no tail call: keep this frame on the stack
  return v + 1;
}

[[gnu::noinline]] void park_on_mutex(chronos::Mutex& m) {
  arrived.fetch_add(1);
  m.lock();
  asm volatile("" ::: "memory");
  m.unlock();
}

[[gnu::noinline]] int park_small(chronos::Channel<int>& ch) {
  arrived.fetch_add(1);
  int v = ch.recv().value_or(-1);
  asm volatile("" ::: "memory");
  return v * 2;
}

[[gnu::noinline]] void park_in_yield() {
  arrived.fetch_add(1);
  while (!release.load()) chronos::yield();
  asm volatile("" ::: "memory");
}

[[gnu::noinline]] void spin() {
  spinning.store(true);
  while (!release.load()) asm volatile("pause" ::: "memory");
}

void wait_for(bool (*cond)()) {
  for (int i = 0; i < 10000 && !cond(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

extern "C" [[gnu::noinline]] void chronos_gdb_test_stop() {
  asm volatile("" ::: "memory");
}

int main() {
  // A thread blocked in a system call while the script borrows its registers:
  // its read() must restart, not fail, when the process goes on.
  int pipefd[2];
  if (::pipe(pipefd) != 0) return 2;
  std::atomic<int> reader_result{0};
  std::thread reader([&] {
    ::pthread_setname_np(::pthread_self(), "gdb-reader");
    char c = 0;
    ssize_t n = ::read(pipefd[0], &c, 1);
    reader_result.store(n == 1 && c == 'x' ? 1 : -1);
  });

  int rc = 0;
  {
    chronos::Config cfg;
    cfg.workers = 1;
    chronos::Runtime rt(cfg);
    chronos::Channel<int> ch;
    chronos::Channel<int> small_ch;
    chronos::Mutex m;
    m.lock();

    auto recv_h =
        rt.spawn(chronos::SpawnOptions{.name = "recv-parked"}, [&] { return park_in_recv(ch); });
    auto mutex_h =
        rt.spawn(chronos::SpawnOptions{.name = "mutex-parked"}, [&] { park_on_mutex(m); });
    auto small_h =
        rt.spawn(chronos::SpawnOptions{.priority = 3, .small_stack = true, .name = "small-parked"},
                 [&] { return park_small(small_ch); });
    auto yield_h = rt.spawn(chronos::SpawnOptions{.name = "yield-ready"}, [] { park_in_yield(); });
    auto done_h = rt.spawn(chronos::SpawnOptions{.name = "finished"}, [] { arrived.fetch_add(1); });
    wait_for([] { return arrived.load() == 5; });
    auto spin_h = rt.spawn(chronos::SpawnOptions{.name = "spinner"}, [] { spin(); });
    wait_for([] { return spinning.load(); });
    // The spinner holds the only worker: every other fiber has switched out.
    auto late_h = rt.spawn(chronos::SpawnOptions{.name = "not-started"}, [] { return 7; });
    auto lazy_h = rt.spawn(chronos::SpawnOptions{.small_stack = true, .name = "lazy-small"},
                           [] { return 8; });

    std::printf("fiber recv-parked id=%llu\n", static_cast<unsigned long long>(recv_h.id()));
    std::printf("fiber mutex-parked id=%llu\n", static_cast<unsigned long long>(mutex_h.id()));
    std::printf("fiber small-parked id=%llu\n", static_cast<unsigned long long>(small_h.id()));
    std::printf("fiber yield-ready id=%llu\n", static_cast<unsigned long long>(yield_h.id()));
    std::printf("fiber finished id=%llu\n", static_cast<unsigned long long>(done_h.id()));
    std::printf("fiber spinner id=%llu\n", static_cast<unsigned long long>(spin_h.id()));
    std::printf("fiber not-started id=%llu\n", static_cast<unsigned long long>(late_h.id()));
    std::printf("fiber lazy-small id=%llu\n", static_cast<unsigned long long>(lazy_h.id()));
    std::fflush(stdout);

    chronos_gdb_test_stop();

    // Wake the parked fibers while the spinner still runs, so that the runtime
    // never looks all asleep (a deadlock report) on the way out.
    m.unlock();
    ch.send(41);
    small_ch.send(21);
    release.store(true);
    spin_h.join();
    yield_h.join();
    done_h.join();
    mutex_h.join();
    if (recv_h.join() != 42 || small_h.join() != 42 || late_h.join() != 7 || lazy_h.join() != 8) {
      std::fprintf(stderr, "FAIL: wrong results\n");
      rc = 1;
    }
  }

  if (::write(pipefd[1], "x", 1) != 1) return 2;
  reader.join();
  if (reader_result.load() != 1) {
    std::fprintf(stderr, "FAIL: the reader thread's read() was disturbed\n");
    return 1;
  }
  std::printf("gdb_fibers_prog: done\n");
  return rc;
}
