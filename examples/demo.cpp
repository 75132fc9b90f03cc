// examples/demo.cpp: the quick-start demo. Spawns fibers, yields between them,
// joins them, and shows an exception crossing a join.
//
//   ./chronos_demo [fibers]
#include <chronos/chronos.hpp>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  int fibers = argc > 1 ? std::atoi(argv[1]) : 4;
  chronos::Runtime rt{chronos::Config{.workers = 1}};

  int r = rt.block_on([] {
    chronos::JoinHandle<int> h = chronos::go([] {
      chronos::yield();
      return 21;
    });
    return 2 * h.join();
  });
  std::printf("block_on returned %d\n", r);

  // Fibers on one worker take turns at every yield.
  std::string trace;
  rt.block_on([&] {
    std::vector<chronos::JoinHandle<void>> hs;
    for (int i = 0; i < fibers; ++i) {
      hs.push_back(chronos::go(chronos::SpawnOptions{.name = "worker"}, [&trace, i] {
        for (int round = 0; round < 3; ++round) {
          trace += char('a' + i);
          chronos::yield();
        }
      }));
    }
    for (auto& h : hs) h.join();
  });
  std::printf("interleaving of %d fibers over 3 rounds: %s\n", fibers, trace.c_str());

  try {
    rt.block_on([] { chronos::go([]() -> int { throw std::runtime_error("boom"); }).join(); });
  } catch (const std::exception& e) {
    std::printf("exception crossed two joins: %s\n", e.what());
  }

  auto h = rt.spawn([] { return chronos::this_fiber::id(); });  // from a plain thread
  std::printf("spawned from main, fiber id %llu\n", static_cast<unsigned long long>(h.join()));
  return 0;
}
