// sched/debug_api.cpp: chronos/debug.hpp, the public face of sched/inspect.hpp
// and the runtime's stats in the Prometheus text format.
#include <chronos/debug.hpp>

#include <cinttypes>
#include <cstdio>
#include <ostream>

#include "sched/inspect.hpp"

namespace chronos {

std::string dump_fibers() {
  std::string out;
  detail::write_dump(out);
  return out;
}

void dump_fibers(std::ostream& os) {
  os << dump_fibers();
}

std::string to_prometheus(const RuntimeStats& s) {
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
  };
  auto sample = [&](const char* name, const char* labels, std::uint64_t v) {
    char line[160];
    std::snprintf(line, sizeof line, "%s%s %" PRIu64 "\n", name, labels, v);
    out += line;
  };
  struct PerWorker {
    const char* name;
    const char* type;
    const char* help;
    std::uint64_t WorkerStats::*field;
  };
  static constexpr PerWorker kPerWorker[] = {
      {"chronos_fibers_run_total", "counter", "Fibers started or resumed by the worker.",
       &WorkerStats::fibers_run},
      {"chronos_fibers_spawned_total", "counter", "Fibers spawned with go() on the worker.",
       &WorkerStats::spawned},
      {"chronos_steals_total", "counter", "Successful steals by the worker.", &WorkerStats::steals},
      {"chronos_stolen_fibers_total", "counter", "Fibers the worker's steals took.",
       &WorkerStats::stolen},
      {"chronos_failed_steals_total", "counter", "Steals that found the victim empty.",
       &WorkerStats::failed_steals},
      {"chronos_runnext_retakes_total", "counter",
       "Fibers the monitor moved out of the worker's runnext slot while it ran one fiber.",
       &WorkerStats::retaken},
      {"chronos_worker_parks_total", "counter", "Times the worker thread went to sleep.",
       &WorkerStats::parks},
      {"chronos_worker_wakeups_total", "counter", "Times the worker thread was woken.",
       &WorkerStats::wakeups},
      {"chronos_io_waits_total", "counter", "Fibers parked on a socket or fd.",
       &WorkerStats::io_waits},
      {"chronos_timers_fired_total", "counter", "Timers fired by the worker.",
       &WorkerStats::timers_fired},
      {"chronos_run_queue_depth", "gauge", "Fibers in the worker's run queues.",
       &WorkerStats::queued},
      {"chronos_timers_armed", "gauge", "Timers armed on the worker's timer wheel.",
       &WorkerStats::timers_armed},
  };
  for (const PerWorker& m : kPerWorker) {
    family(m.name, m.type, m.help);
    for (std::size_t i = 0; i < s.workers.size(); ++i) {
      char labels[32];
      std::snprintf(labels, sizeof labels, "{worker=\"%zu\"}", i);
      sample(m.name, labels, s.workers[i].*m.field);
    }
  }
  family("chronos_live_fibers", "gauge", "Fibers spawned and not yet finished.");
  sample("chronos_live_fibers", "", s.live_fibers);
  family("chronos_inject_queue_depth", "gauge", "Fibers in the shared injection queue.");
  sample("chronos_inject_queue_depth", "", s.inject_queued);
  family("chronos_sleeping_workers", "gauge", "Worker threads asleep.");
  sample("chronos_sleeping_workers", "", s.sleeping_workers);
  family("chronos_stacks_mapped", "gauge", "Fiber stacks mapped, in use or cached.");
  sample("chronos_stacks_mapped", "", s.stacks_mapped);
  family("chronos_stacks_free", "gauge", "Fiber stacks cached for reuse.");
  sample("chronos_stacks_free", "", s.stacks_free);
  return out;
}

}  // namespace chronos
