// bench/cpu_pair.hpp: for the benchmarks that hand data between two cores
// (steal_bench, machine_bench): the first two CPUs the process may use, and
// pinning the calling thread to one of them.
#pragma once

#include <pthread.h>
#include <sched.h>

namespace bench {

// The process's CPU mask, read once, and its first two CPUs; ok is false
// where it has fewer than two.
struct CpuPair {
  cpu_set_t mask;
  int cpu[2] = {-1, -1};
  bool ok = false;

  CpuPair() noexcept {
    CPU_ZERO(&mask);
    if (::sched_getaffinity(0, sizeof mask, &mask) != 0) return;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < 2; ++c)
      if (CPU_ISSET(c, &mask)) cpu[n++] = c;
    ok = n == 2;
  }
  // Gives the calling thread the whole mask back.
  void restore() const noexcept { ::pthread_setaffinity_np(::pthread_self(), sizeof mask, &mask); }
};

// Pins the calling thread to one CPU. False if the kernel refused.
inline bool pin_to(int cpu) noexcept {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return ::pthread_setaffinity_np(::pthread_self(), sizeof one, &one) == 0;
}

}  // namespace bench
