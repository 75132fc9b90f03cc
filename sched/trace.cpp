// sched/trace.cpp: trace buffers, clock calibration and the Chrome JSON writer
// (sched/trace.hpp explains the design).
#include "sched/trace.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace chronos::detail {

bool trace_tsc_usable() noexcept {
  static const bool usable = [] {
#if defined(__x86_64__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    // __get_cpuid checks the highest extended leaf first.
    if (!__get_cpuid(0x80000007u, &a, &b, &c, &d)) return false;
    return (d & (1u << 8)) != 0;  // invariant TSC
#else
    return false;
#endif
  }();
  return usable;
}

namespace {

bool resolve_tsc(TraceClock clock) noexcept {
  return clock != TraceClock::kMonotonic && trace_tsc_usable();
}

}  // namespace

// ---------------------------------------------------------------- TraceBuffer

TraceBuffer::TraceBuffer(std::size_t max_bytes, TraceClock clock)
    : tsc_(resolve_tsc(clock)), max_events_(max_bytes / sizeof(TraceEvent)) {}

TraceBuffer::~TraceBuffer() = default;

std::size_t TraceBuffer::size() const noexcept {
  if (chunks_.empty()) return 0;
  return allocated_ - chunks_.back().n +
         static_cast<std::size_t>(cur_ - chunks_.back().events.get());
}

bool TraceBuffer::grow() noexcept {
  std::size_t n = std::min(kChunkEvents, max_events_ - allocated_);
  if (n != 0) {
    try {
      chunks_.reserve(chunks_.size() + 1);  // so that push_back below cannot throw
      // Default-initialised: no zeroing of the chunk.
      std::unique_ptr<TraceEvent[]> p(new (std::nothrow) TraceEvent[n]);
      if (p) {
        cur_ = p.get();
        end_ = p.get() + n;
        allocated_ += n;
        chunks_.push_back(Chunk{std::move(p), n});
        return true;
      }
    } catch (...) {  // std::bad_alloc from reserve: drop the event
    }
  }
  dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  return false;
}

// ---------------------------------------------------------------- Tracer

Tracer::Tracer(std::string path, unsigned workers, std::size_t max_bytes_per_worker,
               TraceClock clock)
    : path_(std::move(path)),
      tsc_(resolve_tsc(clock)),
      foreign_(max_bytes_per_worker, tsc_ ? TraceClock::kTsc : TraceClock::kMonotonic) {
  // Rec::track is 16 bits: the workers and the foreign buffer must fit.
  if (workers > 0xfffe) throw std::invalid_argument("chronos trace: too many workers");
  workers_.reserve(workers);
  for (unsigned i = 0; i < workers; ++i) {
    workers_.push_back(std::make_unique<TraceBuffer>(
        max_bytes_per_worker, tsc_ ? TraceClock::kTsc : TraceClock::kMonotonic));
  }
  start_ = sample_clock();
}

Tracer::~Tracer() = default;

void Tracer::record_foreign(TraceKind k, std::uint64_t fiber, std::uint64_t arg) noexcept {
  std::lock_guard<std::mutex> g(foreign_mu_);
  foreign_.record(k, fiber, arg);
}

std::uint64_t Tracer::dropped() const noexcept {
  std::uint64_t n = foreign_.dropped();
  for (const auto& w : workers_) n += w->dropped();
  return n;
}

Tracer::ClockSample Tracer::sample_clock() const noexcept {
  if (!tsc_) {
    std::uint64_t ns = TraceBuffer::monotonic_ns();
    return {ns, ns};
  }
#if defined(__x86_64__)
  // The TSC read halfway between two reads that bracket clock_gettime; the
  // tightest bracket of a few tries (a preemption or an interrupt in between
  // shows up as a wide one).
  ClockSample best{0, 0};
  std::uint64_t best_width = ~std::uint64_t{0};
  for (int i = 0; i < 16; ++i) {
    std::uint64_t t0 = __rdtsc();
    std::uint64_t ns = TraceBuffer::monotonic_ns();
    std::uint64_t t1 = __rdtsc();
    if (t1 >= t0 && t1 - t0 < best_width) {
      best_width = t1 - t0;
      best = {t0 + (t1 - t0) / 2, ns};
    }
  }
  return best;
#else
  return {0, 0};  // unreachable: tsc_ is false off x86-64
#endif
}

// ---------------------------------------------------------------- the writer

namespace {

// The writer's output: a 1 MiB buffer handed to fwrite whole, and formatting
// without locale or printf. The first error sticks (errno kept).
class Out {
 public:
  explicit Out(std::FILE* f) : f_(f), buf_(new char[kCap]) {}

  void lit(std::string_view s) {
    if (pos_ + s.size() > kCap) flush();
    if (s.size() > kCap) {
      write_raw(s.data(), s.size());
      return;
    }
    std::memcpy(buf_.get() + pos_, s.data(), s.size());
    pos_ += s.size();
  }
  void num(std::uint64_t v) {
    room(24);
    pos_ = static_cast<std::size_t>(std::to_chars(buf_.get() + pos_, buf_.get() + kCap, v).ptr -
                                    buf_.get());
  }
  // Nanoseconds as microseconds with three decimals: 1234567 -> 1234.567.
  void usec(std::uint64_t ns) {
    num(ns / 1000);
    room(4);
    unsigned r = static_cast<unsigned>(ns % 1000);
    char* p = buf_.get() + pos_;
    p[0] = '.';
    p[1] = static_cast<char>('0' + r / 100);
    p[2] = static_cast<char>('0' + r / 10 % 10);
    p[3] = static_cast<char>('0' + r % 10);
    pos_ += 4;
  }
  // A JSON string body (no quotes): escapes ", \ and control characters.
  void esc(std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (char ch : s) {
      auto c = static_cast<unsigned char>(ch);
      room(6);
      char* p = buf_.get() + pos_;
      if (c == '"' || c == '\\') {
        p[0] = '\\';
        p[1] = ch;
        pos_ += 2;
      } else if (c < 0x20) {
        char short_form = c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : 0;
        if (short_form) {
          p[0] = '\\';
          p[1] = short_form;
          pos_ += 2;
        } else {
          std::memcpy(p, "\\u00", 4);
          p[4] = kHex[c >> 4];
          p[5] = kHex[c & 15];
          pos_ += 6;
        }
      } else {
        p[0] = ch;
        pos_ += 1;
      }
    }
  }
  void flush() {
    write_raw(buf_.get(), pos_);
    pos_ = 0;
  }
  int error() const noexcept { return err_; }

 private:
  static constexpr std::size_t kCap = std::size_t{1} << 20;

  void room(std::size_t n) {
    if (pos_ + n > kCap) flush();
  }
  void write_raw(const char* p, std::size_t n) {
    if (err_ || n == 0) return;
    errno = 0;
    if (std::fwrite(p, 1, n, f_) != n) err_ = errno ? errno : EIO;
  }

  std::FILE* f_;
  std::unique_ptr<char[]> buf_;
  std::size_t pos_ = 0;
  int err_ = 0;
};

// One event of the merged stream: converted to ns since the tracer's start,
// tagged with its buffer, and with room for the flow pairing.
struct Rec {
  std::uint64_t ns;
  std::uint64_t fiber;
  std::uint64_t arg;
  std::uint32_t flow;  // kUnpark: its flow id (0: none); kRun: the first id ending here
  std::uint16_t track;
  TraceKind kind;
  std::uint8_t nflows;  // kRun: how many flows end here (ids flow, flow + 1, ...)
};
static_assert(sizeof(Rec) == 32);

// A track's state while walking the merged stream.
struct Track {
  std::uint64_t tid = 0;
  bool running = false;  // a fiber slice is open
  std::uint64_t fiber = 0;
  std::uint64_t run_start = 0;
  std::uint32_t flow = 0;
  std::uint8_t nflows = 0;
  bool idle = false;  // an idle slice is open
  std::uint64_t idle_start = 0;
  bool any = false;  // has had an event
  std::uint64_t last = 0;
  std::uint64_t dropped = 0;
};

std::string errno_message(const std::string& what, const std::string& path, int err) {
  return "chronos trace: " + what + " '" + path + "': " + std::generic_category().message(err);
}

class JsonWriter {
 public:
  JsonWriter(Out& out, std::vector<Track>& tracks, const char* (*reason_name)(std::uint64_t))
      : out_(out), tracks_(tracks), reason_name_(reason_name) {}

  void walk(const std::vector<Rec>& recs) {
    for (const Rec& r : recs) {
      Track& t = tracks_[r.track];
      t.any = true;
      t.last = r.ns;
      switch (r.kind) {
        case TraceKind::kRun:
          close_run(t, r.ns, "switched");
          close_idle(t, r.ns);
          t.running = true;
          t.fiber = r.fiber;
          t.run_start = r.ns;
          t.flow = r.flow;
          t.nflows = r.nflows;
          break;
        case TraceKind::kYield:
          close_run(t, r.ns, "yield");
          break;
        case TraceKind::kPark:
          scratch_.assign("park: ");
          append_reason(r.arg);
          close_run(t, r.ns, scratch_);
          break;
        case TraceKind::kIoWait:
          scratch_.assign("io wait fd ");
          append_num(r.arg >> 1);
          scratch_.append((r.arg & 1) ? " write" : " read");
          close_run(t, r.ns, scratch_);
          break;
        case TraceKind::kExit:
          close_run(t, r.ns, "exit");
          break;
        case TraceKind::kWorkerPark:
          // A worker sleeps only from its scheduler loop; should a slice still
          // be open, end it here so that the track's slices never overlap.
          close_run(t, r.ns, "worker parked");
          if (!t.idle) {
            t.idle = true;
            t.idle_start = r.ns;
          }
          break;
        case TraceKind::kWorkerUnpark:
          close_idle(t, r.ns);
          break;
        case TraceKind::kSpawn:
          instant_head(t, r.ns, "spawn");
          out_.lit(",\"args\":{\"fiber\":");
          out_.num(r.fiber);
          out_.lit(",\"priority\":");
          out_.num(r.arg);
          out_.lit("}}");
          break;
        case TraceKind::kSteal:
          instant_head(t, r.ns, "steal");
          out_.lit(",\"args\":{\"first fiber\":");
          out_.num(r.fiber);
          out_.lit(",\"count\":");
          out_.num(r.arg);
          out_.lit("}}");
          break;
        case TraceKind::kTimerFire:
          instant_head(t, r.ns, "timers");
          out_.lit(",\"args\":{\"count\":");
          out_.num(r.arg);
          out_.lit("}}");
          break;
        case TraceKind::kUnpark:
          instant_head(t, r.ns, "unpark");
          out_.lit(",\"args\":{\"fiber\":");
          out_.num(r.fiber);
          out_.lit("}}");
          // The flow's start right after the instant at the same time, so
          // that a viewer binds it to the instant (foreign threads and the
          // scheduler loop have no enclosing slice).
          if (r.flow) flow_event(t, r.ns, 's', r.flow);
          break;
        default:
          break;  // an unknown kind from a newer recorder: skipped
      }
    }
    for (Track& t : tracks_) {
      if (!t.any) continue;
      close_run(t, t.last, "(trace end)");
      close_idle(t, t.last);
      if (t.dropped) {
        instant_head(t, t.last, "trace buffer full");
        out_.lit(",\"args\":{\"dropped events\":");
        out_.num(t.dropped);
        out_.lit("}}");
      }
    }
  }

 private:
  void head(const Track& t, std::uint64_t ns, std::string_view ph) {
    out_.lit(",\n{\"ph\":\"");
    out_.lit(ph);
    out_.lit("\",\"pid\":1,\"tid\":");
    out_.num(t.tid);
    out_.lit(",\"ts\":");
    out_.usec(ns);
  }
  void instant_head(const Track& t, std::uint64_t ns, std::string_view name) {
    head(t, ns, "i\",\"s\":\"t");
    out_.lit(",\"cat\":\"sched\",\"name\":\"");
    out_.lit(name);
    out_.lit("\"");
  }
  void flow_event(const Track& t, std::uint64_t ns, char ph, std::uint32_t id) {
    head(t, ns, ph == 's' ? std::string_view("s") : std::string_view("f\",\"bp\":\"e"));
    out_.lit(",\"cat\":\"wake\",\"name\":\"wake\",\"id\":");
    out_.num(id);
    out_.lit("}");
  }
  void close_run(Track& t, std::uint64_t end, std::string_view how) {
    if (!t.running) return;
    t.running = false;
    head(t, t.run_start, "X");
    out_.lit(",\"dur\":");
    out_.usec(end - t.run_start);
    out_.lit(",\"cat\":\"fiber\",\"name\":\"fiber ");
    out_.num(t.fiber);
    out_.lit("\",\"args\":{\"fiber\":");
    out_.num(t.fiber);
    out_.lit(",\"end\":\"");
    out_.esc(how);
    out_.lit("\"}}");
    // The flows' ends after the slice, at its start: a viewer that reads
    // events in (time, file) order then finds the slice open to bind them to.
    for (std::uint32_t i = 0; i < t.nflows; ++i) flow_event(t, t.run_start, 'f', t.flow + i);
    t.nflows = 0;
  }
  void close_idle(Track& t, std::uint64_t end) {
    if (!t.idle) return;
    t.idle = false;
    head(t, t.idle_start, "X");
    out_.lit(",\"dur\":");
    out_.usec(end - t.idle_start);
    out_.lit(",\"cat\":\"worker\",\"name\":\"idle\"}");
  }
  void append_num(std::uint64_t v) {
    char b[24];
    scratch_.append(b, static_cast<std::size_t>(std::to_chars(b, b + sizeof b, v).ptr - b));
  }
  void append_reason(std::uint64_t arg) {
    if (reason_name_) {
      if (const char* s = reason_name_(arg)) {
        scratch_.append(s);
        return;
      }
    }
    scratch_.append("reason ");
    append_num(arg);
  }

  Out& out_;
  std::vector<Track>& tracks_;
  const char* (*reason_name_)(std::uint64_t);
  std::string scratch_;
};

// Pairs every kUnpark of fiber F with F's next kRun, in time order: numbers
// the pairs from 1 and stores the ids in the records (Rec::flow, nflows).
void pair_flows(std::vector<Rec>& recs) {
  std::unordered_map<std::uint64_t, std::vector<std::size_t>> pending;  // fiber -> unpark indices
  std::uint32_t next = 1;
  for (std::size_t i = 0; i < recs.size(); ++i) {
    Rec& r = recs[i];
    if (r.kind == TraceKind::kUnpark) {
      pending[r.fiber].push_back(i);
    } else if (r.kind == TraceKind::kRun) {
      auto it = pending.find(r.fiber);
      if (it == pending.end() || it->second.empty()) continue;
      // At most 255 per run (one wake-up per park is the rule; more is a
      // recorder bug) and 2^32 - 1 in all: beyond that, no arrows.
      std::size_t n = std::min<std::size_t>(it->second.size(), 255);
      if (n > UINT32_MAX - next) n = 0;
      r.flow = next;
      r.nflows = static_cast<std::uint8_t>(n);
      for (std::size_t j = 0; j < n; ++j) recs[it->second[j]].flow = next++;
      it->second.clear();  // keeps its capacity for the fiber's next wake-up
    }
  }
}

}  // namespace

bool Tracer::write(std::string* error) {
  auto fail = [&](std::string msg) {
    if (error) *error = std::move(msg);
    return false;
  };

  // The second calibration point. Over a very short run the fit would be
  // dominated by the samples' own jitter: keep them at least 10 ms apart.
  ClockSample end = sample_clock();
  if (tsc_) {
    constexpr std::uint64_t kMinSpan = 10'000'000;
    if (end.ns - start_.ns < kMinSpan) {
      std::this_thread::sleep_for(std::chrono::nanoseconds(kMinSpan - (end.ns - start_.ns)));
      end = sample_clock();
    }
  }
  double ns_per_tick = 1.0;
  if (end.raw > start_.raw && end.ns > start_.ns) {
    ns_per_tick =
        static_cast<double>(end.ns - start_.ns) / static_cast<double>(end.raw - start_.raw);
  }
  if (!tsc_) ns_per_tick = 1.0;  // the raw clock is CLOCK_MONOTONIC ns already

  // Merge: every buffer, converted, each made non-decreasing, then one stable
  // sort by time (ties keep buffer order: worker 0, 1, ..., foreign). The
  // foreign buffer is locked only while it is copied.
  std::unique_lock<std::mutex> lock(foreign_mu_);
  std::vector<const TraceBuffer*> bufs;
  for (const auto& w : workers_) bufs.push_back(w.get());
  bufs.push_back(&foreign_);
  std::vector<Track> tracks(bufs.size());
  std::size_t total = 0;
  for (const TraceBuffer* b : bufs) total += b->size();
  std::vector<Rec> recs;
  try {
    recs.reserve(total);
  } catch (const std::bad_alloc&) {
    return fail("chronos trace: out of memory merging " + std::to_string(total) + " events for '" +
                path_ + "'");
  }
  for (std::size_t i = 0; i < bufs.size(); ++i) {
    tracks[i].tid = i < workers_.size() ? i + 1 : (workers_.size() < 999 ? 1000 : i + 1);
    tracks[i].dropped = bufs[i]->dropped();
    std::uint64_t prev = 0;
    auto track = static_cast<std::uint16_t>(i);
    bufs[i]->for_each_chunk([&](const TraceEvent* e, std::size_t n) {
      for (std::size_t k = 0; k < n; ++k) {
        auto d = static_cast<std::int64_t>(e[k].ts - start_.raw);
        std::uint64_t ns =
            d <= 0 ? 0 : static_cast<std::uint64_t>(static_cast<double>(d) * ns_per_tick);
        if (ns < prev) ns = prev;
        prev = ns;
        recs.push_back(Rec{ns, e[k].fiber, e[k].arg, 0, track, e[k].kind, 0});
      }
    });
  }
  lock.unlock();
  std::stable_sort(recs.begin(), recs.end(),
                   [](const Rec& a, const Rec& b) { return a.ns < b.ns; });
  pair_flows(recs);

  std::FILE* f = std::fopen(path_.c_str(), "we");
  if (!f) return fail(errno_message("cannot open", path_, errno));
  Out out(f);
  out.lit(
      "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n"
      "{\"ph\":\"M\",\"pid\":1,\"name\":\"process_name\",\"args\":{\"name\":\"chronos\"}}");
  for (const Track& t : tracks) {
    out.lit(",\n{\"ph\":\"M\",\"pid\":1,\"tid\":");
    out.num(t.tid);
    out.lit(",\"name\":\"thread_name\",\"args\":{\"name\":\"");
    if (&t == &tracks.back()) {
      out.lit("other threads");
    } else {
      out.lit("worker ");
      out.num(t.tid - 1);
    }
    out.lit("\"}},\n{\"ph\":\"M\",\"pid\":1,\"tid\":");
    out.num(t.tid);
    out.lit(",\"name\":\"thread_sort_index\",\"args\":{\"sort_index\":");
    out.num(t.tid);
    out.lit("}}");
  }
  JsonWriter(out, tracks, reason_name_).walk(recs);
  out.lit("\n]}\n");
  out.flush();

  int err = out.error();
  errno = 0;
  if (!err && std::fflush(f) != 0) err = errno ? errno : EIO;
  errno = 0;
  if (std::fclose(f) != 0 && !err) err = errno ? errno : EIO;
  if (err) return fail(errno_message("cannot write", path_, err));
  return true;
}

}  // namespace chronos::detail
