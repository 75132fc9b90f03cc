// chronos/net.hpp: blocking-style sockets for fibers.
//
//   auto listener = chronos::net::TcpListener::bind("127.0.0.1", 8080);
//   for (;;) {
//     auto conn = listener.accept();               // parks this fiber, not the worker
//     chronos::go([c = std::move(conn)]() mutable {
//       std::array<std::byte, 4096> buf;
//       while (std::size_t n = c.read(buf)) c.write_all({buf.data(), n});
//     });
//   }
//
// Every call that would block parks the calling fiber until its socket is
// ready, and other fibers run meanwhile. Sockets must be created and used
// inside fibers of one runtime, and must not outlive it. One fiber may read
// while another writes the same socket; a second concurrent reader (or
// writer) gets EBUSY. One fiber may close a socket, and then destroy it,
// while others are parked in its read, write, accept, send_to or recv_from:
// those return EBADF and never touch the destroyed object. read_exact and
// write_all go back to the object between rounds: let them return first.
//
// Errors are std::system_error carrying the errno (ECONNRESET, EPIPE,
// ETIMEDOUT for a timeout, EBADF after close(), ...). The overloads taking a
// std::error_code& report I/O errors there instead; like every blocking call
// they may still throw the runtime's shutdown unwind, which must not be
// swallowed. Sends never raise SIGPIPE.
#pragma once

#include <chronos/blocking.hpp>
#include <chronos/export.hpp>
#include <chronos/time.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

namespace chronos {

namespace detail {
struct Descriptor;
}

// Deadline (chronos/time.hpp) is a std::chrono::steady_clock time point.
inline constexpr Deadline kForever = Deadline::max();

// Parks the calling fiber until the user's own non-blocking fd is readable
// (writable), or throws std::system_error(ETIMEDOUT) once deadline passes. One
// waiter per fd and direction at a time; the fd must not be one of chronos'
// own sockets.
CHRONOS_API void wait_readable(int fd, Deadline deadline = kForever);
CHRONOS_API void wait_writable(int fd, Deadline deadline = kForever);
CHRONOS_API void wait_readable(int fd, Deadline deadline, std::error_code& ec);
CHRONOS_API void wait_writable(int fd, Deadline deadline, std::error_code& ec);

namespace net {

// An IPv4 or IPv6 address and port (a sockaddr, held by value).
class CHRONOS_API Endpoint {
 public:
  Endpoint() = default;
  // A numeric address ("127.0.0.1", "::1", "[::1]"), an IPv6 one with its
  // zone if it is scoped ("fe80::1%eth0", or "%2" by interface index);
  // std::invalid_argument otherwise, an unknown zone included.
  static Endpoint parse(std::string_view ip, std::uint16_t port);

  std::string address() const;  // numeric, with the zone by name: "fe80::1%eth0"
  std::uint16_t port() const noexcept;
  bool is_v6() const noexcept;
  std::string to_string() const;  // "1.2.3.4:80", "[::1]:80", "[fe80::1%eth0]:80"

  // The raw sockaddr, for interop.
  const void* data() const noexcept { return storage_; }
  void* data() noexcept { return storage_; }
  unsigned size() const noexcept { return size_; }
  void resize(unsigned n) noexcept { size_ = n <= sizeof storage_ ? n : sizeof storage_; }
  static constexpr unsigned capacity() noexcept { return sizeof(storage_); }

 private:
  alignas(8) unsigned char storage_[28] = {};  // sockaddr_in or sockaddr_in6
  unsigned size_ = 0;
};

enum class Shutdown { kRead, kWrite, kBoth };

// A connected TCP socket. Move-only; the destructor closes it.
class CHRONOS_API TcpStream {
 public:
  TcpStream() = default;
  TcpStream(TcpStream&& o) noexcept;
  TcpStream& operator=(TcpStream&& o) noexcept;
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;
  ~TcpStream();

  // Resolves host (numeric addresses directly, "localhost" to 127.0.0.1 and
  // then ::1, names with getaddrinfo on the blocking pool, off the workers)
  // and connects to the first address that accepts; if none does, the error
  // is the first address's. timeout zero: no limit (beyond the kernel's own).
  static TcpStream connect(std::string_view host, std::uint16_t port,
                           std::chrono::nanoseconds timeout = {});
  static TcpStream connect(std::string_view host, std::uint16_t port,
                           std::chrono::nanoseconds timeout, std::error_code& ec);
  static TcpStream connect(const Endpoint& to, std::chrono::nanoseconds timeout,
                           std::error_code& ec);

  // Reads what is there, up to buf.size() bytes, waiting until at least one
  // byte is; 0 means the peer closed its side (or buf is empty).
  std::size_t read(std::span<std::byte> buf);
  std::size_t read(std::span<std::byte> buf, std::error_code& ec);
  // Fills buf; std::system_error(ECONNABORTED, "unexpected end of stream") if
  // the peer closes first.
  void read_exact(std::span<std::byte> buf);
  void read_exact(std::span<std::byte> buf, std::error_code& ec);
  // Writes some of buf (at least one byte), waiting for room.
  std::size_t write(std::span<const std::byte> buf);
  std::size_t write(std::span<const std::byte> buf, std::error_code& ec);
  // Writes all of buf.
  void write_all(std::span<const std::byte> buf);
  void write_all(std::span<const std::byte> buf, std::error_code& ec);

  void shutdown(Shutdown how = Shutdown::kWrite);
  // Closes the socket. A fiber parked on it wakes with EBADF. Idempotent.
  void close() noexcept;
  void set_nodelay(bool on);
  // A limit on each read (write) call, from its start; zero: none. A call
  // that runs out throws std::system_error(ETIMEDOUT).
  void set_read_timeout(std::chrono::nanoseconds t) noexcept { read_timeout_ = t; }
  void set_write_timeout(std::chrono::nanoseconds t) noexcept { write_timeout_ = t; }

  Endpoint local_endpoint() const;
  Endpoint peer_endpoint() const;
  bool is_open() const noexcept;  // false once close() has begun
  int native_handle() const noexcept;

 private:
  friend class TcpListener;
  explicit TcpStream(detail::Descriptor* d) noexcept : d_(d) {}
  detail::Descriptor* d_ = nullptr;
  std::chrono::nanoseconds read_timeout_{};
  std::chrono::nanoseconds write_timeout_{};
};

// A listening TCP socket (SO_REUSEADDR). Move-only; the destructor closes it.
class CHRONOS_API TcpListener {
 public:
  TcpListener() = default;
  TcpListener(TcpListener&& o) noexcept;
  TcpListener& operator=(TcpListener&& o) noexcept;
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;
  ~TcpListener();

  // host: a numeric address, a name ("localhost" is 127.0.0.1), "" for every
  // IPv4 address, or "::" for every IPv6 and IPv4 one (IPv4 peers then show
  // as "::ffff:a.b.c.d", unless net.ipv6.bindv6only is set). Port 0 picks a
  // free port (see local_endpoint()).
  static TcpListener bind(std::string_view host, std::uint16_t port, int backlog = 1024);

  // Waits for the next connection. When the process is out of fds (EMFILE,
  // ENFILE) it logs once to stderr, sleeps a little and retries, so the
  // connection is taken once an fd is free; ECONNABORTED is skipped.
  TcpStream accept();
  TcpStream accept(std::error_code& ec);

  Endpoint local_endpoint() const;
  void close() noexcept;
  bool is_open() const noexcept;  // false once close() has begun
  int native_handle() const noexcept;

 private:
  detail::Descriptor* d_ = nullptr;
};

// A UDP socket. Move-only; the destructor closes it.
class CHRONOS_API UdpSocket {
 public:
  UdpSocket() = default;
  UdpSocket(UdpSocket&& o) noexcept;
  UdpSocket& operator=(UdpSocket&& o) noexcept;
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;
  ~UdpSocket();

  // Binds to host:port (port 0: any free port).
  static UdpSocket bind(std::string_view host, std::uint16_t port);

  std::size_t send_to(std::span<const std::byte> buf, const Endpoint& to);
  std::size_t send_to(std::span<const std::byte> buf, const Endpoint& to, std::error_code& ec);
  // Waits for one datagram; returns its size (truncated to buf) and sets from.
  std::size_t recv_from(std::span<std::byte> buf, Endpoint& from);
  std::size_t recv_from(std::span<std::byte> buf, Endpoint& from, std::error_code& ec);

  void set_read_timeout(std::chrono::nanoseconds t) noexcept { read_timeout_ = t; }
  Endpoint local_endpoint() const;
  void close() noexcept;
  bool is_open() const noexcept;  // false once close() has begun
  int native_handle() const noexcept;

 private:
  detail::Descriptor* d_ = nullptr;
  std::chrono::nanoseconds read_timeout_{};
};

}  // namespace net
}  // namespace chronos
