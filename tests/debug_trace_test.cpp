// The execution trace of a real runtime (Config::trace_path): the file parses
// as JSON (python3's json module) and holds, in order, what a known program
// did. The writer's own details are in sched_trace_writer_test.cpp.
#include <gtest/gtest.h>
#include <unistd.h>
#include <chronos/chronos.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

using namespace std::chrono_literals;

namespace {

std::string run_python(const std::string& script, const std::string& arg) {
  std::string cmd = "python3 - '" + arg + "' <<'PY'\n" + script + "\nPY\n";
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(cmd.c_str(), "r"), ::pclose);
  std::string out;
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p.get())) out.append(buf.data(), n);
  return out;
}

// Prints, for fiber C (argv[2]): its spawn, the end of each of its run slices
// in time order, and whether a flow arrow ends at the start of its second
// slice; then the worker track names and whether idle slices and timer
// instants exist.
constexpr const char* kSummary = R"(
import json, sys
doc = json.load(open(sys.argv[1]))
ev = doc["traceEvents"]
c = int(sys.argv[2])
print("spawned", any(e.get("name") == "spawn" and e["args"]["fiber"] == c for e in ev))
runs = sorted((e for e in ev if e["ph"] == "X" and e.get("name") == "fiber %d" % c),
              key=lambda e: e["ts"])
print("ends", [e["args"]["end"] for e in runs])
unparks = [e for e in ev if e.get("name") == "unpark" and e["args"]["fiber"] == c]
print("unparked", len(unparks))
starts = {e["id"]: e for e in ev if e["ph"] == "s"}
ends = [e for e in ev if e["ph"] == "f" and len(runs) > 1 and e["ts"] == runs[1]["ts"]
        and e["tid"] == runs[1]["tid"]]
print("flow", any(f["id"] in starts and starts[f["id"]]["ts"] == unparks[0]["ts"] for f in ends)
      if unparks else False)
names = sorted(e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name")
print("tracks", names)
print("idle", any(e["ph"] == "X" and e["name"] == "idle" for e in ev))
print("timers", any(e.get("name") == "timers" for e in ev))
)";

}  // namespace

TEST(Trace, RecordsARuntimeAsChromeTraceJson) {
  if (std::system("python3 -c pass >/dev/null 2>&1") != 0) GTEST_SKIP() << "no python3";
  std::string path = (std::filesystem::temp_directory_path() /
                      ("chronos-trace-" + std::to_string(::getpid()) + ".json"))
                         .string();
  chronos::FiberId child_id = 0;
  {
    chronos::Config c;
    c.workers = 2;
    c.trace_path = path;
    chronos::Runtime rt(c);
    child_id = rt.block_on([] {
      chronos::Channel<int> ch;
      auto child = chronos::go([&] { return *ch.recv() + 1; });
      const chronos::FiberId id = child.id();
      chronos::sleep_for(5ms);  // the child parks on the channel meanwhile
      ch.send(41);              // ...and this unparks it
      EXPECT_EQ(child.join(), 42);
      return id;
    });
  }  // shutdown writes the file
  ASSERT_TRUE(std::filesystem::exists(path));
  std::string out = run_python(kSummary, path + "' '" + std::to_string(child_id));
  SCOPED_TRACE(out);
  EXPECT_NE(out.find("spawned True\n"), std::string::npos);
  EXPECT_NE(out.find("ends ['park: channel recv', 'exit']\n"), std::string::npos);
  EXPECT_NE(out.find("unparked 1\n"), std::string::npos);
  EXPECT_NE(out.find("flow True\n"), std::string::npos);
  EXPECT_NE(out.find("tracks ['other threads', 'worker 0', 'worker 1']\n"), std::string::npos);
  EXPECT_NE(out.find("idle True\n"), std::string::npos);
  EXPECT_NE(out.find("timers True\n"), std::string::npos);
  std::filesystem::remove(path);
}

TEST(Trace, AnUnwritablePathIsReportedNotFatal) {
  testing::internal::CaptureStderr();
  {
    chronos::Config c;
    c.workers = 1;
    c.trace_path = "/nonexistent-dir/trace.json";
    chronos::Runtime rt(c);
    EXPECT_EQ(rt.block_on([] { return 3; }), 3);
  }
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("chronos: the execution trace was not written"), std::string::npos) << err;
  EXPECT_NE(err.find("/nonexistent-dir/trace.json"), std::string::npos) << err;
}
