// tests/net/ipv6_test.cpp: IPv6 addresses and sockets: parsing and printing
// (zones included), echo and datagrams over ::1, a "::" listener taking
// IPv4 peers too, "localhost" reaching a server on ::1 only, and a
// link-local address with its zone. Tests that need an IPv6 loopback skip
// where the machine has none.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chronos/chronos.hpp>
#include <chronos/net.hpp>

#include <cerrno>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "../test_util.hpp"
#include "net_util.hpp"

namespace {

using chronos::Config;
using chronos::Runtime;
using chronos::net::Endpoint;
using chronos::net::TcpListener;
using chronos::net::TcpStream;
using chronos::net::UdpSocket;

bool have_ipv6_loopback() {
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

#define REQUIRE_IPV6_LOOPBACK() \
  if (!have_ipv6_loopback()) GTEST_SKIP() << "this machine has no IPv6 loopback"

// One message of `size` bytes out and back over s; true if every byte came
// back as sent.
bool echo_once(TcpStream& s, std::uint64_t conn, std::uint64_t msg, std::size_t size) {
  std::vector<std::byte> out(size), in(size);
  chronos::test::fill_message(out, conn, msg);
  s.write_all(out);
  s.read_exact(in);
  return in == out;
}

TEST(NetIpv6, EndpointsParseAndPrint) {
  Endpoint e = Endpoint::parse("::1", 80);
  EXPECT_TRUE(e.is_v6());
  EXPECT_EQ(e.address(), "::1");
  EXPECT_EQ(e.port(), 80);
  EXPECT_EQ(e.to_string(), "[::1]:80");
  EXPECT_EQ(Endpoint::parse("[::1]", 81).to_string(), "[::1]:81");
  EXPECT_EQ(Endpoint::parse("::ffff:127.0.0.1", 1).address(), "::ffff:127.0.0.1");
  EXPECT_FALSE(Endpoint::parse("127.0.0.1", 1).is_v6());

  // A zone, by name or by index, comes back by name.
  const unsigned lo = ::if_nametoindex("lo");
  ASSERT_NE(lo, 0u);
  EXPECT_EQ(Endpoint::parse("fe80::1%lo", 80).to_string(), "[fe80::1%lo]:80");
  EXPECT_EQ(Endpoint::parse("[fe80::1%lo]", 80).address(), "fe80::1%lo");
  EXPECT_EQ(Endpoint::parse("fe80::1%" + std::to_string(lo), 80).address(), "fe80::1%lo");
  EXPECT_EQ(Endpoint::parse("fe80::1", 80).address(), "fe80::1");  // no zone, none printed

  for (const char* bad :
       {"fe80::1%", "fe80::1%no-such-if0", "127.0.0.1%lo", "::1::2", "[::1", "localhost", ""}) {
    try {
      Endpoint::parse(bad, 1);
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const std::invalid_argument& err) {
      EXPECT_EQ(std::string(err.what()),
                std::string("chronos::net::Endpoint: not a numeric address: ") + bad);
    }
  }
}

TEST(NetIpv6, TcpEchoOverTheLoopback) {
  REQUIRE_IPV6_LOOPBACK();
  Runtime rt{Config{.workers = 2}};
  const int conns = 20, msgs = 50;
  const int good = rt.block_on([&] {
    TcpListener l = TcpListener::bind("::1", 0);
    const Endpoint le = l.local_endpoint();
    EXPECT_TRUE(le.is_v6());
    EXPECT_EQ(le.to_string(), "[::1]:" + std::to_string(le.port()));
    auto server = chronos::go([&] {
      int v6_peers = 0;
      for (int i = 0; i < conns; ++i) {
        TcpStream c = l.accept();
        v6_peers += c.peer_endpoint().address() == "::1" && c.local_endpoint().is_v6();
        chronos::go([c = std::move(c)]() mutable {
          chronos::test::echo_connection(std::move(c));
        }).detach();
      }
      return v6_peers;
    });
    std::vector<chronos::JoinHandle<int>> clients;
    for (int i = 0; i < conns; ++i) {
      clients.push_back(chronos::go([i, port = le.port()] {
        TcpStream s = TcpStream::connect(i % 2 ? "::1" : "[::1]", port);
        int ok = 0;
        for (int m = 0; m < msgs; ++m)
          ok += echo_once(s, static_cast<std::uint64_t>(i), static_cast<std::uint64_t>(m), 300);
        return ok;
      }));
    }
    int total = 0;
    for (auto& c : clients) total += c.join();
    EXPECT_EQ(server.join(), conns);
    return total;
  });
  EXPECT_EQ(good, conns * msgs);
}

TEST(NetIpv6, UdpSendToRecvFrom) {
  REQUIRE_IPV6_LOOPBACK();
  Runtime rt{Config{.workers = 2}};
  rt.block_on([] {
    UdpSocket a = UdpSocket::bind("::1", 0);
    UdpSocket b = UdpSocket::bind("[::1]", 0);
    EXPECT_TRUE(b.local_endpoint().is_v6());
    EXPECT_EQ(a.local_endpoint().address(), "::1");  // so "from a" below means from [::1]
    const int n = 50;
    const chronos::test::UdpTally t = chronos::test::udp_round_trips(a, b, n, 200, 6);
    EXPECT_EQ(t.sent, n);
    EXPECT_EQ(t.delivered, n);
    EXPECT_EQ(t.acked, n);
  });
}

TEST(NetIpv6, AListenerOnEveryAddressTakesIpv4PeersToo) {
  REQUIRE_IPV6_LOOPBACK();
  std::ifstream v6only("/proc/sys/net/ipv6/bindv6only");
  int only = 0;
  if (v6only >> only && only != 0) GTEST_SKIP() << "net.ipv6.bindv6only is set";
  Runtime rt{Config{.workers = 2}};
  rt.block_on([] {
    TcpListener l = TcpListener::bind("::", 0);
    EXPECT_EQ(l.local_endpoint().address(), "::");
    const std::uint16_t port = l.local_endpoint().port();
    auto server = chronos::go([&] {
      std::vector<std::string> peers;
      for (int i = 0; i < 2; ++i) {
        TcpStream c = l.accept();
        peers.push_back(c.peer_endpoint().address());
        chronos::go([c = std::move(c)]() mutable {
          chronos::test::echo_connection(std::move(c));
        }).detach();
      }
      return peers;
    });
    TcpStream v4 = TcpStream::connect("127.0.0.1", port);
    EXPECT_TRUE(echo_once(v4, 1, 0, 100));
    TcpStream v6 = TcpStream::connect("::1", port);
    EXPECT_TRUE(echo_once(v6, 2, 0, 100));
    EXPECT_EQ(server.join(), (std::vector<std::string>{"::ffff:127.0.0.1", "::1"}));
  });
}

TEST(NetIpv6, LocalhostReachesAServerOnIpv6Only) {
  REQUIRE_IPV6_LOOPBACK();
  Runtime rt{Config{.workers = 1}};
  rt.block_on([] {
    TcpListener l = TcpListener::bind("::1", 0);
    const std::uint16_t port = l.local_endpoint().port();
    auto server = chronos::go([&] {
      std::error_code ec;
      TcpStream c = l.accept(ec);  // EBADF once closed below, if nobody came
      if (!ec) chronos::test::echo_connection(std::move(c));
    });
    // 127.0.0.1 first (refused: nothing listens there), then ::1.
    std::error_code ec;
    TcpStream s = TcpStream::connect("localhost", port, {}, ec);
    EXPECT_FALSE(ec) << ec.message();
    if (!ec) {
      EXPECT_EQ(s.peer_endpoint().to_string(), "[::1]:" + std::to_string(port));
      EXPECT_TRUE(echo_once(s, 3, 0, 64));
      s.close();
    }
    l.close();
    server.join();
    // Nothing on either: the error is the first address's.
    TcpStream none = TcpStream::connect("localhost", port, {}, ec);
    EXPECT_EQ(ec, std::errc::connection_refused) << ec.message();
    EXPECT_FALSE(none.is_open());
  });
}

// The first link-local IPv6 address of an interface that is up, as
// "fe80::...%name", or "" if there is none.
std::string a_link_local_address() {
  ifaddrs* all = nullptr;
  if (::getifaddrs(&all) != 0) return "";
  std::string found;
  for (ifaddrs* i = all; i && found.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET6 || !(i->ifa_flags & IFF_UP)) continue;
    const auto* a = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
    if (!IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr)) continue;
    char buf[INET6_ADDRSTRLEN];
    if (::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf))
      found = std::string(buf) + "%" + i->ifa_name;
  }
  ::freeifaddrs(all);
  return found;
}

TEST(NetIpv6, ALinkLocalAddressTakesItsZone) {
  const std::string zoned = a_link_local_address();
  if (zoned.empty()) GTEST_SKIP() << "no interface here has a link-local IPv6 address";
  Runtime rt{Config{.workers = 1}};
  const bool bound = rt.block_on([&] {
    TcpListener l;
    try {
      l = TcpListener::bind(zoned, 0);
    } catch (const std::system_error& e) {
      if (e.code() == std::errc::address_not_available) return false;  // still tentative (DAD)
      throw;
    }
    const Endpoint le = l.local_endpoint();
    EXPECT_EQ(le.address(), zoned);
    auto server = chronos::go([&] { chronos::test::echo_connection(l.accept()); });
    TcpStream s = TcpStream::connect(zoned, le.port());
    EXPECT_TRUE(echo_once(s, 4, 0, 128));
    s.close();
    server.join();
    // Without its zone, a link-local address names no interface: EINVAL.
    std::error_code ec;
    const std::string bare = zoned.substr(0, zoned.find('%'));
    TcpStream none = TcpStream::connect(bare, le.port(), {}, ec);
    EXPECT_EQ(ec, std::errc::invalid_argument) << ec.message();
    return true;
  });
  if (!bound) GTEST_SKIP() << zoned << " is not usable yet (duplicate address detection)";
}

}  // namespace
