// sched/heavy_fence.cpp: membarrier(2) behind heavy_fence() (see the header).
#include "sched/heavy_fence.hpp"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace chronos::detail {

namespace {
long membarrier(int cmd) noexcept {
  return ::syscall(SYS_membarrier, cmd, 0u, 0);
}

bool register_expedited() noexcept {
  const long supported = membarrier(MEMBARRIER_CMD_QUERY);
  if (supported < 0 || !(supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return false;
  return membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}
}  // namespace

bool heavy_fence_available() noexcept {
  static const bool available = register_expedited();  // (a thread-safe static)
  return available;
}

void heavy_fence() noexcept {
  // Cannot fail once registered: the only errors are an unknown command and
  // an unregistered process.
  membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
}

}  // namespace chronos::detail
