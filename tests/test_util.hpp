// tests/test_util.hpp: sizes that shrink where the tests run slowly.
//
// Under a sanitizer the counts are divided by 20; CHRONOS_TEST_SCALE=N in
// the environment divides them by N instead (CI uses it under valgrind).
#pragma once

#include <cstddef>
#include <cstdlib>

namespace chronos::test {

inline std::size_t scale() {
  static const std::size_t s = [] {
    if (const char* e = std::getenv("CHRONOS_TEST_SCALE")) {
      long v = std::atol(e);
      if (v > 0) return static_cast<std::size_t>(v);
    }
#if CHRONOS_TEST_SANITIZED
    return std::size_t{20};
#else
    return std::size_t{1};
#endif
  }();
  return s;
}

// n divided by the scale (at least 1).
inline std::size_t scaled(std::size_t n) {
  return n / scale() ? n / scale() : 1;
}

}  // namespace chronos::test
