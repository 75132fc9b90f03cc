// tests/consumer/main.cpp: the smallest real use of an installed chronos.
#include <chronos/chronos.hpp>

#include <cstdio>

int main() {
  chronos::Runtime rt{chronos::Config{.workers = 1}};
  int r = rt.block_on([] {
    chronos::JoinHandle<int> h = chronos::go([] {
      chronos::yield();
      return 21;
    });
    return 2 * h.join();
  });
  std::printf("consumer: %d\n", r);
  return r == 42 ? 0 : 1;
}
