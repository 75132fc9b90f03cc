// The execution trace of a real runtime (Config::trace_path): the file parses
// as JSON (python3's json module) and holds, in order, what a known program
// did. The writer's own details are in sched_trace_writer_test.cpp.
#include <gtest/gtest.h>
#include <sys/socket.h>
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

TEST(Trace, RecordsAnIoWaitWithItsFdAndDirection) {
  if (std::system("python3 -c pass >/dev/null 2>&1") != 0) GTEST_SKIP() << "no python3";
  std::string path = (std::filesystem::temp_directory_path() /
                      ("chronos-trace-io-" + std::to_string(::getpid()) + ".json"))
                         .string();
  int rv[2], wv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, rv), 0);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, wv), 0);
  char chunk[4096] = {};
  while (::write(wv[0], chunk, sizeof chunk) > 0) {  // full: a writer must wait
  }
  chronos::FiberId reader_id = 0, writer_id = 0;
  {
    chronos::Config c;
    c.workers = 2;
    c.trace_path = path;
    chronos::Runtime rt(c);
    rt.block_on([&] {
      auto reader = chronos::go([fd = rv[0]] { chronos::wait_readable(fd); });
      auto writer = chronos::go([fd = wv[0]] { chronos::wait_writable(fd); });
      reader_id = reader.id();
      writer_id = writer.id();
      // Both wait (the counter moves as a wait parks) before anything is ready.
      auto io_waits = [&rt] {
        std::uint64_t n = 0;
        for (const auto& w : rt.stats().workers) n += w.io_waits;
        return n;
      };
      for (int i = 0; i < 5000 && io_waits() < 2; ++i) chronos::sleep_for(1ms);
      ASSERT_EQ(::write(rv[1], "x", 1), 1);
      while (::read(wv[1], chunk, sizeof chunk) > 0) {
      }
      reader.join();
      writer.join();
    });
  }  // shutdown writes the file
  ASSERT_TRUE(std::filesystem::exists(path));
  std::string out = run_python(kSummary, path + "' '" + std::to_string(reader_id));
  EXPECT_NE(out.find("ends ['io wait fd " + std::to_string(rv[0]) + " read', 'exit']\n"),
            std::string::npos)
      << out;
  out = run_python(kSummary, path + "' '" + std::to_string(writer_id));
  EXPECT_NE(out.find("ends ['io wait fd " + std::to_string(wv[0]) + " write', 'exit']\n"),
            std::string::npos)
      << out;
  for (int fd : {rv[0], rv[1], wv[0], wv[1]}) ::close(fd);
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
