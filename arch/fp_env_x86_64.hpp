// arch/fp_env_x86_64.hpp: reading and writing the floating-point control
// state that the psABI makes callee-saved (MXCSR's control bits, the x87
// control word), for switches that do not save it themselves.
#pragma once

#include <cstdint>

namespace chronos::arch {

struct FpEnv {
  std::uint32_t mxcsr = 0x1F80;   // psABI default: all exceptions masked, round to nearest
  std::uint16_t x87_cw = 0x037F;  // psABI default
  bool operator==(const FpEnv&) const = default;
};

inline FpEnv fp_env_read() noexcept {
  FpEnv e;
  asm volatile("stmxcsr %0" : "=m"(e.mxcsr));
  asm volatile("fnstcw %0" : "=m"(e.x87_cw));
  e.mxcsr &= ~0x3Fu;  // the sticky status flags are caller-saved: not ours to carry
  return e;
}

inline void fp_env_write(const FpEnv& e) noexcept {
  std::uint32_t mx = e.mxcsr;
  std::uint16_t cw = e.x87_cw;
  asm volatile("ldmxcsr %0" : : "m"(mx));
  asm volatile("fldcw %0" : : "m"(cw));
}

}  // namespace chronos::arch
