// reactor/net.cpp: TcpStream, TcpListener, UdpSocket and Endpoint
// (chronos/net.hpp) on top of the reactor.
//
// Every operation follows one shape: take an operation reference on the
// descriptor (OpGuard, so a concurrent close() cannot close the fd under us),
// try the system call, and on EAGAIN park in wait_io() and retry. Sockets are
// non-blocking from birth, so the first attempt costs no wait at all when
// data or room is there.
//
// After it has taken its reference, an operation uses the descriptor it holds
// (the guard's), never the socket object's d_ again. While it is parked (or
// sleeps off EMFILE), another fiber may close the socket and destroy the
// object, which nulls d_ and frees its memory; the reference keeps the
// descriptor itself, so the operation wakes, sees the close and returns
// EBADF without touching the object.
#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

#include "chronos/cancel.hpp"
#include "chronos/net.hpp"
#include "chronos/time.hpp"
#include "fiber/thread_errno.hpp"
#include "reactor/io_wait.hpp"
#include "reactor/reactor.hpp"
#include "sched/timer.hpp"

namespace chronos::net {
namespace {

using detail::Descriptor;
using detail::OpGuard;
using detail::Reactor;

std::error_code os_error(int e) {
  return {e, std::system_category()};
}

void throw_if(const std::error_code& ec, const char* what) {
  if (!ec) return;
  if (ec.value() == ECANCELED && ec.category() == std::system_category()) throw Cancelled();
  throw std::system_error(ec, what);
}

std::int64_t deadline_after(std::chrono::nanoseconds t) {
  return t.count() > 0 ? detail::now_ns() + t.count() : detail::kNoDeadline;
}

// Parks until d is ready in dir; false (and ec set) if it cannot be.
bool await(Descriptor* d, detail::Direction dir, std::int64_t deadline, std::error_code& ec) {
  switch (detail::wait_io(d, dir, deadline)) {
    case detail::WaitResult::kReady:
      return true;
    case detail::WaitResult::kClosed:
      ec = os_error(EBADF);
      return false;
    case detail::WaitResult::kTimedOut:
      ec = os_error(ETIMEDOUT);
      return false;
    case detail::WaitResult::kBusy:
      ec = os_error(EBUSY);
      return false;
    case detail::WaitResult::kCancelled:
      ec = os_error(ECANCELED);
      return false;
  }
  return false;
}

// The interface index of an IPv6 zone ("eth0" or "2"), or 0 if there is none.
unsigned zone_index(std::string_view zone) {
  if (zone.empty() || zone.size() >= IF_NAMESIZE) return 0;
  char name[IF_NAMESIZE];
  std::memcpy(name, zone.data(), zone.size());
  name[zone.size()] = '\0';
  unsigned index = 0;
  for (char c : zone) {
    if (c < '0' || c > '9') return ::if_nametoindex(name);  // a name: 0 if there is no such
    if (index > 100'000'000) return 0;
    index = index * 10 + static_cast<unsigned>(c - '0');
  }
  return index;
}

// A numeric address, bracketed or not, an IPv6 one with its zone if it has
// one ("fe80::1%eth0": the interface a link-local address is on).
bool parse_into(std::string_view ip, std::uint16_t port, Endpoint& out) {
  char buf[INET6_ADDRSTRLEN + 2];
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  std::string_view zone;
  bool zoned = false;
  if (std::size_t pct = ip.find('%'); pct != std::string_view::npos) {
    zone = ip.substr(pct + 1);
    ip = ip.substr(0, pct);
    zoned = true;
  }
  if (ip.size() >= sizeof buf) return false;
  std::memcpy(buf, ip.data(), ip.size());
  buf[ip.size()] = '\0';
  sockaddr_in v4{};
  if (!zoned && ::inet_pton(AF_INET, buf, &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    std::memcpy(out.data(), &v4, sizeof v4);
    out.resize(sizeof v4);
    return true;
  }
  sockaddr_in6 v6{};
  if (::inet_pton(AF_INET6, buf, &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    if (zoned && (v6.sin6_scope_id = zone_index(zone)) == 0) return false;
    std::memcpy(out.data(), &v6, sizeof v6);
    out.resize(sizeof v6);
    return true;
  }
  return false;
}

// host to addresses: numeric ones (and "", "localhost") at once, names with
// getaddrinfo on the blocking pool, never on a worker.
std::vector<Endpoint> resolve(std::string_view host, std::uint16_t port, int socktype,
                              std::error_code& ec) {
  std::vector<Endpoint> out(1);
  if (host.empty() || host == "*") host = "0.0.0.0";
  if (host == "localhost") {  // both loopbacks, IPv4 first: bind() takes the first
    out.resize(2);
    parse_into("127.0.0.1", port, out[0]);
    parse_into("::1", port, out[1]);
    return out;
  }
  if (parse_into(host, port, out[0])) return out;
  out.clear();
  std::string name(host);
  addrinfo* res = nullptr;
  int rc = spawn_blocking([&] {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    hints.ai_flags = AI_ADDRCONFIG;
    return ::getaddrinfo(name.c_str(), nullptr, &hints, &res);
  });
  if (rc != 0) {
    ec = rc == EAI_SYSTEM ? os_error(errno) : os_error(EHOSTUNREACH);
    return out;
  }
  for (addrinfo* a = res; a; a = a->ai_next) {
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    if (a->ai_addrlen > Endpoint::capacity()) continue;
    Endpoint e;
    std::memcpy(e.data(), a->ai_addr, a->ai_addrlen);
    e.resize(a->ai_addrlen);
    auto* sa = static_cast<sockaddr*>(e.data());
    if (sa->sa_family == AF_INET) {
      reinterpret_cast<sockaddr_in*>(sa)->sin_port = htons(port);
    } else {
      reinterpret_cast<sockaddr_in6*>(sa)->sin6_port = htons(port);
    }
    out.push_back(e);
  }
  ::freeaddrinfo(res);
  if (out.empty()) ec = os_error(EHOSTUNREACH);
  return out;
}

int family_of(const Endpoint& e) {
  return static_cast<const sockaddr*>(e.data())->sa_family;
}

Endpoint sock_name(const Descriptor* d, bool peer) {
  if (!d) throw std::system_error(os_error(EBADF), "chronos::net: endpoint");
  Endpoint e;
  socklen_t len = Endpoint::capacity();
  auto* sa = static_cast<sockaddr*>(e.data());
  int rc = peer ? ::getpeername(d->fileno(), sa, &len) : ::getsockname(d->fileno(), sa, &len);
  if (rc != 0) throw std::system_error(os_error(detail::thread_errno()), "chronos::net: endpoint");
  e.resize(len);
  return e;
}

// Opens a socket of the given type and registers it with the calling
// fiber's reactor.
Descriptor* open_socket(int family, int type, std::error_code& ec) {
  int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ec = os_error(detail::thread_errno());
    return nullptr;
  }
  try {
    return Reactor::current().open(fd);  // closes fd on failure
  } catch (const std::system_error& e) {
    ec = e.code();
    return nullptr;
  }
}

void release(Descriptor*& d) noexcept {
  if (Descriptor* x = std::exchange(d, nullptr)) x->release();
}

bool open_and_unclosed(const Descriptor* d) noexcept {
  // relaxed: a snapshot for is_open(); close() may race it by design.
  return d && !(d->refs.load(std::memory_order_relaxed) & Descriptor::kClosed);
}

std::atomic<bool> g_emfile_logged{false};

}  // namespace

// ---- Endpoint ----

Endpoint Endpoint::parse(std::string_view ip, std::uint16_t port) {
  Endpoint e;
  if (!parse_into(ip, port, e))
    throw std::invalid_argument("chronos::net::Endpoint: not a numeric address: " +
                                std::string(ip));
  return e;
}

std::string Endpoint::address() const {
  char buf[INET6_ADDRSTRLEN] = "";
  if (size_ == 0) return {};
  const auto* sa = reinterpret_cast<const sockaddr*>(storage_);
  if (sa->sa_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
  } else {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(sa);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    if (v6->sin6_scope_id != 0) {  // the zone, by name if it has one
      char name[IF_NAMESIZE];
      return std::string(buf) + "%" +
             (::if_indextoname(v6->sin6_scope_id, name) ? std::string(name)
                                                        : std::to_string(v6->sin6_scope_id));
    }
  }
  return buf;
}

std::uint16_t Endpoint::port() const noexcept {
  if (size_ == 0) return 0;
  const auto* sa = reinterpret_cast<const sockaddr*>(storage_);
  return ntohs(sa->sa_family == AF_INET ? reinterpret_cast<const sockaddr_in*>(sa)->sin_port
                                        : reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
}

bool Endpoint::is_v6() const noexcept {
  return size_ != 0 && reinterpret_cast<const sockaddr*>(storage_)->sa_family == AF_INET6;
}

std::string Endpoint::to_string() const {
  std::string a = address();
  return (is_v6() ? "[" + a + "]" : a) + ":" + std::to_string(port());
}

// ---- TcpStream ----

TcpStream::TcpStream(TcpStream&& o) noexcept
    : d_(std::exchange(o.d_, nullptr)),
      read_timeout_(o.read_timeout_),
      write_timeout_(o.write_timeout_) {}

TcpStream& TcpStream::operator=(TcpStream&& o) noexcept {
  if (this != &o) {
    release(d_);
    d_ = std::exchange(o.d_, nullptr);
    read_timeout_ = o.read_timeout_;
    write_timeout_ = o.write_timeout_;
  }
  return *this;
}

TcpStream::~TcpStream() {
  release(d_);
}

int TcpStream::native_handle() const noexcept {
  return d_ ? d_->fileno() : -1;
}

bool TcpStream::is_open() const noexcept {
  return open_and_unclosed(d_);
}

TcpStream TcpStream::connect(std::string_view host, std::uint16_t port,
                             std::chrono::nanoseconds timeout) {
  std::error_code ec;
  TcpStream s = connect(host, port, timeout, ec);
  throw_if(ec, "chronos::net::TcpStream::connect");
  return s;
}

TcpStream TcpStream::connect(std::string_view host, std::uint16_t port,
                             std::chrono::nanoseconds timeout, std::error_code& ec) {
  ec.clear();
  const std::int64_t deadline = deadline_after(timeout);
  std::vector<Endpoint> addrs = resolve(host, port, SOCK_STREAM, ec);
  // Each address in turn; if none connects, the first one's error (as Go's
  // dialer reports), not that of a fallback the host may not even have.
  std::error_code first;
  for (const Endpoint& a : addrs) {
    std::chrono::nanoseconds left{};
    if (deadline != detail::kNoDeadline) {
      left = std::chrono::nanoseconds(deadline - detail::now_ns());
      if (left.count() <= 0) {
        ec = os_error(ETIMEDOUT);
        break;
      }
    }
    ec.clear();
    TcpStream s = connect(a, left, ec);
    if (!ec) return s;
    if (!first) first = ec;
  }
  if (first && ec != std::errc::timed_out) ec = first;
  return TcpStream();
}

TcpStream TcpStream::connect(const Endpoint& to, std::chrono::nanoseconds timeout,
                             std::error_code& ec) {
  ec.clear();
  const std::int64_t deadline = deadline_after(timeout);
  int fd = ::socket(family_of(to), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ec = os_error(detail::thread_errno());
    return TcpStream();
  }
  // connect() first, register after: registered while still unconnected, the
  // socket would report a stale EPOLLOUT|EPOLLHUP edge.
  int rc;
  do {
    rc = ::connect(fd, static_cast<const sockaddr*>(to.data()), to.size());
  } while (rc != 0 && detail::thread_errno() == EINTR);
  const int err = rc == 0 ? 0 : detail::thread_errno();
  if (err != 0 && err != EINPROGRESS) {
    ::close(fd);
    ec = os_error(err);
    return TcpStream();
  }
  TcpStream s;
  try {
    s.d_ = Reactor::current().open(fd);
  } catch (const std::system_error& e) {
    ec = e.code();
    return TcpStream();
  }
  if (err == 0) return s;
  OpGuard g(s.d_);
  for (;;) {
    if (!await(s.d_, detail::kWrite, deadline, ec)) return TcpStream();
    int so_error = 0;
    socklen_t len = sizeof so_error;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0)
      so_error = detail::thread_errno();
    if (so_error != 0) {
      ec = os_error(so_error);
      return TcpStream();
    }
    sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) return s;
    if (detail::thread_errno() != ENOTCONN) {
      ec = os_error(detail::thread_errno());
      return TcpStream();
    }
  }
}

std::size_t TcpStream::read(std::span<std::byte> buf) {
  std::error_code ec;
  std::size_t n = read(buf, ec);
  throw_if(ec, "chronos::net::TcpStream::read");
  return n;
}

std::size_t TcpStream::read(std::span<std::byte> buf, std::error_code& ec) {
  ec.clear();
  OpGuard g(d_);
  Descriptor* const d = g.get();
  if (!d) {
    ec = os_error(EBADF);
    return 0;
  }
  std::int64_t deadline = detail::kNoDeadline;
  if (read_timeout_.count() > 0) deadline = deadline_after(read_timeout_);
  // After a short read, wait first: the recv would only say EAGAIN
  // (reactor/descriptor.hpp, "Short reads").
  if (!buf.empty() && d->read_may_skip() && !await(d, detail::kRead, deadline, ec)) return 0;
  for (;;) {
    ssize_t n = ::recv(d->fileno(), buf.data(), buf.size(), 0);
    if (n >= 0) {
      const bool short_read = n > 0 && static_cast<std::size_t>(n) < buf.size();
      d->rx_drained.store(short_read ? 1 : 0, std::memory_order_relaxed);
      return static_cast<std::size_t>(n);
    }
    int e = detail::thread_errno();
    if (e == EINTR) continue;
    if (e != EAGAIN && e != EWOULDBLOCK) {
      ec = os_error(e);
      return 0;
    }
    if (!await(d, detail::kRead, deadline, ec)) return 0;
  }
}

void TcpStream::read_exact(std::span<std::byte> buf) {
  std::error_code ec;
  read_exact(buf, ec);
  if (ec == std::errc::connection_aborted)
    throw std::system_error(ec, "chronos::net::TcpStream::read_exact: unexpected end of stream");
  throw_if(ec, "chronos::net::TcpStream::read_exact");
}

void TcpStream::read_exact(std::span<std::byte> buf, std::error_code& ec) {
  while (!buf.empty()) {
    std::size_t n = read(buf, ec);
    if (ec) return;
    if (n == 0) {
      ec = os_error(ECONNABORTED);
      return;
    }
    buf = buf.subspan(n);
  }
  ec.clear();
}

std::size_t TcpStream::write(std::span<const std::byte> buf) {
  std::error_code ec;
  std::size_t n = write(buf, ec);
  throw_if(ec, "chronos::net::TcpStream::write");
  return n;
}

std::size_t TcpStream::write(std::span<const std::byte> buf, std::error_code& ec) {
  ec.clear();
  OpGuard g(d_);
  Descriptor* const d = g.get();
  if (!d) {
    ec = os_error(EBADF);
    return 0;
  }
  if (buf.empty()) return 0;
  std::int64_t deadline = detail::kNoDeadline;
  if (write_timeout_.count() > 0) deadline = deadline_after(write_timeout_);
  for (;;) {
    ssize_t n = ::send(d->fileno(), buf.data(), buf.size(), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n);
    int e = detail::thread_errno();
    if (e == EINTR) continue;
    if (e != EAGAIN && e != EWOULDBLOCK) {
      ec = os_error(e);
      return 0;
    }
    if (!await(d, detail::kWrite, deadline, ec)) return 0;
  }
}

void TcpStream::write_all(std::span<const std::byte> buf) {
  std::error_code ec;
  write_all(buf, ec);
  throw_if(ec, "chronos::net::TcpStream::write_all");
}

void TcpStream::write_all(std::span<const std::byte> buf, std::error_code& ec) {
  ec.clear();
  while (!buf.empty()) {
    std::size_t n = write(buf, ec);
    if (ec) return;
    buf = buf.subspan(n);
  }
}

void TcpStream::shutdown(Shutdown how) {
  OpGuard g(d_);
  Descriptor* const d = g.get();
  if (!d) throw std::system_error(os_error(EBADF), "chronos::net::TcpStream::shutdown");
  int h = how == Shutdown::kRead ? SHUT_RD : how == Shutdown::kWrite ? SHUT_WR : SHUT_RDWR;
  if (::shutdown(d->fileno(), h) != 0)
    throw std::system_error(os_error(detail::thread_errno()), "chronos::net::TcpStream::shutdown");
}

void TcpStream::close() noexcept {
  if (d_) d_->close();
}

void TcpStream::set_nodelay(bool on) {
  OpGuard g(d_);
  Descriptor* const d = g.get();
  int v = on ? 1 : 0;
  if (!d || ::setsockopt(d->fileno(), IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) != 0)
    throw std::system_error(os_error(d ? detail::thread_errno() : EBADF),
                            "chronos::net::set_nodelay");
}

Endpoint TcpStream::local_endpoint() const {
  OpGuard g(d_);
  return sock_name(g.get(), false);
}

Endpoint TcpStream::peer_endpoint() const {
  OpGuard g(d_);
  return sock_name(g.get(), true);
}

// ---- TcpListener ----

TcpListener::TcpListener(TcpListener&& o) noexcept : d_(std::exchange(o.d_, nullptr)) {}

TcpListener& TcpListener::operator=(TcpListener&& o) noexcept {
  if (this != &o) {
    release(d_);
    d_ = std::exchange(o.d_, nullptr);
  }
  return *this;
}

TcpListener::~TcpListener() {
  release(d_);
}

int TcpListener::native_handle() const noexcept {
  return d_ ? d_->fileno() : -1;
}

bool TcpListener::is_open() const noexcept {
  return open_and_unclosed(d_);
}

TcpListener TcpListener::bind(std::string_view host, std::uint16_t port, int backlog) {
  std::error_code ec;
  std::vector<Endpoint> addrs = resolve(host, port, SOCK_STREAM, ec);
  throw_if(ec, "chronos::net::TcpListener::bind: resolve");
  for (const Endpoint& a : addrs) {
    ec.clear();
    TcpListener l;
    l.d_ = open_socket(family_of(a), SOCK_STREAM, ec);
    if (!l.d_) continue;
    int one = 1;
    ::setsockopt(l.d_->fileno(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(l.d_->fileno(), static_cast<const sockaddr*>(a.data()), a.size()) != 0 ||
        ::listen(l.d_->fileno(), backlog) != 0) {
      ec = os_error(detail::thread_errno());
      continue;
    }
    return l;
  }
  throw std::system_error(ec ? ec : os_error(EADDRNOTAVAIL), "chronos::net::TcpListener::bind");
}

TcpStream TcpListener::accept() {
  std::error_code ec;
  TcpStream s = accept(ec);
  throw_if(ec, "chronos::net::TcpListener::accept");
  return s;
}

TcpStream TcpListener::accept(std::error_code& ec) {
  ec.clear();
  OpGuard g(d_);
  Descriptor* const d = g.get();
  if (!d) {
    ec = os_error(EBADF);
    return TcpStream();
  }
  for (;;) {
    int fd = ::accept4(d->fileno(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      try {
        return TcpStream(d->reactor->open(fd));
      } catch (const std::system_error& e) {
        ec = e.code();
        return TcpStream();
      }
    }
    const int e = detail::thread_errno();
    switch (e) {
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
        continue;
      case EAGAIN:
#if EAGAIN != EWOULDBLOCK
      case EWOULDBLOCK:
#endif
        if (!await(d, detail::kRead, detail::kNoDeadline, ec)) return TcpStream();
        continue;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        // Out of fds (or memory): the connection stays in the backlog. Back
        // off without spinning, and retry; an fd may be free by then.
        // relaxed: only says whether this process has logged it before.
        if (!g_emfile_logged.exchange(true, std::memory_order_relaxed))
          std::fprintf(stderr, "chronos: accept: %s; backing off and retrying (logged once)\n",
                       std::strerror(e));
        detail::sleep_until_ns(detail::now_ns() + 10'000'000);
        // relaxed: a glance at the sticky closed state.
        if (d->slot[detail::kRead].load(std::memory_order_relaxed) == detail::slot::kClosed) {
          ec = os_error(EBADF);
          return TcpStream();
        }
        continue;
      default:
        ec = os_error(e);
        return TcpStream();
    }
  }
}

Endpoint TcpListener::local_endpoint() const {
  OpGuard g(d_);
  return sock_name(g.get(), false);
}

void TcpListener::close() noexcept {
  if (d_) d_->close();
}

// ---- UdpSocket ----

UdpSocket::UdpSocket(UdpSocket&& o) noexcept
    : d_(std::exchange(o.d_, nullptr)), read_timeout_(o.read_timeout_) {}

UdpSocket& UdpSocket::operator=(UdpSocket&& o) noexcept {
  if (this != &o) {
    release(d_);
    d_ = std::exchange(o.d_, nullptr);
    read_timeout_ = o.read_timeout_;
  }
  return *this;
}

UdpSocket::~UdpSocket() {
  release(d_);
}

int UdpSocket::native_handle() const noexcept {
  return d_ ? d_->fileno() : -1;
}

bool UdpSocket::is_open() const noexcept {
  return open_and_unclosed(d_);
}

UdpSocket UdpSocket::bind(std::string_view host, std::uint16_t port) {
  std::error_code ec;
  std::vector<Endpoint> addrs = resolve(host, port, SOCK_DGRAM, ec);
  throw_if(ec, "chronos::net::UdpSocket::bind: resolve");
  for (const Endpoint& a : addrs) {
    ec.clear();
    UdpSocket u;
    u.d_ = open_socket(family_of(a), SOCK_DGRAM, ec);
    if (!u.d_) continue;
    if (::bind(u.d_->fileno(), static_cast<const sockaddr*>(a.data()), a.size()) != 0) {
      ec = os_error(detail::thread_errno());
      continue;
    }
    return u;
  }
  throw std::system_error(ec ? ec : os_error(EADDRNOTAVAIL), "chronos::net::UdpSocket::bind");
}

std::size_t UdpSocket::send_to(std::span<const std::byte> buf, const Endpoint& to) {
  std::error_code ec;
  std::size_t n = send_to(buf, to, ec);
  throw_if(ec, "chronos::net::UdpSocket::send_to");
  return n;
}

std::size_t UdpSocket::send_to(std::span<const std::byte> buf, const Endpoint& to,
                               std::error_code& ec) {
  ec.clear();
  OpGuard g(d_);
  Descriptor* const d = g.get();
  if (!d) {
    ec = os_error(EBADF);
    return 0;
  }
  for (;;) {
    ssize_t n = ::sendto(d->fileno(), buf.data(), buf.size(), MSG_NOSIGNAL,
                         static_cast<const sockaddr*>(to.data()), to.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    int e = detail::thread_errno();
    if (e == EINTR) continue;
    if (e != EAGAIN && e != EWOULDBLOCK) {
      ec = os_error(e);
      return 0;
    }
    if (!await(d, detail::kWrite, detail::kNoDeadline, ec)) return 0;
  }
}

std::size_t UdpSocket::recv_from(std::span<std::byte> buf, Endpoint& from) {
  std::error_code ec;
  std::size_t n = recv_from(buf, from, ec);
  throw_if(ec, "chronos::net::UdpSocket::recv_from");
  return n;
}

std::size_t UdpSocket::recv_from(std::span<std::byte> buf, Endpoint& from, std::error_code& ec) {
  ec.clear();
  OpGuard g(d_);
  Descriptor* const d = g.get();
  if (!d) {
    ec = os_error(EBADF);
    return 0;
  }
  std::int64_t deadline = detail::kNoDeadline;
  if (read_timeout_.count() > 0) deadline = deadline_after(read_timeout_);
  for (;;) {
    socklen_t len = Endpoint::capacity();
    ssize_t n = ::recvfrom(d->fileno(), buf.data(), buf.size(), 0,
                           static_cast<sockaddr*>(from.data()), &len);
    if (n >= 0) {
      from.resize(len);
      return static_cast<std::size_t>(n);
    }
    int e = detail::thread_errno();
    if (e == EINTR) continue;
    if (e != EAGAIN && e != EWOULDBLOCK) {
      ec = os_error(e);
      return 0;
    }
    if (!await(d, detail::kRead, deadline, ec)) return 0;
  }
}

Endpoint UdpSocket::local_endpoint() const {
  OpGuard g(d_);
  return sock_name(g.get(), false);
}

void UdpSocket::close() noexcept {
  if (d_) d_->close();
}

}  // namespace chronos::net
