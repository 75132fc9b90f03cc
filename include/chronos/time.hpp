// chronos/time.hpp: sleeping and deadlines.
//
//   chronos::sleep_for(10ms);                       // parks this fiber, not the thread
//   auto deadline = chronos::Clock::now() + 1s;     // deadlines are steady_clock time points
//
// Timers have a resolution of 1 ms and never fire early (README, "Timers").
#pragma once

#include <chronos/export.hpp>

#include <chrono>
#include <cstdint>
#include <limits>

namespace chronos {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

namespace detail {
inline constexpr std::int64_t kNoDeadlineNs = std::numeric_limits<std::int64_t>::max();
// A steady_clock time point as nanoseconds on chronos's clock (CLOCK_MONOTONIC).
inline std::int64_t to_ns(Deadline d) noexcept {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d.time_since_epoch()).count();
  return ns < 0 ? 0 : static_cast<std::int64_t>(ns);
}
template <class Rep, class Period>
std::int64_t after_ns(std::chrono::duration<Rep, Period> d) noexcept {
  auto now = Clock::now();
  if (d > Deadline::max() - now) return kNoDeadlineNs;  // "forever"
  return to_ns(now + std::chrono::ceil<Clock::duration>(d));
}
CHRONOS_API void sleep_until_ns(std::int64_t deadline);
}  // namespace detail

// Parks the calling fiber until `deadline`. Returns at once if it has passed.
// Throws chronos::Cancelled if the fiber's stop token is triggered first.
// Must be called from a fiber.
inline void sleep_until(Deadline deadline) {
  detail::sleep_until_ns(detail::to_ns(deadline));
}

template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d) {
  detail::sleep_until_ns(detail::after_ns(d));
}

}  // namespace chronos
