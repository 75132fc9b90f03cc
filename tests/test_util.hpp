// tests/test_util.hpp: sizes that shrink under sanitizers.
#pragma once

#include <cstddef>

namespace chronos::test {

#if CHRONOS_TEST_SANITIZED
inline constexpr std::size_t kScale = 20;
#else
inline constexpr std::size_t kScale = 1;
#endif

// n, or n / kScale under a sanitizer (at least 1).
constexpr std::size_t scaled(std::size_t n) { return n / kScale ? n / kScale : 1; }

}  // namespace chronos::test
