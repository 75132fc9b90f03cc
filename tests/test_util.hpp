// tests/test_util.hpp: sizes that shrink where the tests run slowly.
//
// Under a sanitizer the counts are divided by 20; CHRONOS_TEST_SCALE=N in
// the environment divides them by N instead (CI uses it under valgrind).
#pragma once

#include <cstddef>
#include <cstdlib>

// CHRONOS_TEST_TSAN: 1 under ThreadSanitizer, which delivers signals late.
#if defined(__SANITIZE_THREAD__)
#define CHRONOS_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CHRONOS_TEST_TSAN 1
#endif
#endif
#ifndef CHRONOS_TEST_TSAN
#define CHRONOS_TEST_TSAN 0
#endif

// CHRONOS_TEST_ASAN: 1 under AddressSanitizer.
#if defined(__SANITIZE_ADDRESS__)
#define CHRONOS_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHRONOS_TEST_ASAN 1
#endif
#endif
#ifndef CHRONOS_TEST_ASAN
#define CHRONOS_TEST_ASAN 0
#endif

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
