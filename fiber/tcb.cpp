// fiber/tcb.cpp: the TCB's out-of-line helpers. Setting up, binding and
// retiring a TCB are inline in fiber/tcb.hpp: they are on the spawn and exit
// paths, where a call and its register saves showed in the instruction count.
#include "fiber/tcb.hpp"

namespace chronos::detail {

const char* to_string(FiberState s) noexcept {
  switch (s) {
    case FiberState::kReady:
      return "ready";
    case FiberState::kRunning:
      return "running";
    case FiberState::kWaiting:
      return "waiting";
    case FiberState::kDone:
      return "done";
  }
  return "?";
}

}  // namespace chronos::detail
