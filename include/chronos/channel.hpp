// chronos/channel.hpp: typed, multi-producer multi-consumer channels, and
// select over them, as in Go.
//
//   chronos::Channel<int> ch;        // unbuffered: a send waits for a receiver
//   chronos::Channel<Job> jobs(64);  // buffered: a send waits only when 64 are queued
//   ch.send(1);                      // parks the fiber (or blocks a plain thread)
//   std::optional<int> v = ch.recv();// nullopt once the channel is closed and drained
//   ch.close();                      // wakes every waiter; later sends throw ChannelClosed
//   for (int x : ch) use(x);         // receives until closed and drained
//
//   chronos::select(chronos::recv_case(a, [](std::optional<int> v) { ... }),
//                   chronos::send_case(b, 42, [] { ... }),
//                   chronos::timeout_case(100ms, [] { ... }));   // or default_case(fn)
//
// Every blocking operation has a deadline form and honours the fiber's stop
// token (chronos/cancel.hpp). Values move: T must be nothrow move
// constructible. A channel must outlive every operation on it.
#pragma once

#include <chronos/cancel.hpp>
#include <chronos/detail/channel_core.hpp>
#include <chronos/export.hpp>
#include <chronos/time.hpp>

#include <array>
#include <cstddef>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

namespace chronos {

// Thrown by a send on a closed channel (or one closed while the send
// waited), and by closing a channel twice.
class CHRONOS_API ChannelClosed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class T>
class Channel;

namespace detail {
inline constexpr std::int64_t kTryOnly = -1;  // a deadline that means "do not wait"
template <class T, class F>
class RecvCase;
template <class T, class F>
class SendCase;
}  // namespace detail

template <class T>
class Channel : private detail::ChannelCore {
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "chronos::Channel<T> moves values under its lock: T must be nothrow move "
                "constructible");

 public:
  // capacity 0: unbuffered (every send meets a receive).
  explicit Channel(std::size_t capacity = 0)
      : cap_(capacity), buf_(capacity ? new Slot[capacity] : nullptr) {}
  ~Channel() {
    while (count_ > 0) pop_front();
  }
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Sends v, parking while the channel is full (unbuffered: until a receiver
  // takes it). Throws ChannelClosed if the channel is or gets closed first.
  void send(T v) { send_impl(v, kForever); }
  // As send(), giving up at the deadline: false (and v not sent) if it passed.
  bool send_until(T v, Deadline d) { return send_impl(v, to_ns(d)); }
  template <class Rep, class Period>
  bool send_for(T v, std::chrono::duration<Rep, Period> d) {
    return send_impl(v, after_ns(d));
  }
  // Sends only if that needs no wait; v is moved from only if it returns true.
  bool try_send(T& v) { return send_impl(v, detail::kTryOnly); }
  bool try_send(T&& v) { return send_impl(v, detail::kTryOnly); }
  bool try_send(const T& v) {
    T copy(v);
    return send_impl(copy, detail::kTryOnly);
  }

  // Receives a value, parking while there is none. nullopt: the channel is
  // closed and every value sent before close() has been received.
  std::optional<T> recv() {
    std::optional<T> out;
    recv_impl(out, kForever);
    return out;
  }
  // As recv(), giving up at the deadline. nullopt: closed and drained, or the
  // deadline passed (is_closed() tells which).
  std::optional<T> recv_until(Deadline d) {
    std::optional<T> out;
    recv_impl(out, to_ns(d));
    return out;
  }
  template <class Rep, class Period>
  std::optional<T> recv_for(std::chrono::duration<Rep, Period> d) {
    std::optional<T> out;
    recv_impl(out, after_ns(d));
    return out;
  }
  // Receives only if that needs no wait.
  std::optional<T> try_recv() {
    std::optional<T> out;
    recv_impl(out, detail::kTryOnly);
    return out;
  }

  // Closes the channel: parked receivers get nullopt once the buffer is
  // drained, parked and later senders get ChannelClosed. Closing twice throws
  // ChannelClosed.
  void close() {
    lock();
    if (closed) {
      unlock();
      detail::throw_channel_closed("chronos: close() of a closed channel");
    }
    closed = true;
    detail::ChanOp* woken = nullptr;  // every waiter, linked through next
    for (detail::ChanQueue* q : {&recvq, &sendq}) {
      while (detail::ChanOp* op = q->take()) {
        op->done = true;
        op->ok = false;
        op->next = woken;
        woken = op;
      }
    }
    unlock();
    detail::WakeBatch batch;  // from a plain thread: a batch at a time
    while (woken) {
      detail::ChanOp* next = woken->next;  // read before its owner can run
      resume(woken);
      woken = next;
    }
  }

  bool is_closed() const {
    lock();
    bool c = closed;
    unlock();
    return c;
  }
  std::size_t capacity() const noexcept { return cap_; }
  // Values buffered now (a snapshot).
  std::size_t size() const {
    lock();
    std::size_t n = count_;
    unlock();
    return n;
  }

  // for (T v : ch): receives until the channel is closed and drained.
  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(Channel* ch) : ch_(ch) { ++*this; }
    T& operator*() { return *cur_; }
    iterator& operator++() {
      cur_ = ch_->recv();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return !cur_.has_value(); }

   private:
    Channel* ch_ = nullptr;
    std::optional<T> cur_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  template <class U, class F>
  friend class detail::RecvCase;
  template <class U, class F>
  friend class detail::SendCase;
  static constexpr std::int64_t kForever = detail::kNoDeadlineNs;
  using detail::ChannelCore::lock;
  using detail::ChannelCore::unlock;
  static std::int64_t to_ns(Deadline d) { return detail::to_ns(d); }
  template <class Rep, class Period>
  static std::int64_t after_ns(std::chrono::duration<Rep, Period> d) {
    return detail::after_ns(d);
  }

  struct Slot {
    alignas(T) std::byte bytes[sizeof(T)];
  };
  T* slot(std::size_t i) noexcept { return std::launder(reinterpret_cast<T*>(buf_[i].bytes)); }
  void push_back(T&& v) noexcept {
    std::size_t tail = head_ + count_;
    if (tail >= cap_) tail -= cap_;
    ::new (buf_[tail].bytes) T(std::move(v));
    ++count_;
  }
  void pop_front_into(std::optional<T>& out) noexcept {
    out.emplace(std::move(*slot(head_)));
    pop_front();
  }
  void pop_front() noexcept {
    slot(head_)->~T();
    if (++head_ == cap_) head_ = 0;
    --count_;
  }

  // With the lock held. Moves v into a parked receiver or the buffer.
  enum class Try { kDone, kWouldBlock, kClosed };
  Try try_send_locked(T& v) noexcept {
    if (closed) return Try::kClosed;
    if (detail::ChanOp* r = recvq.take()) {
      static_cast<std::optional<T>*>(r->value)->emplace(std::move(v));
      r->done = r->ok = true;
      woken_ = r;
      return Try::kDone;
    }
    if (count_ < cap_) {
      push_back(std::move(v));
      return Try::kDone;
    }
    return Try::kWouldBlock;
  }
  // With the lock held. kClosed: closed and drained (out stays empty).
  Try try_recv_locked(std::optional<T>& out) noexcept {
    if (count_ > 0) {
      pop_front_into(out);
      if (detail::ChanOp* s = sendq.take()) {  // room now: the oldest parked sender's value
        push_back(std::move(*static_cast<T*>(s->value)));
        s->done = s->ok = true;
        woken_ = s;
      }
      return Try::kDone;
    }
    if (detail::ChanOp* s = sendq.take()) {  // unbuffered: straight from its stack
      out.emplace(std::move(*static_cast<T*>(s->value)));
      s->done = s->ok = true;
      woken_ = s;
      return Try::kDone;
    }
    return closed ? Try::kClosed : Try::kWouldBlock;
  }
  // Unlocks, then wakes whoever the last try_*_locked completed.
  void unlock_and_wake() noexcept {
    detail::ChanOp* w = std::exchange(woken_, nullptr);
    unlock();
    if (w) resume(w);
  }

  bool send_impl(T& v, std::int64_t deadline) {
    lock();
    switch (try_send_locked(v)) {
      case Try::kDone:
        unlock_and_wake();
        return true;
      case Try::kClosed:
        unlock();
        detail::throw_channel_closed("chronos: send on a closed channel");
      case Try::kWouldBlock:
        break;
    }
    if (deadline == detail::kTryOnly) {
      unlock();
      return false;
    }
    detail::Waiter w;
    w.what = detail::WaitReason::kChannelSend;
    w.object = this;
    detail::ChanOp op;
    op.waiter = &w;
    op.value = &v;
    sendq.push(&op);
    detail::WakeReason why = park(w, deadline, op, sendq);
    if (why == detail::WakeReason::kNotified) {
      if (op.ok) return true;
      detail::throw_channel_closed("chronos: send on a channel closed while the send waited");
    }
    if (why == detail::WakeReason::kCancelled) detail::throw_cancelled();
    return false;
  }

  void recv_impl(std::optional<T>& out, std::int64_t deadline) {
    lock();
    if (try_recv_locked(out) != Try::kWouldBlock || deadline == detail::kTryOnly) {
      unlock_and_wake();
      return;
    }
    detail::Waiter w;
    w.what = detail::WaitReason::kChannelRecv;
    w.object = this;
    detail::ChanOp op;
    op.waiter = &w;
    op.value = &out;
    recvq.push(&op);
    if (park(w, deadline, op, recvq) == detail::WakeReason::kCancelled) detail::throw_cancelled();
  }

  // Parks on op (queued on q under the lock, which this releases). If the
  // wait ended other than by completion, takes op back out of q.
  detail::WakeReason park(detail::Waiter& w, std::int64_t deadline, detail::ChanOp& op,
                          detail::ChanQueue& q) {
    detail::WakeReason why;
    try {
      why = detail::chan_park(*this, w, deadline);
    } catch (...) {  // FiberUnwind at runtime shutdown
      lock();
      q.remove(&op);
      unlock();
      throw;
    }
    if (why != detail::WakeReason::kNotified) {
      lock();  // also waits out a completer that took op and lost the race
      q.remove(&op);
      unlock();
    }
    return why;
  }

  const std::size_t cap_;
  std::unique_ptr<Slot[]> buf_;
  std::size_t head_ = 0;             // under the lock
  std::size_t count_ = 0;            // under the lock
  detail::ChanOp* woken_ = nullptr;  // under the lock: set by try_*_locked
};

// ---------------------------------------------------------------- select

namespace detail {

// One select() case, type-erased for the library's select loop.
class SelectCase {
 public:
  virtual ChannelCore* core() noexcept = 0;
  // With the channel locked: completes the case now if it can. 1: done (the
  // case is ready, e.g. a receive from a closed channel), 0: would block,
  // -1: a send on a closed channel.
  virtual int try_now() noexcept = 0;
  // After try_now() returned 1, with the lock free again: wakes whoever it
  // completed on the other side.
  void after_try() noexcept {
    if (ChanOp* w = std::exchange(woken_, nullptr)) ChannelCore::resume(w);
  }
  virtual bool is_send() const noexcept = 0;
  virtual void enqueue(ChanOp& op) noexcept = 0;  // with the channel locked
  virtual void dequeue(ChanOp& op) noexcept = 0;  // with the channel locked
  virtual void run() = 0;                         // the case's handler

 protected:
  ~SelectCase() = default;
  ChanOp* woken_ = nullptr;  // taken from the channel under its lock, by try_now()
};

// Returns the index of the case that completed (its handler not yet run),
// or n if none did: the default case (has_default), or the deadline passed.
// Throws ChannelClosed (a send case on a closed channel) and Cancelled.
CHRONOS_API std::size_t select_impl(SelectCase* const* cases, std::size_t n, bool has_default,
                                    std::int64_t deadline);

template <class T, class F>
class RecvCase final : public SelectCase {
 public:
  RecvCase(Channel<T>& ch, F fn) : ch_(ch), fn_(std::move(fn)) {}
  ChannelCore* core() noexcept override { return &ch_; }
  int try_now() noexcept override {
    if (ch_.try_recv_locked(result_) == Channel<T>::Try::kWouldBlock) return 0;
    woken_ = std::exchange(ch_.woken_, nullptr);
    return 1;
  }
  bool is_send() const noexcept override { return false; }
  void enqueue(ChanOp& op) noexcept override {
    op.value = &result_;
    ch_.recvq.push(&op);
  }
  void dequeue(ChanOp& op) noexcept override { ch_.recvq.remove(&op); }
  void run() override {
    if constexpr (std::is_invocable_v<F&, std::optional<T>>) {
      fn_(std::move(result_));
    } else {
      fn_();
    }
  }

 private:
  Channel<T>& ch_;
  F fn_;
  std::optional<T> result_;
};

template <class T, class F>
class SendCase final : public SelectCase {
 public:
  SendCase(Channel<T>& ch, T v, F fn) : ch_(ch), value_(std::move(v)), fn_(std::move(fn)) {}
  ChannelCore* core() noexcept override { return &ch_; }
  int try_now() noexcept override {
    switch (ch_.try_send_locked(value_)) {
      case Channel<T>::Try::kDone:
        woken_ = std::exchange(ch_.woken_, nullptr);
        return 1;
      case Channel<T>::Try::kClosed:
        return -1;
      default:
        return 0;
    }
  }
  bool is_send() const noexcept override { return true; }
  void enqueue(ChanOp& op) noexcept override {
    op.value = &value_;
    ch_.sendq.push(&op);
  }
  void dequeue(ChanOp& op) noexcept override { ch_.sendq.remove(&op); }
  void run() override { fn_(); }

 private:
  Channel<T>& ch_;
  T value_;
  F fn_;
};

template <class F>
struct DefaultCase {
  F fn;
};
template <class F>
struct TimeoutCase {
  std::int64_t deadline;
  F fn;
};

template <class C>
struct IsSpecialCase : std::false_type {};
template <class F>
struct IsSpecialCase<DefaultCase<F>> : std::true_type {};
template <class F>
struct IsSpecialCase<TimeoutCase<F>> : std::true_type {};

}  // namespace detail

// A select case that receives from ch; fn takes the std::optional<T> (nullopt:
// closed and drained), or nothing.
template <class T, class F>
detail::RecvCase<T, F> recv_case(Channel<T>& ch, F fn) {
  return detail::RecvCase<T, F>(ch, std::move(fn));
}
// A select case that sends v on ch, then runs fn(). A closed ch makes select
// throw ChannelClosed, as a send would.
template <class T, class U, class F>
detail::SendCase<T, F> send_case(Channel<T>& ch, U&& v, F fn) {
  return detail::SendCase<T, F>(ch, T(std::forward<U>(v)), std::move(fn));
}
// Runs fn() if no other case is ready at once (select does not wait).
template <class F>
detail::DefaultCase<F> default_case(F fn) {
  return {std::move(fn)};
}
// Runs fn() if no other case completes by the deadline.
template <class F>
detail::TimeoutCase<F> timeout_case(Deadline d, F fn) {
  return {detail::to_ns(d), std::move(fn)};
}
template <class Rep, class Period, class F>
detail::TimeoutCase<F> timeout_case(std::chrono::duration<Rep, Period> d, F fn) {
  return {detail::after_ns(d), std::move(fn)};
}

// Waits until one of the channel cases can complete, completes it, and runs
// its handler. When several are ready, one is picked at random, so that no
// case starves. At most one default_case or timeout_case, and it must come
// last. Returns the index of the case that ran (the default or timeout
// case's index if it ran). Parks the fiber (or blocks a plain thread).
template <class... Cases>
std::size_t select(Cases&&... cases) {
  constexpr std::size_t n = sizeof...(Cases);
  using Last = std::remove_cvref_t<std::tuple_element_t<n - 1, std::tuple<Cases...>>>;
  constexpr bool special = detail::IsSpecialCase<Last>::value;
  constexpr std::size_t channels = special ? n - 1 : n;
  static_assert(channels > 0, "chronos::select needs at least one channel case");
  static_assert(channels <= 64, "chronos::select takes at most 64 channel cases");
  std::array<detail::SelectCase*, channels> erased{};
  std::size_t i = 0;
  std::int64_t deadline = detail::kNoDeadlineNs;
  bool has_default = false;
  auto collect = [&](auto& c) {
    using C = std::remove_cvref_t<decltype(c)>;
    if constexpr (std::is_base_of_v<detail::SelectCase, C>) {
      erased[i++] = &c;
    } else if constexpr (requires { c.deadline; }) {
      deadline = c.deadline;
    } else {
      has_default = true;
    }
  };
  (collect(cases), ...);
  std::size_t k = detail::select_impl(erased.data(), channels, has_default, deadline);
  if (k < channels) {
    erased[k]->run();
    return k;
  }
  if constexpr (special) {
    auto& last = std::get<n - 1>(std::forward_as_tuple(cases...));
    last.fn();
  }
  return channels;
}

}  // namespace chronos
