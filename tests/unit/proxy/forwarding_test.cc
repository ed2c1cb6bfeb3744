// What crosses a hop: hop-by-hop and Connection-listed fields dropped, kedge's own fields set.
#include "proxy/forwarding.h"
#include "http1/parser.h"

#include <gtest/gtest.h>

#include <set>

namespace kedge::proxy {
namespace {

http1::MessageHead parse(const std::string& text) {
  http1::Parser parser(http1::Parser::Type::Request, 64 * 1024);
  auto step = parser.execute(text.data(), text.size());
  EXPECT_EQ(step.event, http1::Parser::Event::HeadersComplete) << parser.error_reason();
  return parser.head();
}

std::string copied(const std::string& head_text, bool drop_forwarding = true) {
  std::string out;
  copy_end_to_end_fields(parse(head_text), out, drop_forwarding);
  return out;
}

TEST(Forwarding, HopByHopNamesInAnyCase) {
  for (const char* name : {"Connection", "keep-alive", "PROXY-CONNECTION", "te", "Trailer",
                           "upgrade", "Transfer-Encoding", "expect", "HTTP2-Settings"})
    EXPECT_TRUE(is_hop_by_hop(name)) << name;
  for (const char* name : {"", "t", "tee", "connections", "keep_alive", "x-upgrade", "host",
                           "content-length", "transfer-encodings"})
    EXPECT_FALSE(is_hop_by_hop(name)) << name;
}

TEST(Forwarding, ForwardingNamesInAnyCase) {
  for (const char* name : {"X-Forwarded-For", "x-forwarded-proto", "X-FORWARDED-HOST",
                           "x-forwarded-port", "X-Real-IP", "x-request-id", "X-Scheme"})
    EXPECT_TRUE(is_forwarding_header(name)) << name;
  for (const char* name : {"", "x-", "x-forwarded", "x-forwarded-fo", "y-forwarded-for",
                           "x_forwarded_for", "x-real-ips", "forwarded", "x-schema"})
    EXPECT_FALSE(is_forwarding_header(name)) << name;
}

TEST(Forwarding, EndToEndFieldsKeepOrderAndDropHopFields) {
  std::string out = copied(
      "GET / HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\nConnection: keep-alive\r\n"
      "Keep-Alive: timeout=5\r\nX-Forwarded-For: 6.6.6.6\r\nCookie: a=1\r\nTE: trailers\r\n\r\n");
  EXPECT_EQ(out, "Accept: */*\r\nCookie: a=1\r\n");
  // A response keeps Host-like and forwarding names: only requests drop them.
  EXPECT_EQ(copied("GET / HTTP/1.1\r\nHost: a.test\r\nX-Real-IP: 1.2.3.4\r\n\r\n", false),
            "Host: a.test\r\nX-Real-IP: 1.2.3.4\r\n");
}

TEST(Forwarding, FieldsThatConnectionListsAreDropped) {
  std::string out = copied(
      "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close, X-Secret ,\tx-other\r\n"
      "x-secret: 1\r\nX-Other: 2\r\nX-Kept: 3\r\nConnection: X-Late\r\nX-Late: 4\r\n\r\n");
  EXPECT_EQ(out, "X-Kept: 3\r\n");
}

TEST(Forwarding, ManyListedFieldsAreAllDropped) {
  // More names than the fast path gathers: every one of them is still dropped.
  std::string head = "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: ";
  for (int i = 0; i < 20; ++i) head += (i ? ", x-f" : "x-f") + std::to_string(i);
  head += "\r\n";
  for (int i = 0; i < 20; ++i) head += "X-F" + std::to_string(i) + ": v\r\n";
  head += "X-F20: kept\r\n\r\n";
  EXPECT_EQ(copied(head), "X-F20: kept\r\n");
}

TEST(Forwarding, RequestIdsAre32HexDigitsOfBothNumbers) {
  std::string id;
  make_request_id(0x0123456789abcdefULL, 0xfedcba9876543210ULL, id);
  EXPECT_EQ(id, "0123456789abcdeffedcba9876543210");
  make_request_id(0, 1, id);
  EXPECT_EQ(id, "00000000000000000000000000000001");
  std::set<std::string> seen;
  for (uint64_t i = 0; i < 100; ++i) {
    make_request_id(i * 0x9e3779b97f4a7c15ULL, ~i, id);
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST(Forwarding, ForwardingFieldsAndStatusLine) {
  std::string out = "GET / HTTP/1.1\r\n";
  append_forwarding_fields(out, "abc", "10.0.0.7", "shop.test", 8443, "https");
  EXPECT_EQ(out,
            "GET / HTTP/1.1\r\nX-Request-ID: abc\r\nX-Real-IP: 10.0.0.7\r\n"
            "X-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Host: shop.test\r\nX-Forwarded-Port: 8443\r\n"
            "X-Forwarded-Proto: https\r\nX-Scheme: https\r\n\r\n");
  std::string line;
  append_status_line(line, 404, "Not Found");
  append_status_line(line, 200, "");
  EXPECT_EQ(line, "HTTP/1.1 404 Not Found\r\nHTTP/1.1 200 \r\n");
}

}  // namespace
}  // namespace kedge::proxy
