// chronos/debug.hpp: looking inside a running program (README, "Seeing inside").
//
//   chronos::dump_fibers(std::cerr);   // every fiber: state, wait, backtrace
//
// The runtime's other diagnostics are set up in Config: a dump on a signal
// (dump_signal), an execution trace (trace_path), the slow-fiber watchdog
// (slow_fiber_threshold) and deadlock detection (deadlock_action). Metrics:
// Runtime::stats() and to_prometheus().
#pragma once

#include <chronos/export.hpp>
#include <chronos/runtime.hpp>

#include <iosfwd>
#include <string>

namespace chronos {

// Writes every live fiber of every runtime in the process, Go style: id,
// name, state, priority, the worker it runs or waits on, what a parked fiber
// waits on (channel, mutex, fd and direction, timer, join, future...) and for
// how long, and a parked fiber's symbolized backtrace. Callable from any
// thread or fiber while the runtime runs; a parked fiber's wake-up waits the
// few microseconds its stack takes to walk.
CHRONOS_API void dump_fibers(std::ostream& os);
CHRONOS_API std::string dump_fibers();

// The stats in the Prometheus text exposition format (version 0.0.4), one
// family per counter with a worker label, ready to serve on /metrics.
CHRONOS_API std::string to_prometheus(const RuntimeStats& stats);

}  // namespace chronos
