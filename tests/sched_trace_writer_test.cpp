// tests/sched_trace_writer_test.cpp: the tracer's buffers and its Chrome JSON
// writer, driven by hand (no runtime): two threads act as workers and one as a
// plain thread, in a fixed order, then the file is read back, once by Python's
// json module and once by a small JSON parser here, and checked event by event.
#include <gtest/gtest.h>

#include <time.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sched/trace.hpp"

namespace {

using chronos::detail::TraceBuffer;
using chronos::detail::TraceClock;
using chronos::detail::TraceEvent;
using chronos::detail::TraceKind;
using chronos::detail::Tracer;

// ---------------------------------------------------------------- a small JSON reader

struct JValue {
  enum Type { kNull, kBool, kNum, kStr, kArr, kObj } type = kNull;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<JValue> arr;        // kArr: the items; kObj: the values
  std::vector<std::string> keys;  // kObj: the keys, arr[i] is keys[i]'s value

  const JValue* get(std::string_view key) const {
    if (type != kObj) return nullptr;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == key) return &arr[i];
    }
    return nullptr;
  }
};

// Strict enough for the writer's output: fails (ok() false) on anything that
// is not JSON, including trailing garbage.
class JParser {
 public:
  explicit JParser(std::string_view s) : s_(s) {}

  bool parse(JValue* out) {
    ws();
    if (!value(out)) return false;
    ws();
    return i_ == s_.size();
  }
  std::size_t where() const { return i_; }

 private:
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t'))
      ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool word(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }
  bool value(JValue* v) {
    ws();
    if (i_ >= s_.size()) return false;
    char c = s_[i_];
    if (c == '{') {
      ++i_;
      v->type = JValue::kObj;
      if (eat('}')) return true;
      do {
        ws();
        std::string key;
        if (!string(&key) || !eat(':')) return false;
        JValue item;
        if (!value(&item)) return false;
        v->keys.push_back(std::move(key));
        v->arr.push_back(std::move(item));
      } while (eat(','));
      return eat('}');
    }
    if (c == '[') {
      ++i_;
      v->type = JValue::kArr;
      if (eat(']')) return true;
      do {
        JValue item;
        if (!value(&item)) return false;
        v->arr.push_back(std::move(item));
      } while (eat(','));
      return eat(']');
    }
    if (c == '"') {
      v->type = JValue::kStr;
      return string(&v->str);
    }
    if (word("true")) {
      v->type = JValue::kBool;
      v->b = true;
      return true;
    }
    if (word("false")) {
      v->type = JValue::kBool;
      return true;
    }
    if (word("null")) return true;
    // A number: JSON's grammar, checked by hand, then strtod.
    std::size_t start = i_;
    if (s_[i_] == '-') ++i_;
    std::size_t digits = i_;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    if (i_ == digits) return false;
    if (s_[digits] == '0' && i_ - digits > 1) return false;  // no leading zeros
    if (i_ < s_.size() && s_[i_] == '.') {
      std::size_t f = ++i_;
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
      if (i_ == f) return false;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      std::size_t e = i_;
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
      if (i_ == e) return false;
    }
    v->type = JValue::kNum;
    v->num = std::strtod(std::string(s_.substr(start, i_ - start)).c_str(), nullptr);
    return true;
  }
  bool string(std::string* out) {
    if (i_ >= s_.size() || s_[i_] != '"') return false;
    ++i_;
    while (i_ < s_.size()) {
      char c = s_[i_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;  // must be escaped
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (i_ >= s_.size()) return false;
      char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'u': {
          if (i_ + 4 > s_.size()) return false;
          unsigned cp = 0;
          for (int k = 0; k < 4; ++k) {
            char h = s_[i_++];
            cp <<= 4;
            if (h >= '0' && h <= '9') {
              cp |= static_cast<unsigned>(h - '0');
            } else if (h >= 'a' && h <= 'f') {
              cp |= static_cast<unsigned>(h - 'a' + 10);
            } else if (h >= 'A' && h <= 'F') {
              cp |= static_cast<unsigned>(h - 'A' + 10);
            } else {
              return false;
            }
          }
          if (cp >= 0x80) return false;  // the writer escapes only control characters
          out->push_back(static_cast<char>(cp));
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One trace event, as read back.
struct Ev {
  std::string ph, name, cat;
  double tid = -1, ts = -1, dur = -1, id = -1;
  const JValue* json = nullptr;

  const JValue* arg(std::string_view key) const {
    const JValue* a = json->get("args");
    return a ? a->get(key) : nullptr;
  }
  double num_arg(std::string_view key) const {
    const JValue* v = arg(key);
    return v && v->type == JValue::kNum ? v->num : -1;
  }
  std::string str_arg(std::string_view key) const {
    const JValue* v = arg(key);
    return v && v->type == JValue::kStr ? v->str : "<missing>";
  }
};

struct Trace {
  JValue root;
  std::vector<Ev> events;

  std::vector<Ev> where(const std::function<bool(const Ev&)>& pred) const {
    std::vector<Ev> out;
    for (const Ev& e : events) {
      if (pred(e)) out.push_back(e);
    }
    return out;
  }
  // Slices (ph X) of one category on one tid, in time order.
  std::vector<Ev> slices(double tid, std::string_view cat) const {
    auto out = where([&](const Ev& e) { return e.ph == "X" && e.tid == tid && e.cat == cat; });
    std::stable_sort(out.begin(), out.end(), [](const Ev& a, const Ev& b) { return a.ts < b.ts; });
    return out;
  }
};

double num_field(const JValue& v, std::string_view key) {
  const JValue* f = v.get(key);
  return f && f->type == JValue::kNum ? f->num : -1;
}
std::string str_field(const JValue& v, std::string_view key) {
  const JValue* f = v.get(key);
  return f && f->type == JValue::kStr ? f->str : "";
}

// Reads and checks the file's outer shape; events point into *t.
::testing::AssertionResult load(const std::string& path, Trace* t) {
  std::string text = slurp(path);
  if (text.empty()) return ::testing::AssertionFailure() << path << " is empty";
  JParser p(text);
  if (!p.parse(&t->root)) {
    return ::testing::AssertionFailure() << "not JSON near byte " << p.where() << " of " << path;
  }
  if (t->root.type != JValue::kObj) return ::testing::AssertionFailure() << "not an object";
  if (str_field(t->root, "displayTimeUnit") != "ns") {
    return ::testing::AssertionFailure() << "displayTimeUnit is not \"ns\"";
  }
  const JValue* evs = t->root.get("traceEvents");
  if (!evs || evs->type != JValue::kArr) return ::testing::AssertionFailure() << "no traceEvents";
  for (const JValue& v : evs->arr) {
    if (v.type != JValue::kObj) return ::testing::AssertionFailure() << "an event is no object";
    Ev e;
    e.json = &v;
    e.ph = str_field(v, "ph");
    e.name = str_field(v, "name");
    e.cat = str_field(v, "cat");
    e.tid = num_field(v, "tid");
    e.ts = num_field(v, "ts");
    e.dur = num_field(v, "dur");
    e.id = num_field(v, "id");
    if (num_field(v, "pid") != 1) return ::testing::AssertionFailure() << "pid is not 1";
    if (e.ph.empty()) return ::testing::AssertionFailure() << "an event without ph";
    if (e.ph != "M" && e.ts < 0) return ::testing::AssertionFailure() << "an event without ts";
    if (e.ph == "X" && e.dur < 0) return ::testing::AssertionFailure() << "an X without dur";
    t->events.push_back(std::move(e));
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------- helpers

// A temporary directory, removed afterwards.
class TraceDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "chronos_trace_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
};

// Busy-waits ~2 us, so that consecutive events of one thread are visibly
// apart at the writer's 1 ns resolution whatever the clock.
void tick() {
  auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(2);
  while (std::chrono::steady_clock::now() < until) {
  }
}

// Runs steps from several threads in a fixed global order.
class Steps {
 public:
  void run(int k, const std::function<void()>& fn) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return turn_ == k; });
    fn();
    tick();
    ++turn_;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int turn_ = 0;
};

constexpr std::uint64_t kChannelRecv = 3;
constexpr std::uint64_t kOddReason = 7;
constexpr const char* kOddName = "odd \"name\" \\ with\nnewline\ttab \x01 end";

const char* reason_name(std::uint64_t arg) {
  switch (arg) {
    case kChannelRecv:
      return "channel recv";
    case kOddReason:
      return kOddName;
    default:
      return nullptr;
  }
}

// The scenario, written to path. Worker 0 is tid 1, worker 1 tid 2, the plain
// thread tid 1000. Fiber 1 parks, is woken by worker 1 (flow 1), runs, yields,
// parks; fiber 2 is stolen, waits on I/O, is woken by the plain thread
// (flow 2), exits; fiber 1 is woken by the plain thread too (flow 3).
void record_scenario(Tracer& tr) {
  tr.set_reason_names(reason_name);
  Steps steps;
  TraceBuffer* w0 = tr.worker(0);
  TraceBuffer* w1 = tr.worker(1);
  std::thread t0([&] {
    steps.run(0, [&] {
      w0->record(TraceKind::kSpawn, 1, 8);
      tick();
      w0->record(TraceKind::kSpawn, 2, 4);
      tick();
      w0->record(TraceKind::kRun, 1, 0);
      tick();
      w0->record(TraceKind::kPark, 1, kChannelRecv);
      tick();
      w0->record(TraceKind::kWorkerPark, 0, 0);
    });
    steps.run(2, [&] {
      w0->record(TraceKind::kWorkerUnpark, 0, 0);
      tick();
      w0->record(TraceKind::kRun, 1, 0);
      tick();
      w0->record(TraceKind::kYield, 1, 0);
      tick();
      w0->record(TraceKind::kRun, 1, 0);
      tick();
      w0->record(TraceKind::kPark, 1, kOddReason);
    });
    steps.run(5, [&] {
      w0->record(TraceKind::kRun, 1, 0);
      tick();
      w0->record(TraceKind::kIoWait, 1, (9u << 1) | 1);
      tick();
      w0->record(TraceKind::kRun, 3, 0);
      tick();
      w0->record(TraceKind::kTimerFire, 0, 1);  // fiber 3 still runs at the end
    });
  });
  std::thread t1([&] {
    steps.run(1, [&] {
      w1->record(TraceKind::kSteal, 2, 1);
      tick();
      w1->record(TraceKind::kRun, 2, 0);
      tick();
      w1->record(TraceKind::kUnpark, 1, 0);
      tick();
      w1->record(TraceKind::kIoWait, 2, (5u << 1) | 0);
      tick();
      w1->record(TraceKind::kTimerFire, 0, 2);
    });
    steps.run(4, [&] {
      w1->record(TraceKind::kRun, 2, 0);
      tick();
      w1->record(TraceKind::kExit, 2, 0);
      tick();
      w1->record(TraceKind::kWorkerPark, 0, 0);
    });
    steps.run(6, [&] { w1->record(TraceKind::kWorkerUnpark, 0, 0); });
  });
  std::thread plain([&] {
    steps.run(3, [&] {
      tr.record_foreign(TraceKind::kUnpark, 2, 0);
      tick();
      tr.record_foreign(TraceKind::kUnpark, 1, 0);
      tick();
      tr.record_foreign(TraceKind::kUnpark, 99, 0);  // never runs: no flow
    });
  });
  t0.join();
  t1.join();
  plain.join();
}

struct Slice {
  double fiber;
  std::string end;
};
std::vector<Slice> summary(const std::vector<Ev>& slices) {
  std::vector<Slice> out;
  for (const Ev& e : slices) out.push_back({e.num_arg("fiber"), e.str_arg("end")});
  return out;
}
bool operator==(const Slice& a, const Slice& b) {
  return a.fiber == b.fiber && a.end == b.end;
}
void PrintTo(const Slice& s, std::ostream* os) {
  *os << "{fiber " << s.fiber << ", \"" << s.end << "\"}";
}

// ---------------------------------------------------------------- tests

class TraceWriter : public TraceDir, public ::testing::WithParamInterface<TraceClock> {};

TEST_P(TraceWriter, ScenarioReadsBackEventByEvent) {
  Tracer tr(file("trace.json"), 2, TraceBuffer::kDefaultMaxBytes, GetParam());
  record_scenario(tr);
  EXPECT_EQ(tr.worker(0)->size(), 14u);
  EXPECT_EQ(tr.worker(1)->size(), 9u);
  EXPECT_EQ(tr.worker(2), nullptr);
  EXPECT_EQ(tr.dropped(), 0u);
  std::string err;
  ASSERT_TRUE(tr.write(&err)) << err;

  Trace t;
  ASSERT_TRUE(load(tr.path(), &t));

  // Track names.
  auto thread_name = [&](double tid) {
    auto m = t.where(
        [&](const Ev& e) { return e.ph == "M" && e.name == "thread_name" && e.tid == tid; });
    return m.size() == 1 ? m[0].str_arg("name") : "<" + std::to_string(m.size()) + " names>";
  };
  EXPECT_EQ(thread_name(1), "worker 0");
  EXPECT_EQ(thread_name(2), "worker 1");
  EXPECT_EQ(thread_name(1000), "other threads");

  // Fiber slices: on the right tracks, in order, each with how it ended.
  std::vector<Ev> run0 = t.slices(1, "fiber");
  std::vector<Ev> run1 = t.slices(2, "fiber");
  std::string odd = std::string("park: ") + kOddName;
  EXPECT_EQ(summary(run0), (std::vector<Slice>{{1, "park: channel recv"},
                                               {1, "yield"},
                                               {1, odd},
                                               {1, "io wait fd 9 write"},
                                               {3, "(trace end)"}}));
  EXPECT_EQ(summary(run1), (std::vector<Slice>{{2, "io wait fd 5 read"}, {2, "exit"}}));
  EXPECT_TRUE(t.slices(1000, "fiber").empty());
  ASSERT_EQ(run0.size(), 5u);
  ASSERT_EQ(run1.size(), 2u);
  for (const auto* track : {&run0, &run1}) {
    for (std::size_t i = 0; i < track->size(); ++i) {
      const Ev& e = (*track)[i];
      EXPECT_EQ(e.name, "fiber " + std::to_string(static_cast<int>(e.num_arg("fiber"))));
      EXPECT_GT(e.dur, 0) << "slice " << i;
      if (i + 1 < track->size()) {
        EXPECT_LE(e.ts + e.dur, (*track)[i + 1].ts) << "overlap at " << i;
      }
    }
  }
  // Relative to the tracer's start, in microseconds: small, not epoch-sized.
  EXPECT_GE(run0[0].ts, 0);
  EXPECT_LT(run0.back().ts, 60e6);

  // Idle slices: worker 0 slept between its first park and the next run.
  std::vector<Ev> idle0 = t.slices(1, "worker");
  std::vector<Ev> idle1 = t.slices(2, "worker");
  ASSERT_EQ(idle0.size(), 1u);
  ASSERT_EQ(idle1.size(), 1u);
  EXPECT_EQ(idle0[0].name, "idle");
  EXPECT_EQ(idle1[0].name, "idle");
  EXPECT_GE(idle0[0].ts, run0[0].ts + run0[0].dur);
  EXPECT_LE(idle0[0].ts + idle0[0].dur, run0[1].ts);
  EXPECT_GT(idle0[0].dur, 0);
  EXPECT_GE(idle1[0].ts, run1[1].ts + run1[1].dur);
  EXPECT_GT(idle1[0].dur, 0);
  // Worker 0 slept while worker 1 ran fiber 2 (the steps' order).
  EXPECT_LT(idle0[0].ts, run1[0].ts);
  EXPECT_GT(idle0[0].ts + idle0[0].dur, run1[0].ts + run1[0].dur);

  // Instants.
  auto instants = [&](double tid, std::string_view name) {
    return t.where([&](const Ev& e) { return e.ph == "i" && e.tid == tid && e.name == name; });
  };
  auto spawns = instants(1, "spawn");
  ASSERT_EQ(spawns.size(), 2u);
  EXPECT_EQ(spawns[0].num_arg("fiber"), 1);
  EXPECT_EQ(spawns[0].num_arg("priority"), 8);
  EXPECT_EQ(spawns[1].num_arg("fiber"), 2);
  EXPECT_EQ(spawns[1].num_arg("priority"), 4);
  EXPECT_EQ(str_field(*spawns[0].json, "s"), "t");
  auto steals = instants(2, "steal");
  ASSERT_EQ(steals.size(), 1u);
  EXPECT_EQ(steals[0].num_arg("first fiber"), 2);
  EXPECT_EQ(steals[0].num_arg("count"), 1);
  auto timers1 = instants(2, "timers");
  ASSERT_EQ(timers1.size(), 1u);
  EXPECT_EQ(timers1[0].num_arg("count"), 2);
  ASSERT_EQ(instants(1, "timers").size(), 1u);
  auto unparks1 = instants(2, "unpark");
  auto unparks_plain = instants(1000, "unpark");
  ASSERT_EQ(unparks1.size(), 1u);
  ASSERT_EQ(unparks_plain.size(), 3u);
  EXPECT_EQ(unparks1[0].num_arg("fiber"), 1);
  EXPECT_EQ(unparks_plain[0].num_arg("fiber"), 2);
  EXPECT_EQ(unparks_plain[1].num_arg("fiber"), 1);
  EXPECT_EQ(unparks_plain[2].num_arg("fiber"), 99);
  // Worker 1's wake-up of fiber 1 happened inside fiber 2's first slice.
  EXPECT_GT(unparks1[0].ts, run1[0].ts);
  EXPECT_LT(unparks1[0].ts, run1[0].ts + run1[0].dur);

  // Flows: one per wake-up that led to a run, none for fiber 99.
  auto starts = t.where([](const Ev& e) { return e.ph == "s"; });
  auto ends = t.where([](const Ev& e) { return e.ph == "f"; });
  ASSERT_EQ(starts.size(), 3u);
  ASSERT_EQ(ends.size(), 3u);
  std::set<double> ids;
  for (const Ev& s : starts) ids.insert(s.id);
  EXPECT_EQ(ids.size(), 3u) << "flow ids must be unique per pair";
  auto end_of = [&](double id) {
    for (const Ev& f : ends) {
      if (f.id == id) return f;
    }
    ADD_FAILURE() << "no f for flow " << id;
    return Ev{};
  };
  struct Expect {
    const Ev& unpark;  // the instant the flow starts at
    const Ev& run;     // the slice it ends at
    double run_tid;
  };
  const Expect expected[] = {
      {unparks1[0], run0[1], 1}, {unparks_plain[0], run1[1], 2}, {unparks_plain[1], run0[3], 1}};
  for (const Expect& x : expected) {
    auto s = t.where(
        [&](const Ev& e) { return e.ph == "s" && e.tid == x.unpark.tid && e.ts == x.unpark.ts; });
    ASSERT_EQ(s.size(), 1u) << "no flow start at the unpark at " << x.unpark.ts;
    EXPECT_GT(s[0].id, 0);
    EXPECT_EQ(s[0].cat, "wake");
    Ev f = end_of(s[0].id);
    EXPECT_EQ(f.tid, x.run_tid);
    EXPECT_EQ(f.ts, x.run.ts) << "the f must sit at the run slice's start";
    EXPECT_EQ(str_field(*f.json, "bp"), "e");
    EXPECT_EQ(f.cat, "wake");
    EXPECT_EQ(f.name, s[0].name);
  }
  // The flow's end follows its slice in the file (viewers bind it to the
  // slice open at that moment).
  for (std::size_t i = 0; i < t.events.size(); ++i) {
    if (t.events[i].ph != "f") continue;
    auto before =
        std::find_if(t.events.begin(), t.events.begin() + static_cast<long>(i), [&](const Ev& e) {
          return e.ph == "X" && e.tid == t.events[i].tid && e.ts == t.events[i].ts &&
                 e.cat == "fiber";
        });
    EXPECT_NE(before, t.events.begin() + static_cast<long>(i)) << "f at " << t.events[i].ts;
  }
}

// Given timestamps (the identity clock): exact times in the file, clamping of
// a buffer's timestamps, slice ends forced by a run or a worker park, and two
// wake-ups of one fiber both pointing at its next run.
TEST_F(TraceDir, ExactTimesFromGivenTimestamps) {
  Tracer tr(file("exact.json"), 2, TraceBuffer::kDefaultMaxBytes, TraceClock::kMonotonic);
  ASSERT_FALSE(tr.uses_tsc());
  const std::uint64_t t0 = tr.start().raw;
  TraceBuffer* w0 = tr.worker(0);
  TraceBuffer* w1 = tr.worker(1);
  w0->record_at(t0 + 1000, TraceKind::kRun, 1, 0);
  w0->record_at(t0 + 2500, TraceKind::kRun, 2, 0);         // ends fiber 1's slice
  w0->record_at(t0 + 4000, TraceKind::kWorkerPark, 0, 0);  // ends fiber 2's
  w0->record_at(t0 + 3000, TraceKind::kUnpark, 5, 0);      // earlier than the last: clamped to 4000
  w0->record_at(t0 + 1234567, TraceKind::kWorkerUnpark, 0, 0);
  w0->record_at(t0 + 1300000, TraceKind::kRun, 7, 0);
  w0->record_at(t0 + 1299000, TraceKind::kYield, 7, 0);       // clamped: stays after its run
  w1->record_at(t0 - 100, TraceKind::kSpawn, 9, 15);          // before the start: time 0
  w1->record_at(t0 + 10'000'000'000, TraceKind::kRun, 5, 0);  // at 10 s
  w1->record_at(t0 + 10'000'000'001, TraceKind::kExit, 5, 0);
  tr.record_foreign(TraceKind::kUnpark, 5, 0);  // now, by the real clock
  std::string err;
  ASSERT_TRUE(tr.write(&err)) << err;
  Trace t;
  ASSERT_TRUE(load(tr.path(), &t));

  std::vector<Ev> run0 = t.slices(1, "fiber");
  ASSERT_EQ(summary(run0),
            (std::vector<Slice>{{1, "switched"}, {2, "worker parked"}, {7, "yield"}}));
  EXPECT_EQ(run0[0].ts, 1.0);
  EXPECT_EQ(run0[0].dur, 1.5);
  EXPECT_EQ(run0[1].ts, 2.5);
  EXPECT_EQ(run0[1].dur, 1.5);
  EXPECT_EQ(run0[2].ts, 1300.0);
  EXPECT_EQ(run0[2].dur, 0.0);
  std::vector<Ev> idle0 = t.slices(1, "worker");
  ASSERT_EQ(idle0.size(), 1u);
  EXPECT_EQ(idle0[0].ts, 4.0);
  EXPECT_EQ(idle0[0].dur, 1230.567);
  auto unpark0 =
      t.where([](const Ev& e) { return e.ph == "i" && e.tid == 1 && e.name == "unpark"; });
  ASSERT_EQ(unpark0.size(), 1u);
  EXPECT_EQ(unpark0[0].ts, 4.0);
  auto spawn = t.where([](const Ev& e) { return e.ph == "i" && e.name == "spawn"; });
  ASSERT_EQ(spawn.size(), 1u);
  EXPECT_EQ(spawn[0].tid, 2);
  EXPECT_EQ(spawn[0].ts, 0.0);
  EXPECT_EQ(spawn[0].num_arg("priority"), 15);
  std::vector<Ev> run1 = t.slices(2, "fiber");
  ASSERT_EQ(summary(run1), (std::vector<Slice>{{5, "exit"}}));
  EXPECT_EQ(run1[0].ts, 10e6);
  EXPECT_EQ(run1[0].dur, 0.001);

  // The foreign wake-up was recorded with the real clock, a few microseconds
  // after the start: well before fiber 5's run at 10 s.
  auto unpark_plain =
      t.where([](const Ev& e) { return e.ph == "i" && e.tid == 1000 && e.name == "unpark"; });
  ASSERT_EQ(unpark_plain.size(), 1u);
  ASSERT_LT(unpark_plain[0].ts, 10e6);
  auto starts = t.where([](const Ev& e) { return e.ph == "s"; });
  auto ends = t.where([](const Ev& e) { return e.ph == "f"; });
  ASSERT_EQ(starts.size(), 2u);
  ASSERT_EQ(ends.size(), 2u);
  std::set<double> start_ids, end_ids;
  for (const Ev& e : starts) start_ids.insert(e.id);
  for (const Ev& e : ends) {
    end_ids.insert(e.id);
    EXPECT_EQ(e.tid, 2);
    EXPECT_EQ(e.ts, 10e6);
  }
  EXPECT_EQ(start_ids.size(), 2u);
  EXPECT_EQ(start_ids, end_ids);
}

TEST_P(TraceWriter, PythonJsonModuleParsesIt) {
  if (std::system("python3 -c 'pass' >/dev/null 2>&1") != 0) GTEST_SKIP() << "no python3";
  Tracer tr(file("trace.json"), 2, TraceBuffer::kDefaultMaxBytes, GetParam());
  record_scenario(tr);
  std::string err;
  ASSERT_TRUE(tr.write(&err)) << err;
  std::string cmd =
      "python3 -c 'import json,sys\n"
      "d = json.load(open(sys.argv[1]))\n"
      "assert d[\"displayTimeUnit\"] == \"ns\"\n"
      "ev = d[\"traceEvents\"]\n"
      "assert all(e[\"pid\"] == 1 and \"ph\" in e for e in ev)\n"
      "n = lambda ph: sum(1 for e in ev if e[\"ph\"] == ph)\n"
      "odd = [e[\"args\"][\"end\"] for e in ev if e[\"ph\"] == \"X\" and \"odd\" in "
      "e.get(\"args\", {}).get(\"end\", \"\")]\n"
      "print(n(\"X\"), n(\"i\"), n(\"s\"), n(\"f\"), n(\"M\"), json.dumps(odd))\n"
      "' '" +
      tr.path() + "' 2>&1";
  std::FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  int rc = pclose(p);
  ASSERT_EQ(rc, 0) << out;
  // 7 fiber slices + 2 idle; 2 spawns, 1 steal, 2 timers, 4 unparks; 3 flows;
  // process name + 2 metadata per track (3 tracks). The odd reason comes back
  // from Python's decoder unchanged (json.dumps re-escapes it the same way).
  EXPECT_EQ(out,
            "9 9 3 3 7 "
            "[\"park: odd \\\"name\\\" \\\\ with\\nnewline\\ttab \\u0001 end\"]\n");
}

TEST_P(TraceWriter, TimestampsAreCalibratedNanoseconds) {
  Tracer tr(file("clock.json"), 1, TraceBuffer::kDefaultMaxBytes, GetParam());
  EXPECT_EQ(tr.uses_tsc(),
            GetParam() != TraceClock::kMonotonic && chronos::detail::trace_tsc_usable());
  EXPECT_EQ(tr.worker(0)->uses_tsc(), tr.uses_tsc());
  TraceBuffer* w = tr.worker(0);
  auto t0 = std::chrono::steady_clock::now();
  w->record(TraceKind::kRun, 1, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  w->record(TraceKind::kYield, 1, 0);
  auto real_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  std::string err;
  ASSERT_TRUE(tr.write(&err)) << err;
  Trace t;
  ASSERT_TRUE(load(tr.path(), &t));
  auto s = t.slices(1, "fiber");
  ASSERT_EQ(s.size(), 1u);
  // sleep_for is never early; the fit is good to far better than 1%.
  EXPECT_GE(s[0].dur, 30000 * 0.99);
  EXPECT_LE(s[0].dur, real_us * 1.01 + 1);
  EXPECT_GE(s[0].ts, 0);
  EXPECT_LT(s[0].ts, 10e6);
}

INSTANTIATE_TEST_SUITE_P(Clocks, TraceWriter,
                         ::testing::Values(TraceClock::kAuto, TraceClock::kMonotonic),
                         [](const ::testing::TestParamInfo<TraceClock>& i) {
                           return i.param == TraceClock::kMonotonic ? std::string("Monotonic")
                                                                    : std::string("Auto");
                         });

std::vector<std::uint64_t> fibers_of(const TraceBuffer& b) {
  std::vector<std::uint64_t> out;
  b.for_each_chunk([&](const TraceEvent* e, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) out.push_back(e[i].fiber);
  });
  return out;
}

TEST(TraceBuffer, CapStopsRecordingAndCountsDrops) {
  TraceBuffer small(100 * sizeof(TraceEvent) + 17);  // the cap rounds down to whole events
  EXPECT_EQ(small.capacity(), 100u);
  for (std::uint64_t i = 0; i < 150; ++i) small.record(TraceKind::kRun, i, 0);
  EXPECT_EQ(small.size(), 100u);
  EXPECT_EQ(small.dropped(), 50u);
  std::vector<std::uint64_t> got = fibers_of(small);
  ASSERT_EQ(got.size(), 100u);
  for (std::uint64_t i = 0; i < 100; ++i) ASSERT_EQ(got[i], i);  // the first 100, in order

  // Over several chunks, the last one cut to fit.
  const std::size_t cap = 2 * TraceBuffer::kChunkEvents + 10;
  TraceBuffer multi(cap * sizeof(TraceEvent));
  for (std::uint64_t i = 0; i < cap + 7; ++i) multi.record(TraceKind::kYield, i, i * 3);
  EXPECT_EQ(multi.size(), cap);
  EXPECT_EQ(multi.dropped(), 7u);
  std::size_t chunks = 0;
  std::uint64_t next = 0;
  multi.for_each_chunk([&](const TraceEvent* e, std::size_t n) {
    ++chunks;
    for (std::size_t i = 0; i < n; ++i, ++next) {
      ASSERT_EQ(e[i].fiber, next);
      ASSERT_EQ(e[i].arg, next * 3);
      ASSERT_EQ(e[i].kind, TraceKind::kYield);
    }
  });
  EXPECT_EQ(chunks, 3u);
  EXPECT_EQ(next, cap);

  TraceBuffer none(0);
  none.record(TraceKind::kRun, 1, 0);
  EXPECT_EQ(none.size(), 0u);
  EXPECT_EQ(none.dropped(), 1u);

  TraceBuffer empty;
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(empty.dropped(), 0u);
  EXPECT_EQ(fibers_of(empty).size(), 0u);
}

TEST(TraceBuffer, TimestampsNeverGoBackwardsOnOneThread) {
  TraceBuffer b;
  for (int i = 0; i < 10000; ++i) b.record(TraceKind::kRun, 1, 0);
  std::uint64_t prev = 0;
  std::size_t n = 0;
  b.for_each_chunk([&](const TraceEvent* e, std::size_t k) {
    for (std::size_t i = 0; i < k; ++i, ++n) {
      ASSERT_GE(e[i].ts, prev);
      prev = e[i].ts;
    }
  });
  EXPECT_EQ(n, 10000u);
  EXPECT_GT(prev, 0u);
}

TEST_F(TraceDir, FullBufferShowsInTheFile) {
  Tracer tr(file("full.json"), 1, 10 * sizeof(TraceEvent));
  for (std::uint64_t i = 0; i < 8; ++i) {  // 16 events, room for 10
    tr.worker(0)->record(TraceKind::kRun, i + 1, 0);
    tick();
    tr.worker(0)->record(TraceKind::kYield, i + 1, 0);
    tick();
  }
  for (int i = 0; i < 4; ++i)
    tr.record_foreign(TraceKind::kUnpark, 1, 0);  // room for 10: none lost
  EXPECT_EQ(tr.worker(0)->dropped(), 6u);
  EXPECT_EQ(tr.dropped(), 6u);
  std::string err;
  ASSERT_TRUE(tr.write(&err)) << err;
  Trace t;
  ASSERT_TRUE(load(tr.path(), &t));
  EXPECT_EQ(t.slices(1, "fiber").size(), 5u);
  auto full = t.where([](const Ev& e) { return e.ph == "i" && e.name == "trace buffer full"; });
  ASSERT_EQ(full.size(), 1u);
  EXPECT_EQ(full[0].tid, 1);
  EXPECT_EQ(full[0].num_arg("dropped events"), 6);
  EXPECT_EQ(t.where([](const Ev& e) { return e.ph == "i" && e.tid == 1000; }).size(), 4u);
}

TEST_F(TraceDir, WriteToAnUnwritablePathFailsNamingIt) {
  {
    std::string path = file("no/such/dir/trace.json");
    Tracer tr(path, 1);
    tr.worker(0)->record(TraceKind::kRun, 1, 0);
    std::string err;
    EXPECT_FALSE(tr.write(&err));
    EXPECT_NE(err.find(path), std::string::npos) << err;
    EXPECT_NE(err.find("No such file or directory"), std::string::npos) << err;
    EXPECT_FALSE(tr.write(nullptr));  // no message wanted: still fails, no crash
  }
  {
    // A directory: fails even for root.
    Tracer tr(dir_, 1);
    std::string err;
    EXPECT_FALSE(tr.write(&err));
    EXPECT_NE(err.find(dir_), std::string::npos) << err;
    EXPECT_NE(err.find("Is a directory"), std::string::npos) << err;
  }
  if (std::filesystem::exists("/dev/full")) {
    // Opens fine, fails on the write itself (ENOSPC).
    Tracer tr("/dev/full", 1);
    for (int i = 0; i < 100000; ++i) tr.worker(0)->record(TraceKind::kRun, 1, 0);
    std::string err;
    EXPECT_FALSE(tr.write(&err));
    EXPECT_NE(err.find("/dev/full"), std::string::npos) << err;
    EXPECT_NE(err.find("No space left on device"), std::string::npos) << err;
  }
}

TEST_F(TraceDir, EmptyTraceIsValid) {
  Tracer tr(file("empty.json"), 3);
  std::string err;
  ASSERT_TRUE(tr.write(&err)) << err;
  Trace t;
  ASSERT_TRUE(load(tr.path(), &t));
  EXPECT_EQ(t.where([](const Ev& e) { return e.ph != "M"; }).size(), 0u);
  EXPECT_EQ(t.where([](const Ev& e) { return e.name == "thread_name"; }).size(), 4u);
}

}  // namespace
