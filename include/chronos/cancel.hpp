// chronos/cancel.hpp: cancelling blocking calls with std::stop_token.
//
// Every blocking call in chronos (sleep, join, lock, condition waits, channel
// send/recv/select, future get, socket I/O) watches the calling fiber's stop
// token. Once a stop is requested, the call that is parked, or the next one
// to park, throws chronos::Cancelled instead of waiting. A fiber gets its
// token from SpawnOptions::stop_token, or for a stretch of code from a
// CancelScope:
//
//   std::stop_source stop;
//   auto h = chronos::go({.stop_token = stop.get_token()}, [&] { ch.recv(); });
//   stop.request_stop();   // recv() throws chronos::Cancelled
//
//   chronos::this_fiber::CancelScope scope(other_token);  // inside a fiber
//
// Calls that do not need to park (a ready channel, a free mutex) succeed even
// after a stop request, so cancellation never loses an item already taken.
#pragma once

#include <chronos/export.hpp>

#include <stop_token>
#include <system_error>

namespace chronos {

// Thrown by a blocking call whose fiber's stop token was triggered. Its code
// is std::errc::operation_canceled, so error_code-based code sees ECANCELED.
class CHRONOS_API Cancelled : public std::system_error {
 public:
  Cancelled();
};

namespace this_fiber {

// The running fiber's stop token (an empty token outside a fiber or when it
// has none).
CHRONOS_API std::stop_token stop_token() noexcept;

// For its lifetime, makes `token` the running fiber's stop token; the
// previous one comes back when it ends. Scopes nest. Must be created and
// destroyed on the same fiber, in LIFO order.
class CHRONOS_API CancelScope {
 public:
  explicit CancelScope(std::stop_token token);
  ~CancelScope();
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;

 private:
  std::stop_token token_;
  std::stop_token saved_;
};

}  // namespace this_fiber
}  // namespace chronos
