#include "model/snapshot.h"

#include <gtest/gtest.h>

#include <string>

namespace kedge::model {
namespace {

TEST(NormalizePath, Table) {
  struct Case {
    const char* in;
    const char* out;  // nullptr: rejected
  } cases[] = {
      {"/", "/"},
      {"/foo", "/foo"},
      {"/foo/", "/foo/"},  // trailing slash kept
      {"/foo?x=1", "/foo"},
      {"/foo/?x=/../..", "/foo/"},
      {"/foo#frag", "/foo"},
      {"/?", "/"},
      {"/%61dmin", "/admin"},  // unreserved escapes decoded
      {"/%41%7a%2D%2e%5F%7E", "/Az-._~"},
      {"/a%2Fb", "/a/b"},  // an encoded slash separates segments, as in nginx
      {"/a%2fb", "/a/b"},
      {"/admin%2F%2Fx", "/admin/x"},
      {"/a%20b", "/a%20b"},  // reserved / other escapes kept as they are
      {"/a%3Fb", "/a%3Fb"},
      {"/a%", "/a%"},  // incomplete escapes kept
      {"/a%6", "/a%6"},
      {"/a%zz", "/a%zz"},
      {"//foo", "/foo"},  // slashes merged
      {"/foo//bar///", "/foo/bar/"},
      {"///", "/"},
      {"/./foo", "/foo"},  // dot segments removed
      {"/foo/./bar", "/foo/bar"},
      {"/foo/../bar", "/bar"},
      {"/foo/bar/..", "/foo/"},
      {"/foo/bar/.", "/foo/bar/"},
      {"/..", "/"},
      {"/../../etc/passwd", "/etc/passwd"},
      {"/%2e%2e/admin", "/admin"},  // decoded dots are dot segments too (as in nginx)
      {"/foo/%2E/bar", "/foo/bar"},
      {"/.hidden/..x", "/.hidden/..x"},
      // Encoded slashes cannot hide a dot segment from the matcher.
      {"/public/..%2Fadmin", "/admin"},
      {"/public/..%2fadmin", "/admin"},
      {"/public%2F..%2Fadmin", "/admin"},
      {"/public/%2e%2e%2fadmin", "/admin"},
      {"/public/.%2Fadmin", "/public/admin"},
      {"/a%2F", "/a/"},
      // A dot segment next to a backslash is refused: some upstreams read "\\" as "/".
      {"/public/..%5Cadmin", nullptr},
      {"/public/..%5cadmin", nullptr},
      {"/public/..\\admin", nullptr},
      {"/public\\..\\admin", nullptr},
      {"/a%5C..", nullptr},
      {"/a%5C..b", "/a%5C..b"},  // not a dot segment
      {"/a\\b", "/a\\b"},
      {"/a/../b%5Cc", "/b%5Cc"},  // plain dot segments are resolved as before
      {"", nullptr},
      {"foo", nullptr},
      {"*", nullptr},
      {"?x=1", nullptr},
      {"http://example.com/foo", nullptr},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    std::string out = "garbage";
    bool ok = normalize_path(c.in, out);
    if (!c.out) {
      EXPECT_FALSE(ok);
    } else {
      ASSERT_TRUE(ok);
      EXPECT_EQ(out, c.out);
    }
  }
}

TEST(NormalizeHost, Table) {
  struct Case {
    const char* in;
    const char* out;  // nullptr: rejected
  } cases[] = {
      {"example.com", "example.com"},
      {"Example.COM", "example.com"},
      {"example.com:8080", "example.com"},
      {"EXAMPLE.com:80", "example.com"},
      {"example.com.", "example.com"},
      {"example.com.:443", "example.com"},
      {"10.0.0.1:80", "10.0.0.1"},
      {"[::1]", "[::1]"},
      {"[::1]:8080", "[::1]"},
      {"[2001:DB8::1]:443", "[2001:db8::1]"},
      {"", ""},
      {"bad host", nullptr},
      {"a/b", nullptr},
      {"user@example.com", nullptr},
      {"a\\b", nullptr},
      {"[::1", nullptr},
      // Only uri-host [":" port]: no second port, no list, no other characters.
      {"example.com:80:80", nullptr},
      {"example.com:http", nullptr},
      {"example.com:123456", nullptr},
      {"example.com:", "example.com"},  // port = *DIGIT
      {"a.example,b.example", nullptr},
      {"a.example;b", nullptr},
      {"exa%6Dple.com", nullptr},
      {"ex\tample", nullptr},
      {"*.example.com", nullptr},
      {"under_score.example", "under_score.example"},
      {"[::1]x", nullptr},
      {"[::1]:http", nullptr},
      {"[::g]", nullptr},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    std::string out;
    bool ok = normalize_host(c.in, out);
    if (!c.out) {
      EXPECT_FALSE(ok);
    } else {
      ASSERT_TRUE(ok);
      EXPECT_EQ(out, c.out);
    }
  }
  std::string out;
  EXPECT_FALSE(normalize_host(std::string(300, 'a'), out));
  EXPECT_TRUE(normalize_host(std::string(255, 'a'), out));
}

TEST(SocketAddress, ParseAndFormat) {
  struct Case {
    const char* ip;
    uint16_t port;
    const char* text;  // nullptr: rejected
    bool v6;
  } cases[] = {
      {"10.0.0.1", 80, "10.0.0.1:80", false},
      {"0.0.0.0", 0, "0.0.0.0:0", false},
      {"255.255.255.255", 65535, "255.255.255.255:65535", false},
      {"::1", 8080, "[::1]:8080", true},
      {"2001:db8::1", 443, "[2001:db8::1]:443", true},
      {"2001:DB8:0:0:0:0:0:1", 443, "[2001:db8::1]:443", true},
      {"::ffff:10.0.0.1", 80, "[::ffff:10.0.0.1]:80", true},
      {"10.0.0.256", 80, nullptr, false},
      {"10.0.0", 80, nullptr, false},
      {"[::1]", 80, nullptr, false},
      {"example.com", 80, nullptr, false},
      {"", 80, nullptr, false},
      {"10.0.0.1 ", 80, nullptr, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.ip);
    auto a = SocketAddress::parse(c.ip, c.port);
    if (!c.text) {
      EXPECT_FALSE(a.has_value());
      continue;
    }
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->to_string(), c.text);
    EXPECT_EQ(a->v6, c.v6);
    EXPECT_EQ(a->port, c.port);
  }
}

TEST(Cidr, ParseAndContains) {
  auto a = [](const char* ip) { return *SocketAddress::parse(ip, 0); };
  auto in = [&](const char* range, const char* ip) {
    auto c = Cidr::parse(range);
    EXPECT_TRUE(c) << range;
    return c && c->contains(a(ip).v6, a(ip).ip);
  };
  EXPECT_TRUE(in("10.0.0.0/8", "10.255.1.2"));
  EXPECT_FALSE(in("10.0.0.0/8", "11.0.0.1"));
  EXPECT_TRUE(in("192.168.1.128/25", "192.168.1.200"));
  EXPECT_FALSE(in("192.168.1.128/25", "192.168.1.127"));
  EXPECT_TRUE(in("192.168.1.7", "192.168.1.7"));
  EXPECT_FALSE(in("192.168.1.7", "192.168.1.8"));
  EXPECT_TRUE(in("0.0.0.0/0", "203.0.113.9"));
  EXPECT_FALSE(in("0.0.0.0/0", "::1"));  // families never mix
  EXPECT_TRUE(in("2001:db8::/32", "2001:db8:1::5"));
  EXPECT_FALSE(in("2001:db8::/33", "2001:db8:8000::1"));
  EXPECT_TRUE(in("::/0", "::1"));
  for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/8x", "bogus",
                          "10.0.0.0/-1", "10.0.0.0/0008"})
    EXPECT_FALSE(Cidr::parse(bad)) << bad;
}

TEST(SocketAddress, Ordering) {
  auto a = *SocketAddress::parse("10.0.0.1", 80);
  auto b = *SocketAddress::parse("10.0.0.1", 81);
  auto c = *SocketAddress::parse("10.0.0.2", 80);
  auto d = *SocketAddress::parse("10.0.0.1", 80);
  EXPECT_EQ(a, d);
  EXPECT_NE(a, b);
  EXPECT_LT(a, b);
  EXPECT_LT(a, c);
  EXPECT_NE(*SocketAddress::parse("::a00:1", 80), a);  // same bytes, other family
}

Route make_route(MatchType m, std::string path, std::string ingress) {
  Route r;
  r.match = m;
  r.path = std::move(path);
  r.ingress = std::move(ingress);
  return r;
}

TEST(Route, PrefixMatchesElementWise) {
  Route foo = make_route(MatchType::Prefix, "/foo", "");
  EXPECT_TRUE(foo.matches("/foo"));
  EXPECT_TRUE(foo.matches("/foo/"));
  EXPECT_TRUE(foo.matches("/foo/bar"));
  EXPECT_FALSE(foo.matches("/foobar"));
  EXPECT_FALSE(foo.matches("/fo"));
  EXPECT_FALSE(foo.matches("/Foo"));
  Route root = make_route(MatchType::Prefix, "/", "");
  EXPECT_TRUE(root.matches("/"));
  EXPECT_TRUE(root.matches("/anything"));
  Route exact = make_route(MatchType::Exact, "/foo", "");
  EXPECT_TRUE(exact.matches("/foo"));
  EXPECT_FALSE(exact.matches("/foo/"));
  EXPECT_FALSE(exact.matches("/FOO"));
}

TEST(Snapshot, FindHostAndRoute) {
  Snapshot s;
  s.exact_hosts["a.example.com"].routes.push_back(make_route(MatchType::Prefix, "/", "exact"));
  s.wildcard_hosts[".example.com"].routes.push_back(make_route(MatchType::Prefix, "/", "wildcard"));
  s.any_host.routes.push_back(make_route(MatchType::Prefix, "/api", "any"));
  struct Case {
    const char* host;
    const char* path;
    const char* ingress;  // nullptr: no route
  } cases[] = {
      {"a.example.com", "/", "exact"},
      {"b.example.com", "/", "wildcard"},
      {"x.b.example.com", "/api", "any"},  // one label only
      {"example.com", "/api", "any"},
      {"example.com", "/other", nullptr},
      {"other.org", "/api/v1", "any"},
      {"", "/api", "any"},
      // Host header values as clients send them: any case, with a port.
      {"A.Example.COM", "/", "exact"},
      {"a.example.com:8080", "/", "exact"},
      {"B.EXAMPLE.com:443", "/", "wildcard"},
      {"a.example.com.", "/", "exact"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.host) + c.path);
    const Route* r = s.route(c.host, c.path);
    if (!c.ingress) {
      EXPECT_EQ(r, nullptr);
    } else {
      ASSERT_NE(r, nullptr);
      EXPECT_EQ(r->ingress, c.ingress);
    }
  }
  s.default_backend = make_route(MatchType::Prefix, "/", "default");
  ASSERT_NE(s.route("example.com", "/other"), nullptr);
  EXPECT_EQ(s.route("example.com", "/other")->ingress, "default");
}

TEST(VirtualHost, FirstMatchInOrder) {
  VirtualHost vh;
  vh.routes.push_back(make_route(MatchType::Exact, "/foo/bar", "exact"));
  vh.routes.push_back(make_route(MatchType::Prefix, "/foo/bar", "long"));
  vh.routes.push_back(make_route(MatchType::Prefix, "/foo", "short"));
  ASSERT_NE(vh.match("/foo/bar"), nullptr);
  EXPECT_EQ(vh.match("/foo/bar")->ingress, "exact");
  EXPECT_EQ(vh.match("/foo/bar/baz")->ingress, "long");
  EXPECT_EQ(vh.match("/foo/baz")->ingress, "short");
  EXPECT_EQ(vh.match("/other"), nullptr);
}

TEST(SharedMap, CopiesShareUntilWrittenAndWritesStayInTheirCopy) {
  SharedMap<int> a;
  for (int i = 0; i < 1000; ++i) a[std::to_string(i)] = i;
  SharedMap<int> b = a;
  b["7"] = 70;
  b.erase("8");
  b["new"] = 1;
  EXPECT_EQ(a.at("7"), 7);
  EXPECT_TRUE(a.contains("8"));
  EXPECT_FALSE(a.contains("new"));
  EXPECT_EQ(a.size(), 1000u);
  EXPECT_EQ(b.at("7"), 70);
  EXPECT_FALSE(b.contains("8"));
  EXPECT_EQ(b.size(), 1000u);
  EXPECT_EQ(b.find("missing"), nullptr);
  EXPECT_THROW((void)b.at("missing"), std::out_of_range);
  // Only the shards written to were copied: most entries are the same objects in both maps.
  size_t shared = 0;
  for (int i = 0; i < 1000; ++i) shared += a.find(std::to_string(i)) == b.find(std::to_string(i));
  EXPECT_GT(shared, 1000u * (SharedMap<int>::kShards - 3) / SharedMap<int>::kShards - 50);
  EXPECT_LT(shared, 1000u);
  EXPECT_NE(a.find("7"), b.find("7"));
  size_t seen = 0;
  b.for_each([&](const std::string&, int) { ++seen; });
  EXPECT_EQ(seen, 1000u);
}

}  // namespace
}  // namespace kedge::model
